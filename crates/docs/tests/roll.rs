//! A roll that holds (issue 13): admissions are earned, and whether an
//! author may write a change is decided by the roll at the change's causal
//! past, the same on every replica whatever order the changes reach it in.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use nestwork_core::{GroupId, Hash32, MemberId, MemberKey, ProposalId, SignedChange};
use nestwork_docs::distress::{Category, Severity, Signal};
use nestwork_docs::engine::Roll;
use nestwork_docs::governance::{Action, Choice, Exit, Proposal, Vote};
use nestwork_docs::ledger::{Account, Ledger, NoProposals, Payment, Refusal};
use nestwork_docs::view::{decision_due, governance_of};
use nestwork_docs::{
    Admission, Charter, GroupGenesis, GroupKind, NoLedger, RecordBody, RecordGate, SignedDoc,
    Writer,
};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

mod common;
use common::{deliver_in_batches, shuffled_replica, writer};

const T0: u64 = 1_700_000_000_000;

fn admission(doc: &SignedDoc, by: u8, m: u8, ticket: u8, at: u64) -> RecordBody {
    RecordBody::Admission(Admission::self_issued(
        writer(by).key(),
        &doc.group(),
        writer(m).id(),
        Hash32([ticket; 32]),
        at,
    ))
}

/// Member `who` adds `body` as an honest node would; returns the change.
fn add(doc: &mut SignedDoc, who: u8, body: RecordBody) -> (Hash32, SignedChange) {
    doc.add_record(&writer(who), body, &mut NoLedger, T0)
        .expect("an honest record")
}

/// A hub founded by 1 at `T0` under `charter`, with its founding change.
fn founded(charter: Charter) -> (SignedDoc, SignedChange) {
    let genesis = GroupGenesis {
        name: "Hub".into(),
        kind: GroupKind::Hub,
        parent: None,
        unit: "hours".into(),
        created_at_ms: T0,
        nonce: [5; 16],
        charter,
    };
    SignedDoc::create_group(&writer(1), genesis, T0).expect("found")
}

/// A group founded by 1 with 2 and 3 admitted by 1; every change made.
fn group_of_three() -> (SignedDoc, Vec<SignedChange>) {
    let (mut doc, first) = founded(Charter::default());
    let mut changes = vec![first];
    for m in 2..=3 {
        let body = admission(&doc, 1, m, m, T0 + u64::from(m));
        changes.push(add(&mut doc, 1, body).1);
    }
    (doc, changes)
}

/// Members 1 and 2 vote 3 out; returns the changes.
fn remove_three(doc: &mut SignedDoc) -> Vec<SignedChange> {
    let mut changes = Vec::new();
    let (p, c) = add(
        doc,
        1,
        RecordBody::Proposal(Proposal {
            action: Action::RemoveMember {
                member: writer(3).id(),
            },
            submitted_at_ms: T0 + 100,
        }),
    );
    changes.push(c);
    for (who, at) in [(1, T0 + 101), (2, T0 + 102)] {
        let vote = RecordBody::Vote(Vote {
            proposal: ProposalId::from(p),
            choice: Choice::Yes,
            cast_at_ms: at,
            for_group: None,
        });
        changes.push(add(doc, who, vote).1);
    }
    let decision = decision_due(doc, &ProposalId::from(p), T0 + 102).expect("2 of 3 decide");
    changes.push(add(doc, 1, decision).1);
    changes
}

fn replica_from(changes: &[SignedChange], id: Hash32) -> SignedDoc {
    let mut doc = SignedDoc::empty(id);
    let report = doc.apply(changes.to_vec());
    assert!(report.rejected.is_empty(), "{:?}", report.rejected);
    assert!(report.missing_deps.is_empty());
    doc
}

fn signal(group: GroupId, seq: u64, at: u64) -> RecordBody {
    RecordBody::Signal(Signal {
        group,
        category: Category::Safety,
        severity: Severity::High,
        text: "help".into(),
        location: None,
        raised_at_ms: at,
        expires_at_ms: at + 3_600_000,
        seq,
        prev: None,
    })
}

