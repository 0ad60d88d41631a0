//! Governance: every replica computes the same charter, roll, tallies and
//! outcomes whatever order the records reach it in; bad records are
//! refused or count for nothing.

use nestwork_core::{GroupId, Hash32, MemberId, MemberKey, ProposalId, SignedChange, SignedRecord};
use nestwork_docs::distress::{Category, Escalation, Severity, Signal};
use nestwork_docs::governance::{
    Action, CharterEdit, Choice, Counterpart, Decision, Delegation, Exit, Governance, Outcome,
    Proposal, Treaty, TreatyAct, TreatyKind, Vote,
};
use nestwork_docs::proof::{DecisionProof, MemberProof};
use nestwork_docs::view::{decision_due, governance_of};
use nestwork_docs::{
    Admission, Charter, GroupGenesis, GroupKind, NoLedger, RecordBody, SignedDoc, Writer,
};
use proptest::prelude::*;

mod common;
use common::{shuffled_replica, writer};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

const T0: u64 = 1_700_000_000_000;
const DAY: u64 = 24 * 3600 * 1000;

/// A group founded by member 1 with members 2..=n admitted.
fn founded(n: u8) -> SignedDoc {
    group_of("Riverside", 1, &(2..=n).collect::<Vec<u8>>())
}

/// A group named `name` founded by `founder`, who admits `members`.
fn group_of(name: &str, founder: u8, members: &[u8]) -> SignedDoc {
    let genesis = GroupGenesis {
        name: name.into(),
        kind: GroupKind::Hub,
        parent: None,
        unit: "hours".into(),
        created_at_ms: T0,
        nonce: [founder; 16],
        charter: Charter::default(),
    };
    let (mut doc, _) = SignedDoc::create_group(&writer(founder), genesis, T0).expect("found");
    for &m in members {
        let body = admission(&doc, founder, m, T0 + u64::from(m));
        add(&mut doc, founder, body).expect("admit");
    }
    doc
}

/// The time a governance record claims.
fn claimed(body: &[u8]) -> Option<u64> {
    match RecordBody::decode(body).ok()? {
        RecordBody::GroupGenesis(g) => Some(g.created_at_ms),
        RecordBody::Admission(a) => Some(a.admitted_at_ms),
        RecordBody::Exit(e) => Some(e.at_ms),
        RecordBody::Proposal(p) => Some(p.submitted_at_ms),
        RecordBody::Vote(v) => Some(v.cast_at_ms),
        RecordBody::CharterEdit(e) => Some(e.at_ms),
        _ => None,
    }
}

/// The governance of `doc` at `now` with every record decoded afresh.
fn every_record_decoded(doc: &SignedDoc, now: u64) -> Governance {
    let (record, genesis) = doc.genesis().expect("genesis");
    let decoded: Vec<(Hash32, MemberId, RecordBody)> = doc
        .records()
        .iter()
        .filter_map(|(id, r)| RecordBody::decode(&r.body).ok().map(|b| (*id, r.author, b)))
        .collect();
    Governance::at(
        doc.group(),
        record.author,
        genesis.created_at_ms,
        &genesis.charter,
        genesis.parent,
        decoded
            .iter()
            .map(|(id, author, body)| (*id, *author, body)),
        now,
    )
}

/// Member `by` admits member `m` with a ticket of their own.
fn admission(doc: &SignedDoc, by: u8, m: u8, at: u64) -> RecordBody {
    RecordBody::Admission(Admission::self_issued(
        writer(by).key(),
        &doc.group(),
        writer(m).id(),
        Hash32([m; 32]),
        at,
    ))
}

fn add(doc: &mut SignedDoc, who: u8, body: RecordBody) -> Result<Hash32, String> {
    doc.add_record(&writer(who), body, &mut NoLedger, T0)
        .map(|(id, _)| id)
        .map_err(|e| e.to_string())
}

/// Member `by` signs the decision due on `p` at `now`, if voting is over.
fn decide(doc: &mut SignedDoc, by: u8, p: &Hash32, now: u64) -> Option<Hash32> {
    let decision = decision_due(doc, &ProposalId::from(*p), now)?;
    Some(add(doc, by, decision).expect("decision"))
}

fn proposal(action: Action, at: u64) -> RecordBody {
    RecordBody::Proposal(Proposal {
        action,
        submitted_at_ms: at,
    })
}

fn vote(p: Hash32, choice: Choice, at: u64) -> RecordBody {
    RecordBody::Vote(Vote {
        proposal: ProposalId::from(p),
        choice,
        cast_at_ms: at,
        for_group: None,
    })
}

/// Deliver `changes` to `doc` in `chunk`-sized batches until nothing more
/// applies (changes whose dependencies come later wait and are retried).
fn deliver(doc: &mut SignedDoc, changes: Vec<SignedChange>, chunk: usize) {
    let mut waiting = changes;
    loop {
        let before = waiting.len();
        let mut next = Vec::new();
        for batch in waiting.chunks(chunk.max(1)) {
            let report = doc.apply(batch.to_vec());
            assert!(
                report.rejected.is_empty(),
                "rejected: {:?}",
                report.rejected
            );
            next.extend(report.missing_deps);
        }
        waiting = next;
        if waiting.is_empty() || waiting.len() == before {
            break;
        }
    }
    assert!(waiting.is_empty(), "changes never applied");
}

