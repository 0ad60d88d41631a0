//! `ledger-bench`: figures for the mutual-credit ledger (issue 4).
//!
//! - payments per second one node verifies and applies from the network,
//!   in batches of 1,000 (signatures, chain links, causal-past limits,
//!   Automerge apply);
//! - the cost of receiving one payment after 1k, 10k, 100k and 1M payments
//!   of history (median of 200, each applied on its own);
//! - cold start and resident memory of a node whose store holds the whole
//!   history (measured in a fresh process that opens the store).
//!
//! Run it with `scripts/bench-ledger`. `NESTWORK_BENCH_QUICK=1` stops the
//! history at 10k for a smoke run.

use std::time::Instant;

use anyhow::Context;
use nestwork_core::{Hash32, MemberKey, SignedChange};
use nestwork_net::Replica;
use nestwork_node::ledger::period_id;
use nestwork_node::{DataDir, Node};
use nestwork_testkit::ledger_sim::LedgerSim;

const MEMBERS: usize = 20;
const PERIOD: u32 = 1_000;
const SAMPLES: usize = 200;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 3 && args[1] == "--open" {
        return open_and_report(&args[2]);
    }
    let quick = std::env::var_os("NESTWORK_BENCH_QUICK").is_some();
    let milestones: &[usize] = if quick {
        &[1_000, 10_000]
    } else {
        &[1_000, 10_000, 100_000, 1_000_000]
    };
    println!(
        "nestwork ledger benchmark ({} build), {MEMBERS} members, periods of {PERIOD} payments",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );

    // Throughput: a node receiving a backlog from the network.
    let mut sim = LedgerSim::new(MEMBERS, PERIOD);
    let backlog = if quick { 5_000 } else { 20_000 };
    let made: Vec<(u64, Vec<SignedChange>)> = (0..backlog).map(|_| sim.pay()).collect();
    let start = Instant::now();
    for chunk in made.chunks(1_000) {
        let mut by_period: std::collections::BTreeMap<u64, Vec<SignedChange>> = Default::default();
        for (p, c) in chunk {
            by_period.entry(*p).or_default().extend(c.iter().cloned());
        }
        for (p, changes) in by_period {
            let report = sim.replica.apply(p, changes);
            anyhow::ensure!(report.rejected.is_empty(), "backlog rejected");
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "verify and apply from the network, batches of 1000: {:.0} payments/s ({backlog} payments in {:.2} s)",
        backlog as f64 / secs,
        secs
    );

    // Cost per payment as history grows; the same history goes into a
    // real node's store for the cold start.
    let tmp = tempfile::tempdir()?;
    let data = DataDir::new(tmp.path().join("node"));
    data.ensure()?;
    let node = Node::open(&data, MemberKey::from_secret([1; 32]))?;
    let mut sim = LedgerSim::new(MEMBERS, PERIOD);
    let group = sim.replica.group.id();
    let genesis = sim.replica.group.changes_since(&[]);
    Replica::apply_remote(&node, group, genesis, true).map_err(anyhow::Error::msg)?;
    let mut done = 0;
    let build = Instant::now();
    for &target in milestones {
        // Leave the history half-way through a period so every size is
        // measured against a period document of the same size.
        let target = target + PERIOD as usize / 2;
        while done < target {
            let n = (target - done).min(1_000);
            let made: Vec<(u64, Vec<SignedChange>)> = (0..n).map(|_| sim.pay()).collect();
            feed(&mut sim, &node, group, &made)?;
            done += n;
        }
        let mut times = Vec::with_capacity(SAMPLES);
        let mut sampled = Vec::with_capacity(SAMPLES);
        for _ in 0..SAMPLES {
            let (period, changes) = sim.pay();
            let t = Instant::now();
            let report = sim.replica.apply(period, changes.clone());
            times.push(t.elapsed().as_secs_f64() * 1e6);
            anyhow::ensure!(report.applied.len() == changes.len(), "sample rejected");
            sampled.push((period, changes));
        }
        // The node gets the samples too, so its store matches.
        for (period, changes) in &sampled {
            Replica::apply_remote(&node, period_id(&group, *period), changes.clone(), false)
                .map_err(anyhow::Error::msg)?;
        }
        done += SAMPLES;
        times.sort_by(f64::total_cmp);
        println!(
            "receive one payment after {:>9} payments of history: median {:>6.0} µs, p90 {:>6.0} µs, {} held in memory   (history built in {:.0} s)",
            target,
            times[SAMPLES / 2],
            times[SAMPLES * 9 / 10],
            sim.held(),
            build.elapsed().as_secs_f64()
        );
    }
    node.close()?;
    drop(node);
    drop(sim);

    let me = std::env::current_exe()?;
    let out = std::process::Command::new(me)
        .arg("--open")
        .arg(data.root())
        .output()
        .context("cold start")?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    anyhow::ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// Deliver payments to the simulated replica and to the node (which
/// stores them).
fn feed(
    sim: &mut LedgerSim,
    node: &Node,
    group: Hash32,
    made: &[(u64, Vec<SignedChange>)],
) -> anyhow::Result<()> {
    let mut by_period: std::collections::BTreeMap<u64, Vec<SignedChange>> = Default::default();
    for (p, c) in made {
        by_period.entry(*p).or_default().extend(c.iter().cloned());
    }
    for (p, changes) in by_period {
        let report = sim.replica.apply(p, changes.clone());
        anyhow::ensure!(report.rejected.is_empty(), "history rejected");
        let report = Replica::apply_remote(node, period_id(&group, p), changes, false)
            .map_err(anyhow::Error::msg)?;
        anyhow::ensure!(
            report.rejected.is_empty() && report.missing_deps.is_empty(),
            "node refused history"
        );
    }
    Ok(())
}

/// Child mode: open the node's store, report load time and memory.
fn open_and_report(dir: &str) -> anyhow::Result<()> {
    let data = DataDir::new(dir);
    let start = Instant::now();
    let node = Node::open(&data, MemberKey::from_secret([1; 32]))?;
    let load = start.elapsed();
    let status = node.status();
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(|l| l.trim_start_matches("VmRSS:").trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    println!(
        "cold start of a node holding {} payments ({} changes, {} MB on disk): {:.2} s, resident memory {}",
        status.payments,
        status.changes,
        status.store_bytes / 1_000_000,
        load.as_secs_f64(),
        rss
    );
    Ok(())
}
