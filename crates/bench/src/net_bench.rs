//! `net-bench`: figures for nodes replicating over libp2p on one machine
//! (release build, loopback, mDNS off, in-process nodes with real stores).
//!
//! - propagation: N nodes in one group; a change is made on one node after
//!   another, and the time until it is applied on every other node is
//!   measured (p50, p99), with the average number of copies of each gossip
//!   message a node receives;
//! - catch-up: a node that was offline while 10,000 changes were made
//!   reconnects: time, bytes on the sync protocol, round trips, against the
//!   size of the missing changes;
//! - repeat sync: the same node misses one more change and reconnects;
//! - ledger catch-up: a member's node that was offline while 20,000
//!   payments were made (20 ledger periods) reconnects: payments per
//!   second until it holds them all, beside what one node verifies.
//!
//! Run with `scripts/bench net`; `NESTWORK_BENCH_QUICK=1` for a smoke run;
//! `net-bench --ledger` for the ledger catch-up alone.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use nestwork_core::{ChangeBundle, Hash32, SignedChange};
use nestwork_docs::{SignedDoc, Writer};
use nestwork_net::{NetStatus, Replica};
use nestwork_node::ledger::period_id;
use nestwork_testkit::ledger_sim::LedgerSim;
use nestwork_testkit::{converged, group_of, key, loopback_config, wait_until, TestNode};
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;

use nestwork_bench::{figure, loopback_round_trip, ms, Better, Limit};

const LIMIT: Duration = Duration::from_secs(120);

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::var_os("NESTWORK_BENCH_QUICK").is_some();
    println!(
        "nestwork network benchmark ({} build)",
        nestwork_bench::build()
    );
    println!(
        "machine: {} cores, loopback, mDNS off",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    println!();
    let runs: &[(usize, usize)] = if quick {
        &[(5, 20)]
    } else {
        &[(10, 200), (50, 200)]
    };
    let ledger_payments = if quick { 3_000 } else { 20_000 };
    if std::env::args().any(|a| a == "--ledger") {
        ledger_catch_up(ledger_payments).await;
        return;
    }
    let rtt = loopback_round_trip().expect("loopback round trip");
    println!("loopback TCP round trip: {:.3} ms (median of 500)", ms(rtt));
    for &(n, changes) in runs {
        propagation(n, changes, rtt).await;
    }
    catch_up(if quick { 500 } else { 10_000 }).await;
    ledger_catch_up(ledger_payments).await;
}