fn random_action(rng: &mut StdRng, members: &[MemberId]) -> Action {
    match rng.gen_range(0..7) {
        0 => Action::AddArticle {
            title: "Tools".into(),
            text: format!("Tools are shared ({}).", rng.gen::<u16>()),
        },
        1 => Action::AmendArticle {
            article: rng.gen_range(1..=5),
            text: format!("Amended text {}.", rng.gen::<u16>()),
        },
        2 => Action::SetRule {
            rule: "quorum_percent".into(),
            value: rng.gen_range(10..=90).to_string(),
        },
        3 => Action::SetRule {
            rule: "voting_period".into(),
            value: format!("{}h", rng.gen_range(1..=96)),
        },
        4 => Action::RemoveMember {
            member: *members.choose(rng).expect("members"),
        },
        5 => Action::AdmitMember {
            member: *members.choose(rng).expect("members"),
        },
        _ => Action::ReaffirmArticle {
            article: rng.gen_range(1..=4),
        },
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Members propose, vote and leave on their own replicas, syncing now
    /// and then; afterwards every record reaches three fresh replicas in
    /// random orders, batches and with duplicates. Every replica computes
    /// the same governance at every moment.
    #[test]
    fn replicas_agree_on_every_outcome(seed in any::<u64>(), n in 2u8..6, steps in 5usize..40) {
        let mut rng = StdRng::seed_from_u64(seed);
        let base = founded(n);
        let members: Vec<MemberId> = (1..=n).map(|m| writer(m).id()).collect();
        let mut replicas: Vec<SignedDoc> = (0..n).map(|_| base.clone()).collect();
        for _ in 0..steps {
            let i = rng.gen_range(0..n as usize);
            let who = i as u8 + 1;
            let at = T0 + rng.gen_range(0..6 * DAY);
            match rng.gen_range(0..10) {
                0..=2 => {
                    let action = random_action(&mut rng, &members);
                    // Refused once `who` has left or been removed.
                    let _ = add(&mut replicas[i], who, proposal(action, at));
                }
                3..=6 => {
                    let known: Vec<Hash32> = replicas[i]
                        .records()
                        .iter()
                        .filter(|(_, r)| matches!(RecordBody::decode(&r.body), Ok(RecordBody::Proposal(_))))
                        .map(|(id, _)| *id)
                        .collect();
                    if let Some(p) = known.choose(&mut rng) {
                        let choice = *[Choice::Yes, Choice::Yes, Choice::No, Choice::Abstain].choose(&mut rng).expect("choice");
                        let _ = add(&mut replicas[i], who, vote(*p, choice, at));
                    }
                }
                7 => {
                    let _ = add(&mut replicas[i], who, RecordBody::Exit(Exit { member: writer(who).id(), at_ms: at }));
                }
                _ => {
                    let j = rng.gen_range(0..n as usize);
                    let theirs = replicas[j].changes_since(&[]);
                    deliver(&mut replicas[i], theirs, 7);
                }
            }
        }
        let mut all: Vec<SignedChange> = replicas.iter().flat_map(|r| r.changes_since(&[])).collect();
        let mut views = Vec::new();
        for _ in 0..3 {
            all.shuffle(&mut rng);
            let dupes: Vec<SignedChange> = all.iter().take(5).cloned().collect();
            let mut delivery = all.clone();
            delivery.extend(dupes);
            let mut replica = SignedDoc::empty(base.id());
            let chunk = rng.gen_range(1..20);
            deliver(&mut replica, delivery, chunk);
            let at: Vec<_> = [T0 + DAY, T0 + 3 * DAY, T0 + 20 * DAY]
                .iter()
                .map(|now| governance_of(&replica, *now).expect("governance"))
                .collect();
            // The view replays the records the engine decoded once as they
            // arrived (or as a store was read back): the same as decoding
            // every record afresh.
            let reloaded = SignedDoc::load_trusted(base.id(), replica.changes_since(&[])).expect("reload");
            // The roll the engine keeps (replaying only what can change
            // it) is the full replay's at the latest time claimed.
            let latest = replica.records().values().filter_map(|r| claimed(&r.body)).max().expect("records");
            let full = every_record_decoded(&replica, latest);
            prop_assert_eq!(replica.members(), &full.roll.keys().copied().collect());
            for (now, g) in [T0 + DAY, T0 + 3 * DAY, T0 + 20 * DAY].iter().zip(&at) {
                prop_assert_eq!(&every_record_decoded(&replica, *now), g);
                prop_assert_eq!(replica.roll_at(*now), g.roll.keys().copied().collect());
                prop_assert_eq!(&governance_of(&reloaded, *now).expect("governance"), g);
            }
            views.push(at);
        }
        prop_assert_eq!(&views[0], &views[1]);
        prop_assert_eq!(&views[0], &views[2]);
        for g in &views[0] {
            for p in &g.proposals {
                prop_assert!(p.yes + p.no + p.abstain <= p.seats);
            }
        }
    }
}

#[test]
fn a_vote_for_no_proposal_and_a_forged_exit_are_refused() {
    let mut doc = founded(3);
    let err = add(&mut doc, 2, vote(Hash32([9; 32]), Choice::Yes, T0 + 10)).expect_err("unknown");
    assert!(err.contains("not a proposal"), "{err}");
    let forged = RecordBody::Exit(Exit {
        member: writer(3).id(),
        at_ms: T0 + 10,
    });
    let err = add(&mut doc, 2, forged).expect_err("forged exit");
    assert!(err.contains("only the member who leaves"), "{err}");
    let edit = RecordBody::CharterEdit(CharterEdit {
        action: Action::RepealArticle { article: 1 },
        at_ms: T0 + 10,
    });
    let err = add(&mut doc, 2, edit).expect_err("not the creator");
    assert!(err.contains("creator"), "{err}");
    let bad = proposal(
        Action::SetRule {
            rule: "quorum_percent".into(),
            value: "250".into(),
        },
        T0,
    );
    assert!(add(&mut doc, 2, bad).is_err(), "a rule out of range");
}

#[test]
fn a_stranger_cannot_vote() {
    let mut doc = founded(2);
    let p = add(&mut doc, 1, proposal(Action::LeaveParent, T0 + 100)).expect("propose");
    let err = add(&mut doc, 7, vote(p, Choice::Yes, T0 + 200)).expect_err("not a member");
    assert!(err.contains("not a member"), "{err}");
    assert_eq!(
        governance_of(&doc, T0 + 300)
            .expect("gov")
            .proposal(&ProposalId::from(p))
            .expect("p")
            .yes,
        0
    );
}

#[test]
fn timeline_rules_late_votes_leavers_and_founders_edits() {
    let mut doc = founded(1);
    // The founder edits the charter alone: it takes effect.
    add(
        &mut doc,
        1,
        RecordBody::CharterEdit(CharterEdit {
            action: Action::AddArticle {
                title: "Seeds".into(),
                text: "Seeds are saved.".into(),
            },
            at_ms: T0 + 5,
        }),
    )
    .expect("edit");
    for m in 2..=4u8 {
        let body = admission(&doc, 1, m, T0 + 10 + u64::from(m));
        add(&mut doc, 1, body).expect("admit");
    }
    // After others joined, a direct edit is refused.
    let late = add(
        &mut doc,
        1,
        RecordBody::CharterEdit(CharterEdit {
            action: Action::RepealArticle { article: 1 },
            at_ms: T0 + 50,
        }),
    )
    .expect_err("refused");
    assert!(late.contains("members had joined"), "{late}");
    let p = add(
        &mut doc,
        2,
        proposal(Action::ReaffirmArticle { article: 2 }, T0 + 100),
    )
    .expect("propose");
    // Member 4 leaves before voting; member 3 votes after the deadline.
    add(
        &mut doc,
        4,
        RecordBody::Exit(Exit {
            member: writer(4).id(),
            at_ms: T0 + 150,
        }),
    )
    .expect("exit");
    // A vote after one's own exit is refused outright: the exit is in its
    // causal past (issue 13).
    let refused = add(&mut doc, 4, vote(p, Choice::Yes, T0 + 200)).expect_err("refused");
    assert!(refused.contains("not a member"), "{refused}");
    add(&mut doc, 1, vote(p, Choice::No, T0 + 300)).expect("vote");
    add(&mut doc, 1, vote(p, Choice::Yes, T0 + 400)).expect("changed vote");
    add(&mut doc, 2, vote(p, Choice::Yes, T0 + 500)).expect("vote");
    // Before its deadline (and with votes outstanding) it is open.
    let early = governance_of(&doc, T0 + 450).expect("gov");
    assert_eq!(
        early.proposal(&ProposalId::from(p)).expect("p").outcome,
        Outcome::Open
    );
    // Voting is over at the deadline, but nothing is decided until a
    // decision record is held.
    let over = governance_of(&doc, T0 + 100 + 8 * DAY).expect("gov");
    assert_eq!(
        over.proposal(&ProposalId::from(p)).expect("p").outcome,
        Outcome::Deciding
    );
    // A vote that claims a time after the deadline counts for nothing.
    add(&mut doc, 3, vote(p, Choice::No, T0 + 100 + 8 * DAY)).expect("stored");
    decide(&mut doc, 2, &p, T0 + 100 + 8 * DAY).expect("decided");
    // Once a decision is in a vote's causal past, the vote is refused.
    let refused = add(&mut doc, 3, vote(p, Choice::No, T0 + 100 + 8 * DAY + 1))
        .expect_err("after the decision");
    assert!(refused.contains("after its decision"), "{refused}");

    let g = governance_of(&doc, T0 + 30 * DAY).expect("gov");
    assert_eq!(
        g.articles.len(),
        5,
        "the founders' edit before anyone joined"
    );
    assert!(
        g.articles.iter().any(|a| a.number == 1),
        "the later edit did nothing"
    );
    assert!(g.ignored_edits.is_empty());
    let state = g.proposal(&ProposalId::from(p)).expect("proposal");
    assert_eq!(state.seats, 4, "the roll at submission");
    assert_eq!((state.yes, state.no), (2, 0), "last votes of 1 and 2 count");
    let reasons: Vec<&str> = state.ignored.iter().map(|i| i.reason.as_str()).collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("deadline") || r.contains("decided")),
        "{reasons:?}"
    );
    assert_eq!(state.outcome, Outcome::Passed);
    assert!(!g.is_member(&writer(4).id()));
}

