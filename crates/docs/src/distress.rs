//! Distress signals: raised by a member, answered (seen, on my way,
//! resolved), and carried up the tiers and across mutual-aid treaties when
//! nobody answers. Pure logic, no I/O; the clock is an argument.
//!
//! Signals, answers and escalations are insert-only signed records in a
//! group's document, so they travel like every other change (gossip at
//! once, catch-up sync for a node that was away) and pass the same checks.
//! What a record alone or the records it names can show is checked by the
//! engine, the same on every node:
//!
//! - a signal's text, category, severity and expiry are within bounds;
//! - each member's signals form a chain (sequence numbers from 1, each
//!   naming the previous), and the signal `N` places back on the chain
//!   must be at least an hour older, where `N` is the founding charter's
//!   `distress_per_hour`: a flood from one key is refused at the first node
//!   it reaches, and a second signal with a sequence number already used is
//!   refused too, so the chain cannot be forked to get round the limit;
//! - an answer names a signal the group holds (its own, or carried in by an
//!   escalation); a resolve comes from the raiser or someone who responded;
//! - an escalation carries the original signal, verified by its signature.
//!
//! Whether a signal is open, expired or resolved, and whether an escalation
//! came from a group in the right relation (a child tier, a mutual-aid
//! treaty partner), is decided by the view at a moment.

use std::collections::BTreeMap;

use nestwork_core::{Hash32, MemberId, SignedRecord};
use serde::{Deserialize, Serialize};

use crate::record::RecordBody;
use crate::rules::RuleError;

/// Longest signal text, in characters.
pub const MAX_SIGNAL_CHARS: usize = 1_000;
/// Longest location, in characters.
pub const MAX_LOCATION_CHARS: usize = 200;
/// Longest answer text, in characters.
pub const MAX_ANSWER_CHARS: usize = 500;
/// Longest life of a signal.
pub const MAX_EXPIRY_MS: u64 = 7 * 24 * 3600 * 1000;
/// Default life of a signal.
pub const DEFAULT_EXPIRY_MS: u64 = 24 * 3600 * 1000;
/// Most tiers an escalation may have climbed.
pub const MAX_PATH: usize = 16;
/// The window of the rate limit.
pub const RATE_WINDOW_MS: u64 = 3600 * 1000;

fn broken<T>(msg: impl Into<String>) -> Result<T, RuleError> {
    Err(RuleError(msg.into()))
}

/// What kind of help is needed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    /// Injury or illness.
    Medical,
    /// Danger to people.
    Safety,
    /// A roof for the night.
    Shelter,
    /// Food or water.
    FoodWater,
    /// Losing a home.
    Eviction,
    /// Police, courts, papers.
    Legal,
    /// Anything else.
    Other,
}

/// The categories' names, as typed.
pub const CATEGORIES: &[&str] = &[
    "medical",
    "safety",
    "shelter",
    "food-water",
    "eviction",
    "legal",
    "other",
];

impl Category {
    /// The name on the command line and in JSON.
    pub fn as_str(&self) -> &'static str {
        match self {
            Category::Medical => "medical",
            Category::Safety => "safety",
            Category::Shelter => "shelter",
            Category::FoodWater => "food-water",
            Category::Eviction => "eviction",
            Category::Legal => "legal",
            Category::Other => "other",
        }
    }
}

impl std::str::FromStr for Category {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "medical" => Category::Medical,
            "safety" => Category::Safety,
            "shelter" => Category::Shelter,
            "food-water" | "food/water" | "food" | "water" => Category::FoodWater,
            "eviction" => Category::Eviction,
            "legal" => Category::Legal,
            "other" => Category::Other,
            other => {
                return Err(format!(
                    "unknown category {other:?}: expected one of {}",
                    CATEGORIES.join(", ")
                ))
            }
        })
    }
}

/// How urgent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// When someone can.
    Low,
    /// Soon.
    High,
    /// Now.
    Critical,
}

impl Severity {
    /// The name on the command line and in JSON.
    pub fn as_str(&self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl std::str::FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "low" => Ok(Severity::Low),
            "high" => Ok(Severity::High),
            "critical" => Ok(Severity::Critical),
            other => Err(format!(
                "unknown severity {other:?}: expected low, high or critical"
            )),
        }
    }
}

