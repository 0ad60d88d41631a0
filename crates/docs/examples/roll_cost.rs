//! The cost of applying one change to a group document with 10,000
//! changes of history: an edit, and a vote (a roll record, so the roll at
//! its causal past is computed afresh); and of the roll at the group heads
//! a payment cites (the check every node makes of a payment's payer and
//! payee). Prints figures; never fails for being slow.
//!
//! `cargo run --release -p nestwork-docs --example roll_cost`

use std::time::{Duration, Instant};

use nestwork_core::{Hash32, MemberKey, ProposalId};
use nestwork_docs::governance::{Action, Choice, Proposal, Vote};
use nestwork_docs::{
    Admission, Charter, GroupGenesis, GroupKind, NoLedger, RecordBody, SignedDoc, Writer,
};

const T0: u64 = 1_700_000_000_000;
const HISTORY: usize = 10_000;
const MEMBERS: u8 = 10;

fn writer(n: u8) -> Writer {
    Writer::new(MemberKey::from_secret([n; 32]), [n; 8])
}

fn admission(doc: &SignedDoc, m: u8) -> RecordBody {
    RecordBody::Admission(Admission::self_issued(
        writer(1).key(),
        &doc.group(),
        writer(m).id(),
        Hash32([m; 32]),
        T0 + u64::from(m),
    ))
}

fn median_and_p90(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[v.len() / 2], v[v.len() * 9 / 10])
}

/// A group of [`MEMBERS`] with [`HISTORY`] changes: edits by every
/// member, with a proposal and votes every 100 changes (roll records, so
/// there are many distinct rolls).
fn history() -> SignedDoc {
    let genesis = GroupGenesis {
        name: "Bench".into(),
        kind: GroupKind::Hub,
        parent: None,
        unit: "hours".into(),
        created_at_ms: T0,
        nonce: [1; 16],
        charter: Charter::default(),
    };
    let (mut author, _) = SignedDoc::create_group(&writer(1), genesis, T0).expect("found");
    for m in 2..=MEMBERS {
        let body = admission(&author, m);
        author
            .add_record(&writer(1), body, &mut NoLedger, T0)
            .expect("admit");
    }
    let mut i = 0u64;
    let mut proposal = None;
    while author.change_count() < HISTORY {
        i += 1;
        let w = writer((i % u64::from(MEMBERS)) as u8 + 1);
        let now = T0 + 1_000 + i;
        if i.is_multiple_of(100) {
            let (p, _) = author
                .add_record(
                    &w,
                    RecordBody::Proposal(Proposal {
                        action: Action::AddArticle {
                            title: format!("A{i}"),
                            text: "text".into(),
                        },
                        submitted_at_ms: now,
                    }),
                    &mut NoLedger,
                    now,
                )
                .expect("propose");
            proposal = Some(p);
        } else if i % 100 < 4 && proposal.is_some() {
            let p = proposal.unwrap_or(Hash32([0; 32]));
            let _ = author.add_record(
                &w,
                RecordBody::Vote(Vote {
                    proposal: ProposalId::from(p),
                    choice: Choice::Yes,
                    cast_at_ms: now,
                    for_group: None,
                }),
                &mut NoLedger,
                now,
            );
        } else {
            author
                .set_description(&w, &format!("edit {i}"), now)
                .expect("edit");
        }
    }
    author
}

/// A new proposal, then each member's vote on it applied to `replica`
/// alone, timed (each vote is a roll record: the roll at its causal past
/// is computed afresh).
fn time_votes(author: &mut SignedDoc, replica: &mut SignedDoc) -> Vec<Duration> {
    let (p, _) = author
        .add_record(
            &writer(1),
            RecordBody::Proposal(Proposal {
                action: Action::AddArticle {
                    title: "Last".into(),
                    text: "text".into(),
                },
                submitted_at_ms: T0 + 2_000_000,
            }),
            &mut NoLedger,
            T0 + 2_000_000,
        )
        .expect("propose");
    replica.apply(author.changes_since(&replica.heads()));
    let mut votes = Vec::new();
    for k in 0..u64::from(MEMBERS) {
        let now = T0 + 2_000_001 + k;
        let (_, change) = author
            .add_record(
                &writer(k as u8 + 1),
                RecordBody::Vote(Vote {
                    proposal: ProposalId::from(p),
                    choice: Choice::Abstain,
                    cast_at_ms: now,
                    for_group: None,
                }),
                &mut NoLedger,
                now,
            )
            .expect("vote");
        let t = Instant::now();
        let report = replica.apply(vec![change]);
        votes.push(t.elapsed());
        assert_eq!(report.applied.len(), 1);
    }
    votes
}

/// Time the roll at group heads a payment might cite, and print it.
fn time_cited_rolls(replica: &SignedDoc) {
    // A payment cites the group heads its payer's node held; every node
    // judges it by the roll there. Heads this replica holds (their roll
    // is cached as the roll at its heads), then pairs of old changes, as a
    // payer's node that was behind cites them (in a history without
    // concurrent branches their union is the later one's set, whose roll
    // was worked out when a change built on it was judged; a set never
    // seen replays the roll records once, as a vote's new set does).
    let heads = replica.heads();
    let mut cited = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        let roll = replica.roll_at_heads(&heads).expect("held");
        cited.push(t.elapsed());
        assert!(roll.contains(&writer(1).id()));
    }
    let (m, p) = median_and_p90(cited);
    println!("roll at the cited group heads, the replica's own: median {m:?}, p90 {p:?}");
    let history: Vec<Hash32> = replica.changes_since(&[]).iter().map(|c| c.hash).collect();
    let mut fresh = Vec::new();
    for k in 0..200 {
        let mut pair = vec![history[50 + k * 41], history[57 + k * 41]];
        pair.sort_unstable();
        let t = Instant::now();
        let roll = replica.roll_at_heads(&pair).expect("held");
        fresh.push(t.elapsed());
        assert!(roll.contains(&writer(1).id()));
    }
    let (m, p) = median_and_p90(fresh);
    println!("roll at cited group heads of two old changes: median {m:?}, p90 {p:?}");
}

fn main() {
    let mut author = history();
    let mut replica = SignedDoc::empty(author.id());
    let start = Instant::now();
    let report = replica.apply(author.changes_since(&[]));
    assert!(report.rejected.is_empty(), "{:?}", report.rejected.first());
    println!(
        "history: {} changes ({} records); replica built in {:?}",
        replica.change_count(),
        replica.records().len(),
        start.elapsed()
    );

    let mut edits = Vec::new();
    for k in 0..200 {
        let now = T0 + 1_000_000 + k;
        let w = writer((k % u64::from(MEMBERS)) as u8 + 1);
        let change = author
            .set_description(&w, &format!("bench {k}"), now)
            .expect("edit")
            .expect("change");
        let t = Instant::now();
        let report = replica.apply(vec![change]);
        edits.push(t.elapsed());
        assert_eq!(report.applied.len(), 1);
    }
    let (m, p) = median_and_p90(edits);
    println!("apply one edit at {HISTORY} changes: median {m:?}, p90 {p:?}");

    let votes = time_votes(&mut author, &mut replica);
    let (m, p) = median_and_p90(votes);
    println!("apply one vote at {HISTORY} changes: median {m:?}, p90 {p:?}");

    time_cited_rolls(&replica);

    let stored = replica.changes_since(&[]);
    let t = Instant::now();
    let loaded = SignedDoc::load_trusted(replica.id(), stored).expect("load");
    println!(
        "load {} stored changes: {:?}",
        loaded.change_count(),
        t.elapsed()
    );
}