#[test]
fn entry_by_vote_revision_cycles_and_a_verifiable_lottery() {
    let mut doc = founded(1);
    add(
        &mut doc,
        1,
        RecordBody::CharterEdit(CharterEdit {
            action: Action::SetRule {
                rule: "entry_needs_vote".into(),
                value: "true".into(),
            },
            at_ms: T0 + 1,
        }),
    )
    .expect("edit");
    let body = admission(&doc, 1, 2, T0 + 10);
    add(&mut doc, 1, body).expect("admit by ticket");
    let g = governance_of(&doc, T0 + 20).expect("gov");
    assert!(!g.is_member(&writer(2).id()), "waits for the entry vote");
    assert!(g.awaiting_entry.contains(&writer(2).id()));
    let p = add(
        &mut doc,
        1,
        proposal(
            Action::AdmitMember {
                member: writer(2).id(),
            },
            T0 + 30,
        ),
    )
    .expect("propose entry");
    add(&mut doc, 1, vote(p, Choice::Yes, T0 + 40)).expect("vote");
    decide(&mut doc, 1, &p, T0 + 40).expect("decided");
    let g = governance_of(&doc, T0 + 50).expect("gov");
    assert!(g.is_member(&writer(2).id()), "admitted by the vote");

    // A cycle (28 days) on, every article is overdue; a reaffirmed one is not.
    let later = T0 + 29 * DAY;
    assert_eq!(governance_of(&doc, later).expect("gov").overdue().len(), 4);
    let r = add(
        &mut doc,
        2,
        proposal(Action::ReaffirmArticle { article: 3 }, later),
    )
    .expect("reaffirm");
    add(&mut doc, 1, vote(r, Choice::Yes, later + 1)).expect("vote");
    add(&mut doc, 2, vote(r, Choice::Yes, later + 2)).expect("vote");
    decide(&mut doc, 2, &r, later + 2).expect("decided");
    let g = governance_of(&doc, later + 10).expect("gov");
    assert_eq!(g.overdue(), vec![1, 2, 4]);
    assert_eq!(g.revisited_this_cycle, 1);
    assert_eq!(g.revisit_per_cycle, 1, "25% of 4 articles");

    // A lottery: the pick is a function of the proposal and its votes, the
    // same on every replica, and anyone can recompute it.
    let l = add(
        &mut doc,
        1,
        proposal(
            Action::Lottery {
                role: "steward".into(),
                count: 1,
            },
            later + 20,
        ),
    )
    .expect("lottery");
    let v1 = add(&mut doc, 1, vote(l, Choice::Yes, later + 21)).expect("vote");
    let v2 = add(&mut doc, 2, vote(l, Choice::Yes, later + 22)).expect("vote");
    decide(&mut doc, 1, &l, later + 22).expect("decided");
    let g = governance_of(&doc, later + 30).expect("gov");
    let pick = g.lotteries.first().expect("drawn");
    assert_eq!(pick.picked.len(), 1);
    let mut ids = [v1, v2];
    ids.sort();
    let seed = Hash32::of_parts(&[b"nestwork/lottery/v1", &l.0, &ids[0].0, &ids[1].0]);
    assert_eq!(pick.seed, seed);
    let mut replica = SignedDoc::empty(doc.id());
    let mut changes = doc.changes_since(&[]);
    changes.reverse();
    deliver(&mut replica, changes, 3);
    assert_eq!(
        governance_of(&replica, later + 30).expect("gov").lotteries,
        g.lotteries
    );
}

