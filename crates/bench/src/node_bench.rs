//! `node-bench`: figures for the node on one machine, measured against the
//! real `nestwork` binary (release build, found beside this program).
//!
//! - time from `nestwork run` to the API answering, with an empty store and
//!   with 10,000 stored changes (median of several starts);
//! - durable changes per second through the API (each request is one signed
//!   change flushed to disk before the answer), with 1 and with 8 clients;
//! - for reference, how fast a 10,000-change bundle is verified and applied.
//!
//! Run it with `scripts/bench node`. `NESTWORK_BENCH_QUICK=1` shrinks every
//! size for a smoke run.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nestwork_bench::process::{nestwork_binary, run_cmd};
use nestwork_bench::{figure, ms, read_files, Better, Limit};

use anyhow::{bail, Context};
use nestwork_api::client::Client;
use nestwork_api::wire::CreateGroup;
use nestwork_core::ChangeBundle;
use nestwork_docs::{Charter, GroupGenesis, GroupKind, SignedDoc, Writer};
use nestwork_node::{identity, DataDir};

struct Sizes {
    starts: usize,
    stored_changes: usize,
    write_secs: u64,
}

fn main() -> anyhow::Result<()> {
    let quick = std::env::var_os("NESTWORK_BENCH_QUICK").is_some();
    let sizes = if quick {
        Sizes {
            starts: 2,
            stored_changes: 500,
            write_secs: 1,
        }
    } else {
        Sizes {
            starts: 5,
            stored_changes: 10_000,
            write_secs: 5,
        }
    };
    let bin = nestwork_binary()?;
    let tmp = tempfile::tempdir()?;
    let dir = DataDir::new(tmp.path().join("node"));
    run_cmd(&bin, &dir, &["init"])?;

    println!(
        "nestwork node benchmark ({} build of {})",
        nestwork_bench::build(),
        bin.display()
    );
    println!(
        "machine: {} cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    println!();

    let empty = median_start(&bin, &dir, sizes.starts)?;
    println!(
        "{:<52} {:>10.1} ms   (median of {})",
        "start to API ready, empty store",
        ms(empty),
        sizes.starts
    );
    let (read_empty, _) = read_files(&dir.store_dir())?;
    figure(
        "cold_start_empty",
        "cold start, empty store",
        ms(empty),
        "ms",
        Better::Lower,
        &format!("process start to API ready, median of {}", sizes.starts),
        Limit::Value(ms(read_empty), "time to read the store files".into()),
    );

    let (imported, import_time) = import_history(&bin, &dir, sizes.stored_changes)?;
    let stored = median_start(&bin, &dir, sizes.starts)?;
    println!(
        "{:<52} {:>10.1} ms   (median of {})",
        format!("start to API ready, {imported} stored changes"),
        ms(stored),
        sizes.starts
    );
    println!(
        "{:<52} {:>10.0} /s   ({imported} changes in {:.0} ms, one bundle)",
        "changes verified, applied and stored from a bundle",
        imported as f64 / import_time.as_secs_f64(),
        ms(import_time)
    );

    let flush_rate = sled_flush_rate(tmp.path(), Duration::from_secs(sizes.write_secs))?;
    println!(
        "{:<52} {:>10.0} /s   ({} s, insert + flush, nothing else)",
        "sled alone: durable writes", flush_rate, sizes.write_secs
    );
    let node = Node::start(&bin, &dir)?;
    print_write_rates(&dir, sizes.write_secs, flush_rate)?;
    let status = Client::connect(&dir)?.status()?;
    node.stop()?;
    println!();
    println!(
        "store: {} changes, {} bytes on disk",
        status.node.changes, status.node.store_bytes
    );
    Ok(())
}

/// Start the node, import a bundle of `changes` changes through its API
/// and stop it: how many it applied, and how long the import took.
fn import_history(bin: &Path, dir: &DataDir, changes: usize) -> anyhow::Result<(usize, Duration)> {
    let node = Node::start(bin, dir)?;
    let bundle = history_bundle(dir, changes)?;
    let client = Client::connect(dir)?;
    let bytes = bundle.encode();
    let t = Instant::now();
    let report = client.import(&bytes)?;
    let elapsed = t.elapsed();
    node.stop()?;
    Ok((report.applied, elapsed))
}

/// Durable changes per second through the running node's API, with 1 and
/// with 8 clients for `secs` each, against sled's own `flush_rate`.
fn print_write_rates(dir: &DataDir, secs: u64, flush_rate: f64) -> anyhow::Result<()> {
    for clients in [1usize, 8] {
        let rate = durable_writes(dir, clients, Duration::from_secs(secs))?;
        println!(
            "{:<52} {:>10.0} /s   ({} s)",
            format!("durable changes through the API, {clients} client(s)"),
            rate,
            secs
        );
        figure(
            &format!("durable_writes_{clients}"),
            &format!("durable writes per second, {clients} client(s)"),
            rate,
            "/s",
            Better::Higher,
            "through the API, each a signed change flushed before the answer",
            Limit::Value(flush_rate, "sled insert + flush alone".into()),
        );
    }
    Ok(())
}

/// Small inserts each flushed to disk, with sled alone, for `time`.
fn sled_flush_rate(tmp: &std::path::Path, time: Duration) -> anyhow::Result<f64> {
    let db = sled::Config::new()
        .path(tmp.join("sled-alone"))
        .cache_capacity(64 << 20)
        .open()?;
    let value = vec![7u8; 400];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < time {
        db.insert(n.to_be_bytes(), value.as_slice())?;
        db.flush()?;
        n += 1;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// A running node process.
struct Node {
    child: Child,
    started: Duration,
}

impl Node {
    fn start(bin: &Path, dir: &DataDir) -> anyhow::Result<Node> {
        let _ = std::fs::remove_file(dir.api_file());
        let t = Instant::now();
        let child = Command::new(bin)
            .arg("--data-dir")
            .arg(dir.root())
            .args(["run", "--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("spawning nestwork run")?;
        loop {
            if let Ok(c) = Client::connect(dir) {
                if c.status().is_ok() {
                    break;
                }
            }
            if t.elapsed() > Duration::from_secs(60) {
                bail!("node did not start within 60 s");
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        Ok(Node {
            child,
            started: t.elapsed(),
        })
    }

    fn stop(mut self) -> anyhow::Result<()> {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        self.child.wait()?;
        Ok(())
    }
}

fn median_start(bin: &Path, dir: &DataDir, n: usize) -> anyhow::Result<Duration> {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let node = Node::start(bin, dir)?;
        times.push(node.started);
        node.stop()?;
    }
    times.sort();
    Ok(times[times.len() / 2])
}

/// A group whose description was edited `changes - 1` times: `changes`
/// signed changes, made by this node's own key and device.
fn history_bundle(dir: &DataDir, changes: usize) -> anyhow::Result<ChangeBundle> {
    let writer = Writer::new(identity::load(dir)?, identity::device_tag(dir)?);
    let genesis = GroupGenesis {
        name: "Bench history".into(),
        kind: GroupKind::Hub,
        parent: None,
        unit: "hours".into(),
        created_at_ms: 1,
        nonce: rand::random(),
        charter: Charter::default(),
    };
    let (mut doc, first) = SignedDoc::create_group(&writer, genesis, 1)?;
    let mut all = vec![first];
    for i in 1..changes {
        all.extend(doc.set_description(&writer, &format!("edit number {i}"), 1 + i as u64)?);
    }
    Ok(ChangeBundle::of_group(doc.id(), all))
}

/// Each client owns a group and replaces its description as fast as the
/// node acknowledges.
fn durable_writes(dir: &DataDir, clients: usize, length: Duration) -> anyhow::Result<f64> {
    let setup = Client::connect(dir)?;
    let mut groups = Vec::new();
    for c in 0..clients {
        let view = setup.create_group(&CreateGroup {
            name: format!("writer {c} of {clients}"),
            ..Default::default()
        })?;
        groups.push(view.id.to_hex());
    }
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let handles: Vec<_> = groups
        .into_iter()
        .map(|group| {
            let (dir, done, stop) = (dir.clone(), done.clone(), stop.clone());
            std::thread::spawn(move || -> anyhow::Result<()> {
                let client = Client::connect(&dir)?;
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    client.describe(&group, format!("write {i}"))?;
                    done.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
                Ok(())
            })
        })
        .collect();
    std::thread::sleep(length);
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().map_err(|_| anyhow::anyhow!("writer panicked"))??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}