#[test]
fn finding_2_a_removed_member_cannot_readmit_themselves() {
    let (mut doc, mut history) = group_of_three();
    history.extend(remove_three(&mut doc));
    assert!(!doc.members().contains(&writer(3).id()), "3 is voted out");

    // The removed member's node, modified to sign anyway.
    let mut theirs = replica_from(&history, doc.id());
    let gid = doc.group();
    let (_, self_admit) = theirs
        .sign_record_anyway(
            &writer(3),
            RecordBody::Admission(Admission::self_issued(
                writer(3).key(),
                &gid,
                writer(3).id(),
                Hash32([30; 32]),
                T0 + 200,
            )),
            T0 + 200,
        )
        .expect("signed anyway");
    // A sock puppet (4) admitted by 3, who then admits 3 back.
    let (_, puppet) = theirs
        .sign_record_anyway(&writer(3), admission(&theirs, 3, 4, 31, T0 + 201), T0 + 201)
        .expect("signed anyway");
    let (_, back) = theirs
        .sign_record_anyway(&writer(4), admission(&theirs, 4, 3, 32, T0 + 202), T0 + 202)
        .expect("signed anyway");

    // Every replica, whatever order it hears things in, refuses all three.
    let hostile = vec![self_admit, puppet, back];
    for seed in 0..6u64 {
        let mut all: Vec<SignedChange> = history.iter().chain(&hostile).cloned().collect();
        all.shuffle(&mut StdRng::seed_from_u64(seed));
        let mut replica = SignedDoc::empty(doc.id());
        let report = replica.apply(all);
        assert!(report.missing_deps.is_empty());
        let refused: Vec<String> = report.rejected.iter().map(|r| r.change.clone()).collect();
        for h in &hostile {
            assert!(
                refused.contains(&h.hash.to_hex()),
                "seed {seed}: a hostile admission was accepted"
            );
        }
        assert_eq!(replica.change_count(), history.len(), "seed {seed}");
        let gov = governance_of(&replica, T0 + 1_000).expect("gov");
        assert!(!gov.is_member(&writer(3).id()), "seed {seed}");
        assert!(!gov.is_member(&writer(4).id()), "seed {seed}");
        assert!(!replica.members().contains(&writer(3).id()));
    }
}

#[test]
fn finding_2_admissions_need_a_member_a_ticket_they_signed_and_the_vote() {
    let (mut doc, _) = group_of_three();
    let gid = doc.group();
    // 2 admits 5 with a ticket 1 signed: refused.
    let forged = RecordBody::Admission(Admission::self_issued(
        writer(1).key(),
        &gid,
        writer(5).id(),
        Hash32([50; 32]),
        T0 + 10,
    ));
    let err = doc
        .add_record(&writer(2), forged, &mut NoLedger, T0)
        .expect_err("someone else's ticket");
    assert!(
        err.to_string().contains("not issued by its signer"),
        "{err}"
    );
    // A ticket signed for another group: refused.
    let elsewhere = RecordBody::Admission(Admission::self_issued(
        writer(2).key(),
        &GroupId::from(Hash32([9; 32])),
        writer(5).id(),
        Hash32([51; 32]),
        T0 + 10,
    ));
    assert!(doc
        .add_record(&writer(2), elsewhere, &mut NoLedger, T0)
        .is_err());
    // Nobody admits themselves, even a member.
    let own = admission(&doc, 2, 2, 52, T0 + 10);
    let err = doc
        .add_record(&writer(2), own, &mut NoLedger, T0)
        .expect_err("self");
    assert!(
        err.to_string().contains("nobody admits themselves"),
        "{err}"
    );

    // A member removed by vote comes back only by a vote: a plain
    // admission leaves them waiting for it.
    remove_three(&mut doc);
    let back = admission(&doc, 2, 3, 53, T0 + 300);
    add(&mut doc, 2, back);
    let gov = governance_of(&doc, T0 + 1_000).expect("gov");
    assert!(!gov.is_member(&writer(3).id()));
    assert!(gov.awaiting_entry.contains(&writer(3).id()));
    assert!(!doc.members().contains(&writer(3).id()));

    // A ticket admits once: a second admission citing it counts for nothing.
    let again = RecordBody::Admission(Admission::self_issued(
        writer(1).key(),
        &gid,
        writer(6).id(),
        Hash32([2; 32]),
        T0 + 400,
    ));
    add(&mut doc, 1, again);
    let gov = governance_of(&doc, T0 + 1_000).expect("gov");
    assert!(!gov.is_member(&writer(6).id()));
}