#[test]
fn drafts_edited_concurrently_merge() {
    let base = founded(2);
    let mut a = base.clone();
    let mut b = base.clone();
    let made = a
        .create_draft(&writer(1), "d1", "add-article", &[], "Tools are lent.", T0)
        .expect("draft")
        .expect("a change");
    deliver(&mut b, vec![made], 1);
    let ea = a
        .edit_draft(&writer(1), "d1", "Tools are lent freely.", T0)
        .expect("edit")
        .expect("a change");
    let eb = b
        .edit_draft(&writer(2), "d1", "All tools are lent.", T0)
        .expect("edit")
        .expect("a change");
    deliver(&mut a, vec![eb], 1);
    deliver(&mut b, vec![ea], 1);
    let (da, db) = (a.drafts(), b.drafts());
    assert_eq!(da, db);
    assert_eq!(da[0].text, "All tools are lent freely.");
    // A stranger cannot edit.
    assert!(a.edit_draft(&writer(9), "d1", "mine", T0).is_err());
    a.mark_draft_submitted(&writer(1), "d1", "abcd", T0)
        .expect("mark");
    assert!(
        a.edit_draft(&writer(1), "d1", "later", T0).is_err(),
        "frozen"
    );
}

/// Member `by` proposes `action` at `at`; each of `votes` follows, one
/// millisecond apart by member number. Returns the proposal's id.
fn put_to_vote(
    doc: &mut SignedDoc,
    by: u8,
    action: Action,
    at: u64,
    votes: &[(u8, Choice)],
) -> Hash32 {
    let p = add(doc, by, proposal(action, at)).expect("propose");
    for (m, choice) in votes {
        add(doc, *m, vote(p, *choice, at + u64::from(*m))).expect("vote");
    }
    decide(doc, by, &p, at + 10);
    p
}

/// The engine judges who may write from the roll at a change's causal past,
/// replaying only the records that can change the roll; a rule change
/// passed among the group's article business counts there. Here approval
/// is raised to 100% before a vote to remove member 5 that 3 yes to 1 no
/// would pass under the default 60%: member 5 stays and may still write.
#[test]
fn the_roll_counts_rule_changes_among_article_business() {
    let mut doc = founded(5);
    let yes = |members: &[u8]| -> Vec<(u8, Choice)> {
        members.iter().map(|m| (*m, Choice::Yes)).collect()
    };
    let rule = Action::SetRule {
        rule: "approval_percent".into(),
        value: "100".into(),
    };
    put_to_vote(&mut doc, 1, rule, T0 + 100, &yes(&[1, 2, 3, 4]));
    let tools = Action::AddArticle {
        title: "Tools".into(),
        text: "Tools are shared.".into(),
    };
    let tools = put_to_vote(&mut doc, 2, tools, T0 + 150, &yes(&[1, 2, 3]));
    let remove = Action::RemoveMember {
        member: writer(5).id(),
    };
    let mut votes = yes(&[1, 2, 3]);
    votes.push((4, Choice::No));
    let remove = put_to_vote(&mut doc, 1, remove, T0 + 200, &votes);
    assert!(
        doc.members().contains(&writer(5).id()),
        "member 5 stays on the roll"
    );
    assert!(doc.roll_at(T0 + 30 * DAY).contains(&writer(5).id()));
    add(&mut doc, 5, vote(tools, Choice::Yes, T0 + 300)).expect("member 5 still writes");
    let full = every_record_decoded(&doc, T0 + 300);
    assert_eq!(
        full.proposal(&ProposalId::from(remove))
            .expect("removal")
            .outcome,
        Outcome::Failed
    );
    assert_eq!(
        doc.members(),
        &full.roll.keys().copied().collect(),
        "the engine's roll is the full replay's"
    );
    // A replica that receives it all judges the same.
    let mut replica = SignedDoc::empty(doc.id());
    deliver(&mut replica, doc.changes_since(&[]), 3);
    assert_eq!(replica.members(), doc.members());
    assert_eq!(replica.records().len(), doc.records().len());
}

