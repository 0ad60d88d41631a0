//! `soak`: N real `nestwork` nodes (separate processes, release build found
//! beside this program) on loopback with mDNS off, one group, under a
//! steady load of payments (plus a distress signal and a proposal now and
//! then) for a given time. Every sample period it prints each node's
//! resident memory (RSS, from /proc) beside what the node says it holds;
//! at the end it checks that every node agrees on every balance, then
//! restarts the first node cold on the same store to measure what a node
//! holding that history needs when it starts (the limit the running figure
//! is held against).
//!
//! Run it with `scripts/soak` (see there for the knobs). It never fails
//! for being slow; it fails if the nodes disagree or a request errs.
//!
//! Traffic stays on 127.0.0.1: nodes listen on `/ip4/127.0.0.1/tcp/0`,
//! tickets carry only those addresses, and mDNS is off.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nestwork_api::client::Client;
use nestwork_api::wire::BalanceView;
use nestwork_api::StatusReport;
use nestwork_bench::process::{nestwork_binary, run_cmd, Proc};
use nestwork_bench::{figure, Better, Limit};
use nestwork_core::Hash32;
use nestwork_docs::distress::{Category, Severity};
use nestwork_node::node::{CreateGroup, PayRequest};
use nestwork_node::DataDir;

struct Knobs {
    nodes: usize,
    secs: u64,
    clients: usize,
    sample_secs: u64,
    /// A command line put before the first node's `nestwork` (a heap
    /// profiler: `heaptrack -o FILE`).
    wrap_first: Option<String>,
    keep: Option<PathBuf>,
}

fn env_num(name: &str, default: u64) -> anyhow::Result<u64> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .with_context(|| format!("{name}={v:?} is not a whole number")),
        Err(_) => Ok(default),
    }
}

impl Knobs {
    /// From `NESTWORK_SOAK_*` (see the file's head).
    fn from_env() -> anyhow::Result<Knobs> {
        Ok(Knobs {
            nodes: env_num("NESTWORK_SOAK_NODES", 3)?.max(2) as usize,
            secs: env_num("NESTWORK_SOAK_SECS", 60)?,
            clients: env_num("NESTWORK_SOAK_CLIENTS", 4)?.max(1) as usize,
            sample_secs: env_num("NESTWORK_SOAK_SAMPLE", 10)?.max(1),
            wrap_first: std::env::var("NESTWORK_SOAK_WRAP")
                .ok()
                .filter(|s| !s.trim().is_empty()),
            keep: std::env::var_os("NESTWORK_SOAK_KEEP").map(PathBuf::from),
        })
    }
}

fn main() -> anyhow::Result<()> {
    let knobs = Knobs::from_env()?;
    let bin = nestwork_binary()?;
    let tmp = tempfile::tempdir()?;
    let root = match &knobs.keep {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            dir.clone()
        }
        None => tmp.path().to_path_buf(),
    };
    println!(
        "soak: {} nodes, {} s, {} paying clients per node, samples every {} s ({} build of {})",
        knobs.nodes,
        knobs.secs,
        knobs.clients,
        knobs.sample_secs,
        nestwork_bench::build(),
        bin.display()
    );
    println!("data under {}", root.display());

    let (dirs, mut nodes) = start_nodes(&bin, &root, &knobs)?;
    let clients: Vec<Client> = dirs.iter().map(Client::connect).collect::<Result<_, _>>()?;
    let group = form_group(&clients)?;
    let members: Vec<String> = clients
        .iter()
        .map(|c| Ok(c.status()?.node.member))
        .collect::<anyhow::Result<_>>()?;

    let stop = Arc::new(AtomicBool::new(false));
    let paid = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let load = Load {
        stop: stop.clone(),
        paid: paid.clone(),
        errors: errors.clone(),
    };
    let mut workers = spawn_payers(&dirs, &members, &group, knobs.clients, &load);
    workers.push(spawn_business(&dirs, &group, &load));

    let samples = sample(&nodes, &clients[0], &paid, &knobs);
    let (first, last, peak, start) = (samples.first, samples.last, samples.peak, samples.start);
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join()
            .map_err(|_| anyhow::anyhow!("a client panicked"))??;
    }
    let total = paid.load(Ordering::Relaxed);
    let errs = errors.load(Ordering::Relaxed);
    println!();
    println!(
        "{total} payments acknowledged in {:.0} s ({:.0}/s), {errs} requests refused",
        start.elapsed().as_secs_f64(),
        total as f64 / start.elapsed().as_secs_f64()
    );
    for (i, c) in clients.iter().enumerate() {
        if let Some(net) = c.status()?.network {
            println!("node{}: {}", i + 1, traffic(&net));
        }
    }

    // Agreement: every node ends with the same balances over the same
    // number of payments.
    let agreed = wait_for_agreement(
        &clients,
        &group,
        Duration::from_secs(env_num("NESTWORK_SOAK_SETTLE", 300)?),
    )?;
    print_agreement(knobs.nodes, &agreed);

    report_growth(first, &last, &peak, agreed.payments as u64, knobs.secs);

    // The limit: the first node started cold on the same store.
    for n in nodes.drain(..) {
        n.stop()?;
    }
    let cold_rss = cold_start(&bin, &dirs[0])?;
    let conditions = format!(
        "{} nodes on loopback, {} clients each, {} s, {} payments",
        knobs.nodes, knobs.clients, knobs.secs, agreed.payments
    );
    figures(&conditions, last.1[0], cold_rss);
    if errs > 0 && errs * 100 > total {
        bail!("{errs} of {} requests were refused", total + errs);
    }
    Ok(())
}

