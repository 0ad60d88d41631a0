//! `flood-bench`: the memory a node holds while strangers flood it with
//! sync streams (issue 15). One real `nestwork` node (release build found
//! beside this program) listens on 127.0.0.1 with mDNS off; then N
//! strangers (fresh keys, no group in common; default 100), each with its
//! own libp2p swarm and connection, open M sync streams each (default 100).
//! On every stream a stranger claims a request of the largest size a
//! request may have, sends all of it but the last byte, and waits: what a
//! hostile peer does to make a node hold memory before it can tell whether
//! the peer is a member.
//!
//! It prints the node's resident memory before, at the peak, and after the
//! strangers leave, the slowest `status` answer while flooded (the node
//! must keep answering its member), and the bound the limits allow:
//! strangers × streams per connection × request limit.
//!
//! Knobs: `NESTWORK_FLOOD_STRANGERS` (100), `NESTWORK_FLOOD_STREAMS` (100),
//! `NESTWORK_FLOOD_SECS` (20, how long the flood is held);
//! `NESTWORK_BENCH_QUICK=1` makes them 10, 20 and 3 (a smoke run).
//! `NESTWORK_FLOOD_KEEP=DIR` keeps the node's data directory and log.
//!
//! Traffic stays on 127.0.0.1.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::{AsyncRead, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{noise, ping, request_response, tcp, yamux, Multiaddr, PeerId, StreamProtocol};
use nestwork_api::client::Client;
use nestwork_bench::process::{nestwork_binary, run_cmd, Proc};
use nestwork_bench::{figure, ms, Better, Limit};
use nestwork_core::limits::{MAX_REQUEST_BYTES, MAX_SYNC_STREAMS};
use nestwork_net::protocol::PROTOCOL;
use nestwork_node::DataDir;

fn env_num(name: &str, default: usize) -> anyhow::Result<usize> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .with_context(|| format!("{name}={v} is not a number")),
        Err(_) => Ok(default),
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// A stranger's side of a sync stream: claim a full request, send all but
/// its last byte, and hold the stream open.
#[derive(Clone, Default)]
struct ClaimAndHold;

impl request_response::Codec for ClaimAndHold {
    type Protocol = StreamProtocol;
    type Request = ();
    type Response = ();

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        _: &mut T,
    ) -> std::io::Result<()> {
        Err(std::io::Error::other("a stranger takes no requests"))
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        _: &mut T,
    ) -> std::io::Result<()> {
        futures::future::pending().await
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        _: (),
    ) -> std::io::Result<()> {
        io.write_all(&(MAX_REQUEST_BYTES as u32).to_be_bytes())
            .await?;
        io.write_all(&vec![0xAB; MAX_REQUEST_BYTES - 1]).await?;
        io.flush().await?;
        futures::future::pending().await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        _: &mut T,
        _: (),
    ) -> std::io::Result<()> {
        Ok(())
    }
}

/// A stranger answers pings, as a real peer would (a node closes a
/// connection that does not), and opens sync streams.
#[derive(NetworkBehaviour)]
struct Stranger {
    sync: request_response::Behaviour<ClaimAndHold>,
    ping: ping::Behaviour,
}

/// One stranger: its own key, swarm and connection, `streams` requests,
/// dialling again if the node turns the connection away while it is busy
/// with other handshakes.
async fn stranger(node: PeerId, addr: Multiaddr, streams: usize) -> anyhow::Result<()> {
    let hold = Duration::from_secs(600);
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_behaviour(|_| Stranger {
            sync: request_response::Behaviour::with_codec(
                ClaimAndHold,
                [(
                    StreamProtocol::new(PROTOCOL),
                    request_response::ProtocolSupport::Outbound,
                )],
                request_response::Config::default()
                    .with_request_timeout(hold)
                    .with_max_concurrent_streams(streams),
            ),
            ping: ping::Behaviour::default(),
        })?
        .with_swarm_config(|c| c.with_idle_connection_timeout(hold))
        .build();
    swarm.add_peer_address(node, addr.clone());
    for _ in 0..streams {
        swarm.behaviour_mut().sync.send_request(&node, ());
    }
    loop {
        match swarm.select_next_some().await {
            SwarmEvent::ConnectionEstablished { .. } => {
                FLOOD.connected.fetch_add(1, Ordering::Relaxed);
            }
            SwarmEvent::OutgoingConnectionError { .. } => {
                FLOOD.redials.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
                swarm.add_peer_address(node, addr.clone());
                for _ in 0..streams {
                    swarm.behaviour_mut().sync.send_request(&node, ());
                }
            }
            SwarmEvent::ConnectionClosed { cause, .. } => {
                FLOOD.closed.fetch_add(1, Ordering::Relaxed);
                if let Some(cause) = cause {
                    *FLOOD.why.lock().expect("lock") = cause.to_string();
                }
            }
            SwarmEvent::Behaviour(StrangerEvent::Sync(
                request_response::Event::OutboundFailure {
                    error: request_response::OutboundFailure::DialFailure,
                    ..
                },
            )) => {}
            SwarmEvent::Behaviour(StrangerEvent::Sync(
                request_response::Event::OutboundFailure { error, .. },
            )) => {
                FLOOD.failed.fetch_add(1, Ordering::Relaxed);
                *FLOOD.why.lock().expect("lock") = error.to_string();
            }
            _ => {}
        }
    }
}

/// What the strangers saw, for the report.
struct Seen {
    connected: AtomicUsize,
    redials: AtomicUsize,
    closed: AtomicUsize,
    failed: AtomicUsize,
    why: Mutex<String>,
}

