//! `ledger-bench`: figures for the mutual-credit ledger (issue 4).
//!
//! - payments per second one node verifies and applies from the network,
//!   in batches of 1,000 (signatures, chain links, causal-past limits,
//!   Automerge apply);
//! - the cost of receiving one payment after 1k, 10k, 100k and 1M payments
//!   of history (median of 200, each applied on its own);
//! - cold start and resident memory of a node whose store holds the whole
//!   history (measured in a fresh process that opens the store);
//! - a late payment: a member whose node heard nothing for a few periods
//!   pays, and the node counts the history below its base again (from a
//!   checkpoint) to judge it: the time that takes and the periods it reads
//!   back, beside the cost of a payment that comes on time.
//!
//! Run it with `scripts/bench ledger`, or `ledger-bench --late` for the
//! late payment alone. `NESTWORK_BENCH_QUICK=1` stops the history at 10k
//! (the late payment's at 12 periods) for a smoke run.

use std::time::Instant;

use anyhow::Context;
use nestwork_bench::{figure, ms, read_files, Better, Limit};
use nestwork_core::{GroupId, MemberKey, SignedChange};
use nestwork_net::Replica;
use nestwork_node::ledger::period_id;
use nestwork_node::{DataDir, Node};
use nestwork_testkit::ledger_sim::{sign_payment, LedgerSim};

const MEMBERS: usize = 20;
const PERIOD: u32 = 1_000;
const SAMPLES: usize = 200;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 3 && args[1] == "--open" {
        return open_and_report(&args[2]);
    }
    if args.len() == 2 && args[1] == "--late" {
        return late_payment(std::env::var_os("NESTWORK_BENCH_QUICK").is_some());
    }
    let quick = std::env::var_os("NESTWORK_BENCH_QUICK").is_some();
    let milestones: &[usize] = if quick {
        &[1_000, 10_000]
    } else {
        &[1_000, 10_000, 100_000, 1_000_000]
    };
    println!(
        "nestwork ledger benchmark ({} build), {MEMBERS} members, periods of {PERIOD} payments",
        nestwork_bench::build()
    );

    throughput(quick)?;
    let tmp = tempfile::tempdir()?;
    let data = DataDir::new(tmp.path().join("node"));
    cost_as_history_grows(&data, milestones)?;
    late_payment(quick)?;

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

/// Throughput: a node receiving a backlog from the network, beside
/// ed25519 batch verification alone.
fn throughput(quick: bool) -> anyhow::Result<()> {
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
    // The floor: ed25519 batch verification alone. Each payment carries two
    // signatures (its record's and its change's); the batch is timed on the
    // change signatures and counted twice.
    let signed: Vec<SignedChange> = made.iter().flat_map(|(_, c)| c.iter().cloned()).collect();
    let verify = Instant::now();
    for chunk in signed.chunks(1_000) {
        anyhow::ensure!(
            SignedChange::verify_all(chunk).iter().all(Result::is_ok),
            "a signature failed"
        );
    }
    let per_signature = verify.elapsed().as_secs_f64() / signed.len() as f64;
    let verify_rate = 1.0 / (2.0 * per_signature);
    println!(
        "  ed25519 batch verification alone, two signatures a payment: {verify_rate:.0} payments/s"
    );
    figure(
        "payments_per_sec",
        "payments verified and applied per second, one node",
        backlog as f64 / secs,
        "/s",
        Better::Higher,
        &format!("{backlog} payments from the network in batches of 1,000, {MEMBERS} members"),
        Limit::Value(
            verify_rate,
            "ed25519-dalek batch verification alone on the same signatures".into(),
        ),
    );
    Ok(())
}

/// Cost per payment as history grows past each of `milestones`; the same
/// history goes into a real node's store on `data` for the cold start.
fn cost_as_history_grows(data: &DataDir, milestones: &[usize]) -> anyhow::Result<()> {
    let mut cost_at_1k: Option<f64> = None;

    let mut sim = LedgerSim::new(MEMBERS, PERIOD);
    let (node, group) = joined(data, &sim)?;
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
        let median = times[SAMPLES / 2];
        let base = *cost_at_1k.get_or_insert(median);
        figure(
            &format!("payment_cost_{target}"),
            &format!("cost of one payment after {target} payments of history"),
            median,
            "µs",
            Better::Lower,
            &format!("median of {SAMPLES}, each applied on its own"),
            Limit::Value(base, "the same cost at 1.5k payments of history".into()),
        );
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
    Ok(())
}