/// Issue 14, finding 1: a member whose clock runs behind (or a modified
/// node) votes after the proposal was decided, claiming a time inside the
/// voting window. Before decision records, every node counted that vote
/// and a FAILED proposal turned PASSED. Now the decision names the votes
/// it counted: a vote made without the decision in its past counts for
/// nothing, one made with it is refused, and every replica agrees in any
/// delivery order.
#[test]
fn finding_1_a_late_vote_does_not_flip_a_decided_proposal() {
    let mut doc = founded(3);
    let p = add(
        &mut doc,
        1,
        proposal(
            Action::AddArticle {
                title: "Tools".into(),
                text: "Tools are shared.".into(),
            },
            T0 + 100,
        ),
    )
    .expect("propose");
    // Member 3's node holds the proposal, and its clock is behind.
    let mut slow = doc.clone();
    add(&mut doc, 1, vote(p, Choice::Yes, T0 + 200)).expect("vote");
    add(&mut doc, 2, vote(p, Choice::No, T0 + 300)).expect("vote");
    let deadline = T0 + 100 + 7 * DAY;
    let d = decide(&mut doc, 1, &p, deadline + 1).expect("voting is over");
    let g = governance_of(&doc, deadline + 2).expect("gov");
    assert_eq!(
        g.proposal(&ProposalId::from(p)).expect("p").outcome,
        Outcome::Failed
    );

    // By its own clock the window is still open: it votes yes, without
    // the decision (it has not arrived yet), claiming a time before the
    // deadline.
    let (late, late_change) = slow
        .add_record(
            &writer(3),
            vote(p, Choice::Yes, deadline - 1_000),
            &mut NoLedger,
            deadline - 1_000,
        )
        .expect("its own node signs it");
    // A modified node (another device of member 3's) signs one on top of
    // the decision as well.
    let modified = Writer::new(MemberKey::from_secret([3; 32]), [0x33; 8]);
    let (_, after) = doc
        .clone()
        .sign_record_anyway(
            &modified,
            vote(p, Choice::Yes, deadline - 500),
            deadline + 5,
        )
        .expect("signed anyway");

    let mut changes = doc.changes_since(&[]);
    changes.push(late_change);
    changes.push(after.clone());
    for seed in 0..8 {
        let (replica, refused) = shuffled_replica(doc.id(), &changes, seed);
        assert!(refused.contains(&after.hash.to_hex()), "seed {seed}");
        assert_eq!(
            refused.len(),
            1,
            "seed {seed}: only the vote on top of the decision"
        );
        for now in [deadline + 2, deadline + 30 * DAY] {
            let g = governance_of(&replica, now).expect("gov");
            let state = g.proposal(&ProposalId::from(p)).expect("p");
            assert_eq!(state.outcome, Outcome::Failed, "seed {seed}");
            assert_eq!((state.yes, state.no), (1, 1), "seed {seed}");
            assert_eq!(state.decisions, vec![d], "seed {seed}");
            assert!(
                state.ignored.iter().any(|i| i.vote == late),
                "seed {seed}: the late vote is listed as not counted"
            );
        }
    }
}

/// Issue 14, finding 3: a proposal or an admission may not claim a moment
/// long before what its author had already seen (when fewer members held
/// the majority); every replica refuses it.
#[test]
fn finding_3_backdated_proposals_and_admissions_are_refused() {
    let mut doc = founded(3);
    add(&mut doc, 2, vote_free_proposal(T0 + DAY)).expect("a proposal a day on");
    let week_before = T0 + DAY - 7 * DAY;
    let err = add(&mut doc, 2, vote_free_proposal(T0 + DAY - 3_600_000))
        .expect_err("an hour before what it builds on");
    assert!(err.contains("claims a time"), "{err}");
    let mut copy = doc.clone();
    let (_, backdated) = copy
        .sign_record_anyway(&writer(2), vote_free_proposal(week_before), T0 + DAY)
        .expect("signed anyway");
    let admit = admission(&doc, 2, 7, week_before);
    let (_, admitted) = doc
        .clone()
        .sign_record_anyway(&writer(2), admit, T0 + DAY)
        .expect("signed anyway");
    let mut changes = doc.changes_since(&[]);
    changes.push(backdated.clone());
    changes.push(admitted.clone());
    for seed in 0..6 {
        let (replica, refused) = shuffled_replica(doc.id(), &changes, seed);
        assert!(refused.contains(&backdated.hash.to_hex()), "seed {seed}");
        assert!(refused.contains(&admitted.hash.to_hex()), "seed {seed}");
        assert_eq!(refused.len(), 2, "seed {seed}");
        assert!(!replica.members().contains(&writer(7).id()));
    }
    // A few minutes of clock error is allowed.
    add(&mut doc, 3, vote_free_proposal(T0 + DAY - 60_000)).expect("within the skew");
}

