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
//! Two histories: the group's everyday business (proposals to add
//! articles), which the roll does not replay, and rule changes, which it
//! must (they decide later votes on the roll). The view replays every
//! record in both. Run with `cargo run --release -p nestwork-bench --bin
//! governance-cost`.

use std::time::Instant;

use nestwork_core::{Hash32, MemberKey};
use nestwork_docs::governance::{Action, Choice, Proposal, Vote};
use nestwork_docs::view::governance_of;
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
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    for (business, what) in [
        (Business::Articles, "proposals to add articles"),
        (Business::Rules, "proposals to change a rule"),
    ] {
        println!("{what}:");
        measure(business);
    }
}

/// Grow one group's history of `business` and print the costs at each size.
fn measure(business: Business) {
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
    for m in 2..=5u8 {
        let body = RecordBody::Admission(Admission::self_issued(
            writer(1).key(),
            &doc.id(),
            writer(m).id(),
            Hash32([m; 32]),
            T0 + u64::from(m),
        ));
        doc.add_record(&writer(1), body, &mut NoLedger, T0)
            .expect("admit");
    }
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
                    proposal,
                    choice: Choice::Yes,
                    cast_at_ms: at,
                    for_group: None,
                });
                doc.add_record(&writer(m), vote, &mut NoLedger, at)
                    .expect("vote");
                records += 1;
            }
        }
        let mut replica = SignedDoc::empty(doc.id());
        let report = replica.apply(doc.changes_since(&[]));
        assert!(report.rejected.is_empty() && report.missing_deps.is_empty());
        at += 10;
        let (_, change) = propose(&mut doc, business, records, at);
        records += 1;
        let start = Instant::now();
        let report = replica.apply(vec![change]);
        let apply = start.elapsed();
        assert_eq!(report.applied.len(), 1, "the new record applies");
        let start = Instant::now();
        let gov = governance_of(&replica, at + 1).expect("governance");
        let view = start.elapsed();
        assert_eq!(gov.roll.len(), 5);
        println!(
            "{records:>6} governance records: receiving one more {:>8.2} ms, the governance view {:>8.2} ms",
            apply.as_secs_f64() * 1e3,
            view.as_secs_f64() * 1e3
        );
    }
}
