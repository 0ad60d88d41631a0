//! The kept governance timeline (issue 15, "governance evaluated
//! incrementally"): whatever order records arrive in, with duplicates,
//! late votes on decided proposals, and views at any moment (the clock set
//! back included), a view from the kept timeline equals a replay from the
//! start.

use nestwork_core::{GroupId, Hash32, MemberId, ProposalId};
use nestwork_docs::governance::{
    Action, CharterEdit, Choice, Exit, Governance, Proposal, Timeline, Vote, DECISION_GRACE_MS,
};
use nestwork_docs::{Admission, Article, Charter, RecordBody, Rules};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

const T0: u64 = 1_700_000_000_000;
const MIN: u64 = 60_000;
const MEMBERS: u8 = 7;

fn member(n: u8) -> MemberId {
    MemberId([n + 1; 32])
}

fn charter() -> Charter {
    Charter {
        articles: vec![Article {
            title: "Care".into(),
            text: "We look after each other.".into(),
        }],
        rules: Rules {
            voting_period_secs: 10 * 60,
            ..Rules::default()
        },
    }
}

fn timeline() -> Timeline {
    Timeline::new(
        GroupId::from(Hash32([9; 32])),
        member(0),
        T0,
        &charter(),
        None,
    )
}

type Record = (Hash32, MemberId, RecordBody);

/// A random history of a group of up to `MEMBERS`: admissions (some with
/// used tickets or by non-members), exits, founders' edits, proposals that
/// move the roll and that do not, votes (some late, some early, some ahead
/// of the clock), and decision records: the proposer's, other members'
/// fallbacks, and forged ones that do not recount.
fn history(rng: &mut StdRng, len: usize) -> Vec<Record> {
    let mut records: Vec<Record> = Vec::new();
    let mut proposals: Vec<(Hash32, u64)> = Vec::new();
    let mut edits: Vec<Hash32> = Vec::new();
    let mut t = T0;
    for n in 0..len {
        let id = Hash32::of_parts(&[b"record", &(n as u64).to_be_bytes()]);
        t += rng.gen_range(0..3 * MIN);
        // Claimed times are a little off now and then.
        let at = t - rng.gen_range(0..2) * rng.gen_range(0..4 * MIN);
        let who = member(rng.gen_range(0..MEMBERS));
        let mut signer = who;
        let body = match rng.gen_range(0..100) {
            0..=3 if n < 6 => {
                edits.push(id);
                RecordBody::CharterEdit(CharterEdit {
                    action: Action::AddArticle {
                        title: "Tools".into(),
                        text: format!("Edit {n}."),
                    },
                    at_ms: at,
                })
            }
            0..=11 => RecordBody::Admission(Admission {
                member: member(rng.gen_range(0..MEMBERS)),
                ticket: Hash32([rng.gen_range(0..12); 32]),
                ticket_signature: Vec::new(),
                admitted_at_ms: at,
                founders_edits: edits
                    .iter()
                    .filter(|_| rng.gen_bool(0.9))
                    .copied()
                    .collect(),
            }),
            12..=18 => RecordBody::Exit(Exit {
                member: who,
                at_ms: at,
            }),
            19..=34 => {
                let action = match rng.gen_range(0..6) {
                    0 => Action::RemoveMember {
                        member: member(rng.gen_range(1..MEMBERS)),
                    },
                    1 => Action::AdmitMember {
                        member: member(rng.gen_range(1..MEMBERS)),
                    },
                    2 => Action::SetRule {
                        rule: "quorum_percent".into(),
                        value: rng.gen_range(20..80).to_string(),
                    },
                    3 => Action::Lottery {
                        role: "scribe".into(),
                        count: 2,
                    },
                    _ => Action::AddArticle {
                        title: "More".into(),
                        text: format!("Article {n}."),
                    },
                };
                proposals.push((id, at));
                RecordBody::Proposal(Proposal {
                    action,
                    submitted_at_ms: at,
                })
            }
            35..=79 if !proposals.is_empty() => {
                let (proposal, _) = *proposals.choose(rng).expect("some");
                RecordBody::Vote(Vote {
                    proposal: ProposalId::from(proposal),
                    choice: [Choice::Yes, Choice::Yes, Choice::No, Choice::Abstain]
                        [rng.gen_range(0..4)],
                    cast_at_ms: at,
                    for_group: None,
                })
            }
            _ if !proposals.is_empty() => {
                // What a node holding everything so far would sign.
                // (The oldest waiting for one, as nodes sign them.)
                let gov = replay(&records, t);
                let Some((state, mut d)) = gov
                    .proposals
                    .iter()
                    .filter_map(|p| Some((p, p.decision_record(t)?)))
                    .min_by_key(|(p, _)| (p.proposal.submitted_at_ms, p.id))
                else {
                    continue;
                };
                signer = match rng.gen_range(0..10) {
                    0..=6 => state.proposer,
                    7 => {
                        d.passed = !d.passed;
                        state.proposer
                    }
                    _ => {
                        d.signed_at_ms = d.decided_at_ms + DECISION_GRACE_MS + MIN;
                        who
                    }
                };
                RecordBody::Decision(d)
            }
            _ => continue,
        };
        records.push((id, who_for(&body, signer), body));
    }
    records
}