/// What the load threads share: when to stop, and what they counted.
#[derive(Clone)]
struct Load {
    stop: Arc<AtomicBool>,
    paid: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
}

type Worker = std::thread::JoinHandle<anyhow::Result<()>>;

/// `clients` paying threads per node, each node paying the next one.
fn spawn_payers(
    dirs: &[DataDir],
    members: &[String],
    group: &Hash32,
    clients: usize,
    load: &Load,
) -> Vec<Worker> {
    let mut workers = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        // Each node pays the next one round the ring, so balances stay
        // near zero and no limit is reached however long it runs.
        let to = members[(i + 1) % members.len()].clone();
        for c in 0..clients {
            let (dir, to) = (dir.clone(), to.clone());
            let Load { stop, paid, errors } = load.clone();
            let group_hex = group.to_hex();
            workers.push(std::thread::spawn(move || -> anyhow::Result<()> {
                let client = Client::connect(&dir)?;
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let req = PayRequest {
                        to: to.clone(),
                        amount: 1,
                        memo: format!("soak {c}/{n}"),
                        request_id: Some(format!("soak-{c}-{n}")),
                    };
                    match client.pay(&group_hex, &req) {
                        Ok(_) => {
                            paid.fetch_add(1, Ordering::Relaxed);
                            n += 1;
                        }
                        Err(e) => {
                            if errors.fetch_add(1, Ordering::Relaxed) < 5 {
                                eprintln!("payment refused: {e}");
                            }
                            std::thread::sleep(Duration::from_millis(50));
                            n += 1;
                        }
                    }
                }
                Ok(())
            }));
        }
    }
    workers
}