/// A call for help, signed by the member who raises it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signal {
    /// What kind of help.
    pub category: Category,
    /// How urgent.
    pub severity: Severity,
    /// What is happening.
    pub text: String,
    /// A coarse location, if the raiser gives one.
    pub location: Option<String>,
    /// When, by the raiser's clock.
    pub raised_at_ms: u64,
    /// When it stops asking for help.
    pub expires_at_ms: u64,
    /// Position on the raiser's chain of signals in this group, from 1.
    pub seq: u64,
    /// The raiser's previous signal (`None` only for seq 1).
    pub prev: Option<Hash32>,
}

/// How someone answers a signal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AnswerKind {
    /// "Seen": stops escalation.
    Ack,
    /// "On my way", with an estimate.
    Respond {
        /// Seconds until they expect to be there.
        eta_secs: Option<u64>,
    },
    /// Help arrived or is no longer needed (the raiser or a responder).
    Resolve,
}

impl AnswerKind {
    /// A word for people.
    pub fn as_str(&self) -> &'static str {
        match self {
            AnswerKind::Ack => "seen",
            AnswerKind::Respond { .. } => "on the way",
            AnswerKind::Resolve => "resolved",
        }
    }
}

/// An answer to a signal, signed by the member who gives it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    /// The signal (the id of the raiser's record).
    pub signal: Hash32,
    /// Seen, on my way, or resolved.
    pub kind: AnswerKind,
    /// A few words.
    pub text: String,
    /// When, by the answerer's clock.
    pub at_ms: u64,
}

/// A signal carried into this group from another (a child tier, or a
/// mutual-aid treaty partner) by a member of both, because nobody there
/// answered in time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Escalation {
    /// The raiser's signed record, as it was.
    pub signal: Vec<u8>,
    /// The group it was raised in.
    pub origin: Hash32,
    /// The groups it passed through, from the origin to the one it came
    /// from.
    pub path: Vec<Hash32>,
    /// When, by the escalating member's clock.
    pub at_ms: u64,
}

impl Escalation {
    /// The signal carried, verified.
    pub fn signal(&self) -> Result<(SignedRecord, Signal), RuleError> {
        let record = SignedRecord::decode_verified(&self.signal)
            .map_err(|e| RuleError(format!("the escalated signal does not verify: {e}")))?;
        match RecordBody::decode(&record.body) {
            Ok(RecordBody::Signal(s)) => Ok((record, s)),
            _ => broken("an escalation must carry a distress signal"),
        }
    }
}

fn check_text(what: &str, text: &str, max: usize, required: bool) -> Result<(), RuleError> {
    if required && text.trim().is_empty() {
        return broken(format!("the {what} is empty"));
    }
    let n = text.chars().count();
    if n > max {
        return broken(format!("the {what} is {n} characters; the limit is {max}"));
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return broken(format!("the {what} contains control characters"));
    }
    Ok(())
}

