//! `seal-bench`: what a new seal key costs (issue 13) in a group of 20
//! in-process nodes (loopback, mDNS off, real stores). Each round one
//! member leaves; timed from its exit being signed to the moment every
//! remaining member seals the group's gossip with the same new key (the
//! key record written by one member, sealed to each of the others, and
//! brought to them by gossip and sync). Also the bytes: the key record's
//! change (one box of 80 bytes per member) and the sync traffic all nodes
//! sent during the round.
//!
//! Run with `cargo run --release -p nestwork-bench --bin seal-bench`
//! (`scripts/bench seal`); `NESTWORK_BENCH_QUICK=1` for a smoke run (5
//! nodes, 2 rounds).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use nestwork_core::Hash32;
use nestwork_testkit::{meshed_group, TestNode};

const LIMIT: Duration = Duration::from_secs(120);

/// The key `n` seals `group`'s gossip with, and how many it holds.
async fn seal_of(n: &TestNode, group: &Hash32) -> (Option<String>, usize) {
    let status = n.net.status().await.expect("status");
    status
        .sync
        .into_iter()
        .find(|s| s.group.hash32() == *group)
        .map(|s| (s.seal_key, s.seal_keys_held))
        .unwrap_or_default()
}

async fn sync_bytes(nodes: &[TestNode]) -> u64 {
    let mut total = 0;
    for n in nodes {
        total += n
            .net
            .status()
            .await
            .expect("status")
            .sync_traffic
            .bytes_sent;
    }
    total
}

/// One rotation, as measured.
struct Round {
    /// Exit signed to every remaining member sealing with the new key.
    new_key: Duration,
    /// Exit signed to the exit being on every remaining member's roll.
    exit_everywhere: Duration,
    /// The bytes of the changes the rotation added (the key records).
    record_bytes: usize,
    /// The sync traffic all remaining members sent meanwhile.
    sync_bytes: u64,
}

/// `leaver` leaves `group`; wait for every one of `nodes` to seal with
/// the same new key, timing it and the exit's own spread.
async fn rotate(nodes: &[TestNode], leaver: TestNode, group: &Hash32) -> Round {
    let before: HashSet<Hash32> = nodes[0]
        .node
        .export(&group.to_hex())
        .expect("export")
        .changes
        .iter()
        .map(|c| c.hash)
        .collect();
    let (old_key, old_held) = seal_of(&nodes[0], group).await;
    let bytes_before = sync_bytes(nodes).await;
    let start = Instant::now();
    leaver.node.leave(&group.to_hex(), true).expect("leave");
    let exit = leaver.heads(group);
    let mut exit_everywhere: Option<Duration> = None;
    loop {
        if exit_everywhere.is_none()
            && nodes.iter().all(|x| {
                x.node
                    .charter(&group.to_hex())
                    .is_ok_and(|c| c.members.len() == nodes.len())
            })
        {
            exit_everywhere = Some(start.elapsed());
        }
        let mut keys = Vec::with_capacity(nodes.len());
        for x in nodes {
            keys.push(seal_of(x, group).await);
        }
        let agreed = keys[0].0.is_some()
            && keys[0].0 != old_key
            && keys
                .iter()
                .all(|(k, held)| *k == keys[0].0 && *held > old_held);
        if agreed {
            break;
        }
        assert!(
            start.elapsed() < LIMIT,
            "the remaining members did not agree on a new key"
        );
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
    let new_key = start.elapsed();
    let exit_everywhere = exit_everywhere.unwrap_or(new_key);
    let traffic = sync_bytes(nodes).await - bytes_before;
    let added: usize = nodes[0]
        .node
        .export(&group.to_hex())
        .expect("export")
        .changes
        .iter()
        .filter(|c| !before.contains(&c.hash) && !exit.contains(&c.hash))
        .map(|c| c.change.len() + c.signature.len() + 32 * 3)
        .sum();
    let _ = leaver.stop().await;
    Round {
        new_key,
        exit_everywhere,
        record_bytes: added,
        sync_bytes: traffic,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::var_os("NESTWORK_BENCH_QUICK").is_some();
    let (n, rounds) = if quick { (5, 2) } else { (20, 5) };
    println!(
        "nestwork seal key benchmark ({} build), {n} nodes in one group, loopback, mDNS off",
        nestwork_bench::build()
    );
    let (mut nodes, group) = meshed_group(n, 13).await;
    let mut times = Vec::new();
    let mut gossip_times = Vec::new();
    let mut record_bytes = Vec::new();
    let mut traffic = Vec::new();
    for _ in 0..rounds {
        let leaver = nodes.pop().expect("a member to leave");
        let round = rotate(&nodes, leaver, &group).await;
        times.push(round.new_key);
        gossip_times.push(round.exit_everywhere);
        traffic.push(round.sync_bytes);
        record_bytes.push((nodes.len(), round.record_bytes));
    }
    let ms = nestwork_bench::ms;
    let mut sorted = times.clone();
    sorted.sort();
    nestwork_bench::figure(
        "seal-rotation",
        &format!("time for a new seal key, {n} nodes"),
        ms(sorted[sorted.len() / 2]),
        "ms",
        nestwork_bench::Better::Lower,
        &format!(
            "exit signed -> every remaining member seals with the new key, median of {rounds}"
        ),
        nestwork_bench::Limit::Figure(
            "seal-exit-gossip".into(),
            "the exit itself reaching every remaining member by gossip".into(),
        ),
    );
    let mut g = gossip_times.clone();
    g.sort();
    nestwork_bench::figure(
        "seal-exit-gossip",
        &format!("time for an exit to reach all, {n} nodes"),
        ms(g[g.len() / 2]),
        "ms",
        nestwork_bench::Better::Lower,
        &format!("exit signed -> off the roll on every remaining member, median of {rounds}"),
        nestwork_bench::Limit::None,
    );
    for (i, t) in times.iter().enumerate() {
        let (members, bytes) = record_bytes[i];
        println!(
            "round {}: {members} remaining members, exit everywhere in {:.1} ms, new key everywhere in {:.1} ms; key records {bytes} bytes (signed change); sync traffic {} bytes",
            i + 1,
            ms(gossip_times[i]),
            ms(*t),
            traffic[i]
        );
    }
    println!(
        "time for a new seal key (exit signed -> all remaining members seal with it), {rounds} rotations starting at {n} nodes: p50 {:.1} ms, max {:.1} ms",
        ms(sorted[sorted.len() / 2]),
        ms(sorted[sorted.len() - 1])
    );
}