/// Issue 14, finding 2: the founder's direct edits count only before
/// anyone else joined, whatever time the edit claims.
#[test]
fn finding_2_a_founders_edit_after_others_joined_is_refused() {
    let mut doc = founded(2);
    let edit = RecordBody::CharterEdit(CharterEdit {
        action: Action::RepealArticle { article: 1 },
        // Claims a moment before member 2 was admitted.
        at_ms: T0 + 1,
    });
    let err = add(&mut doc, 1, edit.clone()).expect_err("refused");
    assert!(err.contains("members had joined"), "{err}");
    let (_, forced) = doc
        .clone()
        .sign_record_anyway(&writer(1), edit, T0 + 10)
        .expect("signed anyway");
    let mut changes = doc.changes_since(&[]);
    changes.push(forced.clone());
    let (replica, refused) = shuffled_replica(doc.id(), &changes, 1);
    assert!(refused.contains(&forced.hash.to_hex()));
    let g = governance_of(&replica, T0 + DAY).expect("gov");
    assert!(g.articles.iter().any(|a| a.number == 1));
}

fn vote_free_proposal(at: u64) -> RecordBody {
    proposal(Action::ReaffirmArticle { article: 1 }, at)
}

/// Put `action` to `group`'s members `voters`, each voting `choice`, and
/// have member `by` sign the decision; the proposal's id.
fn decided(group: &mut SignedDoc, by: u8, voters: &[u8], action: Action, choice: Choice) -> Hash32 {
    let p = add(group, by, proposal(action, T0 + 100)).expect("propose");
    for &v in voters {
        add(group, v, vote(p, choice, T0 + 200 + u64::from(v))).expect("vote");
    }
    decide(group, by, &p, T0 + 1_000).expect("every seat voted");
    p
}

/// What `group` holds of `id`, as its signed bytes.
fn bytes_of(group: &SignedDoc, id: &Hash32) -> Vec<u8> {
    group.records()[id].encode()
}