/// Two members' nodes hold a group; `payments` are made (by the first
/// node's member and a third member without a node) while the second is
/// offline, and stored on the first; the second reconnects and catches up
/// by sync alone.
async fn ledger_catch_up(payments: usize) {
    const PERIOD: u32 = 1_000;
    let mut sim = LedgerSim::new(3, PERIOD);
    let group = sim.replica.group.group();
    let genesis = sim.replica.group.changes_since(&[]);
    // The sim's members 0 and 1 have the keys of seeds 1 and 2.
    let (a, b) = (TestNode::start(1).await, TestNode::start(2).await);
    for n in [&a, &b] {
        Replica::apply_remote(&*n.node, group.doc(), genesis.clone(), true).expect("genesis");
    }
    let mut by_period: BTreeMap<u64, Vec<SignedChange>> = BTreeMap::new();
    for _ in 0..payments {
        let (p, changes) = sim.pay();
        by_period.entry(p).or_default().extend(changes);
    }
    let periods = by_period.len();
    for (p, changes) in by_period {
        let report =
            Replica::apply_remote(&*a.node, period_id(&group, p), changes, false).expect("apply");
        assert!(
            report.rejected.is_empty() && report.missing_deps.is_empty(),
            "history applies on the first node"
        );
    }
    assert_eq!(a.node.status().payments, payments);
    let b0 = b.net.status().await.expect("status").sync_traffic;
    let start = Instant::now();
    b.connect(&a).await;
    let mut last = (0, Instant::now());
    loop {
        let held = b.node.status().payments;
        if held >= payments {
            break;
        }
        if held != last.0 {
            last = (held, Instant::now());
        } else if last.1.elapsed() > LIMIT {
            panic!("ledger catch-up stalled at {held} of {payments} payments");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = start.elapsed();
    let b1 = b.net.status().await.expect("status").sync_traffic;
    let rate = payments as f64 / took.as_secs_f64();
    println!();
    println!(
        "ledger catch-up after missing {payments} payments ({periods} periods): {:.2} s, {rate:.0} payments/s, {} sync requests",
        took.as_secs_f64(),
        b1.requests_sent - b0.requests_sent
    );
    figure(
        "ledger_catchup_rate",
        "ledger catch-up, payments per second",
        rate,
        "payments/s",
        Better::Higher,
        &format!("a member's node rejoins after {payments} payments ({periods} periods of {PERIOD}) were made without it"),
        Limit::Value(8_800.0, "payments one node verifies and applies per second (ledger-bench)".into()),
    );
    b.stop().await;
    a.stop().await;
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn propagation(n: usize, changes: usize, rtt: Duration) {
    let (nodes, group) = group_of(n).await;
    // Joining made a star around node 0; add random links (seeded) so the
    // group is a mesh, as it would be after discovery.
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for i in 1..n {
        for _ in 0..3 {
            let j = rng.gen_range(0..n);
            if j != i {
                nodes[i].connect(&nodes[j]).await;
            }
        }
    }
    warm_up(&nodes, group).await;

    let mut applied = applied_changes(&nodes);
    let before: Vec<NetStatus> = statuses(&nodes).await;
    let mut latencies = spread_times(&nodes, group, changes, &mut applied).await;
    latencies.sort();
    let after = statuses(&nodes).await;
    let (mut unique, mut copies) = (0u64, 0u64);
    for (b, a) in before.iter().zip(&after) {
        unique += a.gossip.unique_received - b.gossip.unique_received;
        copies += a.gossip.copies_received - b.gossip.copies_received;
    }
    println!(
        "propagation, {n:>2} nodes, {changes} changes: p50 {:>7.2} ms   p99 {:>7.2} ms   (made on one node -> applied and stored on all)",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99))
    );
    println!(
        "  gossip copies received per message per node: {:.2}   ({copies} copies of {unique} messages)",
        copies as f64 / unique.max(1) as f64
    );
    // The floor: a loopback round trip for every hop from the author to
    // the farthest node, over the connections the nodes actually hold.
    let hops = eccentricities(&nodes).await;
    let mut sorted = hops.clone();
    sorted.sort();
    let typical = sorted[sorted.len() / 2] as f64;
    let worst = *sorted.last().unwrap_or(&1) as f64;
    println!("  hops from an author to the farthest node: median {typical}, at most {worst}");
    let conditions = format!("{n} in-process nodes, one group, loopback, {changes} changes");
    for (q, label, h) in [(0.5, "p50", typical), (0.99, "p99", worst)] {
        figure(
            &format!("propagation{n}_{label}"),
            &format!("change propagation {label}, {n} nodes"),
            ms(percentile(&latencies, q)),
            "ms",
            Better::Lower,
            &conditions,
            Limit::Value(ms(rtt) * h, format!("loopback round trip x {h} hops")),
        );
    }
    figure(
        &format!("copies{n}"),
        &format!("copies received per unique message, {n} nodes"),
        copies as f64 / unique.max(1) as f64,
        "copies",
        Better::Lower,
        &conditions,
        Limit::Value(1.0, "one copy".into()),
    );
    for node in nodes {
        node.stop().await;
    }
}

/// Every node reports when it applies a change it received: the node's
/// index, the change, and the moment.
fn applied_changes(nodes: &[TestNode]) -> mpsc::Receiver<(usize, Hash32, Instant)> {
    let (tx, rx) = mpsc::channel::<(usize, Hash32, Instant)>(1 << 16);
    for (i, node) in nodes.iter().enumerate() {
        let mut events = node.node.subscribe();
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Ok(event) = events.recv().await {
                if !event.local {
                    let now = Instant::now();
                    for c in event.changes {
                        let _ = tx.send((i, c.hash, now)).await;
                    }
                }
            }
        });
    }
    rx
}