#[test]
fn finding_3_a_former_member_cannot_write_whatever_the_order() {
    let (mut doc, mut history) = group_of_three();
    // Before the removal, 3 writes (concurrently with it, as far as the
    // others know): accepted everywhere, whenever it arrives.
    let mut early = replica_from(&history, doc.id());
    let concurrent = early
        .set_description(&writer(3), "written while a member", T0 + 90)
        .expect("member")
        .expect("change");
    history.extend(remove_three(&mut doc));

    // After it, a modified node of 3 writes every kind of change.
    let mut theirs = replica_from(&history, doc.id());
    let mut hostile = Vec::new();
    hostile.push(
        theirs
            .set_description_anyway(&writer(3), "still here", T0 + 200)
            .expect("signed anyway")
            .expect("change"),
    );
    let (p, c) = theirs
        .sign_record_anyway(
            &writer(3),
            RecordBody::Proposal(Proposal {
                action: Action::RemoveMember {
                    member: writer(2).id(),
                },
                submitted_at_ms: T0 + 201,
            }),
            T0 + 201,
        )
        .expect("signed anyway");
    hostile.push(c);
    hostile.push(
        theirs
            .sign_record_anyway(
                &writer(3),
                RecordBody::Vote(Vote {
                    proposal: ProposalId::from(p),
                    choice: Choice::Yes,
                    cast_at_ms: T0 + 202,
                    for_group: None,
                }),
                T0 + 202,
            )
            .expect("signed anyway")
            .1,
    );
    hostile.push(
        theirs
            .sign_record_anyway(&writer(3), signal(theirs.group(), 1, T0 + 203), T0 + 203)
            .expect("signed anyway")
            .1,
    );
    hostile.push(
        theirs
            .sign_record_anyway(
                &writer(3),
                RecordBody::Exit(Exit {
                    member: writer(3).id(),
                    at_ms: T0 + 204,
                }),
                T0 + 204,
            )
            .expect("signed anyway")
            .1,
    );

    let mut verdicts = Vec::new();
    for seed in 0..8u64 {
        let all: Vec<SignedChange> = history
            .iter()
            .chain(&hostile)
            .chain(std::iter::once(&concurrent))
            .cloned()
            .collect();
        // Delivered in batches of random sizes, some twice.
        let (replica, _) = shuffled_replica(doc.id(), &all, seed);
        let heads_hold_hostile = hostile
            .iter()
            .any(|h| replica.changes_since(&[]).iter().any(|c| c.hash == h.hash));
        assert!(!heads_hold_hostile, "seed {seed}: a former member wrote");
        assert!(
            replica
                .changes_since(&[])
                .iter()
                .any(|c| c.hash == concurrent.hash),
            "seed {seed}: a change made while a member was lost"
        );
        assert!(!replica.members().contains(&writer(3).id()));
        assert_eq!(replica.description(), "written while a member");
        let mut heads = replica.heads();
        heads.sort();
        verdicts.push((heads, replica.members().clone()));
    }
    assert!(verdicts.windows(2).all(|w| w[0] == w[1]));
}

