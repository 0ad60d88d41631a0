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
//! - a signal names the group it is raised in, and is refused anywhere
//!   else;
//! - an escalation carries the original signal, verified by its signature,
//!   which must name the escalation's origin, and the admissions showing
//!   that the raiser was a member there ([`MemberProof`]), so a signal
//!   seen once cannot be passed off as one from another group, nor a
//!   stranger's as a member's;
//! - an answer given in another group the signal travelled to is carried
//!   back by a member of both as a [`CarriedAnswer`], with the answerer's
//!   signed answer and the admissions showing the answerer was a member
//!   of the group where it was given: a node holding only this group
//!   checks both, and refuses an answer whose answerer is not shown to be
//!   a member where they claim to have answered.
//!
//! Whether a signal is open, expired or resolved, whether an escalation
//! came from a group in the right relation (a child tier, a mutual-aid
//! treaty partner), and whether a carried answer came from one (the tier
//! above or below, a partner), is decided by the view at a moment.

use std::collections::{BTreeMap, BTreeSet};

use nestwork_core::{GroupId, Hash32, MemberId, SignalId, SignedRecord};
use serde::{Deserialize, Serialize};

use crate::error::{broken, RuleError};
use crate::proof::MemberProof;
pub use crate::record::distress::{
    Answer, AnswerKind, CarriedAnswer, Category, Escalation, Severity, Signal,
};
use crate::record::RecordBody;

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

impl Escalation {
    /// The signal carried, verified: signed, raised in the origin by a
    /// member shown to be admitted there.
    pub fn signal(&self) -> Result<(SignedRecord, Signal), RuleError> {
        let record = SignedRecord::decode_verified(&self.signal)
            .map_err(|e| RuleError(format!("the escalated signal does not verify: {e}")))?;
        let Ok(RecordBody::Signal(s)) = RecordBody::decode(&record.body) else {
            return broken("an escalation must carry a distress signal");
        };
        if s.group != self.origin {
            return broken(format!(
                "the escalated signal was raised in {}, not in {} as the escalation says",
                s.group.short(),
                self.origin.short()
            ));
        }
        let origin = self.raiser.check_one(&record.author, "the raiser")?;
        if origin.id != self.origin {
            return broken("the escalation shows admissions to another group than its origin");
        }
        Ok((record, s))
    }
}

/// What a carried answer shows, once checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedAnswer {
    /// The answer's own id (the answerer's record), the same however many
    /// members carry it and by whatever way.
    pub id: Hash32,
    /// Who answered.
    pub by: MemberId,
    /// The answer.
    pub answer: Answer,
    /// The group where it was given.
    pub given_in: GroupId,
    /// That group's name, from its founding record.
    pub given_in_name: String,
}

impl CarriedAnswer {
    /// Check everything the record shows by itself: the answer's and every
    /// cited record's signature, that `given_in` is a group's founding
    /// record and starts the path, and that the admissions lead from its
    /// founder to the answerer, each ticket signed by the admitting member
    /// for that group.
    pub fn check(&self) -> Result<CheckedAnswer, RuleError> {
        let record = SignedRecord::decode_verified(&self.answer)
            .map_err(|e| RuleError(format!("the carried answer does not verify: {e}")))?;
        let Ok(RecordBody::Answer(answer)) = RecordBody::decode(&record.body) else {
            return broken("a carried answer must carry an answer to a distress signal");
        };
        check_text("answer", &answer.text, MAX_ANSWER_CHARS, false)?;
        let given_in = self.given_in.check_one(&record.author, "the answerer")?;
        let distinct: BTreeSet<&GroupId> = self.path.iter().collect();
        if self.path.first() != Some(&given_in.id)
            || self.path.len() > MAX_PATH
            || distinct.len() != self.path.len()
        {
            return broken(format!(
                "a carried answer's path starts at the group where it was given and names at most {MAX_PATH} groups, each once"
            ));
        }
        Ok(CheckedAnswer {
            id: record.id(),
            by: record.author,
            answer,
            given_in: given_in.id,
            given_in_name: given_in.name,
        })
    }
}