static FLOOD: Seen = Seen {
    connected: AtomicUsize::new(0),
    redials: AtomicUsize::new(0),
    closed: AtomicUsize::new(0),
    failed: AtomicUsize::new(0),
    why: Mutex::new(String::new()),
};

fn main() -> anyhow::Result<()> {
    let quick = std::env::var_os("NESTWORK_BENCH_QUICK").is_some();
    let strangers = env_num("NESTWORK_FLOOD_STRANGERS", if quick { 10 } else { 100 })?;
    let streams = env_num("NESTWORK_FLOOD_STREAMS", if quick { 20 } else { 100 })?;
    let secs = env_num("NESTWORK_FLOOD_SECS", if quick { 3 } else { 20 })? as u64;

    let bin = nestwork_binary()?;
    let tmp = tempfile::tempdir()?;
    let root = match std::env::var_os("NESTWORK_FLOOD_KEEP") {
        Some(keep) => std::path::PathBuf::from(keep),
        None => tmp.path().join("node"),
    };
    let dir = DataDir::new(root);
    run_cmd(&bin, &dir, &["init"])?;
    let node = Proc::start(&bin, &dir, None)?;
    let client = Client::connect(&dir)?;
    let status = client.status()?;
    let peer: PeerId = status.node.member.parse().context("the node's id")?;
    let addr: Multiaddr = status
        .network
        .as_ref()
        .and_then(|n| n.listening.iter().find(|a| a.contains("/tcp/")))
        .context("the node listens on no TCP address")?
        .parse()?;
    std::thread::sleep(Duration::from_secs(2));
    let before = node.rss_bytes();
    println!(
        "node {} at {addr}: {:.1} MiB before the flood",
        status.node.member,
        mib(before)
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let tasks: Vec<_> = (0..strangers)
        .map(|_| runtime.spawn(stranger(peer, addr.clone(), streams)))
        .collect();
    println!("{strangers} strangers opening {streams} sync streams each, held {secs} s");

    let Watched {
        peak,
        most_connected,
        slowest_status,
    } = watch(&node, &client, before, secs)?;
    let flooded = client.status()?;
    let connected = flooded
        .network
        .as_ref()
        .map(|n| n.connected_peers)
        .unwrap_or(0);
    for t in &tasks {
        t.abort();
    }
    runtime.shutdown_timeout(Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(5));
    let after = node.rss_bytes();
    node.stop()?;

    let held_streams = strangers * streams.min(MAX_SYNC_STREAMS);
    let bound = (held_streams * MAX_REQUEST_BYTES) as u64;
    println!(
        "strangers connected: at most {most_connected} at once, {connected} at the end, of {strangers}; \
         {} connections made ({} dials turned away and made again), {} closed, \
         {} streams failed (last reason: {})\n\
         node memory: {:.1} MiB before, {:.1} MiB at the peak (+{:.1} MiB), {:.1} MiB after\n\
         the limits allow {held_streams} held streams ({strangers} x {}) x {} KiB = {:.1} MiB\n\
         slowest status answer while flooded: {:.1} ms",
        FLOOD.connected.load(Ordering::Relaxed),
        FLOOD.redials.load(Ordering::Relaxed),
        FLOOD.closed.load(Ordering::Relaxed),
        FLOOD.failed.load(Ordering::Relaxed),
        FLOOD.why.lock().expect("lock"),
        mib(before),
        mib(peak),
        mib(peak.saturating_sub(before)),
        mib(after),
        streams.min(MAX_SYNC_STREAMS),
        MAX_REQUEST_BYTES / 1024,
        mib(bound),
        ms(slowest_status),
    );
    let conditions = format!("{strangers} strangers x {streams} streams, {secs} s, loopback");
    print_figures(
        &conditions,
        mib(peak.saturating_sub(before)),
        mib(bound),
        slowest_status,
    );
    Ok(())
}

/// What the node looked like while flooded.
struct Watched {
    /// Its largest resident memory, bytes.
    peak: u64,
    /// The most peers it had connected at once.
    most_connected: usize,
    /// Its slowest answer to a status request.
    slowest_status: Duration,
}

/// Ask the node its status every 250 ms for `secs`, noting its memory
/// (from `before`, bytes), its peers and how long it takes to answer:
/// a node that is flooded must still answer its own user.
fn watch(node: &Proc, client: &Client, before: u64, secs: u64) -> anyhow::Result<Watched> {
    let started = Instant::now();
    let mut w = Watched {
        peak: before,
        most_connected: 0,
        slowest_status: Duration::ZERO,
    };
    while started.elapsed() < Duration::from_secs(secs) {
        let t = Instant::now();
        let now = client.status().context("status while flooded")?;
        w.most_connected = w
            .most_connected
            .max(now.network.map(|n| n.connected_peers).unwrap_or(0));
        w.slowest_status = w.slowest_status.max(t.elapsed());
        w.peak = w.peak.max(node.rss_bytes());
        std::thread::sleep(Duration::from_millis(250));
    }
    Ok(w)
}

/// The flood's figures for `scripts/bench`: the memory it added against
/// what the limits allow (`bound_mib`), and the slowest status answer.
fn print_figures(conditions: &str, growth_mib: f64, bound_mib: f64, slowest_status: Duration) {
    figure(
        "flood_rss_growth",
        "node memory added by a stranger flood",
        growth_mib,
        "MiB",
        Better::Lower,
        conditions,
        Limit::Value(
            bound_mib,
            "streams the limits let strangers hold x request limit".into(),
        ),
    );
    figure(
        "flood_status_ms",
        "slowest status answer during a stranger flood",
        ms(slowest_status),
        "ms",
        Better::Lower,
        conditions,
        Limit::None,
    );
}