mod random_histories {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};

    /// One step of a history: what member `who` does (with `other` as
    /// its object), at the next millisecond.
    #[derive(Clone, Debug)]
    struct Step {
        op: u8,
        who: u8,
        other: u8,
    }

    fn step() -> impl Strategy<Value = Step> {
        (0u8..9, 1u8..=6, 1u8..=6).prop_map(|(op, who, other)| Step { op, who, other })
    }

    /// Play `steps` on one replica per member (1 founds; the others start
    /// with the founding change), syncing some of them as they go, and
    /// return every change anyone made, hostile ones included.
    fn play(steps: &[Step]) -> (Hash32, Vec<SignedChange>) {
        let genesis = GroupGenesis {
            name: "Hub".into(),
            kind: GroupKind::Hub,
            parent: None,
            unit: "hours".into(),
            created_at_ms: T0,
            nonce: [5; 16],
            charter: Charter::default(),
        };
        let (founder, _) = SignedDoc::create_group(&writer(1), genesis, T0).expect("found");
        let gid = founder.id();
        let mut replicas: BTreeMap<u8, SignedDoc> = BTreeMap::new();
        for m in 1..=6u8 {
            let mut r = replica_from(&founder.changes_since(&[]), gid);
            r.set_writer(&writer(m));
            replicas.insert(m, r);
        }
        let mut ticket = 0u8;
        for (i, s) in steps.iter().enumerate() {
            let now = T0 + 10 * (i as u64 + 1);
            let (who, other) = (s.who, s.other);
            if s.op == 0 {
                let theirs = replicas[&other].changes_since(&[]);
                if let Some(r) = replicas.get_mut(&who) {
                    r.apply(theirs);
                }
                continue;
            }
            let Some(r) = replicas.get_mut(&who) else {
                continue;
            };
            let w = writer(who);
            // Honest steps go through every local check and may be
            // refused; hostile ones are signed anyway.
            let _ = match s.op {
                1 => {
                    ticket = ticket.wrapping_add(1);
                    let body = RecordBody::Admission(Admission::self_issued(
                        w.key(),
                        &GroupId::from(gid),
                        writer(other).id(),
                        Hash32([ticket; 32]),
                        now,
                    ));
                    r.add_record(&w, body, &mut NoLedger, now).map(|_| ())
                }
                2 => r
                    .add_record(
                        &w,
                        RecordBody::Exit(Exit {
                            member: w.id(),
                            at_ms: now,
                        }),
                        &mut NoLedger,
                        now,
                    )
                    .map(|_| ()),
                3 => r
                    .add_record(
                        &w,
                        RecordBody::Proposal(Proposal {
                            action: Action::RemoveMember {
                                member: writer(other).id(),
                            },
                            submitted_at_ms: now,
                        }),
                        &mut NoLedger,
                        now,
                    )
                    .map(|_| ()),
                4 | 5 => {
                    let proposals: Vec<Hash32> = r
                        .records()
                        .iter()
                        .filter(|(_, rec)| {
                            matches!(RecordBody::decode(&rec.body), Ok(RecordBody::Proposal(_)))
                        })
                        .map(|(id, _)| *id)
                        .collect();
                    match proposals.get(usize::from(other) % proposals.len().max(1)) {
                        Some(p) if decision_due(r, &ProposalId::from(*p), now).is_some() => {
                            let decision =
                                decision_due(r, &ProposalId::from(*p), now).expect("due");
                            r.add_record(&w, decision, &mut NoLedger, now).map(|_| ())
                        }
                        Some(p) => r
                            .add_record(
                                &w,
                                RecordBody::Vote(Vote {
                                    proposal: ProposalId::from(*p),
                                    choice: Choice::Yes,
                                    cast_at_ms: now,
                                    for_group: None,
                                }),
                                &mut NoLedger,
                                now,
                            )
                            .map(|_| ()),
                        None => Ok(()),
                    }
                }
                6 => r
                    .set_description(&w, &format!("by {who} at {i}"), now)
                    .map(|_| ()),
                7 => r
                    .set_description_anyway(&w, &format!("anyway {who} at {i}"), now)
                    .map(|_| ()),
                _ => {
                    ticket = ticket.wrapping_add(1);
                    let body = RecordBody::Admission(Admission::self_issued(
                        w.key(),
                        &GroupId::from(gid),
                        writer(other).id(),
                        Hash32([ticket; 32]),
                        now,
                    ));
                    r.sign_record_anyway(&w, body, now).map(|_| ())
                }
            };
        }
        let mut all: BTreeMap<Hash32, SignedChange> = BTreeMap::new();
        for r in replicas.values() {
            for c in r.changes_since(&[]) {
                all.entry(c.hash).or_insert(c);
            }
        }
        (gid, all.into_values().collect())
    }

    /// Deliver `changes` in a random order, in random batches, some twice;
    /// return what the replica kept and its roll.
    fn deliver(
        gid: Hash32,
        changes: &[SignedChange],
        seed: u64,
    ) -> (BTreeSet<Hash32>, BTreeSet<nestwork_core::MemberId>) {
        let doc = deliver_in_batches(gid, changes, seed, 8, |_| Ok::<(), ()>(()))
            .expect("nothing is checked along the way");
        let kept = doc.changes_since(&[]).iter().map(|c| c.hash).collect();
        (kept, doc.members().clone())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn every_replica_keeps_the_same_changes_and_roll_whatever_the_order(
            steps in prop::collection::vec(step(), 5..60),
            seed in any::<u64>(),
        ) {
            let (gid, changes) = play(&steps);
            let first = deliver(gid, &changes, seed);
            for k in 1..4u64 {
                let other = deliver(gid, &changes, seed.wrapping_add(k));
                prop_assert_eq!(&first, &other);
            }
            // And a replica that gets it all at once agrees.
            let mut at_once = SignedDoc::empty(gid);
            at_once.apply(changes.clone());
            let kept: BTreeSet<Hash32> =
                at_once.changes_since(&[]).iter().map(|c| c.hash).collect();
            prop_assert_eq!(&first.0, &kept);
            prop_assert_eq!(&first.1, at_once.members());
        }
    }
}

