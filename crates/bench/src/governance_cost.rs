//! `governance-cost`: what evaluating a group's governance costs as its
//! history of governance records grows (issue 15, "governance evaluated
//! incrementally"). One replica of a group of five; proposals with four
//! votes each are added until the group holds 250 to 4,000 governance
//! records; at each size it prints
//!
//! - the time for a replica holding all of them to receive one more
//!   (its author's roll is worked out at the change's causal past), and
//! - the time for the governance view (what a proposal list, `status`, and
//!   `Decisions::of` for a commons payout or a limit change run).
//!
//! Each proposal is decided by a decision record its proposer signs (issue
//! 14). Then the cost of a decision that counts 200 votes: a replica
//! receiving it (the engine checks its votes are in its causal past) and
//! the governance view recounting it. Last, the facts a hub's members carry
//! into its region with their proof (issue 14, finding 5): the size of a
//! delegation and of an escalation, and the time to check each proof.
//!
//! Two histories: the group's everyday business (proposals to add
//! articles), which the roll does not replay, and rule changes, which it
//! must (they decide later votes on the roll). The view replays every
//! record in both. Run with `cargo run --release -p nestwork-bench --bin
//! governance-cost`.

use std::time::{Duration, Instant};

use nestwork_core::{Hash32, MemberKey, ProposalId};
use nestwork_docs::governance::{Action, Choice, Governance, Proposal, Vote};
use nestwork_docs::view::{decision_due, governance_of};
use nestwork_docs::{
    Admission, Charter, GroupGenesis, GroupKind, NoLedger, RecordBody, SignedDoc, Writer,
};

const T0: u64 = 1_700_000_000_000;
const SIZES: [usize; 5] = [250, 500, 1_000, 2_000, 4_000];

fn writer(n: u8) -> Writer {
    Writer::new(MemberKey::from_secret([n; 32]), [n; 8])
}

/// The proposals of a history.
#[derive(Clone, Copy)]
enum Business {
    Articles,
    Rules,
}

/// Member 1 adds proposal number `n` at `at`; returns its id and change.
fn propose(
    doc: &mut SignedDoc,
    business: Business,
    n: usize,
    at: u64,
) -> (Hash32, nestwork_core::SignedChange) {
    let action = match business {
        Business::Articles => Action::AddArticle {
            title: "Tools".into(),
            text: format!("Article {n}."),
        },
        Business::Rules => Action::SetRule {
            rule: "quorum_percent".into(),
            value: (40 + n % 20).to_string(),
        },
    };
    let body = RecordBody::Proposal(Proposal {
        action,
        submitted_at_ms: at,
    });
    doc.add_record(&writer(1), body, &mut NoLedger, at)
        .expect("proposal")
}

fn main() {
    println!(
        "nestwork governance cost ({} build): one group of 5, proposals with 4 votes each",
        nestwork_bench::build()
    );
    for (business, what) in [
        (Business::Articles, "proposals to add articles"),
        (Business::Rules, "proposals to change a rule"),
    ] {
        println!("{what}:");
        measure(business);
    }
    decision_of_200_votes();
    cross_group_proofs();
}

/// The mean time of `f` over `n` runs.
fn mean_of(n: u32, mut f: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    start.elapsed() / n
}