/// Make `changes` changes, one at a time, by each node in turn, each
/// timed from its making to its being applied on every other node (as
/// `applied` reports).
async fn spread_times(
    nodes: &[TestNode],
    group: Hash32,
    changes: usize,
    applied: &mut mpsc::Receiver<(usize, Hash32, Instant)>,
) -> Vec<Duration> {
    let n = nodes.len();
    let mut seen: HashMap<Hash32, Vec<Instant>> = HashMap::new();
    let mut latencies = Vec::with_capacity(changes);
    for k in 0..changes {
        let author = nodes[k % n].node.clone();
        let group_hex = group.to_hex();
        let start = Instant::now();
        let view = tokio::task::spawn_blocking(move || {
            author.describe(&group_hex, &format!("change number {k}"))
        })
        .await
        .expect("join")
        .expect("describe");
        let hash = *view.heads.first().expect("a head");
        let deadline = Instant::now() + LIMIT;
        while seen.get(&hash).map_or(0, Vec::len) < n - 1 {
            match tokio::time::timeout_at(deadline.into(), applied.recv()).await {
                Ok(Some((_, h, t))) => seen.entry(h).or_default().push(t),
                _ => panic!("change {k} did not reach every node within {LIMIT:?}"),
            }
        }
        let last = seen[&hash].iter().max().copied().unwrap_or(start);
        latencies.push(last.duration_since(start));
    }
    latencies
}

/// For each node, the most connection hops to any other node.
async fn eccentricities(nodes: &[TestNode]) -> Vec<usize> {
    let index: HashMap<String, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.peer().to_string(), i))
        .collect();
    let mut links: Vec<Vec<usize>> = Vec::with_capacity(nodes.len());
    for n in nodes {
        let peers = n.net.peers().await.expect("peers");
        links.push(
            peers
                .iter()
                .filter_map(|p| index.get(&p.peer).copied())
                .collect(),
        );
    }
    (0..nodes.len())
        .map(|from| {
            let mut dist = vec![usize::MAX; nodes.len()];
            dist[from] = 0;
            let mut queue = std::collections::VecDeque::from([from]);
            while let Some(i) = queue.pop_front() {
                for &j in &links[i] {
                    if dist[j] == usize::MAX {
                        dist[j] = dist[i] + 1;
                        queue.push_back(j);
                    }
                }
            }
            dist.into_iter()
                .filter(|d| *d != usize::MAX)
                .max()
                .unwrap_or(1)
                .max(1)
        })
        .collect()
}

async fn warm_up(nodes: &[TestNode], group: Hash32) {
    for round in 0..3 {
        let text = format!("warm up {round}");
        nodes[round % nodes.len()]
            .node
            .describe(&group.to_hex(), &text)
            .expect("describe");
        wait_until("warm-up change everywhere", LIMIT, || {
            nodes
                .iter()
                .all(|n| n.description(&group).as_deref() == Some(text.as_str()))
        })
        .await;
    }
    // Let gossipsub graft its meshes (heartbeat 700 ms).
    tokio::time::sleep(Duration::from_secs(2)).await;
}

async fn statuses(nodes: &[TestNode]) -> Vec<NetStatus> {
    let mut out = Vec::with_capacity(nodes.len());
    for n in nodes {
        out.push(n.net.status().await.expect("status"));
    }
    out
}