#[test]
fn finding_3_the_roll_at_causal_past_survives_a_restart() {
    let (mut doc, mut history) = group_of_three();
    history.extend(remove_three(&mut doc));
    // A node restarts from its store: the roll index is rebuilt from the
    // stored changes, and judges the former member as before.
    let loaded = SignedDoc::load_trusted(doc.id(), doc.changes_since(&[])).expect("load");
    assert_eq!(loaded.members(), doc.members());
    assert!(!loaded.members().contains(&writer(3).id()));
    assert!(loaded.ever_members().contains(&writer(3).id()));
    let mut loaded = loaded;
    let mut theirs = replica_from(&history, doc.id());
    let late = theirs
        .set_description_anyway(&writer(3), "after a restart", T0 + 300)
        .expect("signed anyway")
        .expect("change");
    let report = loaded.apply(vec![late]);
    assert_eq!(report.rejected.len(), 1, "{:?}", report.applied);
    // A member's change is still taken.
    let mut members_node = replica_from(&history, doc.id());
    let ok = members_node
        .set_description(&writer(2), "by a member", T0 + 301)
        .expect("member")
        .expect("change");
    let report = loaded.apply(vec![ok]);
    assert_eq!(report.applied.len(), 1, "{:?}", report.rejected);
}

#[test]
fn a_seal_key_record_is_judged_by_every_node_and_a_malformed_one_refused_with_a_reason() {
    use nestwork_docs::seal::{seal_to, SealKey};
    let (doc, changes) = group_of_three();
    let members = doc.members().clone();
    let good = seal_to(&doc.group(), &[7; 32], &members).remove(0);
    let mut bad_size = good.clone();
    bad_size.boxes[0].sealed.truncate(3);
    let mut unordered = good.clone();
    unordered.boxes.reverse();
    let empty = SealKey {
        key_id: good.key_id,
        boxes: Vec::new(),
    };
    for (bad, why) in [
        (bad_size, "bytes"),
        (unordered, "ascending"),
        (empty, "boxes"),
    ] {
        let mut theirs = doc.clone();
        let (_, change) = theirs
            .sign_record_anyway(&writer(2), RecordBody::SealKey(bad), T0 + 10)
            .expect("sign");
        let mut replica = SignedDoc::empty(doc.id());
        let report = replica.apply(changes.iter().cloned().chain([change]).collect());
        assert_eq!(report.rejected.len(), 1, "{why}");
        assert!(
            report.rejected[0].reason.contains(why),
            "{:?}",
            report.rejected
        );
    }
    // A well-formed one by a member is taken, and its author is a holder.
    let mut theirs = doc.clone();
    let (_, change) = add(&mut theirs, 2, RecordBody::SealKey(good));
    let mut replica = SignedDoc::empty(doc.id());
    let report = replica.apply(changes.iter().cloned().chain([change]).collect());
    assert!(report.rejected.is_empty(), "{:?}", report.rejected);
    assert_eq!(replica.seal_key_records().count(), 1);
}