/// Check a distress record's shape, as filed in `group`.
pub fn check_record(body: &RecordBody, group: &Hash32) -> Result<(), RuleError> {
    match body {
        RecordBody::Signal(s) => check_signal(s),
        RecordBody::Answer(a) => check_text("answer", &a.text, MAX_ANSWER_CHARS, false),
        RecordBody::Escalation(e) => {
            let (_, s) = e.signal()?;
            check_signal(&s)?;
            if e.origin == *group || e.path.contains(group) {
                return broken("a signal cannot be escalated into a group it came from");
            }
            if e.path.is_empty() || e.path.len() > MAX_PATH || e.path[0] != e.origin {
                return broken(format!(
                    "an escalation's path starts at the signal's group and names at most {MAX_PATH} groups"
                ));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn check_signal(s: &Signal) -> Result<(), RuleError> {
    check_text("signal text", &s.text, MAX_SIGNAL_CHARS, true)?;
    if let Some(l) = &s.location {
        check_text("location", l, MAX_LOCATION_CHARS, true)?;
    }
    if s.expires_at_ms <= s.raised_at_ms {
        return broken("a signal must expire after it is raised");
    }
    if s.expires_at_ms - s.raised_at_ms > MAX_EXPIRY_MS {
        return broken("a signal lasts at most 7 days");
    }
    match (s.seq, &s.prev) {
        (1, None) => Ok(()),
        (n, Some(_)) if n > 1 => Ok(()),
        _ => broken("broken chain: signal 1 names no previous signal, and only it"),
    }
}

/// Check a signal against the raiser's earlier signals, found by `find`
/// (id to record): the chain link, increasing times, no second signal with
/// the same number (`taken`), and at most `per_hour` signals in any hour.
pub fn check_chain(
    author: &MemberId,
    s: &Signal,
    per_hour: u32,
    taken: bool,
    find: &dyn Fn(&Hash32) -> Option<(MemberId, Signal)>,
) -> Result<(), RuleError> {
    if taken {
        return broken(format!(
            "signal number {} of this member exists already (a replay or a forked chain)",
            s.seq
        ));
    }
    let mut cursor = s.prev;
    let mut later = s.raised_at_ms;
    let mut back = 1u64;
    while let Some(id) = cursor {
        let Some((who, earlier)) = find(&id) else {
            return broken("broken chain: the previous signal named is not in this group");
        };
        if who != *author || earlier.seq + back != s.seq {
            return broken("broken chain: the previous signal named is not this member's");
        }
        if earlier.raised_at_ms > later {
            return broken("a signal cannot be older than the one before it");
        }
        if back >= u64::from(per_hour.max(1)) {
            if s.raised_at_ms.saturating_sub(earlier.raised_at_ms) < RATE_WINDOW_MS {
                return broken(format!(
                    "rate limit: at most {per_hour} signals per member per hour; the next may be raised {} s from now",
                    (earlier.raised_at_ms + RATE_WINDOW_MS - s.raised_at_ms).div_ceil(1000)
                ));
            }
            return Ok(());
        }
        later = earlier.raised_at_ms;
        cursor = earlier.prev;
        back += 1;
    }
    Ok(())
}

/// Where a signal stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignalStatus {
    /// Nobody has answered yet.
    Open,
    /// Someone has seen it or is on the way.
    Answered,
    /// Help came, or it is no longer needed.
    Resolved,
    /// Its time ran out.
    Expired,
}

/// One answer as shown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerView {
    /// The answer record.
    pub id: Hash32,
    /// Who.
    pub by: MemberId,
    /// Seen, on the way, resolved.
    pub answer: AnswerKind,
    /// Their words.
    pub text: String,
    /// When.
    pub at_ms: u64,
}

/// A signal as a group sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalView {
    /// The signal's id (its record's hash).
    pub id: Hash32,
    /// The group it was raised in.
    pub origin: Hash32,
    /// The group whose document this view is from.
    pub seen_in: Hash32,
    /// Who raised it.
    pub raiser: MemberId,
    /// The signal.
    pub signal: Signal,
    /// Where it stands.
    pub status: SignalStatus,
    /// The groups it climbed through to get here (empty in its own group).
    pub path: Vec<Hash32>,
    /// When it arrived here (raised, or escalated in).
    pub arrived_at_ms: u64,
    /// Answers, oldest first.
    pub answers: Vec<AnswerView>,
}

impl SignalView {
    /// Whether anyone has acknowledged or answered it.
    pub fn answered(&self) -> bool {
        !self.answers.is_empty()
    }
}

/// The signals of a group's document at `now_ms`: its own and those
/// escalated into it (one per signal, however many members carried it),
/// open ones first, most severe first, newest first. `accepts` says whether
/// an escalation from a group (at a time) is one this group takes.
pub fn signals(
    group: Hash32,
    records: &BTreeMap<Hash32, SignedRecord>,
    now_ms: u64,
    accepts: &dyn Fn(&Hash32, u64) -> bool,
) -> Vec<SignalView> {
    let mut found: BTreeMap<Hash32, SignalView> = BTreeMap::new();
    let mut answers: Vec<(Hash32, MemberId, Answer)> = Vec::new();
    for (id, r) in records {
        match RecordBody::decode(&r.body) {
            Ok(RecordBody::Signal(s)) => {
                found.insert(
                    *id,
                    SignalView {
                        id: *id,
                        origin: group,
                        seen_in: group,
                        raiser: r.author,
                        arrived_at_ms: s.raised_at_ms,
                        signal: s,
                        status: SignalStatus::Open,
                        path: Vec::new(),
                        answers: Vec::new(),
                    },
                );
            }
            Ok(RecordBody::Answer(a)) => answers.push((*id, r.author, a)),
            _ => {}
        }
    }
    for r in records.values() {
        let Ok(RecordBody::Escalation(e)) = RecordBody::decode(&r.body) else {
            continue;
        };
        let from = e.path.last().copied().unwrap_or(e.origin);
        let Ok((record, s)) = e.signal() else {
            continue;
        };
        if !accepts(&from, e.at_ms) {
            continue;
        }
        let id = record.id();
        let earlier = found
            .get(&id)
            .is_some_and(|v| v.arrived_at_ms <= e.at_ms && v.origin == group);
        if earlier {
            continue;
        }
        let keep = found.get(&id).is_none_or(|v| e.at_ms < v.arrived_at_ms);
        if keep {
            found.insert(
                id,
                SignalView {
                    id,
                    origin: e.origin,
                    seen_in: group,
                    raiser: record.author,
                    arrived_at_ms: e.at_ms,
                    signal: s,
                    status: SignalStatus::Open,
                    path: e.path.clone(),
                    answers: Vec::new(),
                },
            );
        }
    }
    answers.sort_by_key(|(id, _, a)| (a.at_ms, *id));
    for (id, by, a) in answers {
        if let Some(v) = found.get_mut(&a.signal) {
            v.answers.push(AnswerView {
                id,
                by,
                answer: a.kind,
                text: a.text,
                at_ms: a.at_ms,
            });
        }
    }
    let mut out: Vec<SignalView> = found.into_values().collect();
    for v in &mut out {
        v.status = if v.answers.iter().any(|a| a.answer == AnswerKind::Resolve) {
            SignalStatus::Resolved
        } else if now_ms >= v.signal.expires_at_ms {
            SignalStatus::Expired
        } else if v.answered() {
            SignalStatus::Answered
        } else {
            SignalStatus::Open
        };
    }
    out.sort_by(|a, b| {
        let live = |v: &SignalView| matches!(v.status, SignalStatus::Open | SignalStatus::Answered);
        live(b)
            .cmp(&live(a))
            .then(b.signal.severity.cmp(&a.signal.severity))
            .then(b.arrived_at_ms.cmp(&a.arrived_at_ms))
            .then(a.id.cmp(&b.id))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signal(seq: u64, prev: Option<Hash32>, at: u64) -> Signal {
        Signal {
            category: Category::Medical,
            severity: Severity::High,
            text: "help".into(),
            location: None,
            raised_at_ms: at,
            expires_at_ms: at + 1000,
            seq,
            prev,
        }
    }

    #[test]
    fn the_rate_limit_counts_back_along_the_chain() {
        let me = MemberId([1; 32]);
        let mut chain: BTreeMap<Hash32, Signal> = BTreeMap::new();
        let mut prev = None;
        for seq in 1..=3u64 {
            let s = signal(seq, prev, seq * 1000);
            let id = Hash32([seq as u8; 32]);
            chain.insert(id, s);
            prev = Some(id);
        }
        let find = |id: &Hash32| chain.get(id).map(|s| (me, s.clone()));
        // A fourth within the hour, at 3 per hour: refused.
        let err = check_chain(&me, &signal(4, prev, 5000), 3, false, &find).expect_err("rate");
        assert!(err.0.contains("rate limit"), "{}", err.0);
        // An hour after the first: allowed.
        assert!(check_chain(
            &me,
            &signal(4, prev, 1000 + RATE_WINDOW_MS),
            3,
            false,
            &find
        )
        .is_ok());
        assert!(check_chain(&me, &signal(4, prev, 1000 + RATE_WINDOW_MS), 3, true, &find).is_err());
        let other = MemberId([2; 32]);
        assert!(check_chain(
            &other,
            &signal(4, prev, 1000 + RATE_WINDOW_MS),
            3,
            false,
            &find
        )
        .is_err());
    }

    #[test]
    fn bad_signals() {
        assert!(check_signal(&signal(1, None, 10)).is_ok());
        let mut s = signal(1, None, 10);
        s.text = " ".into();
        assert!(check_signal(&s).is_err());
        s.text = "x".repeat(MAX_SIGNAL_CHARS + 1);
        assert!(check_signal(&s).is_err());
        let mut s = signal(1, None, 10);
        s.expires_at_ms = 5;
        assert!(check_signal(&s).is_err());
        assert!(check_signal(&signal(2, None, 10)).is_err());
        assert!("volcano".parse::<Category>().is_err());
        assert!("meh".parse::<Severity>().is_err());
    }
}
