//! Decisions that hold (issue 14), as a property. Five members propose,
//! vote, raise distress signals and answer them, each on their own replica
//! with a clock up to two minutes off, syncing now and then, each holding
//! back what claims a time more than the skew ahead of its clock, as a
//! node does. Modified nodes cast votes late, on a stale copy or on what
//! they hold, claiming a moment just before the deadline, and sign
//! decisions of their own naming them, claiming the grace period over.
//! The proposer's node signs the decision as soon as voting is over by its
//! clock and gossips it to everyone, as a node online does. Then every
//! change reaches fresh replicas in random orders and batches, some twice.
//!
//! - No outcome a member's node showed (passed or failed, at its own
//!   clock) ever changes, on that node or on any other.
//! - A replica catching up, after every batch, shows the final outcome of
//!   every proposal its proposer's decision decides (until that arrives, it
//!   may show a modified node's fallback decision).
//! - Every replica ends with the same changes kept, the same outcomes,
//!   roll and distress states, equal to a replica given everything at once.
//!
//! Not covered: a proposer's node that is away or signs twice (see the
//! README's trust model).

use std::collections::{BTreeMap, BTreeSet};

use nestwork_core::{GroupId, Hash32, MemberId, ProposalId, SignalId, SignedChange};
use nestwork_docs::distress::{self, Answer, AnswerKind, Category, Severity, Signal, SignalStatus};
use nestwork_docs::governance::DECISION_GRACE_MS;
use nestwork_docs::governance::{Action, Choice, Outcome, Proposal, Vote};
use nestwork_docs::ledger::Refusal;
use nestwork_docs::view::{decision_due, governance_of};
use nestwork_docs::{
    Admission, Charter, GroupGenesis, GroupKind, NoLedger, RecordBody, RecordGate, SignedDoc,
    Writer,
};
use proptest::prelude::*;

mod common;
use common::{deliver_in_batches, writer};

const T0: u64 = 1_700_000_000_000;
const MEMBERS: u8 = 5;
/// The voting period (the founding charter's): several steps long.
const PERIOD_MS: u64 = 300_000;
/// Long after everything: where final outcomes are read.
const END: u64 = T0 + 30 * 24 * 3600 * 1000;

/// One step: what member `who` does (with `other` and `pick` choosing its
/// object), `dt` milliseconds after the step before.
#[derive(Clone, Debug)]
struct Step {
    op: u8,
    who: u8,
    other: u8,
    pick: u8,
    dt: u32,
}

fn step() -> impl Strategy<Value = Step> {
    (
        0u8..12,
        1u8..=MEMBERS,
        1u8..=MEMBERS,
        any::<u8>(),
        0u32..40_000,
    )
        .prop_map(|(op, who, other, pick, dt)| Step {
            op,
            who,
            other,
            pick,
            dt,
        })
}

/// A node's clock, for what it applies: no ledger here, and what claims a
/// time more than the skew ahead of it waits.
struct ClockAt(u64);

impl RecordGate for ClockAt {
    fn roll_at(
        &self,
        heads: &[Hash32],
    ) -> Result<std::sync::Arc<nestwork_docs::engine::Roll>, Refusal> {
        NoLedger.roll_at(heads)
    }
    fn admit(&mut self, author: &MemberId, id: Hash32, body: &RecordBody) -> Result<(), Refusal> {
        NoLedger.admit(author, id, body)
    }
    fn now_ms(&self) -> Option<u64> {
        Some(self.0)
    }
}

/// What the history left: the group, every change anyone made (hostile
/// ones included) and what each member's node showed as it went.
struct History {
    group: Hash32,
    /// The moment the history ended (where distress states are compared).
    last: u64,
    changes: Vec<SignedChange>,
    shown: BTreeMap<ProposalId, Outcome>,
}

fn proposals_in(doc: &SignedDoc) -> Vec<(Hash32, MemberId, Proposal)> {
    doc.records()
        .iter()
        .filter_map(|(id, r)| match RecordBody::decode(&r.body) {
            Ok(RecordBody::Proposal(p)) => Some((*id, r.author, p)),
            _ => None,
        })
        .collect()
}