/// A node on `data` that holds the simulation's group (no payment yet).
fn joined(data: &DataDir, sim: &LedgerSim) -> anyhow::Result<(Node, GroupId)> {
    data.ensure()?;
    let node = Node::open(data, MemberKey::from_secret([1; 32]))?;
    let group = sim.replica.group.group();
    let genesis = sim.replica.group.changes_since(&[]);
    Replica::apply_remote(&node, group.doc(), genesis, true).map_err(anyhow::Error::msg)?;
    Ok((node, group))
}

/// Deliver payments to the simulated replica and to the node (which
/// stores them).
fn feed(
    sim: &mut LedgerSim,
    node: &Node,
    group: GroupId,
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

/// A node holding `periods` periods receives a payment from the one
/// member who only received until then, whose node heard nothing for the
/// last `BEHIND` periods: the first delivery makes the node count the
/// history below its base again; the next (a peer's next sync) is judged.
fn late_payment(quick: bool) -> anyhow::Result<()> {
    const BEHIND: usize = 5;
    let periods = if quick { 12 } else { 100 };
    let tmp = tempfile::tempdir()?;
    let data = DataDir::new(tmp.path().join("late"));
    let mut sim = LedgerSim::new(MEMBERS, PERIOD);
    sim.payers = MEMBERS - 1;
    let (node, group) = joined(&data, &sim)?;
    let mut late = None;
    for done in 0..periods {
        let made: Vec<(u64, Vec<SignedChange>)> = (0..PERIOD).map(|_| sim.pay()).collect();
        feed(&mut sim, &node, group, &made)?;
        if done + BEHIND == periods {
            late = Some(sim.replica.clone());
        }
    }
    let mut on_time = Vec::new();
    for _ in 0..50 {
        let made = [sim.pay()];
        let t = Instant::now();
        feed(&mut sim, &node, group, &made)?;
        on_time.push(t.elapsed().as_secs_f64() * 1e3);
    }
    on_time.sort_by(f64::total_cmp);
    let on_time = on_time[on_time.len() / 2];

    let mut late = late.context("the late member's state")?;
    let to = sim.members()[0];
    let writer = sim.writer(MEMBERS - 1).clone();
    let (period, changes) = sign_payment(
        &mut late.ledger,
        group.hash32(),
        &writer,
        &late.group,
        to,
        1,
        "late",
    );
    let doc = period_id(&group, period);
    let start = Instant::now();
    let first =
        Replica::apply_remote(&node, doc, changes.clone(), false).map_err(anyhow::Error::msg)?;
    let again = Replica::apply_remote(&node, doc, changes, false).map_err(anyhow::Error::msg)?;
    let took = ms(start.elapsed());
    anyhow::ensure!(
        first.rejected.is_empty() && again.rejected.is_empty() && again.missing_deps.is_empty(),
        "the late payment was not taken"
    );
    let reread = node.memory().periods_reread;
    let newest = node.status().periods_on_disk + node.status().periods_loaded;
    println!(
        "a payment {BEHIND} periods late on {} payments of history: taken in {took:.0} ms, {reread} of {newest} periods read back (a payment on time: {on_time:.1} ms)",
        periods * PERIOD as usize
    );
    figure(
        "late_payment",
        "a payment 5 periods late, counted and taken",
        took,
        "ms",
        Better::Lower,
        &format!(
            "{} payments of history, periods of {PERIOD}, {reread} of {newest} periods read back",
            periods * PERIOD as usize
        ),
        Limit::Value(on_time, "a payment that comes on time".into()),
    );
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
    drop(node);
    let (read, bytes) = read_files(&data.store_dir())?;
    println!(
        "  reading the store's files alone: {:.2} s ({} MB)",
        read.as_secs_f64(),
        bytes / 1_000_000
    );
    let conditions = format!("{} payments in one group, fresh process", status.payments);
    figure(
        "cold_start_ledger",
        "cold start with a year of payments",
        ms(load),
        "ms",
        Better::Lower,
        &conditions,
        Limit::Value(ms(read), "time to read the store files".into()),
    );
    let kb: f64 = rss
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .unwrap_or(f64::NAN);
    figure(
        "resident_memory",
        "resident memory after the cold start",
        kb / 1024.0,
        "MiB",
        Better::Lower,
        &conditions,
        Limit::Value(
            bytes as f64 / (1024.0 * 1024.0),
            "size of the data on disk".into(),
        ),
    );
    Ok(())
}
