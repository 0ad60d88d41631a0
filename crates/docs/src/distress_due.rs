//! Distress across groups: which signals a group sees through its
//! relations (the tier above or below, a mutual-aid treaty partner), and
//! the distress records a member's node must file now where it belongs to
//! both groups: escalations of unanswered signals, answers carried back.
//! The time, and when this node first held each signal, are passed in.

use std::collections::BTreeMap;

use nestwork_core::{GroupId, Hash32, MemberId, SignalId};

use crate::distress::{self, Escalation, SignalStatus, SignalView};
use crate::governance::{Governance, TreatyKind, TreatyState};
use crate::proof::MemberProof;
use crate::{RecordBody, SignedDoc};

/// Whether a mutual-aid treaty was in force at `at`.
pub fn mutual_aid_at(t: &TreatyState, at: u64) -> bool {
    t.treaty.kind == TreatyKind::MutualAid
        && t.ratified_here_ms.is_some()
        && t.ratified_there_ms.is_some()
        && t.ended_ms.is_none_or(|e| at < e)
        && t.treaty.start_ms <= at
        && at < t.end_ms()
}

/// Whether `gov`'s group was bound to `other` by a mutual-aid treaty in
/// force at `at`.
pub fn partners_at(gov: &Governance, other: &GroupId, at: u64) -> bool {
    gov.treaties
        .values()
        .any(|t| t.other == *other && mutual_aid_at(t, at))
}

/// Whether `gov`'s group takes answers carried from `from` at `at`: the
/// tier above, a child tier, or a mutual-aid treaty partner.
pub fn answers_come_from(gov: &Governance, from: &GroupId, at: u64) -> bool {
    gov.parent == Some(*from) || gov.children.contains(from) || partners_at(gov, from, at)
}

/// The signals of one group document as of `now`.
pub fn signals_of(doc: &SignedDoc, gov: &Governance, now: u64) -> Vec<SignalView> {
    // An escalation counts from a child tier, or from the other party of a
    // mutual-aid treaty in force when it came; an answer is carried back
    // from the tier above, from a child tier, or across such a treaty.
    let escalation_from =
        |from: &GroupId, at: u64| gov.children.contains(from) || partners_at(gov, from, at);
    let answer_from = |from: &GroupId, at: u64| answers_come_from(gov, from, at);
    let relations = distress::Relations {
        escalation_from: &escalation_from,
        answer_from: &answer_from,
    };
    distress::signals(doc.group(), doc.records(), now, &relations)
}

/// The raw signed record of signal `id` as `doc` holds it, with the
/// admissions showing its raiser was a member where it was raised: from
/// the document itself for a signal raised here, from the escalation that
/// carried it in otherwise.
pub fn signal_with_proof(doc: &SignedDoc, id: &SignalId) -> Option<(Vec<u8>, MemberProof)> {
    if let Some(r) = doc.records().get(&id.hash32()) {
        let proof = MemberProof::of_one(&doc.group(), doc.records(), &r.author)?;
        return Some((r.encode(), proof));
    }
    doc.records()
        .values()
        .find_map(|r| match RecordBody::decode(&r.body) {
            Ok(RecordBody::Escalation(e)) => e
                .signal()
                .ok()
                .filter(|(s, _)| s.id() == id.hash32())
                .map(|_| (e.signal, e.raiser)),
            _ => None,
        })
}

/// Distress records this node should file now, where this member
/// belongs to both groups: escalations of unanswered signals whose
/// group's escalation time has passed, into each next group that does
/// not hold them yet, then answers carried between the groups a signal
/// travelled to.
pub fn due_distress_records(
    groups: &BTreeMap<GroupId, SignedDoc>,
    govs: &BTreeMap<GroupId, Governance>,
    me: &MemberId,
    now: u64,
    held_since: &mut dyn FnMut(&GroupId, &SignalId) -> u64,
) -> Vec<(GroupId, RecordBody)> {
    let signals: BTreeMap<GroupId, Vec<SignalView>> = govs
        .iter()
        .filter_map(|(g, gov)| Some((*g, signals_of(groups.get(g)?, gov, now))))
        .collect();
    let mut out = due_escalations(groups, govs, &signals, me, now, held_since);
    out.extend(due_answer_carries(groups, govs, &signals, me, now));
    out
}