/// The answer `answer`, held in `group`'s document (`records`), made ready
/// to carry on into another group the signal travelled to: given here, or
/// carried in and carried on. `None` when this document does not hold it,
/// its answerer's admissions are not all held, or its path is full.
pub fn carry(
    group: &GroupId,
    records: &BTreeMap<Hash32, SignedRecord>,
    answer: &Hash32,
    now_ms: u64,
) -> Option<CarriedAnswer> {
    if let Some(r) = records.get(answer) {
        if !matches!(RecordBody::decode(&r.body), Ok(RecordBody::Answer(_))) {
            return None;
        }
        return Some(CarriedAnswer {
            answer: r.encode(),
            given_in: MemberProof::of_one(group, records, &r.author)?,
            path: vec![*group],
            at_ms: now_ms,
        });
    }
    records
        .values()
        .find_map(|r| match RecordBody::decode(&r.body) {
            Ok(RecordBody::CarriedAnswer(c))
                if c.path.len() < MAX_PATH && c.check().is_ok_and(|k| k.id == *answer) =>
            {
                let mut path = c.path;
                path.push(*group);
                Some(CarriedAnswer {
                    path,
                    at_ms: now_ms,
                    ..c
                })
            }
            _ => None,
        })
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
pub fn check_record(body: &RecordBody, group: &GroupId) -> Result<(), RuleError> {
    match body {
        RecordBody::Signal(s) => {
            if s.group != *group {
                return broken(format!(
                    "a signal raised in {} cannot be filed in {}",
                    s.group.short(),
                    group.short()
                ));
            }
            check_signal(s)
        }
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
        RecordBody::CarriedAnswer(c) => {
            c.check()?;
            if c.path.contains(group) {
                return broken("an answer cannot be carried into a group it came from");
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
    find: &dyn Fn(&SignalId) -> Option<(MemberId, Signal)>,
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
    /// The group where it was given.
    pub given_in: GroupId,
    /// That group's name.
    pub given_in_name: String,
    /// The groups it was carried through to reach the group of this view,
    /// from the one where it was given (empty when given there).
    pub carried_via: Vec<GroupId>,
}

/// A signal as a group sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalView {
    /// The signal's id (its record's hash).
    pub id: SignalId,
    /// The group it was raised in.
    pub origin: GroupId,
    /// The group whose document this view is from.
    pub seen_in: GroupId,
    /// Who raised it.
    pub raiser: MemberId,
    /// The signal.
    pub signal: Signal,
    /// Where it stands.
    pub status: SignalStatus,
    /// The groups it climbed through to get here (empty in its own group).
    pub path: Vec<GroupId>,
    /// When it arrived here (raised, or escalated in).
    pub arrived_at_ms: u64,
    /// Answers, oldest first.
    pub answers: Vec<AnswerView>,
}

impl SignalView {
    /// Its status at `now_ms`, by its answers: a resolve settles it for
    /// good; otherwise it expires, answered or not.
    fn status_at(&self, now_ms: u64) -> SignalStatus {
        if self.answers.iter().any(|a| a.answer == AnswerKind::Resolve) {
            SignalStatus::Resolved
        } else if now_ms >= self.signal.expires_at_ms {
            SignalStatus::Expired
        } else if self.answered() {
            SignalStatus::Answered
        } else {
            SignalStatus::Open
        }
    }

    /// Whether anyone has acknowledged or answered it.
    pub fn answered(&self) -> bool {
        !self.answers.is_empty()
    }
}

/// Which other groups a group takes escalations and carried answers from,
/// at a moment.
pub struct Relations<'a> {
    /// Whether an escalation from a group, filed at a time, is one this
    /// group takes (a child tier, a mutual-aid treaty partner).
    pub escalation_from: &'a dyn Fn(&GroupId, u64) -> bool,
    /// Whether an answer carried from a group, at a time, is one this group
    /// takes (the parent tier, a child tier, a mutual-aid treaty partner).
    pub answer_from: &'a dyn Fn(&GroupId, u64) -> bool,
}

/// The signals of a group's document at `now_ms`: its own and those
/// escalated into it (one per signal, however many members carried it),
/// open ones first, most severe first, newest first, each with its
/// answers given here or carried in (one per answer, however many members
/// carried it).
pub fn signals(
    group: GroupId,
    records: &BTreeMap<Hash32, SignedRecord>,
    now_ms: u64,
    relations: &Relations,
) -> Vec<SignalView> {
    let mut found: BTreeMap<SignalId, SignalView> = BTreeMap::new();
    let group_name = records
        .get(&group.hash32())
        .and_then(|r| match RecordBody::decode(&r.body) {
            Ok(RecordBody::GroupGenesis(g)) => Some(g.name),
            _ => None,
        })
        .unwrap_or_default();
    // Answers by their own id, so one carried in twice is one answer.
    let mut answers: BTreeMap<Hash32, AnswerView> = BTreeMap::new();
    let mut signal_of: BTreeMap<Hash32, SignalId> = BTreeMap::new();
    for (id, r) in records {
        match RecordBody::decode(&r.body) {
            Ok(RecordBody::Signal(s)) => {
                // A signal's id is its record's.
                let id = SignalId::from(*id);
                found.insert(
                    id,
                    SignalView {
                        id,
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
            Ok(RecordBody::Answer(a)) => {
                signal_of.insert(*id, a.signal);
                answers.insert(
                    *id,
                    AnswerView {
                        id: *id,
                        by: r.author,
                        answer: a.kind,
                        text: a.text,
                        at_ms: a.at_ms,
                        given_in: group,
                        given_in_name: group_name.clone(),
                        carried_via: Vec::new(),
                    },
                );
            }
            Ok(RecordBody::CarriedAnswer(c)) => {
                let Some((signal, view)) = carried_in(c, group, relations) else {
                    continue;
                };
                if answers.contains_key(&view.id) {
                    continue;
                }
                signal_of.insert(view.id, signal);
                answers.insert(view.id, view);
            }
            _ => {}
        }
    }
    take_escalations(group, records, relations, &mut found);
    let mut answers: Vec<AnswerView> = answers.into_values().collect();
    answers.sort_by_key(|a| (a.at_ms, a.id));
    for a in answers {
        if let Some(v) = signal_of.get(&a.id).and_then(|s| found.get_mut(s)) {
            v.answers.push(a);
        }
    }
    let mut out: Vec<SignalView> = found.into_values().collect();
    for v in &mut out {
        v.status = v.status_at(now_ms);
    }
    out.sort_by(open_first);
    out
}

/// An answer carried into `group` from a group it takes answers from: the
/// signal it answers and how it is shown (none if its signature fails or
/// it came from elsewhere).
fn carried_in(
    c: CarriedAnswer,
    group: GroupId,
    relations: &Relations,
) -> Option<(SignalId, AnswerView)> {
    let from = c.path.last().copied().unwrap_or(group);
    let k = c.check().ok()?;
    if !(relations.answer_from)(&from, c.at_ms) {
        return None;
    }
    let view = AnswerView {
        id: k.id,
        by: k.by,
        answer: k.answer.kind,
        text: k.answer.text,
        at_ms: k.answer.at_ms,
        given_in: k.given_in,
        given_in_name: k.given_in_name,
        carried_via: c.path,
    };
    Some((k.answer.signal, view))
}

/// Put the signals escalated into `group` from the groups it takes them
/// from in `found`: each signal once, as it first arrived (a signal raised
/// here stays its own, however often it comes back).
fn take_escalations(
    group: GroupId,
    records: &BTreeMap<Hash32, SignedRecord>,
    relations: &Relations,
    found: &mut BTreeMap<SignalId, SignalView>,
) {
    for r in records.values() {
        let Ok(RecordBody::Escalation(e)) = RecordBody::decode(&r.body) else {
            continue;
        };
        let from = e.path.last().copied().unwrap_or(e.origin);
        let Ok((record, s)) = e.signal() else {
            continue;
        };
        if !(relations.escalation_from)(&from, e.at_ms) {
            continue;
        }
        let id = SignalId::from(record.id());
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
}

/// The order signals are shown in: open ones first, most severe first,
/// newest first.
fn open_first(a: &SignalView, b: &SignalView) -> std::cmp::Ordering {
    let live = |v: &SignalView| matches!(v.status, SignalStatus::Open | SignalStatus::Answered);
    live(b)
        .cmp(&live(a))
        .then(b.signal.severity.cmp(&a.signal.severity))
        .then(b.arrived_at_ms.cmp(&a.arrived_at_ms))
        .then(a.id.cmp(&b.id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signal(seq: u64, prev: Option<SignalId>, at: u64) -> Signal {
        Signal {
            group: GroupId::from(Hash32([9; 32])),
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
        let mut chain: BTreeMap<SignalId, Signal> = BTreeMap::new();
        let mut prev = None;
        for seq in 1..=3u64 {
            let s = signal(seq, prev, seq * 1000);
            let id = SignalId::from(Hash32([seq as u8; 32]));
            chain.insert(id, s);
            prev = Some(id);
        }
        let find = |id: &SignalId| chain.get(id).map(|s| (me, s.clone()));
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

    use nestwork_core::MemberKey;

    use crate::record::{Admission, Charter, GroupGenesis, GroupKind};

    fn key(seed: u8) -> MemberKey {
        MemberKey::from_secret([seed; 32])
    }

    fn record(k: &MemberKey, body: RecordBody) -> SignedRecord {
        SignedRecord::sign(k, body.encode())
    }

    /// A region founded by key 1, where 1 admitted 2 and 2 admitted 3.
    fn region() -> (GroupId, BTreeMap<Hash32, SignedRecord>) {
        let genesis = record(
            &key(1),
            RecordBody::GroupGenesis(GroupGenesis {
                name: "North Valley".into(),
                kind: GroupKind::Region,
                parent: None,
                unit: "hours".into(),
                created_at_ms: 1,
                nonce: [9; 16],
                charter: Charter::default(),
            }),
        );
        let group = GroupId::from(genesis.id());
        let mut records = BTreeMap::from([(group.hash32(), genesis)]);
        for (by, newcomer) in [(2u8, 3u8), (1, 2)] {
            let r = record(
                &key(by),
                RecordBody::Admission(Admission::self_issued(
                    &key(by),
                    &group,
                    key(newcomer).id(),
                    Hash32([newcomer; 32]),
                    10,
                )),
            );
            records.insert(r.id(), r);
        }
        (group, records)
    }

    fn answer_by(k: &MemberKey, kind: AnswerKind) -> SignedRecord {
        record(
            k,
            RecordBody::Answer(Answer {
                signal: SignalId::from(Hash32([5; 32])),
                kind,
                text: "on my way".into(),
                at_ms: 20,
            }),
        )
    }

    #[test]
    fn a_carried_answer_shows_its_answerer_is_a_member_where_they_answered() {
        let (group, mut records) = region();
        let ack = answer_by(&key(3), AnswerKind::Ack);
        records.insert(ack.id(), ack.clone());
        let carried = carry(&group, &records, &ack.id(), 30).expect("carry");
        assert_eq!(carried.given_in.admissions.len(), 2, "founder -> 2 -> 3");
        assert_eq!(carried.path, vec![group]);
        let k = carried.check().expect("checks");
        assert_eq!((k.id, k.by, k.given_in), (ack.id(), key(3).id(), group));
        assert_eq!(k.given_in_name, "North Valley");
        let hub = GroupId::from(Hash32([7; 32]));
        assert!(check_record(&RecordBody::CarriedAnswer(carried.clone()), &hub).is_ok());
        // Not back into the group it came from.
        assert!(check_record(&RecordBody::CarriedAnswer(carried.clone()), &group).is_err());

        // Someone never admitted there: no chain to carry, and a forged
        // carry (their own answer, the region's founding record, the real
        // admissions of others) is refused.
        let stranger = answer_by(
            &key(4),
            AnswerKind::Respond {
                eta_secs: Some(600),
            },
        );
        records.insert(stranger.id(), stranger.clone());
        assert!(carry(&group, &records, &stranger.id(), 30).is_none());
        let forged = CarriedAnswer {
            answer: stranger.encode(),
            ..carried.clone()
        };
        let err = forged.check().expect_err("not a member");
        assert!(
            err.0.contains("not shown to be a member of North Valley"),
            "{}",
            err.0
        );
        // An admission of themselves, signed by themselves.
        let own = record(
            &key(4),
            RecordBody::Admission(Admission::self_issued(
                &key(4),
                &group,
                key(4).id(),
                Hash32([4; 32]),
                10,
            )),
        );
        let mut given_in = carried.given_in.clone();
        given_in.admissions.push(own.encode());
        let err = CarriedAnswer {
            answer: stranger.encode(),
            given_in,
            ..carried.clone()
        }
        .check()
        .expect_err("self-admitted");
        assert!(err.0.contains("not shown to be a member"), "{}", err.0);
        // A ticket signed for another group does not count here.
        let elsewhere = record(
            &key(1),
            RecordBody::Admission(Admission::self_issued(
                &key(1),
                &GroupId::from(Hash32([8; 32])),
                key(4).id(),
                Hash32([4; 32]),
                10,
            )),
        );
        assert!(CarriedAnswer {
            answer: stranger.encode(),
            given_in: MemberProof {
                admissions: vec![elsewhere.encode()],
                ..carried.given_in.clone()
            },
            ..carried.clone()
        }
        .check()
        .is_err());
        // A tampered answer does not verify; a path that does not start
        // where it was given is refused.
        let mut tampered = carried.clone();
        let n = tampered.answer.len();
        tampered.answer[n - 1] ^= 1;
        assert!(tampered.check().is_err());
        assert!(CarriedAnswer {
            path: vec![hub],
            ..carried.clone()
        }
        .check()
        .is_err());
    }

    #[test]
    fn an_answer_carried_in_twice_is_one_answer() {
        // A hub holding a signal; the region it climbed to holds an ack.
        let signal = record(&key(6), RecordBody::Signal(signal(1, None, 10)));
        let mut hub = BTreeMap::from([(signal.id(), signal.clone())]);
        let (region_id, mut region_records) = region();
        let real = record(
            &key(2),
            RecordBody::Answer(Answer {
                signal: SignalId::from(signal.id()),
                kind: AnswerKind::Ack,
                text: String::new(),
                at_ms: 20,
            }),
        );
        region_records.insert(real.id(), real.clone());
        let carried = carry(&region_id, &region_records, &real.id(), 30).expect("carry");
        // Carried in by two members.
        for carrier in [7u8, 8] {
            let r = record(
                &key(carrier),
                RecordBody::CarriedAnswer(CarriedAnswer {
                    at_ms: 30 + u64::from(carrier),
                    ..carried.clone()
                }),
            );
            hub.insert(r.id(), r);
        }
        let hub_id = GroupId::from(Hash32([7; 32]));
        let from_parent = |from: &GroupId, _: u64| *from == region_id;
        let nobody = |_: &GroupId, _: u64| false;
        let views = signals(
            hub_id,
            &hub,
            15,
            &Relations {
                escalation_from: &nobody,
                answer_from: &from_parent,
            },
        );
        assert_eq!(views.len(), 1);
        assert_eq!(views[0].status, SignalStatus::Answered);
        assert_eq!(views[0].answers.len(), 1, "one answer, two carriers");
        let a = &views[0].answers[0];
        assert_eq!(
            (a.id, a.by, a.given_in),
            (real.id(), key(2).id(), region_id)
        );
        assert_eq!(a.given_in_name, "North Valley");
        assert_eq!(a.carried_via, vec![region_id]);
        // From a group this one is not related to: not counted.
        let views = signals(
            hub_id,
            &hub,
            15,
            &Relations {
                escalation_from: &nobody,
                answer_from: &nobody,
            },
        );
        assert!(views[0].answers.is_empty());
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