/// Now and then a distress signal and a proposal, from each node in turn.
fn spawn_business(dirs: &[DataDir], group: &Hash32, load: &Load) -> Worker {
    let dirs = dirs.to_vec();
    let Load { stop, errors, .. } = load.clone();
    let g = group.to_hex();
    std::thread::spawn(move || -> anyhow::Result<()> {
        let clients: Vec<Client> = dirs.iter().map(Client::connect).collect::<Result<_, _>>()?;
        const SIGNAL_EVERY: Duration = Duration::from_secs(390);
        let mut last_signal: Vec<Option<Instant>> = vec![None; clients.len()];
        let mut round = 0usize;
        let mut next = Instant::now() + Duration::from_secs(20);
        while !stop.load(Ordering::Relaxed) {
            if Instant::now() < next {
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
            next += Duration::from_secs(20);
            let turn = round % clients.len();
            let c = &clients[turn];
            round += 1;
            let mut refused = Vec::new();
            // Each member raises a signal at most every 6.5 minutes,
            // under the charter's 10 per member per hour (one every
            // turn was refused after 10 minutes of a long soak).
            if last_signal[turn].is_none_or(|t: Instant| t.elapsed() >= SIGNAL_EVERY) {
                last_signal[turn] = Some(Instant::now());
                let signal = nestwork_api::wire::RaiseRequest {
                    category: Category::Other,
                    severity: Severity::Low,
                    location: None,
                    expires_secs: Some(600),
                    text: format!("soak signal {round}"),
                };
                let raised = c.raise(&g, &signal);
                refused.extend(raised.err().map(|e| e.to_string()));
            }
            let proposal = nestwork_api::wire::ProposeRequest::AddArticle {
                title: None,
                text: format!("Soak article {round}"),
            };
            let proposed = c.propose(&g, &proposal);
            refused.extend(proposed.err().map(|e| e.to_string()));
            for e in refused {
                errors.fetch_add(1, Ordering::Relaxed);
                eprintln!("signal or proposal refused: {e}");
            }
        }
        Ok(())
    })
}

/// What the sampling saw: (payments, RSS per node) at the first sample and
/// the last, and each node's peak RSS.
struct Samples {
    start: Instant,
    first: Option<(u64, Vec<u64>)>,
    last: (u64, Vec<u64>),
    peak: Vec<u64>,
}

/// Print each node's RSS and what the first node holds every
/// `knobs.sample_secs`, for `knobs.secs`.
fn sample(nodes: &[Proc], first_client: &Client, paid: &AtomicU64, knobs: &Knobs) -> Samples {
    let header: Vec<String> = (1..=knobs.nodes).map(|i| format!("node{i} MiB")).collect();
    println!();
    println!(
        "{:>6} {:>9} {}   what node1 holds",
        "t s",
        "payments",
        header
            .iter()
            .map(|h| format!("{h:>11}"))
            .collect::<String>()
    );
    let start = Instant::now();
    let mut first: Option<(u64, Vec<u64>)> = None;
    let mut last: (u64, Vec<u64>);
    let mut peak = vec![0u64; knobs.nodes];
    loop {
        let t = start.elapsed();
        let rss: Vec<u64> = nodes.iter().map(|n| n.rss_bytes()).collect();
        for (p, r) in peak.iter_mut().zip(&rss) {
            *p = (*p).max(*r);
        }
        let held = first_client
            .status()
            .map(|s| holding(&s))
            .unwrap_or_else(|e| format!("status failed: {e}"));
        let n = paid.load(Ordering::Relaxed);
        println!(
            "{:>6} {:>9} {}   {held}",
            t.as_secs(),
            n,
            rss.iter()
                .map(|r| format!("{:>11.1}", mib(*r)))
                .collect::<String>()
        );
        if first.is_none() && t >= Duration::from_secs(knobs.sample_secs.min(knobs.secs)) {
            first = Some((n, rss.clone()));
        }
        last = (n, rss);
        if t >= Duration::from_secs(knobs.secs) {
            break;
        }
        let next = Duration::from_secs((t.as_secs() / knobs.sample_secs + 1) * knobs.sample_secs);
        std::thread::sleep(next.saturating_sub(start.elapsed()));
    }
    Samples {
        start,
        first,
        last,
        peak,
    }
}

/// Growth while running, per payment of history, between the first sample
/// and the last.
fn report_growth(
    first: Option<(u64, Vec<u64>)>,
    last: &(u64, Vec<u64>),
    peak: &[u64],
    payments: u64,
    secs: u64,
) {
    let (n0, rss0) = first.unwrap_or((0, vec![0; peak.len()]));
    let history = payments as f64;
    for i in 0..peak.len() {
        let grew = last.1[i] as f64 - rss0[i] as f64;
        let per = if last.0 > n0 {
            grew / (last.0 - n0) as f64
        } else {
            0.0
        };
        println!(
            "node{}: RSS {:.1} MiB after {} s (peak {:.1}), {:+.1} MiB since the first sample: {:+.0} bytes per payment made since; {:.0} bytes per payment of history in all",
            i + 1,
            mib(last.1[i]),
            secs,
            mib(peak[i]),
            grew / (1u64 << 20) as f64,
            per,
            last.1[i] as f64 / history.max(1.0)
        );
    }
}

/// `knobs.nodes` nodes, each on a new data directory under `root`.
fn start_nodes(
    bin: &std::path::Path,
    root: &std::path::Path,
    knobs: &Knobs,
) -> anyhow::Result<(Vec<DataDir>, Vec<Proc>)> {
    let dirs: Vec<DataDir> = (0..knobs.nodes)
        .map(|i| DataDir::new(root.join(format!("node{}", i + 1))))
        .collect();
    let mut nodes = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        run_cmd(bin, dir, &["init"])?;
        let wrap = if i == 0 {
            knobs.wrap_first.as_deref()
        } else {
            None
        };
        nodes.push(Proc::start(bin, dir, wrap)?);
    }
    Ok((dirs, nodes))
}

/// Start a node cold on `dir`'s store and return its RSS a moment later.
fn cold_start(bin: &std::path::Path, dir: &DataDir) -> anyhow::Result<u64> {
    let cold = Proc::start(bin, dir, None)?;
    std::thread::sleep(Duration::from_secs(2));
    let cold_rss = cold.rss_bytes();
    let cold_status = Client::connect(dir)?.status()?;
    cold.stop()?;
    println!(
        "node1 started cold on the same store ({} payments): RSS {:.1} MiB ({})",
        cold_status.node.payments,
        mib(cold_rss),
        holding(&cold_status)
    );
    Ok(cold_rss)
}