/// The signer: an exit is signed by who leaves; a founders' edit mostly
/// by the creator.
fn who_for(body: &RecordBody, who: MemberId) -> MemberId {
    match body {
        RecordBody::Exit(e) => e.member,
        RecordBody::CharterEdit(_) if who != member(3) => member(0),
        _ => who,
    }
}

/// The time a record claims.
fn claimed(body: &RecordBody) -> u64 {
    match body {
        RecordBody::Admission(a) => a.admitted_at_ms,
        RecordBody::Exit(e) => e.at_ms,
        RecordBody::CharterEdit(e) => e.at_ms,
        RecordBody::Proposal(p) => p.submitted_at_ms,
        RecordBody::Vote(v) => v.cast_at_ms,
        RecordBody::Decision(d) => d.signed_at_ms,
        _ => T0,
    }
}

fn replay(records: &[Record], now: u64) -> Governance {
    let mut t = timeline();
    for (id, author, body) in records {
        t.add(*id, *author, body);
    }
    t.from_start(now)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn a_kept_timeline_shows_what_a_replay_from_the_start_shows(seed in any::<u64>()) {
        let settled = kept_against_replayed(seed)?;
        // The kept timeline did keep something (else this shows nothing).
        prop_assert!(settled > 0, "no proposal was ever held as final");
    }
}

/// Deliver a random history (seeded by `seed`) to a kept timeline, with
/// views at random moments, each checked against a replay from the start;
/// how many proposals the kept timeline held as final at most.
fn kept_against_replayed(seed: u64) -> Result<usize, TestCaseError> {
    {
        let mut rng = StdRng::seed_from_u64(seed);
        let records = history(&mut rng, 160);
        let end = T0 + records.len() as u64 * 3 * MIN;
        // Delivered out of order, in part twice.
        let mut arrivals: Vec<&Record> = records.iter().collect();
        for i in 0..arrivals.len() {
            let j = (i + rng.gen_range(0..8)).min(arrivals.len() - 1);
            arrivals.swap(i, j);
        }
        let again: Vec<&Record> = arrivals
            .iter()
            .filter(|_| rng.gen_bool(0.1))
            .copied()
            .collect();
        arrivals.extend(again);

        let mut kept = timeline();
        let mut now = T0;
        let mut latest = T0;
        let mut views = 0;
        let mut settled = 0;
        for (i, (id, author, body)) in arrivals.iter().enumerate() {
            kept.add(*id, *author, body);
            latest = latest.max(claimed(body));
            if rng.gen_bool(0.3) || i + 1 == arrivals.len() {
                now = match rng.gen_range(0..10) {
                    // The clock set back.
                    0 => now.saturating_sub(rng.gen_range(0..30 * MIN)).max(T0),
                    // Far on: every deadline past.
                    1 => end + 60 * MIN,
                    // About the time of the latest record held.
                    _ => (latest + rng.gen_range(0..10 * MIN)).saturating_sub(5 * MIN),
                };
                let shown = kept.at(now);
                let replayed = kept.from_start(now);
                prop_assert_eq!(
                    &shown,
                    &replayed,
                    "view {} at {} after {} records",
                    views,
                    now - T0,
                    i + 1
                );
                views += 1;
                settled = settled.max(kept.settled_proposals());
            }
        }
        Ok(settled)
    }
}