fn signals_in(doc: &SignedDoc, now: u64) -> BTreeMap<SignalId, SignalStatus> {
    let none = |_: &GroupId, _: u64| false;
    let relations = distress::Relations {
        escalation_from: &none,
        answer_from: &none,
    };
    distress::signals(doc.group(), doc.records(), now, &relations)
        .into_iter()
        .map(|v| (v.id, v.status))
        .collect()
}

/// Outcomes shown (passed or failed) by `doc` at `now`, each with whether
/// a decision by its proposer decides it.
fn shown_by(doc: &SignedDoc, now: u64) -> BTreeMap<ProposalId, (Outcome, bool)> {
    governance_of(doc, now)
        .map(|g| {
            g.proposals
                .iter()
                .filter(|p| matches!(p.outcome, Outcome::Passed | Outcome::Failed))
                .map(|p| {
                    let by_proposer = p
                        .decisions
                        .iter()
                        .any(|d| doc.records().get(d).is_some_and(|r| r.author == p.proposer));
                    (p.id, (p.outcome, by_proposer))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn play(steps: &[Step], skews: &[i64]) -> Result<History, TestCaseError> {
    let mut charter = Charter::default();
    charter.rules.voting_period_secs = PERIOD_MS / 1000;
    let genesis = GroupGenesis {
        name: "Hub".into(),
        kind: GroupKind::Hub,
        parent: None,
        unit: "hours".into(),
        created_at_ms: T0,
        nonce: [14; 16],
        charter,
    };
    let (mut founder, _) = SignedDoc::create_group(&writer(1), genesis, T0).expect("found");
    let group = founder.id();
    for m in 2..=MEMBERS {
        let body = RecordBody::Admission(Admission::self_issued(
            writer(1).key(),
            &GroupId::from(group),
            writer(m).id(),
            Hash32([m; 32]),
            T0 + u64::from(m),
        ));
        founder
            .add_record(&writer(1), body, &mut NoLedger, T0)
            .expect("admit");
    }
    let mut replicas: BTreeMap<u8, SignedDoc> = BTreeMap::new();
    for m in 1..=MEMBERS {
        let mut r = founder.clone();
        r.set_writer(&writer(m));
        replicas.insert(m, r);
    }
    // Every copy each member's node held, which a modified node may keep to
    // sign on, and what it forged (it gossips that along with the rest).
    let mut kept: BTreeMap<u8, Vec<SignedDoc>> = BTreeMap::new();
    let mut forged: BTreeMap<u8, Vec<SignedChange>> = BTreeMap::new();
    let mut shown: BTreeMap<ProposalId, Outcome> = BTreeMap::new();
    let mut global = T0 + 1_000;
    let now_of = |m: u8, global: u64| global.saturating_add_signed(skews[usize::from(m) - 1]);
    // `who` takes in everything `from` holds and forged.
    let sync = |replicas: &mut BTreeMap<u8, SignedDoc>,
                forged: &BTreeMap<u8, Vec<SignedChange>>,
                who: u8,
                from: u8,
                now: u64| {
        let mut theirs = replicas[&from].changes_since(&[]);
        theirs.extend(forged.get(&from).into_iter().flatten().cloned());
        let r = replicas.get_mut(&who).expect("replica");
        r.apply_with(theirs, &mut ClockAt(now));
    };

    let mut all_steps: Vec<Step> = steps.to_vec();
    // At the end: time passes and everyone syncs with everyone, twice.
    for round in 0..2 {
        for who in 1..=MEMBERS {
            for other in 1..=MEMBERS {
                let first = round == 0 && who == 1 && other == 1;
                all_steps.push(Step {
                    op: 0,
                    who,
                    other,
                    pick: 0,
                    dt: if first { 1_200_000 } else { 0 },
                });
            }
        }
    }

    for s in &all_steps {
        global += u64::from(s.dt);
        let (who, other) = (s.who, s.other);
        let now = now_of(who, global);
        let w = writer(who);
        match s.op {
            0 | 1 => sync(&mut replicas, &forged, who, other, now),
            2 => {
                let action = match s.pick % 3 {
                    0 => Action::AddArticle {
                        title: "Tools".into(),
                        text: format!("Tools are shared ({}).", s.pick),
                    },
                    1 => Action::SetRule {
                        rule: "approval_percent".into(),
                        value: (50 + u32::from(s.pick % 40)).to_string(),
                    },
                    _ => Action::RemoveMember {
                        member: writer(other).id(),
                    },
                };
                let body = RecordBody::Proposal(Proposal {
                    action,
                    submitted_at_ms: now,
                });
                let r = replicas.get_mut(&who).expect("replica");
                let _ = r.add_record(&w, body, &mut NoLedger, now);
            }
            3..=5 => {
                let r = replicas.get_mut(&who).expect("replica");
                let known = proposals_in(r);
                if let Some((p, _, _)) = known.get(usize::from(s.pick) % known.len().max(1)) {
                    let choice = [Choice::Yes, Choice::Yes, Choice::No, Choice::Abstain]
                        [usize::from(s.pick) % 4];
                    let body = RecordBody::Vote(Vote {
                        proposal: ProposalId::from(*p),
                        choice,
                        cast_at_ms: now,
                        for_group: None,
                    });
                    let _ = r.add_record(&w, body, &mut NoLedger, now);
                }
            }
            6 | 7 | 10 | 11 => {
                // A modified node votes late, claiming a moment just
                // before the deadline, on the copy it kept (or on what it
                // holds now); but for op 6 it also signs a decision of its own
                // naming that vote, claiming the grace period over. Each
                // is signed as another device: the same device writing on
                // two branches forks its own history, which every node
                // holds against it whichever branch it saw first.
                // A decision of its own only on another member's proposal
                // (a proposer signing twice is not covered).
                let known: Vec<_> = proposals_in(&replicas[&who])
                    .into_iter()
                    .filter(|(_, by, _)| s.op == 6 || *by != w.id())
                    .collect();
                let Some((p, _, proposal)) =
                    known.get(usize::from(s.pick) % known.len().max(1)).cloned()
                else {
                    continue;
                };
                let deadline = proposal.submitted_at_ms + PERIOD_MS;
                let after_grace = now.max(deadline + DECISION_GRACE_MS + 1);
                // The newest copy it kept from while voting was open (no
                // decision on it there), or what it holds now.
                let open_then = kept
                    .get(&who)
                    .into_iter()
                    .flatten()
                    .rev()
                    .find(|c| decision_due(c, &ProposalId::from(p), after_grace).is_some());
                let mut copy = match open_then {
                    Some(c) if s.pick % 4 != 0 => c.clone(),
                    _ => replicas[&who].clone(),
                };
                let mine = forged.entry(who).or_default();
                let device = Writer::new(
                    w.key().clone(),
                    [0x80, who, mine.len() as u8, 0, 0, 0, 0, 1],
                );
                let body = RecordBody::Vote(Vote {
                    proposal: ProposalId::from(p),
                    choice: if s.pick % 3 == 0 {
                        Choice::No
                    } else {
                        Choice::Yes
                    },
                    cast_at_ms: deadline - 500,
                    for_group: None,
                });
                if let Ok((_, change)) = copy.sign_record_anyway(&device, body, now) {
                    mine.push(change);
                }
                if s.op != 6 {
                    if let Some(decision) = decision_due(&copy, &ProposalId::from(p), after_grace) {
                        if let Ok((_, change)) =
                            copy.sign_record_anyway(&device, decision, after_grace)
                        {
                            mine.push(change);
                        }
                    }
                }
            }
            8 => {
                let r = replicas.get_mut(&who).expect("replica");
                let last = r.signal_head(&w.id());
                let body = RecordBody::Signal(Signal {
                    group: GroupId::from(group),
                    category: Category::Medical,
                    severity: Severity::High,
                    text: format!("help {}", s.pick),
                    location: None,
                    raised_at_ms: now,
                    expires_at_ms: now + 3_600_000,
                    seq: last.map_or(1, |(seq, _)| seq + 1),
                    prev: last.map(|(_, id)| id),
                });
                let _ = r.add_record(&w, body, &mut NoLedger, now);
            }
            9 => {
                let r = replicas.get_mut(&who).expect("replica");
                let held: Vec<SignalId> = signals_in(r, now).into_keys().collect();
                if let Some(signal) = held.get(usize::from(s.pick) % held.len().max(1)) {
                    let kind = if s.pick % 4 == 0 {
                        AnswerKind::Resolve
                    } else {
                        AnswerKind::Ack
                    };
                    let body = RecordBody::Answer(Answer {
                        signal: *signal,
                        kind,
                        text: String::new(),
                        at_ms: now,
                    });
                    let _ = r.add_record(&w, body, &mut NoLedger, now);
                }
            }
            _ => unreachable!("ops are 0 to 11"),
        }
        // Each proposer's node, online, signs what is due by its clock at
        // once and gossips it to everyone.
        for m in 1..=MEMBERS {
            let at = now_of(m, global);
            let me = writer(m);
            let r = replicas.get_mut(&m).expect("replica");
            let mut signed = false;
            for (p, by, _) in proposals_in(r) {
                if by != me.id() {
                    continue;
                }
                if let Some(decision) = decision_due(r, &ProposalId::from(p), at) {
                    signed |= r.add_record(&me, decision, &mut NoLedger, at).is_ok();
                }
            }
            if signed {
                for other in (1..=MEMBERS).filter(|o| *o != m) {
                    let now = now_of(other, global);
                    sync(&mut replicas, &forged, other, m, now);
                }
            }
        }
        for (m, r) in &replicas {
            kept.entry(*m).or_default().push(r.clone());
        }
        // What every member's node shows now, by its own clock: once shown,
        // an outcome never changes.
        for (m, r) in &replicas {
            for (p, (outcome, _)) in shown_by(r, now_of(*m, global)) {
                let before = *shown.entry(p).or_insert(outcome);
                prop_assert_eq!(before, outcome, "member {}'s node changed {:?}", m, p);
            }
        }
    }
    let mut all: BTreeMap<Hash32, SignedChange> = BTreeMap::new();
    for c in replicas
        .values()
        .flat_map(|r| r.changes_since(&[]))
        .chain(forged.into_values().flatten())
    {
        all.entry(c.hash).or_insert(c);
    }
    Ok(History {
        group,
        last: global,
        changes: all.into_values().collect(),
        shown,
    })
}

/// What a replica ends with, compared across replicas.
#[derive(Debug, PartialEq, Eq)]
struct Final {
    kept: BTreeSet<Hash32>,
    outcomes: BTreeMap<ProposalId, Outcome>,
    roll: BTreeSet<MemberId>,
    signals: BTreeMap<SignalId, SignalStatus>,
}

fn final_of(doc: &SignedDoc, last: u64) -> Final {
    let gov = governance_of(doc, END).expect("governance");
    Final {
        kept: doc.changes_since(&[]).iter().map(|c| c.hash).collect(),
        outcomes: gov.proposals.iter().map(|p| (p.id, p.outcome)).collect(),
        roll: gov.roll.keys().copied().collect(),
        signals: signals_in(doc, last),
    }
}

/// Deliver `changes` in a random order and batches, some twice, checking
/// after every batch that what the replica shows is final.
fn deliver(h: &History, everything: &Final, seed: u64) -> Result<Final, TestCaseError> {
    let doc = deliver_in_batches(h.group, &h.changes, seed, 6, |doc| {
        for (p, (outcome, by_proposer)) in shown_by(doc, END) {
            if by_proposer {
                prop_assert_eq!(Some(&outcome), everything.outcomes.get(&p), "{:?}", p);
            }
        }
        Ok(())
    })?;
    Ok(final_of(&doc, h.last))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    #[test]
    fn no_outcome_changes_once_shown_and_every_replica_agrees(
        steps in prop::collection::vec(step(), 10..70),
        skews in prop::collection::vec(-120_000i64..=120_000, usize::from(MEMBERS)),
        seed in any::<u64>(),
    ) {
        let h = play(&steps, &skews)?;
        let mut at_once = SignedDoc::empty(h.group);
        at_once.apply(h.changes.clone());
        let everything = final_of(&at_once, h.last);
        for (p, outcome) in &h.shown {
            prop_assert_eq!(Some(outcome), everything.outcomes.get(p), "shown during play");
        }
        for k in 0..3u64 {
            let replica = deliver(&h, &everything, seed.wrapping_add(k))?;
            prop_assert_eq!(&replica, &everything);
        }
    }
}