/// The soak's two figures: a node's RSS at the end, beside the same node
/// started cold.
fn figures(conditions: &str, end_rss: u64, cold_rss: u64) {
    figure(
        "soak_rss_end",
        "RSS of a node at the end of the soak",
        mib(end_rss),
        "MiB",
        Better::Lower,
        conditions,
        Limit::Figure(
            "soak_rss_cold".into(),
            "the same node started cold on its store".into(),
        ),
    );
    figure(
        "soak_rss_cold",
        "RSS of that node started cold on its store",
        mib(cold_rss),
        "MiB",
        Better::Lower,
        conditions,
        Limit::None,
    );
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
}

/// What a node says it holds, in one line.
fn holding(s: &StatusReport) -> String {
    let n = &s.node;
    format!(
        "{} payments, {} in memory, periods {} loaded/{} on disk",
        n.payments, n.payments_in_memory, n.periods_loaded, n.periods_on_disk
    )
}

/// What a node's gossip and sync carried: how much of the load reached it
/// by gossip, and how much was left to sync.
fn traffic(net: &nestwork_net::NetStatus) -> String {
    let g = &net.gossip;
    format!(
        "gossip {} received ({} copies), {} accepted, {} ignored ({} held already, {} waited too long), {} shed unchecked, {} rejected; sync {} requests, {:.1} MiB in",
        g.unique_received,
        g.copies_received,
        g.accepted,
        g.ignored,
        g.known,
        g.waited,
        g.shed,
        g.rejected,
        net.sync_traffic.requests_sent,
        mib(net.sync_traffic.bytes_received)
    )
}

/// The first node founds a group with wide limits; every other node joins
/// it with an invite ticket. Returns the group once every node sees every
/// member.
fn form_group(clients: &[Client]) -> anyhow::Result<Hash32> {
    let view = clients[0].create_group(&CreateGroup {
        name: "Soak".into(),
        kind: None,
        parent: None,
        description: None,
        unit: Some("hours".into()),
        floor: Some(-1_000_000_000),
        ceiling: Some(1_000_000_000),
    })?;
    let group = view.id.hash32();
    for c in &clients[1..] {
        let invite = clients[0].invite(&group.to_hex(), Some(600))?;
        c.join(invite.ticket)?;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut all = true;
        for c in clients {
            let v = c.group(&group.to_hex());
            all &= v.is_ok_and(|v| v.members.len() == clients.len());
        }
        if all {
            return Ok(group);
        }
        if Instant::now() > deadline {
            bail!("the nodes did not all see every member within 60 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The balances `nodes` nodes agreed on, each account by its id's first
/// eight characters.
fn print_agreement(nodes: usize, agreed: &BalanceView) {
    println!(
        "all {} nodes agree: {} payments, balances {}",
        nodes,
        agreed.payments,
        agreed
            .accounts
            .iter()
            .map(|a| format!("{}={}", &a.account[..8.min(a.account.len())], a.balance))
            .collect::<Vec<_>>()
            .join(" ")
    );
}

/// Wait until every node shows the same payments count and balances.
fn wait_for_agreement(
    clients: &[Client],
    group: &Hash32,
    limit: Duration,
) -> anyhow::Result<BalanceView> {
    let deadline = Instant::now() + limit;
    let mut next_report = Instant::now() + Duration::from_secs(10);
    loop {
        let views: Vec<BalanceView> = clients
            .iter()
            .map(|c| c.balances(&group.to_hex(), None))
            .collect::<Result<_, _>>()?;
        let same = views.windows(2).all(|w| {
            w[0].payments == w[1].payments
                && w[0]
                    .accounts
                    .iter()
                    .map(|a| (&a.account, a.balance))
                    .eq(w[1].accounts.iter().map(|a| (&a.account, a.balance)))
        });
        if same && views.iter().all(|v| v.total == 0) {
            return views.into_iter().next().context("no node");
        }
        if Instant::now() >= next_report {
            next_report += Duration::from_secs(10);
            println!(
                "waiting for the nodes to agree: payments held {}",
                views
                    .iter()
                    .map(|v| v.payments.to_string())
                    .collect::<Vec<_>>()
                    .join(" / ")
            );
        }
        if Instant::now() > deadline {
            for (i, v) in views.iter().enumerate() {
                eprintln!(
                    "node{}: {} payments, balances {:?}",
                    i + 1,
                    v.payments,
                    v.accounts.iter().map(|a| a.balance).collect::<Vec<_>>()
                );
            }
            bail!("the nodes do not agree after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