/// A group's ledger as a node's gate for its period documents: the roll at
/// the group heads a record cites comes from the group document as this
/// replica holds it, the money rules from the ledger.
struct PeriodGate<'a> {
    group: &'a SignedDoc,
    ledger: &'a mut Ledger,
}

impl RecordGate for PeriodGate<'_> {
    fn roll_at(&self, heads: &[Hash32]) -> Result<Arc<Roll>, Refusal> {
        self.group.roll_at_heads(heads).map_err(Refusal::Missing)
    }
    fn admit(&mut self, author: &MemberId, id: Hash32, body: &RecordBody) -> Result<(), Refusal> {
        self.ledger.admit(author, id, body, &NoProposals)
    }
}

/// Member `who` pays `to` `amount` from device `device`, citing `heads`
/// of the group document, on the period document `period` (ledger
/// `ledger`). `honest`: as an unmodified node, through every local check;
/// otherwise signed anyway, as a modified node would.
#[allow(clippy::too_many_arguments)]
fn pay_citing(
    group: &SignedDoc,
    period: &mut SignedDoc,
    ledger: &mut Ledger,
    (who, device): (u8, u8),
    to: u8,
    amount: u64,
    heads: &[Hash32],
    honest: bool,
) -> Result<SignedChange, String> {
    let payer = Writer::new(MemberKey::from_secret([who; 32]), [device; 8]);
    let mut cited = heads.to_vec();
    cited.sort_unstable();
    let payment = ledger
        .prepare(
            &payer.id(),
            Account::Member(payer.id()),
            Account::Member(writer(to).id()),
            amount,
            "",
            None,
            T0 + 300,
            cited,
            &|_| true,
            &NoProposals,
        )
        .map_err(|e| e.0)?;
    let body = RecordBody::Payment(payment);
    if honest {
        let mut gate = PeriodGate { group, ledger };
        period
            .add_record(&payer, body, &mut gate, T0 + 300)
            .map(|(_, c)| c)
            .map_err(|e| e.to_string())
    } else {
        period
            .sign_record_anyway(&payer, body, T0 + 300)
            .map(|(_, c)| c)
            .map_err(|e| e.to_string())
    }
}

