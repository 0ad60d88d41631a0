//! `governance-bench`: time for a decision in a group of 20 in-process
//! nodes (release build, loopback, mDNS off, real stores): from the moment
//! the deciding vote is cast to the moment every node shows the proposal
//! passed and the amended charter. The outcome is computed from the
//! signed votes on each node, so this is the time for the vote to be
//! verified, stored and applied everywhere.
//!
//! Run with `scripts/bench governance`; `NESTWORK_BENCH_QUICK=1` for a
//! smoke run (5 nodes, 2 decisions).

use std::time::{Duration, Instant};

use nestwork_core::{Hash32, ProposalId};
use nestwork_docs::governance::{Choice, Outcome};
use nestwork_node::governance::{ProposeRequest, VoteRequest};
use nestwork_testkit::{meshed_group, wait_until, TestNode};

const LIMIT: Duration = Duration::from_secs(120);

fn outcome(n: &TestNode, group: &Hash32, proposal: &ProposalId) -> Option<(Outcome, usize)> {
    let view = n.node.proposals(&group.to_hex()).ok()?;
    let p = view
        .proposals
        .into_iter()
        .find(|p| p.state.id == *proposal)?;
    Some((p.state.outcome, p.state.votes.len()))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::var_os("NESTWORK_BENCH_QUICK").is_some();
    let (n, rounds) = if quick { (5, 2) } else { (20, 20) };
    println!(
        "nestwork governance benchmark ({} build), {n} nodes in one group, loopback, mDNS off",
        nestwork_bench::build()
    );
    let (nodes, group) = meshed_group(n, 11).await;
    // Quorum 50%, approval 60%: with n seats, the vote that makes yes reach
    // 60% of all seats decides at once.
    let deciding = (n * 60).div_ceil(100);
    let mut times = Vec::new();
    for round in 0..rounds {
        let p = nodes[0]
            .node
            .propose(
                &group.to_hex(),
                &ProposeRequest::AddArticle {
                    title: None,
                    text: format!("Article added in round {round}."),
                },
            )
            .expect("propose")
            .state
            .id;
        wait_until("the proposal everywhere", LIMIT, || {
            nodes.iter().all(|x| outcome(x, &group, &p).is_some())
        })
        .await;
        let yes = VoteRequest {
            choice: Choice::Yes,
            for_group: None,
        };
        for voter in &nodes[..deciding - 1] {
            voter.node.vote(&p.to_hex(), &yes).expect("vote");
        }
        wait_until("the earlier votes everywhere", LIMIT, || {
            nodes
                .iter()
                .all(|x| outcome(x, &group, &p).is_some_and(|(_, v)| v == deciding - 1))
        })
        .await;
        let cast = Instant::now();
        nodes[deciding - 1]
            .node
            .vote(&p.to_hex(), &yes)
            .expect("deciding vote");
        let mut pending: Vec<&TestNode> = nodes.iter().collect();
        while !pending.is_empty() {
            pending.retain(|x| outcome(x, &group, &p).map(|(o, _)| o) != Some(Outcome::Passed));
            assert!(
                cast.elapsed() < LIMIT,
                "the decision did not reach every node"
            );
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        times.push(cast.elapsed());
    }
    times.sort();
    let ms = nestwork_bench::ms;
    nestwork_bench::figure(
        "decision",
        &format!("time for a decision, {n} nodes"),
        ms(times[times.len() / 2]),
        "ms",
        nestwork_bench::Better::Lower,
        &format!("deciding vote cast -> its decision record accepted (PASSED) on all {n} nodes, median of {rounds}"),
        nestwork_bench::Limit::None,
    );
    println!(
        "time for a decision (deciding vote cast -> its decision record accepted, PASSED, on all {n} nodes), {rounds} decisions: p50 {:.1} ms, max {:.1} ms",
        ms(times[times.len() / 2]),
        ms(times[times.len() - 1])
    );
}