/// Make `missed` changes with A's key on another device and import them
/// on A in one step (so the benchmark does not wait for 10,000 flushes):
/// the history B misses. Returns A's changes before them, and their size.
fn import_missed(
    a: &TestNode,
    group: Hash32,
    missed: usize,
) -> (Vec<nestwork_core::SignedChange>, usize) {
    let mut replica = SignedDoc::empty(group);
    replica.apply(a.node.export(&group.to_hex()).expect("export").changes);
    let writer = Writer::new(key(1), [0xbb; 8]);
    let mut history = Vec::with_capacity(missed);
    for i in 0..missed {
        history.extend(
            replica
                .set_description(&writer, &format!("edit number {i}"), i as u64)
                .expect("edit"),
        );
    }
    let missing_bytes: usize = history.iter().map(|c| c.encode().len()).sum();
    let before: Vec<nestwork_core::SignedChange> =
        a.node.export(&group.to_hex()).expect("export").changes;
    a.node
        .import(ChangeBundle::of_group(group, history))
        .expect("import");
    (before, missing_bytes)
}

async fn catch_up(missed: usize) {
    let (mut nodes, group) = group_of(2).await;
    let (dir, seed, tmp) = nodes.pop().expect("b").stop().await;
    let a = nodes.pop().expect("a");

    let (before, missing_bytes) = import_missed(&a, group, missed);

    let b = TestNode::start_in(&dir, seed, loopback_config()).await;
    let a0 = a.net.status().await.expect("status").sync_traffic;
    let start = Instant::now();
    b.connect(&a).await;
    converged(&[&a, &b], &group, LIMIT).await;
    let took = start.elapsed();
    let (a1, b1) = (
        a.net.status().await.expect("status").sync_traffic,
        b.net.status().await.expect("status").sync_traffic,
    );
    let sync_bytes = (a1.bytes_sent - a0.bytes_sent) + (a1.bytes_received - a0.bytes_received);
    let round_trips = (a1.requests_sent - a0.requests_sent) + b1.requests_sent;
    println!();
    println!(
        "catch-up after missing {missed} changes: {:>8.1} ms   {} bytes   {} round trips   (missing changes: {missing_bytes} bytes)",
        ms(took),
        sync_bytes,
        round_trips
    );
    let full = a.node.export(&group.to_hex()).expect("export").changes;
    let (am_time, am_bytes, am_rounds) = automerge_sync(&before, &full);
    println!(
        "  automerge's own sync protocol, in memory, same documents: {:.1} ms   {am_bytes} bytes   {am_rounds} round trips",
        ms(am_time)
    );
    let conditions = format!("a node rejoins after {missed} changes were made without it");
    figure(
        "catchup_ms",
        &format!("catch-up after {missed} missed changes, time"),
        ms(took),
        "ms",
        Better::Lower,
        &conditions,
        Limit::Value(
            ms(am_time),
            "Automerge's sync protocol in memory on the same documents".into(),
        ),
    );
    figure(
        "catchup_bytes",
        &format!("catch-up after {missed} missed changes, bytes"),
        sync_bytes as f64,
        "bytes",
        Better::Lower,
        &conditions,
        Limit::Value(
            missing_bytes as f64,
            "bytes of the missing changes (signed)".into(),
        ),
    );
    figure(
        "catchup_automerge_bytes",
        "Automerge's sync protocol in memory, bytes (reference)",
        am_bytes as f64,
        "bytes",
        Better::Lower,
        &conditions,
        Limit::Value(
            missing_bytes as f64,
            "bytes of the missing changes (signed)".into(),
        ),
    );
    figure(
        "catchup_round_trips",
        &format!("catch-up after {missed} missed changes, round trips"),
        round_trips as f64,
        "round trips",
        Better::Lower,
        &conditions,
        Limit::Value(
            am_rounds as f64,
            "Automerge's sync protocol in memory".into(),
        ),
    );

    repeat_sync(&a, &b, &group).await;
    b.stop().await;
    a.stop().await;
    drop(tmp);
}