/// Issue 14, finding 5: a delegation, a treaty counterpart and an
/// escalation filed in a region carry the other group's signed records,
/// and a node holding only the region refuses one that does not show what
/// it claims: nobody who never was a member of the hub speaks for it.
#[test]
fn finding_5_facts_from_another_group_carry_proof() {
    // The hub: 1 founded it, 2 and 3 joined. The region: 5 founded it, 2
    // (a delegate-to-be) and 6 (a member of the region only) joined.
    let mut hub = group_of("Riverside", 1, &[2, 3]);
    let mut region = group_of("North Valley", 5, &[2, 6]);
    let elsewhere = group_of("Hillside", 7, &[6]);
    let now = T0 + 1_000;
    let named = decided(
        &mut hub,
        1,
        &[1, 2, 3],
        Action::SetDelegates {
            delegates: vec![writer(2).id()],
        },
        Choice::Yes,
    );
    let gov = governance_of(&hub, now + 1).expect("gov");
    let state = gov.proposal(&ProposalId::from(named)).expect("p");
    assert_eq!(state.outcome, Outcome::Passed);
    let (proof, from) = DecisionProof::of(&hub.group(), hub.records(), state).expect("proof");
    let hub_id = hub.group();
    let delegation = |who: u8, proof: DecisionProof| {
        RecordBody::Delegation(Delegation {
            child: hub_id,
            delegates: vec![writer(who).id()],
            proposal: ProposalId::from(named),
            from_ms: from,
            until_ms: from + 28 * DAY,
            proof,
        })
    };

    // Forgeries by 6, who never was a member of the hub.
    let mut copy = region.clone();
    let err = add(&mut copy, 6, delegation(6, proof.clone())).expect_err("not the delegates named");
    assert!(err.contains("does not match the decision"), "{err}");
    let err = add(&mut copy, 6, delegation(6, DecisionProof::default())).expect_err("no proof");
    assert!(err.contains("founding record"), "{err}");
    let own_proposal = SignedRecord::sign(
        writer(6).key(),
        proposal(
            Action::SetDelegates {
                delegates: vec![writer(6).id()],
            },
            T0 + 100,
        )
        .encode(),
    );
    let own_decision = SignedRecord::sign(
        writer(6).key(),
        RecordBody::Decision(Decision {
            proposal: ProposalId::from(own_proposal.id()),
            counted: Vec::new(),
            passed: true,
            decided_at_ms: from,
            signed_at_ms: from,
        })
        .encode(),
    );
    let forged = DecisionProof {
        proposal: own_proposal.encode(),
        decision: own_decision.encode(),
        members: MemberProof::of(&hub.group(), hub.records(), &[]).expect("the founding record"),
    };
    let err = add(
        &mut copy,
        6,
        RecordBody::Delegation(Delegation {
            proposal: ProposalId::from(own_proposal.id()),
            ..match delegation(6, forged.clone()) {
                RecordBody::Delegation(d) => d,
                _ => unreachable!(),
            }
        }),
    )
    .expect_err("6 is no member of the hub");
    assert!(
        err.contains("not shown to be a member of Riverside"),
        "{err}"
    );
    // A modified node signs it anyway: every node holding the region
    // refuses the change, whatever order it comes in.
    let (_, signed_anyway) = region
        .clone()
        .sign_record_anyway(&writer(6), delegation(6, proof.clone()), now)
        .expect("signed anyway");
    let mut changes = region.changes_since(&[]);
    changes.push(signed_anyway.clone());
    for seed in 0..4 {
        let (replica, refused) = shuffled_replica(region.id(), &changes, seed);
        assert_eq!(refused.len(), 1, "seed {seed}");
        assert!(refused.contains(&signed_anyway.hash.to_hex()));
        assert_eq!(replica.records().len(), region.records().len());
    }
    // A decision that did not pass proves nothing.
    let failed = decided(
        &mut hub,
        1,
        &[1, 2, 3],
        Action::SetDelegates {
            delegates: vec![writer(3).id()],
        },
        Choice::No,
    );
    let gov = governance_of(&hub, now + 1).expect("gov");
    let state = gov.proposal(&ProposalId::from(failed)).expect("p");
    assert_eq!(state.outcome, Outcome::Failed);
    let no = DecisionProof {
        proposal: bytes_of(&hub, &failed),
        decision: bytes_of(&hub, &state.decisions[0]),
        members: MemberProof::of(&hub.group(), hub.records(), &[writer(1).id()]).expect("chain"),
    };
    let err = no.check().expect_err("failed");
    assert!(err.0.contains("did not pass"), "{}", err.0);
    // The real delegate, with the real decision: accepted.
    add(&mut region, 2, delegation(2, proof)).expect("the hub's delegate");

    // A treaty counterpart: the hub ratified, 2 carries it over; 6 cannot
    // pass off a ratification of their own making.
    let (a, b) = if hub.group() < region.group() {
        (hub.group(), region.group())
    } else {
        (region.group(), hub.group())
    };
    let treaty = Treaty {
        parties: [a, b],
        kind: TreatyKind::MutualAid,
        terms: "Each answers the other's calls.".into(),
        start_ms: T0,
        end_ms: T0 + 365 * DAY,
    };
    let ratified = decided(
        &mut hub,
        1,
        &[1, 2, 3],
        Action::RatifyTreaty {
            treaty: treaty.clone(),
        },
        Choice::Yes,
    );
    let gov = governance_of(&hub, now + 1).expect("gov");
    let (proof, at) = DecisionProof::of(
        &hub.group(),
        hub.records(),
        gov.proposal(&ProposalId::from(ratified)).expect("p"),
    )
    .expect("proof");
    let counterpart = |proposal: Hash32, proof: DecisionProof| {
        RecordBody::Counterpart(Counterpart {
            treaty: treaty.id(),
            group: hub_id,
            proposal: ProposalId::from(proposal),
            act: TreatyAct::Ratified(treaty.clone()),
            at_ms: at,
            proof,
        })
    };
    let own_ratification = SignedRecord::sign(
        writer(6).key(),
        proposal(
            Action::RatifyTreaty {
                treaty: treaty.clone(),
            },
            T0 + 100,
        )
        .encode(),
    );
    let err = add(
        &mut copy,
        6,
        counterpart(
            own_ratification.id(),
            DecisionProof {
                proposal: own_ratification.encode(),
                ..forged
            },
        ),
    )
    .expect_err("6 is no member of the hub");
    assert!(
        err.contains("not shown to be a member of Riverside"),
        "{err}"
    );
    let err = add(&mut copy, 6, counterpart(named, proof.clone())).expect_err("another proposal");
    assert!(err.contains("does not match"), "{err}");
    add(&mut region, 2, counterpart(ratified, proof)).expect("the hub's ratification");

    // Escalations: 3 calls for help in the hub; 2 carries it up.
    let signal = add(
        &mut hub,
        3,
        RecordBody::Signal(Signal {
            group: hub_id,
            category: Category::Medical,
            severity: Severity::High,
            text: "help".into(),
            location: None,
            raised_at_ms: T0 + 300,
            expires_at_ms: T0 + 300 + DAY,
            seq: 1,
            prev: None,
        }),
    )
    .expect("raise");
    let raiser = MemberProof::of(&hub.group(), hub.records(), &[writer(3).id()]).expect("chain");
    let escalation = |origin: GroupId, raiser: MemberProof| {
        RecordBody::Escalation(Escalation {
            signal: bytes_of(&hub, &signal),
            origin,
            raiser,
            path: vec![origin],
            at_ms: T0 + 400,
        })
    };
    // Filed in the region as if raised there, or passed off as a call
    // from another group, or from the hub by someone never admitted there.
    let as_raised = RecordBody::decode(&hub.records()[&signal].body).expect("a signal");
    let err = add(&mut copy, 2, as_raised).expect_err("raised in the hub");
    assert!(err.contains("cannot be filed in"), "{err}");
    let hillside =
        MemberProof::of(&elsewhere.group(), elsewhere.records(), &[writer(6).id()]).expect("chain");
    let err = add(&mut copy, 6, escalation(elsewhere.group(), hillside)).expect_err("replayed");
    assert!(err.contains("was raised in"), "{err}");
    let err = add(
        &mut copy,
        2,
        escalation(
            hub.group(),
            MemberProof::of(&hub.group(), hub.records(), &[]).expect("founding"),
        ),
    )
    .expect_err("no admission of the raiser");
    assert!(err.contains("the raiser"), "{err}");
    add(&mut region, 2, escalation(hub.group(), raiser)).expect("a real escalation");
}

