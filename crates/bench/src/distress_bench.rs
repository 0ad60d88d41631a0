//! `distress-bench`: time from `raise` to the signal being shown on every
//! node of a 50-node group (in process, release build, loopback, mDNS off,
//! real stores), p50 and p99; then the same while one member floods
//! (raises as fast as it can; its node refuses all but the charter's ten
//! per hour, and the ten it signs travel with the rest).
//!
//! Then help is coming (issue 18): on four nodes holding a hub, the region
//! above it and a treaty partner, the time for a call nobody answered to
//! climb into the region once its escalation time has passed, and the time
//! for an ack given there to show on the caller's node (carried down by a
//! node of a member of both), 20 calls.
//!
//! Run with `scripts/bench distress`; `NESTWORK_BENCH_QUICK=1` for a smoke
//! run (5 nodes, 10 signals; the 20 calls are quick either way).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nestwork_bench::{figure, ms, Better, Limit};
use nestwork_core::Hash32;
use nestwork_docs::distress::{Category, Severity};
use nestwork_node::distress::{Answering, RaiseRequest};
use nestwork_testkit::distress::{answer, held, nest, raise, seen};
use nestwork_testkit::{meshed_group, TestNode, TICK_EVERY};

const LIMIT: Duration = Duration::from_secs(120);

fn request(text: String) -> RaiseRequest {
    RaiseRequest {
        category: Category::Safety,
        severity: Severity::High,
        location: None,
        expires_secs: None,
        text,
    }
}

fn shown(n: &TestNode, group: &Hash32, signal: &Hash32) -> bool {
    n.node
        .distress_list(Some(&group.to_hex()), false)
        .is_ok_and(|l| l.iter().any(|s| s.view.id.hash32() == *signal))
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
                !(dirty[i].swap(false, Ordering::Relaxed) && shown(&nodes[i], group, &id.hash32()))
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

/// Wait, looking every 2 ms, until `cond` holds.
async fn poll(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < LIMIT, "{what} took over {LIMIT:?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Time `count` calls from the hub: each climbs to the region once due,
/// then an ack given there is carried back down to the caller.
async fn help_is_coming(count: usize) {
    let nest = nest().await;
    let [liaison, caller, in_region, _] = &nest.nodes[..] else {
        unreachable!("four nodes");
    };
    let (mut climbs, mut acks) = (Vec::new(), Vec::new());
    for k in 0..count {
        let id = raise(caller, &nest.hub, &format!("call {k}"));
        // The liaison's node counts the escalation time from when it first
        // held the call.
        held(liaison, &nest.hub, &id).await;
        // Past the escalation time (and far enough apart for the
        // charter's ten calls per member per hour).
        let start = Instant::now();
        nest.clock.advance(Duration::from_secs(7 * 60));
        poll("the call to climb into the region", || {
            seen(in_region, Some(&nest.region), &id).is_some()
        })
        .await;
        climbs.push(start.elapsed());
        let start = Instant::now();
        answer(in_region, &id, Answering::Ack, None);
        poll("the ack to reach the caller", || {
            seen(caller, Some(&nest.hub), &id).is_some_and(|v| !v.answers.is_empty())
        })
        .await;
        acks.push(start.elapsed());
    }
    climbs.sort();
    acks.sort();
    let p50 = |t: &[Duration]| ms(t[t.len() / 2]);
    let worst = |t: &[Duration]| ms(t[t.len() - 1]);
    println!(
        "help is coming, {count} calls: climb into the region once due p50 {:.1} ms, worst {:.1} ms; ack in the region -> shown on the caller's node p50 {:.1} ms, worst {:.1} ms",
        p50(&climbs),
        worst(&climbs),
        p50(&acks),
        worst(&acks)
    );
    let conditions = format!("4 in-process nodes: hub, region, treaty partner; {count} calls");
    for (label, pick) in [("p50", p50 as fn(&[Duration]) -> f64), ("worst", worst)] {
        figure(
            &format!("help_climb_{label}"),
            &format!("call climbs to the region once due, {label}"),
            pick(&climbs),
            "ms",
            Better::Lower,
            &conditions,
            Limit::Value(ms(TICK_EVERY), "the test nodes' ticker beat".into()),
        );
        figure(
            &format!("help_ack_{label}"),
            &format!("ack in the region shown on the caller's node, {label}"),
            pick(&acks),
            "ms",
            Better::Lower,
            &conditions,
            Limit::Figure(
                format!("help_climb_{label}"),
                "the call climbing to the region, same run".into(),
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
        nestwork_bench::build()
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
    drop(nodes);
    help_is_coming(20).await;
}