/// Issue 13's last point: a payment is judged by the group's roll at the
/// group heads it cites. One by a removed member, or to one, citing heads
/// after the removal is refused; one made before the removal (citing heads
/// before it) is accepted; on every replica, whatever order and batches
/// the group's and the period's changes arrive in.
#[test]
fn finding_3_a_former_member_can_neither_pay_nor_be_paid() {
    let (mut doc, mut history) = group_of_three();
    let before: Vec<Hash32> = doc.heads();
    history.extend(remove_three(&mut doc));
    let after: Vec<Hash32> = doc.heads();
    assert!(!doc.members().contains(&writer(3).id()), "3 is out");
    let (genesis, g) = doc.genesis().expect("genesis");
    let mut ledger = Ledger::of_genesis(genesis.author, &g);
    let mut period = SignedDoc::ledger_period(doc.id(), 0).expect("period");

    // Made while 3 was a member (citing heads before the removal): 3 pays
    // 2, 2 pays 3. Both are honest, and hold.
    let p1 = pay_citing(&doc, &mut period, &mut ledger, (3, 3), 2, 7, &before, true).expect("p1");
    let p2 = pay_citing(&doc, &mut period, &mut ledger, (2, 2), 3, 4, &before, true).expect("p2");
    // 3's own (unmodified) node, and 1's, refuse to sign either of these
    // once they cite the heads after the removal.
    let err = pay_citing(
        &doc,
        &mut period.clone(),
        &mut ledger.clone(),
        (3, 3),
        1,
        1,
        &after,
        true,
    )
    .expect_err("the payer is out");
    assert!(err.contains("not on the group's roll"), "{err}");
    let err = pay_citing(
        &doc,
        &mut period.clone(),
        &mut ledger.clone(),
        (1, 1),
        3,
        1,
        &after,
        true,
    )
    .expect_err("the payee is out");
    assert!(err.contains("the payee"), "{err}");
    // Modified nodes sign them anyway, each on its own branch.
    let p3 = pay_citing(
        &doc,
        &mut period.clone(),
        &mut ledger.clone(),
        (3, 3),
        1,
        1,
        &after,
        false,
    )
    .expect("signed anyway");
    let p4 = pay_citing(
        &doc,
        &mut period.clone(),
        &mut ledger.clone(),
        (1, 41),
        3,
        1,
        &after,
        false,
    )
    .expect("signed anyway");
    // An honest payment after the removal, between members, holds.
    let p5 = pay_citing(
        &doc,
        &mut period.clone(),
        &mut ledger,
        (1, 1),
        2,
        2,
        &after,
        true,
    )
    .expect("p5");
    // A payment citing no group heads, or too many, is refused for that.
    let mut unbound = ledger.clone();
    let none = pay_citing(
        &doc,
        &mut period.clone(),
        &mut unbound,
        (1, 42),
        2,
        1,
        &[],
        false,
    )
    .expect("signed anyway");
    let many: Vec<Hash32> = (0..17u8).map(|i| Hash32([i; 32])).collect();
    let too_many = pay_citing(
        &doc,
        &mut period.clone(),
        &mut unbound,
        (1, 43),
        2,
        1,
        &many,
        false,
    )
    .expect("signed anyway");

    let refused = [
        (
            &p3,
            "is not on the group's roll at the group heads their payment cites",
        ),
        (&p4, "the payee"),
        (&none, "it cites none"),
        (&too_many, "at most 16 heads"),
    ];
    let mut paid: Vec<(Hash32, MemberId, Payment)> = Vec::new();
    let all_period: Vec<SignedChange> = [&p1, &p2, &p3, &p4, &p5, &none, &too_many]
        .into_iter()
        .cloned()
        .collect();
    let mut verdicts = None;
    // Seeds in which the first payment arrived before the group changes it
    // cites (it waited for them, then was judged).
    let mut waited = 0;
    for seed in 0..40u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        // Every change of both documents, shuffled together.
        let mut items: Vec<(bool, SignedChange)> = history
            .iter()
            .map(|c| (true, c.clone()))
            .chain(all_period.iter().map(|c| (false, c.clone())))
            .collect();
        items.shuffle(&mut rng);
        let mut group = SignedDoc::empty(doc.id());
        let mut replica = SignedDoc::ledger_period(doc.id(), 0).expect("period");
        let mut ledger = Ledger::of_genesis(genesis.author, &g);
        let (mut held_group, mut held_period) = (Vec::new(), Vec::new());
        let mut rejected: BTreeMap<Hash32, String> = BTreeMap::new();
        let mut rest = items.as_slice();
        let mut deliver = |group: &mut SignedDoc,
                           replica: &mut SignedDoc,
                           ledger: &mut Ledger,
                           mut to_group: Vec<SignedChange>,
                           mut to_period: Vec<SignedChange>,
                           held_group: &mut Vec<SignedChange>,
                           held_period: &mut Vec<SignedChange>| {
            to_group.append(held_group);
            to_period.append(held_period);
            let r = group.apply(to_group);
            assert!(r.rejected.is_empty(), "seed {seed}: {:?}", r.rejected);
            *held_group = r.missing_deps;
            let mut gate = PeriodGate {
                group: &*group,
                ledger,
            };
            let r = replica.apply_with(to_period, &mut gate);
            for rej in r.rejected {
                rejected.insert(rej.change.parse().expect("hash"), rej.reason);
            }
            *held_period = r.missing_deps;
            // p1 builds on nothing in the period: held, it waits for
            // the group changes it cites.
            held_period.iter().any(|c| c.hash == p1.hash)
        };
        let mut seed_waited = false;
        while !rest.is_empty() {
            let n = rng.gen_range(1..=rest.len().min(4));
            let (now, later) = rest.split_at(n);
            rest = later;
            let mut batch: Vec<(bool, SignedChange)> = now.to_vec();
            if rng.gen_bool(0.3) {
                batch.extend(now.iter().cloned());
            }
            let (g_part, p_part): (Vec<_>, Vec<_>) = batch.into_iter().partition(|(g, _)| *g);
            seed_waited |= deliver(
                &mut group,
                &mut replica,
                &mut ledger,
                g_part.into_iter().map(|(_, c)| c).collect(),
                p_part.into_iter().map(|(_, c)| c).collect(),
                &mut held_group,
                &mut held_period,
            );
        }
        for _ in 0..4 {
            deliver(
                &mut group,
                &mut replica,
                &mut ledger,
                Vec::new(),
                Vec::new(),
                &mut held_group,
                &mut held_period,
            );
        }
        assert!(
            held_group.is_empty() && held_period.is_empty(),
            "seed {seed}: all judged"
        );
        waited += usize::from(seed_waited);
        assert_eq!(group.heads(), doc.heads(), "seed {seed}");
        let applied: BTreeSet<Hash32> = replica.records().keys().copied().collect();
        for (change, why) in &refused {
            let reason = rejected
                .get(&change.hash)
                .unwrap_or_else(|| panic!("seed {seed}: {} refused", change.hash.short()));
            assert!(reason.contains(why), "seed {seed}: {reason}");
        }
        assert_eq!(rejected.len(), refused.len(), "seed {seed}: {rejected:?}");
        assert_eq!(ledger.len(), 3, "seed {seed}: p1, p2 and p5 held");
        let balances = (
            ledger.balance(&Account::Member(writer(1).id())),
            ledger.balance(&Account::Member(writer(2).id())),
            ledger.balance(&Account::Member(writer(3).id())),
        );
        assert_eq!(balances, (-2, 7 - 4 + 2, -7 + 4), "seed {seed}");
        match &verdicts {
            None => verdicts = Some((applied, balances)),
            Some(v) => assert_eq!(v, &(applied, balances), "seed {seed}: the same everywhere"),
        }
        if paid.is_empty() {
            paid = replica
                .records()
                .iter()
                .filter_map(|(id, r)| match RecordBody::decode(&r.body) {
                    Ok(RecordBody::Payment(p)) => Some((*id, r.author, p)),
                    _ => None,
                })
                .collect();
        }
    }
    assert!(
        waited > 5,
        "payments waited for the group heads they cite in {waited} seeds"
    );
    // What stands: the two payments made before the removal, one either
    // way, and the one between members after it.
    let mut amounts: Vec<u64> = paid.iter().map(|(_, _, p)| p.amount).collect();
    amounts.sort_unstable();
    assert_eq!(amounts, vec![2, 4, 7]);
}