/// Found by the decisions property test: a record put again, by another
/// device of its author, on a branch where it claims a time too early
/// was judged only where the receiver did not hold it yet, so replicas
/// kept different changes depending on the order. It is judged against
/// each change's own causal past now: refused on that branch in every
/// order, kept where it was first put.
#[test]
fn a_record_put_again_on_another_branch_is_judged_there() {
    let mut doc = founded(3);
    let p = add(&mut doc, 1, vote_free_proposal(T0 + 100)).expect("propose");
    // Member 2's first device votes on what it holds now.
    let mut early = doc.clone();
    let ballot = vote(p, Choice::Yes, T0 + 200);
    let (_, first) = early
        .add_record(&writer(2), ballot.clone(), &mut NoLedger, T0 + 200)
        .expect("vote");
    // An hour of business later, another device of member 2 puts the same
    // signed vote in again, on top of it all.
    add(&mut doc, 1, vote_free_proposal(T0 + 3_600_000)).expect("later");
    let device = Writer::new(MemberKey::from_secret([2; 32]), [0x22; 8]);
    let (again_id, again) = doc
        .clone()
        .sign_record_anyway(&device, ballot, T0 + 3_600_000)
        .expect("signed anyway");
    assert!(early.records().contains_key(&again_id), "the same record");
    let mut changes = doc.changes_since(&[]);
    changes.push(first.clone());
    changes.push(again.clone());
    for seed in 0..8 {
        let (replica, refused) = shuffled_replica(doc.id(), &changes, seed);
        assert_eq!(refused.len(), 1, "seed {seed}");
        assert!(refused.contains(&again.hash.to_hex()), "seed {seed}");
        assert!(replica.records().contains_key(&again_id), "seed {seed}");
    }
    // The same when the branch that puts it again comes first.
    let mut replica = SignedDoc::empty(doc.id());
    let report = replica.apply(doc.changes_since(&[]));
    assert!(report.rejected.is_empty());
    let report = replica.apply(vec![again.clone()]);
    assert_eq!(report.rejected.len(), 1, "{:?}", report.rejected);
    assert!(
        report.rejected[0].reason.contains("claims a time"),
        "{:?}",
        report.rejected
    );
    let report = replica.apply(vec![first]);
    assert!(report.rejected.is_empty(), "{:?}", report.rejected);
    let report = replica.apply(vec![again]);
    assert_eq!(
        report.rejected.len(),
        1,
        "held or not, the branch is refused"
    );
}

/// Issue 14, finding 2, with a second device: the founder's direct edits
/// count only if every admission follows them. An edit the founder's
/// other device makes on a copy from before anyone joined is valid where
/// it was made, so every replica keeps it, whatever it claims; it counts
/// for nothing, because the admissions do not list it. An admission that
/// leaves out an edit its causal past holds is refused.
#[test]
fn finding_2_a_founders_edit_beside_the_admissions_counts_for_nothing() {
    let mut doc = group_of("Riverside", 1, &[]);
    let tools = add(
        &mut doc,
        1,
        RecordBody::CharterEdit(CharterEdit {
            action: Action::AddArticle {
                title: "Tools".into(),
                text: "Tools are shared.".into(),
            },
            at_ms: T0 + 1,
        }),
    )
    .expect("an edit before anyone joined");
    let before_anyone = doc.clone();
    for m in [2, 3] {
        let body = admission(&doc, 1, m, T0 + 10 + u64::from(m));
        let id = add(&mut doc, 1, body).expect("admit");
        let Ok(RecordBody::Admission(a)) = RecordBody::decode(&doc.records()[&id].body) else {
            panic!("an admission");
        };
        assert_eq!(
            a.founders_edits,
            vec![tools],
            "it lists the edit it follows"
        );
    }
    // The founder's second device, on the copy from before anyone joined,
    // lowers the quorum, claiming a time before the admissions.
    let mut other_device = before_anyone.clone();
    let second = Writer::new(MemberKey::from_secret([1; 32]), [0x11; 8]);
    let (lowered, beside) = other_device
        .add_record(
            &second,
            RecordBody::CharterEdit(CharterEdit {
                action: Action::SetRule {
                    rule: "quorum_percent".into(),
                    value: "1".into(),
                },
                at_ms: T0 + 5,
            }),
            &mut NoLedger,
            T0 + 5,
        )
        .expect("valid where it is made: nobody had joined there");
    // An admission signed on top of everything that leaves the edit out.
    let mut forged = Admission::self_issued(
        writer(1).key(),
        &doc.group(),
        writer(4).id(),
        Hash32([4; 32]),
        T0 + 20,
    );
    forged.founders_edits.clear();
    let (_, forged) = doc
        .clone()
        .sign_record_anyway(&writer(1), RecordBody::Admission(forged), T0 + 20)
        .expect("signed anyway");
    let mut changes = doc.changes_since(&[]);
    changes.push(beside);
    changes.push(forged.clone());
    for seed in 0..6 {
        let (replica, refused) = shuffled_replica(doc.id(), &changes, seed);
        assert_eq!(refused.len(), 1, "seed {seed}: {refused:?}");
        assert!(refused.contains(&forged.hash.to_hex()), "seed {seed}");
        assert!(replica.records().contains_key(&lowered), "seed {seed}");
        let g = governance_of(&replica, T0 + DAY).expect("gov");
        assert_eq!(g.rules.quorum_percent, 50, "seed {seed}");
        assert!(g.articles.iter().any(|a| a.title == "Tools"), "seed {seed}");
        assert!(
            g.ignored_edits
                .iter()
                .any(|(id, why)| *id == lowered && why.contains("beside the admissions")),
            "seed {seed}: {:?}",
            g.ignored_edits
        );
        assert!(!replica.members().contains(&writer(4).id()));
    }
}