/// One more change while B is cut off, then reconnect: what the repeat
/// sync costs beside the change itself.
async fn repeat_sync(a: &TestNode, b: &TestNode, group: &Hash32) {
    a.net.block(b.peer()).await.expect("block");
    b.net.block(a.peer()).await.expect("block");
    wait_for_disconnect(a, b).await;
    let view = a
        .node
        .describe(&group.to_hex(), "one more")
        .expect("describe");
    let one = a.node.export(&group.to_hex()).expect("export").changes;
    let change_bytes = one
        .iter()
        .find(|c| view.heads.contains(&c.hash))
        .map(|c| c.encode().len())
        .unwrap_or(0);
    a.net.unblock(b.peer()).await.expect("unblock");
    b.net.unblock(a.peer()).await.expect("unblock");
    let (a2, b2) = (
        a.net.status().await.expect("status").sync_traffic,
        b.net.status().await.expect("status").sync_traffic,
    );
    let start = Instant::now();
    b.connect(a).await;
    converged(&[a, b], group, LIMIT).await;
    let took = start.elapsed();
    let (a3, b3) = (
        a.net.status().await.expect("status").sync_traffic,
        b.net.status().await.expect("status").sync_traffic,
    );
    let repeat_bytes = (a3.bytes_sent - a2.bytes_sent) + (a3.bytes_received - a2.bytes_received);
    let repeat_rounds =
        (a3.requests_sent - a2.requests_sent) + (b3.requests_sent - b2.requests_sent);
    println!(
        "repeat sync after one new change:        {:>8.1} ms   {} bytes   {} round trips   (the change: {change_bytes} bytes)",
        ms(took),
        repeat_bytes,
        repeat_rounds
    );
    let conditions = "a node reconnects after missing one change";
    figure(
        "repeat_bytes",
        "repeat sync after one new change, bytes",
        repeat_bytes as f64,
        "bytes",
        Better::Lower,
        conditions,
        Limit::Value(change_bytes as f64, "size of that change".into()),
    );
    figure(
        "repeat_round_trips",
        "repeat sync after one new change, round trips",
        repeat_rounds as f64,
        "round trips",
        Better::Lower,
        conditions,
        Limit::Value(1.0, "one round trip".into()),
    );
}

/// Automerge's own sync protocol between two in-memory documents, one
/// holding `have`, the other `full`: time, bytes both ways, round trips.
fn automerge_sync(
    have: &[nestwork_core::SignedChange],
    full: &[nestwork_core::SignedChange],
) -> (Duration, usize, usize) {
    use automerge::sync::{State, SyncDoc};
    let load = |changes: &[nestwork_core::SignedChange]| {
        let mut doc = automerge::Automerge::new();
        let parsed: Vec<automerge::Change> = changes
            .iter()
            .map(|c| automerge::Change::from_bytes(c.change.clone()).expect("a stored change"))
            .collect();
        doc.apply_changes(parsed).expect("apply");
        doc
    };
    let (mut behind, mut ahead) = (load(have), load(full));
    let (mut sb, mut sa) = (State::new(), State::new());
    let start = Instant::now();
    let (mut bytes, mut rounds) = (0usize, 0usize);
    // One message from `from` to `to`, through its encoded bytes; its size.
    fn pass(
        from: &automerge::Automerge,
        from_state: &mut State,
        to: &mut automerge::Automerge,
        to_state: &mut State,
    ) -> Option<usize> {
        let m = from.generate_sync_message(from_state)?.encode();
        let decoded = automerge::sync::Message::decode(&m).expect("decode");
        to.receive_sync_message(to_state, decoded).expect("receive");
        Some(m.len())
    }
    loop {
        let there = pass(&behind, &mut sb, &mut ahead, &mut sa);
        let back = pass(&ahead, &mut sa, &mut behind, &mut sb);
        let moved = there.is_some() || back.is_some();
        bytes += there.unwrap_or(0) + back.unwrap_or(0);
        if !moved {
            break;
        }
        rounds += 1;
    }
    (start.elapsed(), bytes, rounds)
}

async fn wait_for_disconnect(a: &TestNode, b: &TestNode) {
    for _ in 0..1000 {
        let peers = a.net.peers().await.expect("peers");
        if !peers.iter().any(|p| p.peer == b.peer().to_string()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the block did not disconnect");
}