/// A newcomer admitted by ticket into a group whose charter asks for an
/// entry vote holds the founding change, and so the genesis seal key: the
/// document counts them among those outside the roll, so the genesis key
/// stops serving and a new one is sealed to the roll only.
#[test]
fn a_newcomer_awaiting_an_entry_vote_is_outside_the_roll_for_the_seal_key() {
    let (mut doc, _) = founded(Charter {
        rules: nestwork_docs::Rules {
            entry_needs_vote: true,
            ..nestwork_docs::Rules::default()
        },
        ..Charter::default()
    });
    assert!(doc.outside_members().is_empty());
    let body = admission(&doc, 1, 2, 2, T0 + 1);
    let (_, change) = add(&mut doc, 1, body);
    let newcomer = writer(2).id();
    assert!(!doc.members().contains(&newcomer));
    assert!(doc.outside_members().contains(&newcomer));
    // A change after the admission is sealed knowing it.
    let body = admission(&doc, 1, 3, 3, T0 + 2);
    let (_, after) = add(&mut doc, 1, body);
    let (members, outside) = doc.roll_before(&after.hash).expect("held");
    assert!(!members.contains(&newcomer) && outside.contains(&newcomer));
    let (_, outside) = doc.roll_before(&change.hash).expect("held");
    assert!(outside.is_empty(), "before the admission nobody is outside");
}