/// In a hub of five, member 3 (admitted by the founder) proposes that
/// member 2 be its delegate and signs the decision; member 4 calls for
/// help. What member 2 carries into the region, and what checking it costs
/// a node that holds only the region.
fn cross_group_proofs() {
    use nestwork_docs::distress::{Category, Escalation, Severity, Signal};
    use nestwork_docs::governance::Delegation;
    use nestwork_docs::proof::{DecisionProof, MemberProof};

    let mut hub = group_of(5);
    let at = T0 + 1_000;
    let (proposal, _) = hub
        .add_record(
            &writer(3),
            RecordBody::Proposal(Proposal {
                action: Action::SetDelegates {
                    delegates: vec![writer(2).id()],
                },
                submitted_at_ms: at,
            }),
            &mut NoLedger,
            at,
        )
        .expect("proposal");
    for m in 1..=3u8 {
        let vote = RecordBody::Vote(Vote {
            proposal: ProposalId::from(proposal),
            choice: Choice::Yes,
            cast_at_ms: at + u64::from(m),
            for_group: None,
        });
        hub.add_record(&writer(m), vote, &mut NoLedger, at)
            .expect("vote");
    }
    let now = at + 10;
    let decision = decision_due(&hub, &ProposalId::from(proposal), now).expect("settled");
    hub.add_record(&writer(3), decision, &mut NoLedger, now)
        .expect("decision");
    let gov = governance_of(&hub, now + 1).expect("governance");
    let state = gov.proposal(&ProposalId::from(proposal)).expect("proposal");
    let (proof, from) = DecisionProof::of(&hub.group(), hub.records(), state).expect("proof");
    let delegation = RecordBody::Delegation(Delegation {
        child: hub.group(),
        delegates: vec![writer(2).id()],
        proposal: ProposalId::from(proposal),
        from_ms: from,
        until_ms: from + 28 * 24 * 3600 * 1000,
        proof: proof.clone(),
    });
    let checked = mean_of(1_000, || {
        proof.check().expect("checks");
    });
    println!(
        "a delegation carried into the region: {} bytes with its proof, checked in {:.0} µs",
        delegation.encode().len(),
        checked.as_secs_f64() * 1e6
    );
    let (signal, _) = hub
        .add_record(
            &writer(4),
            RecordBody::Signal(Signal {
                group: hub.group(),
                category: Category::Medical,
                severity: Severity::Critical,
                text: "Fell from the roof, leg broken".into(),
                location: Some("north camp".into()),
                raised_at_ms: now,
                expires_at_ms: now + 3_600_000,
                seq: 1,
                prev: None,
            }),
            &mut NoLedger,
            now,
        )
        .expect("signal");
    let escalation = Escalation {
        signal: hub.records()[&signal].encode(),
        origin: hub.group(),
        raiser: MemberProof::of(&hub.group(), hub.records(), &[writer(4).id()]).expect("chain"),
        path: vec![hub.group()],
        at_ms: now,
    };
    let checked = mean_of(1_000, || {
        escalation.signal().expect("checks");
    });
    println!(
        "an escalation carried into the region: {} bytes with its proof, checked in {:.0} µs",
        RecordBody::Escalation(escalation.clone()).encode().len(),
        checked.as_secs_f64() * 1e6
    );
}

/// The time for `replica` to receive `change`, and then for its
/// governance view at `now`, with that view.
fn receive_and_view(
    replica: &mut SignedDoc,
    change: nestwork_core::SignedChange,
    now: u64,
) -> (Duration, Duration, Governance) {
    let start = Instant::now();
    let report = replica.apply(vec![change]);
    let apply = start.elapsed();
    assert_eq!(report.applied.len(), 1, "the change applies");
    let start = Instant::now();
    let gov = governance_of(replica, now).expect("governance");
    (apply, start.elapsed(), gov)
}

/// A group of `n` members founded at `T0` by member 1.
fn group_of(n: u8) -> SignedDoc {
    let genesis = GroupGenesis {
        name: "Riverside".into(),
        kind: GroupKind::Hub,
        parent: None,
        unit: "hours".into(),
        created_at_ms: T0,
        nonce: [3; 16],
        charter: Charter::default(),
    };
    let (mut doc, _) = SignedDoc::create_group(&writer(1), genesis, T0).expect("found");
    for m in 2..=n {
        let body = RecordBody::Admission(Admission::self_issued(
            writer(1).key(),
            &doc.group(),
            writer(m).id(),
            Hash32([m; 32]),
            T0 + u64::from(m),
        ));
        doc.add_record(&writer(1), body, &mut NoLedger, T0)
            .expect("admit");
    }
    doc
}