/// Answers to carry: each answer held in one group with the signal,
/// into every related group (the tier above or below, a mutual-aid
/// partner) this member belongs to that holds the signal but not the
/// answer, so it reaches the person who called for help and a
/// resolution reaches every group the signal travelled to. Oldest
/// first, so a response is carried before the resolve that needs it.
fn due_answer_carries(
    groups: &BTreeMap<GroupId, SignedDoc>,
    govs: &BTreeMap<GroupId, Governance>,
    signals: &BTreeMap<GroupId, Vec<SignalView>>,
    me: &MemberId,
    now: u64,
) -> Vec<(GroupId, RecordBody)> {
    let mine: Vec<&GroupId> = govs
        .iter()
        .filter(|(_, gov)| gov.is_member(me))
        .map(|(g, _)| g)
        .collect();
    let related = |to: &GroupId, from: &GroupId| {
        govs.get(to)
            .is_some_and(|gov| answers_come_from(gov, from, now))
    };
    let mut due: BTreeMap<(u64, Hash32, GroupId), RecordBody> = BTreeMap::new();
    for from in &mine {
        let Some(doc) = groups.get(from) else {
            continue;
        };
        for v in signals.get(from).into_iter().flatten() {
            for a in &v.answers {
                for to in &mine {
                    let there = signals
                        .get(to)
                        .and_then(|l| l.iter().find(|x| x.id == v.id));
                    let Some(there) = there else {
                        continue;
                    };
                    let key = (a.at_ms, a.id, **to);
                    if to == from
                        || a.given_in == **to
                        || a.carried_via.contains(to)
                        || there.answers.iter().any(|x| x.id == a.id)
                        || due.contains_key(&key)
                        || !related(to, from)
                    {
                        continue;
                    }
                    if let Some(c) = distress::carry(from, doc.records(), &a.id, now) {
                        due.insert(key, RecordBody::CarriedAnswer(c));
                    }
                }
            }
        }
    }
    due.into_iter()
        .map(|((_, _, to), body)| (to, body))
        .collect()
}

/// Escalations to file (see [`due_distress_records`]).
fn due_escalations(
    groups: &BTreeMap<GroupId, SignedDoc>,
    govs: &BTreeMap<GroupId, Governance>,
    signals: &BTreeMap<GroupId, Vec<SignalView>>,
    me: &MemberId,
    now: u64,
    held_since: &mut dyn FnMut(&GroupId, &SignalId) -> u64,
) -> Vec<(GroupId, RecordBody)> {
    // An answer anywhere stops escalation everywhere.
    let answered: std::collections::BTreeSet<SignalId> = signals
        .values()
        .flatten()
        .filter(|v| v.answered())
        .map(|v| v.id)
        .collect();
    let holds = |group: &GroupId, id: &SignalId| {
        signals
            .get(group)
            .is_some_and(|l| l.iter().any(|x| x.id == *id))
    };
    // Filed this tick are counted too.
    let mut carried_in = carried_in_last_hour(signals, now);
    let mut out = Vec::new();
    for (g, gov) in govs {
        let Some(doc) = groups.get(g) else {
            continue;
        };
        if !gov.is_member(me) {
            continue;
        }
        let wait = gov.rules.distress_escalation_secs.saturating_mul(1000);
        // The raiser's rate limit holds upward too: however many
        // signals a modified node got into this group (a backdated
        // chain), this node carries at most this many of one raiser's
        // into another group in any hour.
        let per_hour = gov.rules.distress_per_hour.max(1);
        for v in signals.get(g).into_iter().flatten() {
            if answered.contains(&v.id) || v.status != SignalStatus::Open {
                continue;
            }
            // The members here have had the escalation time to answer
            // since this node could first show it them: a time the
            // raiser backdated (building on old records) or a signal
            // that reaches this node late does not cut that short.
            let since = v.arrived_at_ms.max(held_since(g, &v.id));
            if now < since.saturating_add(wait) {
                continue;
            }
            for t in escalation_targets(*g, gov, v, now) {
                let member_there = govs.get(&t).is_some_and(|tg| tg.is_member(me));
                let carried = carried_in.entry((t, v.raiser)).or_default();
                if !member_there || holds(&t, &v.id) || v.path.contains(&t) || *carried >= per_hour
                {
                    continue;
                }
                let Some((bytes, raiser)) = signal_with_proof(doc, &v.id) else {
                    continue;
                };
                let mut path = v.path.clone();
                if path.is_empty() {
                    path.push(v.origin);
                } else {
                    path.push(*g);
                }
                *carried += 1;
                out.push((
                    t,
                    RecordBody::Escalation(Escalation {
                        signal: bytes,
                        origin: v.origin,
                        raiser,
                        path,
                        at_ms: now,
                    }),
                ));
            }
        }
    }
    out
}

/// How many of each raiser's signals were carried into each group in the
/// last hour (held there), by (group, raiser).
fn carried_in_last_hour(
    signals: &BTreeMap<GroupId, Vec<SignalView>>,
    now: u64,
) -> BTreeMap<(GroupId, MemberId), u32> {
    let mut carried_in: BTreeMap<(GroupId, MemberId), u32> = BTreeMap::new();
    for (t, list) in signals {
        for x in list {
            if !x.path.is_empty() && now < x.arrived_at_ms.saturating_add(distress::RATE_WINDOW_MS)
            {
                *carried_in.entry((*t, x.raiser)).or_default() += 1;
            }
        }
    }
    carried_in
}

/// Where signal `v`, seen in group `g`, climbs: the tier above, and, from
/// the group it was raised in, every group bound to it by a mutual-aid
/// treaty in force.
fn escalation_targets(g: GroupId, gov: &Governance, v: &SignalView, now: u64) -> Vec<GroupId> {
    let mut targets: Vec<GroupId> = gov.parent.into_iter().collect();
    if v.origin == g {
        targets.extend(
            gov.treaties
                .values()
                .filter(|t| mutual_aid_at(t, now))
                .map(|t| t.other),
        );
    }
    targets
}
