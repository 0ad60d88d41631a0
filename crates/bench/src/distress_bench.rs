//! `distress-bench`: time from `raise` to the signal being shown on every
//! node of a 50-node group (in process, release build, loopback, mDNS off,
//! real stores), p50 and p99; then the same while one member floods
//! (raises as fast as it can; its node refuses all but the charter's ten
//! per hour, and the ten it signs travel with the rest).
//!
//! Run with `scripts/bench distress`; `NESTWORK_BENCH_QUICK=1` for a smoke
//! run (5 nodes, 10 signals).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nestwork_bench::{figure, Better, Limit};
use nestwork_core::Hash32;
use nestwork_node::distress::RaiseRequest;
use nestwork_testkit::{meshed_group, TestNode};

const LIMIT: Duration = Duration::from_secs(120);

fn request(text: String) -> RaiseRequest {
    RaiseRequest {
        category: "safety".into(),
        severity: "high".into(),
        location: None,
        expires_secs: None,
        text,
    }
}

fn shown(n: &TestNode, group: &Hash32, signal: &Hash32) -> bool {
    n.node
        .distress_list(Some(&group.to_hex()), false)
        .is_ok_and(|l| l.iter().any(|s| s.view.id == *signal))
}

/// Raise `count` signals one after another (from members 2 to n-1 in turn) and
/// time each until every node shows it.
async fn run(
    nodes: &[TestNode],
    group: &Hash32,
    dirty: &[Arc<AtomicBool>],
    count: usize,
    from: usize,
) -> Vec<Duration> {
    let mut times = Vec::with_capacity(count);
    for k in 0..count {
        let raiser = &nodes[1 + (from + k) % (nodes.len() - 2)];
        for d in dirty {
            d.store(true, Ordering::Relaxed);
        }
        let start = Instant::now();
        let id = raiser
            .node
            .distress_raise(&group.to_hex(), &request(format!("signal {k}")))
            .expect("raise")
            .id;
        let mut pending: Vec<usize> = (0..nodes.len()).collect();
        while !pending.is_empty() {
            // Look only at nodes that stored something since the last look.
            pending.retain(|&i| {
                !(dirty[i].swap(false, Ordering::Relaxed) && shown(&nodes[i], group, &id))
            });
            assert!(start.elapsed() < LIMIT, "a signal did not reach every node");
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        times.push(start.elapsed());
    }
    times.sort();
    times
}

fn report(what: &str, key: &str, n: usize, times: &[Duration]) {
    let p =
        |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1000.0;
    println!(
        "{what}: raise -> shown on all {n} nodes, {} signals: p50 {:.1} ms, p99 {:.1} ms",
        times.len(),
        p(0.5),
        p(0.99)
    );
    for (q, label) in [(0.5, "p50"), (0.99, "p99")] {
        figure(
            &format!("distress_{key}_{label}"),
            &format!("distress signal delivery {label}, {what}"),
            p(q),
            "ms",
            Better::Lower,
            &format!("{n} in-process nodes, one group, {} signals", times.len()),
            Limit::Figure(
                format!("propagation{n}_{label}"),
                "change propagation at idle, same run".into(),
            ),
        );
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::var_os("NESTWORK_BENCH_QUICK").is_some();
    let (n, count) = if quick { (5, 10) } else { (50, 100) };
    println!(
        "nestwork distress benchmark ({} build), {n} nodes in one group, loopback, mDNS off",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    let (nodes, group) = meshed_group(n, 5).await;
    // Each node flags when it stores a change, so the benchmark looks only
    // where something arrived.
    let dirty: Vec<Arc<AtomicBool>> = nodes
        .iter()
        .map(|_| Arc::new(AtomicBool::new(true)))
        .collect();
    for (node, flag) in nodes.iter().zip(&dirty) {
        let mut events = node.node.subscribe();
        let flag = flag.clone();
        tokio::spawn(async move {
            while events.recv().await.is_ok() {
                flag.store(true, Ordering::Relaxed);
            }
        });
    }
    let idle = run(&nodes, &group, &dirty, count, 0).await;
    report("idle", "idle", n, &idle);

    // The last member floods from its node, 1,000 signals a second (the
    // issue's figure), for as long as the second run lasts.
    let stop = Arc::new(AtomicBool::new(false));
    let flooder = nodes[n - 1].node.clone();
    let g = group.to_hex();
    let stop_flag = stop.clone();
    let flood = tokio::task::spawn_blocking(move || {
        let (mut sent, mut refused) = (0u64, 0u64);
        let start = Instant::now();
        while !stop_flag.load(Ordering::Relaxed) {
            match flooder.distress_raise(&g, &request(format!("flood {sent}"))) {
                Ok(_) => sent += 1,
                Err(_) => refused += 1,
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        (sent, refused, start.elapsed())
    });
    let flooded = run(&nodes, &group, &dirty, count, count).await;
    stop.store(true, Ordering::Relaxed);
    let (sent, refused, took) = flood.await.expect("flood");
    report("one member flooding", "flood", n, &flooded);
    println!(
        "the flooder tried {} signals in {:.1} s ({:.0}/s): {sent} signed, {refused} refused by the rate limit",
        sent + refused,
        took.as_secs_f64(),
        (sent + refused) as f64 / took.as_secs_f64()
    );
}