/// 201 members, one proposal, 200 votes split so that only the deadline
/// decides it: its decision names all 200.
fn decision_of_200_votes() {
    let mut doc = group_of(201);
    let at = T0 + 1_000;
    let (proposal, _) = propose(&mut doc, Business::Articles, 0, at);
    for m in 1..=200u8 {
        let vote = RecordBody::Vote(Vote {
            proposal: ProposalId::from(proposal),
            // Three yes to two no: 60% approval, never settled early.
            choice: if m % 5 < 3 { Choice::Yes } else { Choice::No },
            cast_at_ms: at + u64::from(m),
            for_group: None,
        });
        doc.add_record(&writer(m), vote, &mut NoLedger, at)
            .expect("vote");
    }
    let deadline = at + 7 * 24 * 3600 * 1000;
    let mut replica = SignedDoc::empty(doc.id());
    let report = replica.apply(doc.changes_since(&[]));
    assert!(report.rejected.is_empty() && report.missing_deps.is_empty());
    let decision =
        decision_due(&doc, &ProposalId::from(proposal), deadline).expect("voting is over");
    let (_, change) = doc
        .add_record(&writer(1), decision, &mut NoLedger, deadline)
        .expect("decision");
    let (apply, view, gov) = receive_and_view(&mut replica, change, deadline + 1);
    let state = gov.proposal(&ProposalId::from(proposal)).expect("proposal");
    assert_eq!(state.decisions.len(), 1);
    assert_eq!(state.yes + state.no, 200);
    println!(
        "a decision counting 200 votes: receiving it {:.2} ms, the governance view recounting it {:.2} ms",
        apply.as_secs_f64() * 1e3,
        view.as_secs_f64() * 1e3
    );
}

/// Grow one group's history of `business` and print the costs at each size.
fn measure(business: Business) {
    let mut doc = group_of(5);
    let mut records = 5;
    let mut at = T0 + 100;
    for size in SIZES {
        while records < size {
            at += 10;
            let (proposal, _) = propose(&mut doc, business, records, at);
            records += 1;
            for m in 1..=4u8 {
                at += 1;
                let vote = RecordBody::Vote(Vote {
                    proposal: ProposalId::from(proposal),
                    choice: Choice::Yes,
                    cast_at_ms: at,
                    for_group: None,
                });
                doc.add_record(&writer(m), vote, &mut NoLedger, at)
                    .expect("vote");
                records += 1;
            }
            let decision =
                decision_due(&doc, &ProposalId::from(proposal), at).expect("4 of 5 decide");
            doc.add_record(&writer(1), decision, &mut NoLedger, at)
                .expect("decision");
            records += 1;
        }
        let mut replica = SignedDoc::empty(doc.id());
        let report = replica.apply(doc.changes_since(&[]));
        assert!(report.rejected.is_empty() && report.missing_deps.is_empty());
        // The replica's first view replays the whole history (a node does
        // this once per group after it starts); later ones only what is new.
        let start = Instant::now();
        governance_of(&replica, at).expect("governance");
        let first = start.elapsed();
        // What is measured is written on a copy: left open, it would stay
        // ahead of the history grown next.
        let mut scratch = doc.clone();
        let (_, change) = propose(&mut scratch, business, records, at + 10);
        let (apply, view, gov) = receive_and_view(&mut replica, change, at + 11);
        assert_eq!(gov.roll.len(), 5);
        // A vote on it, as the group's business goes on.
        let proposal = gov
            .proposals
            .iter()
            .max_by_key(|p| p.proposal.submitted_at_ms)
            .expect("proposals")
            .id;
        let vote = RecordBody::Vote(Vote {
            proposal,
            choice: Choice::Yes,
            cast_at_ms: at + 12,
            for_group: None,
        });
        let (_, change) = scratch
            .add_record(&writer(2), vote, &mut NoLedger, at + 12)
            .expect("vote");
        let (_, vote_view, _) = receive_and_view(&mut replica, change, at + 13);
        println!(
            "{:>6} governance records: receiving one more {:>8.2} ms, the governance view {:>8.2} ms (first view {:>8.2} ms; after a vote on the new one {:>8.2} ms)",
            records + 1,
            apply.as_secs_f64() * 1e3,
            view.as_secs_f64() * 1e3,
            first.as_secs_f64() * 1e3,
            vote_view.as_secs_f64() * 1e3
        );
    }
}
