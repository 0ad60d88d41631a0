//! The event loop that owns the `Swarm`, and the handle the rest of the
//! node uses to talk to it.
//!
//! Work that waits for the disk (applying changes, which flushes) never runs
//! on the loop: it goes to `spawn_blocking` and comes back as a [`Done`]
//! message, so a slow disk or a flood of messages never stalls the swarm.
//! Incoming gossip is queued while a batch is being applied and the queue is
//! applied as the next batch: batching costs no latency when idle and keeps
//! up under load.
//!
//! What a sync session does next is decided by [`crate::sync::Sessions`],
//! a state machine with no I/O: the loop feeds it what happened (a
//! connection, a trigger, an answer, a failure, the result of disk work)
//! and carries out what it says (work out a request, send it, apply an
//! answer), in `sync_input` and `sync_output`.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, MessageId, TopicHash};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::SwarmEvent;
use libp2p::{
    dcutr, identify, mdns, noise, ping, relay, tcp, yamux, Multiaddr, PeerId, Swarm, SwarmBuilder,
};
use nestwork_core::{encoding, Hash32, MemberId, MemberKey, SignedChange};
use tokio::sync::{mpsc, oneshot};
use tokio_util::task::TaskTracker;

use crate::behaviour::{topic_score_params, Behaviour, BehaviourEvent, MAX_GOSSIP_BYTES};
use crate::protocol::{Request, Response, SYNC_BATCH_BYTES};
use crate::reach::{
    self, Attempt, Known, Link, Peer, Relay, INVITER_UNREACHABLE, JOIN_RETRY, JOIN_TIMEOUT,
};
use crate::sync::{self, Input, Output, Sessions};
use crate::ticket::Ticket;
use crate::topic::{docs_topic, short_key_id, GroupSeals, OpenError, ShortKeyId};
use crate::{
    ApplyReport, DocEvent, GossipCounts, GroupSync, NetConfig, NetError, NetStatus, PeerInfo,
    RelaySlot, Replica,
};

/// How long a gossip message whose changes wait for others is kept to be
/// judged again with the next batches, before it is given up (ignored, and
/// its sender asked by sync). Well inside the message cache (15 heartbeats,
/// 10.5 s), so that once its changes are stored it is still forwarded.
const GOSSIP_WAIT: Duration = Duration::from_secs(4);
/// Most change bytes kept waiting at once (past it, the newest are given
/// up at once). Small beside the queue's bound: what waits is judged again
/// with every batch, and honest gossip waits only briefly.
const MAX_WAITING_GOSSIP_BYTES: usize = 8 * 1024 * 1024;
/// Most change bytes waiting for validation. Gossip arrives while a batch
/// is checked; if checking falls behind by more than this, the oldest
/// waiting messages are shed (see `shed_overload`).
const MAX_QUEUED_GOSSIP_BYTES: usize = 64 * 1024 * 1024;
/// How often to compare heads with connected members and retry direct
/// connections to peers reached only through a relay.
const ANTI_ENTROPY: Duration = Duration::from_secs(15);
/// How often to look after connections: joins past their deadline, members
/// and relays to reach again (after a restart, a drop, a move).
const HOUSEKEEPING: Duration = Duration::from_secs(1);
/// Least time between two dials to the same member or relay.
const REDIAL_AFTER: Duration = Duration::from_secs(5);

/// Commands from the handle to the loop.
enum Command {
    Dial(Multiaddr, oneshot::Sender<Result<(), NetError>>),
    Peers(oneshot::Sender<Vec<PeerInfo>>),
    Status(oneshot::Sender<NetStatus>),
    Invite {
        group: Hash32,
        name: String,
        expires_at_ms: u64,
        reply: oneshot::Sender<Ticket>,
    },
    Join(Ticket, oneshot::Sender<Result<Hash32, String>>),
    Block(PeerId),
    Unblock(PeerId),
    /// Bytes to seal and publish on a group's topic, sealed at a given
    /// time (`None`: now).
    PublishRaw(Hash32, Vec<u8>, Option<u64>),
    ProbeSync(PeerId, Hash32, JoinReply),
    Shutdown(oneshot::Sender<()>),
}

/// A cheap, cloneable handle to the network.
#[derive(Clone)]
pub struct NetHandle {
    commands: mpsc::Sender<Command>,
}

/// The network has stopped.
#[derive(Debug, thiserror::Error)]
#[error("the network is not running")]
pub struct Stopped;

impl NetHandle {
    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, Stopped> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).await.map_err(|_| Stopped)?;
        rx.await.map_err(|_| Stopped)
    }

    /// Connect to a multiaddr.
    pub async fn dial(&self, addr: Multiaddr) -> Result<(), NetError> {
        self.ask(|tx| Command::Dial(addr, tx)).await?
    }

    /// Connected peers.
    pub async fn peers(&self) -> Result<Vec<PeerInfo>, Stopped> {
        self.ask(Command::Peers).await
    }

    /// Listening addresses, peers, per-group sync state.
    pub async fn status(&self) -> Result<NetStatus, Stopped> {
        self.ask(Command::Status).await
    }

    /// Issue an invite ticket for a group, valid until `expires_at_ms`.
    pub async fn invite(
        &self,
        group: Hash32,
        name: String,
        expires_at_ms: u64,
    ) -> Result<Ticket, Stopped> {
        self.ask(|reply| Command::Invite {
            group,
            name,
            expires_at_ms,
            reply,
        })
        .await
    }

    /// Join a group with a ticket: contact the inviter, be admitted, sync.
    pub async fn join(&self, ticket: Ticket) -> Result<Hash32, NetError> {
        self.ask(|tx| Command::Join(ticket, tx))
            .await?
            .map_err(NetError::Join)
    }

    /// Refuse all connections with `peer` (and drop current ones).
    pub async fn block(&self, peer: PeerId) -> Result<(), Stopped> {
        self.commands
            .send(Command::Block(peer))
            .await
            .map_err(|_| Stopped)
    }

    /// Undo [`NetHandle::block`].
    pub async fn unblock(&self, peer: PeerId) -> Result<(), Stopped> {
        self.commands
            .send(Command::Unblock(peer))
            .await
            .map_err(|_| Stopped)
    }

    /// Publish arbitrary bytes on a group's topic, sealed with the group
    /// key. Only for tests that play a hostile member; the node itself
    /// publishes only changes it made.
    #[doc(hidden)]
    pub async fn publish_raw(&self, group: Hash32, payload: Vec<u8>) -> Result<(), Stopped> {
        self.commands
            .send(Command::PublishRaw(group, payload, None))
            .await
            .map_err(|_| Stopped)
    }

    /// As [`NetHandle::publish_raw`], with the seal time `sealed_at_ms`
    /// (milliseconds since the epoch) instead of now. Only for tests that
    /// play someone replaying old gossip.
    #[doc(hidden)]
    pub async fn publish_raw_sealed_at(
        &self,
        group: Hash32,
        payload: Vec<u8>,
        sealed_at_ms: u64,
    ) -> Result<(), Stopped> {
        self.commands
            .send(Command::PublishRaw(group, payload, Some(sealed_at_ms)))
            .await
            .map_err(|_| Stopped)
    }

    /// Ask `peer` for a sync of `doc` as this node is, whether or not it
    /// holds the document, and return the answer's kind. Only for tests that
    /// play a stranger probing for a group's records.
    #[doc(hidden)]
    pub async fn probe_sync(&self, peer: PeerId, doc: Hash32) -> Result<String, NetError> {
        self.ask(|tx| Command::ProbeSync(peer, doc, tx))
            .await?
            .map(|h| h.to_hex())
            .map_err(NetError::Probe)
    }

    /// Stop the loop and wait for it.
    pub async fn shutdown(&self) {
        let _ = self.ask(Command::Shutdown).await;
    }
}

/// Convert between the two spellings of one identity.
pub fn peer_of(member: &MemberId) -> PeerId {
    PeerId::from_bytes(&member.to_peer_id_bytes())
        .expect("an ed25519 member id is always a valid peer id")
}

/// The member behind a peer id, if it is an ed25519 one.
pub fn member_of(peer: &PeerId) -> Option<MemberId> {
    MemberId::from_peer_id_bytes(&peer.to_bytes())
}

/// Start the network for `key` and return its handle. Listen addresses are
/// bound before this returns.
pub async fn spawn(
    config: NetConfig,
    key: MemberKey,
    replica: Arc<dyn Replica>,
) -> Result<NetHandle, NetError> {
    let (mut swarm, metrics, traffic) = build_swarm(&config, &key)?;
    listen(&mut swarm, &config).await?;
    let last_dial = dial_first_peers(&mut swarm, &config)?;
    let relays = relays_of(&config)?;

    let (commands, command_rx) = mpsc::channel(64);
    let (done_tx, done_rx) = mpsc::channel(256);
    let doc_events = replica.subscribe();
    let mut event_loop = EventLoop {
        swarm,
        key,
        replica,
        commands: command_rx,
        done_tx,
        done_rx,
        doc_events,
        seals: HashMap::new(),
        pending: HashMap::new(),
        gossip_queue: Vec::new(),
        gossip_waiting: Vec::new(),
        waiting_since: HashMap::new(),
        validating: false,
        sessions: Sessions::default(),
        peers: HashMap::new(),
        join_waiters: HashMap::new(),
        join_attempts: HashMap::new(),
        known: HashMap::new(),
        last_dial,
        resync: HashSet::new(),
        counts: GossipCounts::default(),
        relays,
        metrics,
        traffic,
        tasks: TaskTracker::new(),
    };
    for (group, genesis) in event_loop.replica.groups() {
        event_loop.subscribe(group, &genesis);
    }
    tokio::spawn(event_loop.run());
    Ok(NetHandle { commands })
}

/// The swarm for `key`, with its behaviours and their metrics, and the
/// sync codec's traffic counters.
fn build_swarm(
    config: &NetConfig,
    key: &MemberKey,
) -> Result<
    (
        Swarm<Behaviour>,
        prometheus_client::registry::Registry,
        Arc<crate::protocol::SyncTraffic>,
    ),
    NetError,
> {
    let keypair = libp2p::identity::Keypair::ed25519_from_bytes(key.secret_bytes())
        .map_err(|e| NetError::Key(e.to_string()))?;
    let (mdns_on, relay_server) = (config.mdns, config.relay_server);
    let mut metrics = prometheus_client::registry::Registry::default();
    let codec = crate::protocol::Codec::default();
    let traffic = codec.traffic.clone();
    let swarm = SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| NetError::Setup(e.to_string()))?
        .with_quic()
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .map_err(|e| NetError::Setup(e.to_string()))?
        .with_behaviour(|key, relay_client| {
            Behaviour::new(
                key,
                relay_client,
                mdns_on,
                relay_server,
                &mut metrics,
                codec,
            )
        })
        .map_err(|e| NetError::Setup(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
        .build();
    Ok((swarm, metrics, traffic))
}

/// Bind every listen address, and wait until each is bound, so callers can
/// hand out addresses; then announce the external ones.
async fn listen(swarm: &mut Swarm<Behaviour>, config: &NetConfig) -> Result<(), NetError> {
    for addr in &config.listen {
        let addr: Multiaddr = addr
            .parse()
            .map_err(|e| address("listen address", addr, e))?;
        swarm
            .listen_on(addr.clone())
            .map_err(|e| NetError::Listen {
                addr: addr.clone(),
                reason: e.to_string(),
            })?;
    }
    // Wait until every listener is bound, so callers can hand out addresses.
    let mut bound = 0;
    while bound < config.listen.len() {
        match tokio::time::timeout(Duration::from_secs(10), swarm.select_next_some()).await {
            Ok(SwarmEvent::NewListenAddr { .. }) => bound += 1,
            Ok(SwarmEvent::ListenerError { error, .. })
            | Ok(SwarmEvent::ListenerClosed {
                reason: Err(error), ..
            }) => return Err(NetError::ListenFailed(error.to_string())),
            Ok(_) => {}
            Err(_) => return Err(NetError::ListenTimeout),
        }
    }
    for addr in &config.external {
        let addr: Multiaddr = addr
            .parse()
            .map_err(|e| address("external address", addr, e))?;
        swarm.add_external_address(addr);
    }
    if config.relay_server && config.external.is_empty() {
        let concrete: Vec<Multiaddr> = swarm
            .listeners()
            .filter(|a| {
                !a.iter()
                    .any(|p| matches!(p, Protocol::Ip4(ip) if ip.is_unspecified()))
            })
            .cloned()
            .collect();
        tracing::info!(addrs = ?concrete, "serving as a relay; announcing listen addresses (set network.external to override)");
        for addr in concrete {
            swarm.add_external_address(addr);
        }
    }
    Ok(())
}

/// Dial the configured bootstrap peers and relays once, each address once;
/// returns when each peer was dialled.
fn dial_first_peers(
    swarm: &mut Swarm<Behaviour>,
    config: &NetConfig,
) -> Result<HashMap<PeerId, Instant>, NetError> {
    let mut first_dials: Vec<&String> = Vec::new();
    for addr in config.bootstrap.iter().chain(config.relays.iter()) {
        if !first_dials.contains(&addr) {
            first_dials.push(addr);
        }
    }
    let mut last_dial = HashMap::new();
    for addr in first_dials {
        let addr: Multiaddr = addr.parse().map_err(|e| address("peer address", addr, e))?;
        let Some(Protocol::P2p(peer)) = addr.iter().last() else {
            return Err(NetError::NoPeerId(addr));
        };
        swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
        last_dial.insert(peer, Instant::now());
        if let Err(e) = swarm.dial(addr.clone()) {
            tracing::warn!(%addr, error = %e, "cannot dial configured peer");
        }
    }
    Ok(last_dial)
}

/// The configured relays, none reserved yet.
fn relays_of(config: &NetConfig) -> Result<HashMap<PeerId, Relay>, NetError> {
    // A slot on each relay is reserved once the connection to it is up
    // (reserving while the first dial is in flight makes the relay client
    // dial again and give up); see `reserve_on_relay`.
    let mut relays = HashMap::new();
    for relay in &config.relays {
        let addr: Multiaddr = relay
            .parse()
            .map_err(|e| address("relay address", relay, e))?;
        if let Some(Protocol::P2p(peer)) = addr.iter().last() {
            relays.insert(
                peer,
                Relay {
                    addr,
                    listener: None,
                    reserved: false,
                },
            );
        }
    }
    Ok(relays)
}

/// A configured address that does not parse.
fn address(what: &'static str, addr: &str, error: libp2p::multiaddr::Error) -> NetError {
    NetError::Address {
        what,
        addr: addr.to_string(),
        reason: error.to_string(),
    }
}

/// Where the answer to a join goes.
type JoinReply = oneshot::Sender<Result<Hash32, String>>;

/// A gossip message waiting for validation: its id, who sent it, the group
/// whose topic carried it, and its changes (all of one document).
type Queued = (MessageId, PeerId, Hash32, Vec<SignedChange>);

/// What became of a validated gossip message's changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    /// Something new was stored: forward it.
    Accepted,
    /// A change is invalid in itself: the forwarder pays.
    Rejected,
    /// Nothing new: every change was here already (most often brought by
    /// a sync first), or forks its device's history.
    Known,
    /// A change waits for changes this node lacks (gossip arrives in any
    /// order: a payment before the one it builds on, a ledger period
    /// before the closing it cites). The message is kept and judged again
    /// with the next batch, for up to [`GOSSIP_WAIT`].
    Waiting,
}

/// [`validate_batch`], which must not take the loop down with it: without
/// an answer the loop would never validate again (`validating` stays set)
/// and its queue would grow without bound. A panic (a bug, or a decoder
/// tripping on hostile bytes) sends the batch through again message by
/// message; the message that panics alone is rejected, the others are
/// judged as usual.
fn validate_guarded(replica: &dyn Replica, batch: &[Queued]) -> Vec<Verdict> {
    let run = |part: &[Queued]| catch_unwind(AssertUnwindSafe(|| validate_batch(replica, part)));
    if let Ok(done) = run(batch) {
        return done;
    }
    tracing::error!(
        messages = batch.len(),
        "validation panicked; validating the batch message by message"
    );
    let mut verdicts = Vec::with_capacity(batch.len());
    for one in batch.chunks(1) {
        match run(one) {
            Ok(v) => verdicts.extend(v),
            Err(_) => {
                let (_, source, group, _) = &one[0];
                tracing::error!(peer = %source, group = %group.short(), "validation panicked on this message; rejected");
                verdicts.push(Verdict::Rejected);
            }
        }
    }
    verdicts
}

/// Why a gossip message goes no further than its seal.
#[derive(Debug, PartialEq)]
enum Refused {
    /// Sealed with a key this node does not hold (for this group).
    Unopened(Hash32),
    /// Opens, but its seal time is out of bounds ([`OpenError::Stale`],
    /// [`OpenError::Ahead`]): a replay of old gossip, or a sender whose
    /// clock is off.
    Untimely(Hash32, OpenError),
    /// Not on a group's topic, does not open, or is not a batch of changes
    /// of one document.
    Invalid(&'static str),
}

impl Refused {
    /// What gossipsub hears.
    ///
    /// - Unopened: ignored, not held against the sender: we cannot judge it
    ///   (a new key's record may still be on its way to us).
    /// - Untimely: ignored, not rejected. A replay then costs the replayer
    ///   no score, but it costs us only a key lookup, one AEAD open and a
    ///   comparison, nothing decoded or applied (gossipsub has already
    ///   checked the envelope's signature, which costs more). A reject
    ///   would penalise by the receiver's clock: an honest member whose
    ///   clock is off by more than `topic::CLOCK_SKEW` would be graylisted
    ///   by the whole group for sending valid changes. The changes
    ///   themselves are not judged here at all (their verdict must not
    ///   depend on a clock): sync brings them and judges them as usual.
    /// - Invalid: rejected, the sender penalised: with the group key it is a
    ///   member's forgery or garbage, without it a stranger's.
    fn acceptance(&self) -> MessageAcceptance {
        match self {
            Refused::Unopened(_) | Refused::Untimely(..) => MessageAcceptance::Ignore,
            Refused::Invalid(_) => MessageAcceptance::Reject,
        }
    }

    /// Count it in the status's gossip verdicts.
    fn count(&self, counts: &mut GossipCounts) {
        match self {
            Refused::Unopened(_) => {
                counts.ignored += 1;
                counts.unopened += 1;
            }
            Refused::Untimely(..) => {
                counts.ignored += 1;
                counts.untimely += 1;
            }
            Refused::Invalid(_) => counts.rejected += 1,
        }
    }
}

/// Open a gossip message that arrived on a topic with `seals` (`None`: a
/// topic we do not follow) at `now_ms`, and decode its changes. Nothing is
/// decoded unless the seal opens and its time is within bounds.
fn open_gossip(
    seals: Option<&GroupSeals>,
    data: &[u8],
    now_ms: u64,
) -> Result<(Hash32, Vec<SignedChange>), Refused> {
    let seals = seals.ok_or(Refused::Invalid("message on a topic we do not follow"))?;
    let group = seals.group();
    let plain = seals.open(data, now_ms).map_err(|e| match e {
        OpenError::UnknownKey => Refused::Unopened(group),
        OpenError::Stale { .. } | OpenError::Ahead { .. } => Refused::Untimely(group, e),
        OpenError::DoesNotOpen => Refused::Invalid("payload does not open with the group key"),
    })?;
    let changes: Vec<SignedChange> = encoding::decode("gossip payload", &plain, MAX_GOSSIP_BYTES)
        .map_err(|_| Refused::Invalid("malformed payload"))?;
    if changes.is_empty() || changes.iter().any(|c| c.doc != changes[0].doc) {
        return Err(Refused::Invalid("payload is empty or mixes documents"));
    }
    Ok((group, changes))
}

/// Apply a batch of gossip messages as one batch per document and judge
/// each message by what became of its changes; also the peers to sync with
/// (their messages had missing dependencies).
///
/// A message is rejected (its forwarder penalised) only for a change that
/// is invalid in itself. A change refused for forking its device's history
/// is validly signed and valid where it was first accepted, so its message
/// is ignored, not rejected; and honest changes batched with it apply.
fn validate_batch(replica: &dyn Replica, batch: &[Queued]) -> Vec<Verdict> {
    // One batch per document; a document must belong to the group whose
    // topic carried it.
    let mut by_doc: HashMap<Hash32, Vec<SignedChange>> = HashMap::new();
    let mut rejected: HashSet<Hash32> = HashSet::new();
    let mut missing: HashSet<Hash32> = HashSet::new();
    for (_, _, group, changes) in batch {
        let doc = changes[0].doc;
        match replica.group_of(&doc) {
            Some(g) if g == *group => by_doc
                .entry(doc)
                .or_default()
                .extend(changes.iter().cloned()),
            Some(_) => rejected.extend(changes.iter().map(|c| c.hash)),
            // A ledger period this node has not opened yet: it waits.
            None => missing.extend(changes.iter().map(|c| c.hash)),
        }
    }
    // Group documents first (an admission before the new member's
    // payments); what waits on another document of the batch (a period on
    // the closing of the one before) is tried once more after it. Not the
    // group's whole listing: it grows with every period, and this runs
    // for every batch.
    let mut docs: Vec<(Hash32, Vec<SignedChange>)> = by_doc.into_iter().collect();
    docs.sort_by_key(|(doc, _)| replica.group_of(doc) != Some(*doc));
    let mut applied: HashSet<Hash32> = HashSet::new();
    // Apply each document's changes: whether any were stored, and what
    // waits, by document.
    let mut apply = |docs: Vec<(Hash32, Vec<SignedChange>)>| {
        let mut stored = false;
        let mut waiting = Vec::new();
        for (doc, changes) in docs {
            if let Some(report) = apply_gossip(replica, doc, changes, &mut rejected) {
                stored |= !report.applied.is_empty();
                applied.extend(report.applied.iter().map(|c| c.hash));
                if !report.missing_deps.is_empty() {
                    waiting.push((doc, report.missing_deps));
                }
            }
        }
        (stored, waiting)
    };
    let (stored, mut waiting) = apply(docs);
    if stored && !waiting.is_empty() {
        waiting = apply(waiting).1;
    }
    missing.extend(waiting.iter().flat_map(|(_, c)| c.iter().map(|c| c.hash)));
    batch
        .iter()
        .map(|(_, _, _, changes)| {
            if changes.iter().any(|c| rejected.contains(&c.hash)) {
                Verdict::Rejected
            } else if changes.iter().any(|c| missing.contains(&c.hash)) {
                Verdict::Waiting
            } else if changes.iter().any(|c| applied.contains(&c.hash)) {
                Verdict::Accepted
            } else {
                Verdict::Known
            }
        })
        .collect()
}

/// Apply gossiped changes to `doc`, adding those rejected as invalid in
/// themselves to `rejected` (a change refused for forking its device's
/// history is validly signed, and valid where it was first accepted: not
/// counted against its forwarder).
fn apply_gossip(
    replica: &dyn Replica,
    doc: Hash32,
    changes: Vec<SignedChange>,
    rejected: &mut HashSet<Hash32>,
) -> Option<ApplyReport> {
    match replica.apply_remote(doc, changes, false) {
        Ok(report) => {
            let forked: HashSet<Hash32> = report.forked.iter().map(|c| c.hash).collect();
            for r in &report.rejected {
                tracing::warn!(doc = %doc.short(), change = %r.change, author = %r.author, reason = %r.reason, "gossiped change rejected");
                match r.change.parse() {
                    Ok(h) if !forked.contains(&h) => {
                        rejected.insert(h);
                    }
                    _ => {}
                }
            }
            Some(report)
        }
        Err(e) => {
            tracing::warn!(doc = %doc.short(), error = %e, "cannot apply gossiped changes");
            None
        }
    }
}

/// Blocking work finished off the loop.
enum Done {
    /// A gossip batch was applied: its messages, and what became of each.
    Validated(Vec<Queued>, Vec<Verdict>),
    /// An inbound request was handled.
    Respond(ResponseChannel<Response>, Response),
    /// A sync answer was applied.
    Synced(PeerId, Hash32, sync::Applied),
    /// A member said it holds more for us than fit its request: ask it.
    Pull(PeerId, Hash32),
    /// A sync session's request was worked out (`None`: nothing to ask).
    SyncReady(PeerId, Hash32, Option<Request>),
    /// A join answer was applied.
    Joined(
        PeerId,
        Result<Hash32, String>,
        oneshot::Sender<Result<Hash32, String>>,
    ),
}

/// What an outbound request was for.
enum Pending {
    /// A sync session's request, for this document.
    Sync(Hash32),
    /// A join, with its ticket (sent again if the connection drops).
    Join(JoinReply, Ticket),
    /// A test's probe: answered with what came back.
    Probe(JoinReply),
}

struct EventLoop {
    swarm: Swarm<Behaviour>,
    key: MemberKey,
    replica: Arc<dyn Replica>,
    commands: mpsc::Receiver<Command>,
    done_tx: mpsc::Sender<Done>,
    done_rx: mpsc::Receiver<Done>,
    doc_events: tokio::sync::broadcast::Receiver<DocEvent>,
    seals: HashMap<TopicHash, GroupSeals>,
    pending: HashMap<OutboundRequestId, (PeerId, Pending)>,
    gossip_queue: Vec<Queued>,
    /// Messages whose changes wait for others (see [`Verdict::Waiting`]),
    /// and since when each has waited.
    gossip_waiting: Vec<Queued>,
    waiting_since: HashMap<MessageId, Instant>,
    validating: bool,
    /// The sync sessions: what runs, waits its turn, waits for changes.
    sessions: Sessions<PeerId>,
    peers: HashMap<PeerId, Peer>,
    /// Joins waiting for a connection to their inviter.
    join_waiters: HashMap<PeerId, Vec<(Ticket, JoinReply)>>,
    /// The dials made for those joins, and their deadline.
    join_attempts: HashMap<PeerId, Attempt>,
    /// Members' nodes we have been connected to, to reach again.
    known: HashMap<PeerId, Known>,
    /// When each member or relay was last dialed (not to hammer them).
    last_dial: HashMap<PeerId, Instant>,
    /// Peers this node lost when its address changed: it starts the
    /// catch-up with them on reconnecting, whichever side usually would.
    resync: HashSet<PeerId>,
    counts: GossipCounts,
    /// Sync protocol traffic, counted by the codec.
    traffic: Arc<crate::protocol::SyncTraffic>,
    /// gossipsub's counters (for copies received per message).
    metrics: prometheus_client::registry::Registry,
    /// Every task handed off the loop (`spawn_blocking`), awaited on
    /// shutdown.
    tasks: TaskTracker,
    /// Configured relays and our slot on each.
    relays: HashMap<PeerId, Relay>,
}

impl EventLoop {
    async fn run(mut self) {
        let mut tick = tokio::time::interval(ANTI_ENTROPY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
        housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stopped = None;
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                Some(done) = self.done_rx.recv() => self.on_done(done),
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown(reply)) => { stopped = Some(reply); break; }
                    Some(c) => self.on_command(c),
                    None => break,
                },
                event = self.doc_events.recv() => match event {
                    Ok(e) => self.on_doc_event(e),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        // Missed local events are repaired by anti-entropy sync.
                        tracing::warn!(missed = n, "document events lagged");
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                },
                _ = tick.tick() => self.anti_entropy(),
                _ = housekeeping.tick() => self.housekeeping(),
            }
        }
        // Work handed off the loop (applying what peers sent, answering
        // them) finishes before the network says it stopped, so the node
        // is never closed under a write. Their results are dropped.
        self.tasks.close();
        loop {
            tokio::select! {
                () = self.tasks.wait() => break,
                Some(_) = self.done_rx.recv() => {}
            }
        }
        tracing::debug!("network stopped");
        if let Some(reply) = stopped {
            let _ = reply.send(());
        }
    }

    fn subscribe(&mut self, group: Hash32, genesis: &[u8]) {
        let topic = IdentTopic::new(docs_topic(&group));
        let hash = topic.hash();
        if self.seals.contains_key(&hash) {
            return;
        }
        let gossip = &mut self.swarm.behaviour_mut().gossipsub;
        if let Err(e) = gossip.subscribe(&topic) {
            tracing::warn!(group = %group.short(), error = ?e, "cannot subscribe");
            return;
        }
        if let Err(e) = gossip.set_topic_params(topic, topic_score_params()) {
            tracing::warn!(group = %group.short(), error = %e, "cannot set the topic's scoring");
        }
        self.seals.insert(hash, GroupSeals::new(group, genesis));
        self.refresh_keys(group);
    }

    fn seal_for(&self, group: &Hash32) -> Option<&GroupSeals> {
        self.seals.get(&IdentTopic::new(docs_topic(group)).hash())
    }

    /// Take the group's keys as the node now holds them (after a change to
    /// the group document: a new key, a member gone or admitted).
    fn refresh_keys(&mut self, group: Hash32) {
        let Some(ring) = self.replica.keyring(&group) else {
            return;
        };
        let renewed = self
            .seals
            .get_mut(&IdentTopic::new(docs_topic(&group)).hash())
            .is_some_and(|seals| seals.update(&ring));
        if renewed {
            // A new key reached this node: pass its record on to the
            // members it is connected to, by sync (gossip under the old
            // key would reach the member who left; under the new one,
            // nobody who lacks it could forward it). Each member does the
            // same on receiving it, so it floods the group's members only.
            let peers: Vec<PeerId> = self.peers.keys().copied().collect();
            for peer in peers {
                self.start_sync(peer, group);
            }
        }
    }

    fn on_doc_event(&mut self, event: DocEvent) {
        let group = self.replica.group_of(&event.doc).unwrap_or(event.doc);
        if self.seal_for(&group).is_none() {
            if let Some(genesis) = self.replica.genesis(&group) {
                self.subscribe(group, &genesis);
            }
        } else if event.doc == group {
            self.refresh_keys(group);
        }
        if !event.local || event.changes.is_empty() {
            return;
        }
        // Sealed with the key current at the changes' causal past: whoever
        // was on the roll then may read them (a removal reaches the member
        // removed), nobody who was off it.
        let key = if event.doc == group {
            event.seal_with.map(|id| short_key_id(&id))
        } else {
            self.seal_for(&group).and_then(GroupSeals::current_id)
        };
        // Keep each message well under gossipsub's size limit (an imported
        // bundle can hold thousands of changes).
        let mut chunk: Vec<SignedChange> = Vec::new();
        let mut size = 0;
        for change in event.changes {
            let len = change.change.len() + 256;
            if size + len > MAX_GOSSIP_BYTES / 2 && !chunk.is_empty() {
                let payload = encoding::encode(&std::mem::take(&mut chunk));
                self.publish(group, event.doc, key, payload, machine_now_ms());
                size = 0;
            }
            size += len;
            chunk.push(change);
        }
        self.publish(
            group,
            event.doc,
            key,
            encoding::encode(&chunk),
            machine_now_ms(),
        );
    }

    /// Publish changes of `doc` (a document of `group`) on the group's
    /// topic, sealed with `key` at `sealed_at_ms` (now, but for tests).
    fn publish(
        &mut self,
        group: Hash32,
        doc: Hash32,
        key: Option<ShortKeyId>,
        plaintext: Vec<u8>,
        sealed_at_ms: u64,
    ) {
        let Some(seals) = self.seal_for(&group) else {
            return;
        };
        let Some(seal) = key.and_then(|k| seals.get(&k)) else {
            // Someone left and this node holds no key of the members
            // alone yet: nothing goes out on the topic (a former member
            // would open it); connected members get it by sync.
            tracing::debug!(group = %group.short(), "no current seal key; pushing by sync");
            let peers: Vec<PeerId> = self.peers.keys().copied().collect();
            for peer in peers {
                self.start_sync(peer, doc);
            }
            return;
        };
        let sealed = seal.seal(&plaintext, sealed_at_ms);
        let topic = IdentTopic::new(seals.topic());
        let hash = topic.hash();
        let gossip = &mut self.swarm.behaviour_mut().gossipsub;
        let mesh_empty = gossip.mesh_peers(&hash).next().is_none();
        if let Err(e) = gossip.publish(topic, sealed) {
            tracing::debug!(group = %group.short(), error = %e, "publish failed");
        }
        // Until the mesh has formed (just after a join or a restart) gossip
        // reaches nobody: push to connected members by sync instead.
        if mesh_empty {
            let peers: Vec<PeerId> = self.peers.keys().copied().collect();
            for peer in peers {
                self.start_sync(peer, doc);
            }
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Dial(addr, reply) => {
                let _ = reply.send(
                    self.swarm
                        .dial(addr)
                        .map_err(|e| NetError::Dial(e.to_string())),
                );
            }
            Command::Peers(reply) => {
                let _ = reply.send(self.peer_infos());
            }
            Command::Status(reply) => {
                let (mut status, members) = self.status();
                let replica = self.replica.clone();
                // Whether each member's last known heads equal ours is read
                // from the store, off the loop.
                self.tasks.spawn_blocking(move || {
                    for (sync, members) in status.sync.iter_mut().zip(members) {
                        let ours = Some(sorted(sync.heads.clone()));
                        sync.peers = members
                            .into_iter()
                            .map(|m| {
                                let theirs = replica.peer_heads(&m, &sync.group).map(sorted);
                                (m.to_string(), theirs == ours)
                            })
                            .collect();
                    }
                    let _ = reply.send(status);
                });
            }
            Command::Invite {
                group,
                name,
                expires_at_ms,
                reply,
            } => {
                let _ = reply.send(Ticket::issue(
                    &self.key,
                    group,
                    &name,
                    self.shareable_addrs(),
                    expires_at_ms,
                ));
            }
            Command::Join(ticket, reply) => self.start_join(ticket, reply),
            Command::Block(peer) => {
                self.swarm.behaviour_mut().blocks.block_peer(peer);
            }
            Command::Unblock(peer) => {
                self.swarm.behaviour_mut().blocks.unblock_peer(peer);
            }
            Command::PublishRaw(group, bytes, sealed_at_ms) => {
                let key = self
                    .seal_for(&group)
                    .and_then(GroupSeals::current_or_any_id);
                let at = sealed_at_ms.unwrap_or_else(machine_now_ms);
                self.publish(group, group, key, bytes, at)
            }
            Command::ProbeSync(peer, doc, reply) => {
                let request = Request::Sync {
                    doc,
                    heads: Vec::new(),
                    changes: Vec::new(),
                    more: false,
                };
                let id = self.swarm.behaviour_mut().sync.send_request(&peer, request);
                self.pending.insert(id, (peer, Pending::Probe(reply)));
            }
            Command::Shutdown(_) => {}
        }
    }

    /// Addresses to put in a ticket: confirmed external ones first, then
    /// listen addresses (without unspecified or relay-only ones duplicated).
    fn shareable_addrs(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .swarm
            .external_addresses()
            .map(|a| a.to_string())
            .collect();
        for a in self.swarm.listeners() {
            let s = a.to_string();
            if !s.contains("/0.0.0.0/") && !out.contains(&s) {
                out.push(s);
            }
        }
        out
    }

    fn start_join(&mut self, ticket: Ticket, reply: oneshot::Sender<Result<Hash32, String>>) {
        if let Err(e) = ticket.verify(machine_now_ms()) {
            let _ = reply.send(Err(e.to_string()));
            return;
        }
        let inviter = peer_of(&ticket.inviter);
        if inviter == *self.swarm.local_peer_id() {
            let _ = reply.send(Err(
                "this ticket was issued by this node; give it to the person you invite".into(),
            ));
            return;
        }
        if self.swarm.is_connected(&inviter) {
            self.send_join(inviter, ticket, reply);
            return;
        }
        let addrs = self.inviter_addrs(inviter, &ticket);
        for addr in addrs.iter().filter(|a| !reach::is_circuit(a)) {
            self.swarm.add_peer_address(inviter, addr.clone());
        }
        if addrs.is_empty() {
            let _ = reply.send(Err(
                "the ticket carries no address to reach the inviter, and no relay is configured"
                    .into(),
            ));
            return;
        }
        self.join_waiters
            .entry(inviter)
            .or_default()
            .push((ticket, reply));
        self.dial_for_join(inviter, addrs);
    }

    /// Dial the inviter for the joins waiting on it. The dial runs beside
    /// any other dial to the same peer (Kademlia, a relay, hole punching):
    /// whichever connects first carries the join.
    fn dial_for_join(&mut self, inviter: PeerId, addrs: Vec<Multiaddr>) {
        let addrs_again = addrs.clone();
        let opts = DialOpts::peer_id(inviter)
            .addresses(addrs)
            .condition(PeerCondition::Always)
            .build();
        let id = opts.connection_id();
        let attempt = self
            .join_attempts
            .entry(inviter)
            .or_insert_with(|| Attempt {
                dials: Vec::new(),
                deadline: Instant::now() + JOIN_TIMEOUT,
                addrs: addrs_again,
                retry_at: None,
            });
        match self.swarm.dial(opts) {
            Ok(()) => attempt.dials.push(id),
            Err(e) => {
                tracing::info!(peer = %inviter, error = %e, "cannot dial the inviter");
                if attempt.dials.is_empty() {
                    self.fail_joins(inviter);
                }
            }
        }
    }

    /// Every dial made for a join failed. A relay may refuse for a moment
    /// (its limits), the inviter's slot may be on its way: try again
    /// shortly, until the join's deadline.
    fn join_dials_failed(&mut self, inviter: PeerId) {
        let now = Instant::now();
        match self.join_attempts.get_mut(&inviter) {
            Some(attempt) if now + JOIN_RETRY < attempt.deadline => {
                attempt.retry_at = Some(now + JOIN_RETRY);
            }
            _ => self.fail_joins(inviter),
        }
    }

    /// Tell every join waiting on `inviter` that it could not be reached.
    fn fail_joins(&mut self, inviter: PeerId) {
        self.join_attempts.remove(&inviter);
        for (_, reply) in self.join_waiters.remove(&inviter).unwrap_or_default() {
            let _ = reply.send(Err(INVITER_UNREACHABLE.into()));
        }
    }

    /// Ask the (connected) inviter to admit us with `ticket`.
    fn send_join(&mut self, inviter: PeerId, ticket: Ticket, reply: JoinReply) {
        let id = self.swarm.behaviour_mut().sync.send_request(
            &inviter,
            Request::Join {
                ticket: ticket.clone(),
            },
        );
        self.pending
            .insert(id, (inviter, Pending::Join(reply, ticket)));
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => self.on_connected(peer_id, connection_id, endpoint),
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                ..
            } => {
                if num_established == 0 {
                    self.peers.remove(&peer_id);
                    self.sync_input(Input::Disconnected(peer_id));
                    // Reach a member again at once, not after a pause.
                    self.last_dial.remove(&peer_id);
                } else if let Some(p) = self.peers.get_mut(&peer_id) {
                    p.links.remove(&connection_id);
                }
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(peer),
                connection_id,
                error,
            } => {
                tracing::debug!(%peer, %error, "dial failed");
                if let Some(attempt) = self.join_attempts.get_mut(&peer) {
                    attempt.dials.retain(|d| *d != connection_id);
                    // Only our own dials for the join decide it; another
                    // dial's failure is not the join's.
                    if attempt.dials.is_empty() && !self.swarm.is_connected(&peer) {
                        self.join_dials_failed(peer);
                    }
                }
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } => {
                for (peer, relay) in self.relays.iter_mut() {
                    if relay.listener == Some(listener_id) {
                        tracing::info!(relay = %peer, ?reason, "relay slot closed; will reserve again on reconnect");
                        relay.listener = None;
                        relay.reserved = false;
                    }
                }
            }
            SwarmEvent::ExpiredListenAddr { address, .. } if !reach::is_circuit(&address) => {
                self.on_address_gone(address)
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            _ => {}
        }
    }

    fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            }) => {
                self.on_gossip(propagation_source, message_id, message);
            }
            BehaviourEvent::Sync(request_response::Event::Message { peer, message, .. }) => {
                match message {
                    request_response::Message::Request {
                        request, channel, ..
                    } => self.on_request(peer, request, channel),
                    request_response::Message::Response {
                        request_id,
                        response,
                    } => self.on_response(peer, request_id, response),
                }
            }
            BehaviourEvent::Sync(request_response::Event::OutboundFailure {
                request_id,
                error,
                peer,
                ..
            }) => self.on_request_failed(request_id, peer, error),
            BehaviourEvent::Sync(request_response::Event::InboundFailure {
                peer, error, ..
            }) => {
                tracing::debug!(%peer, %error, "inbound sync request failed");
            }
            BehaviourEvent::Ping(ping::Event {
                peer,
                result: Ok(rtt),
                ..
            }) => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.rtt = Some(rtt);
                }
            }
            BehaviourEvent::Ping(ping::Event {
                peer,
                connection,
                result: Err(error),
            }) => {
                // Pings went unanswered: the path is gone (a router
                // changed, a laptop moved). Close it so the peer is reached
                // again, rather than waiting minutes for TCP to notice.
                tracing::info!(%peer, %error, "connection stopped answering; closing it");
                self.swarm.close_connection(connection);
            }
            BehaviourEvent::Dcutr(dcutr::Event {
                remote_peer_id,
                result,
            }) => match result {
                Ok(connection) => {
                    tracing::info!(peer = %remote_peer_id, "direct connection by hole punching");
                    if let Some(link) = self
                        .peers
                        .get_mut(&remote_peer_id)
                        .and_then(|p| p.links.get_mut(&connection))
                    {
                        link.hole_punched = true;
                    }
                }
                Err(error) => {
                    tracing::debug!(peer = %remote_peer_id, %error, "hole punching failed");
                }
            },
            BehaviourEvent::RelayClient(relay::client::Event::ReservationReqAccepted {
                relay_peer_id,
                ..
            }) => {
                if let Some(relay) = self.relays.get_mut(&relay_peer_id) {
                    if !relay.reserved {
                        tracing::info!(relay = %relay_peer_id, "slot reserved on relay");
                    }
                    relay.reserved = true;
                }
            }
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                self.on_identified(peer_id, info)
            }
            BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => self.on_found_nearby(found),
            _ => {}
        }
    }

    /// A connection is up: note the link, start what waited for the peer.
    fn on_connected(
        &mut self,
        peer_id: PeerId,
        connection_id: libp2p::swarm::ConnectionId,
        endpoint: libp2p::core::ConnectedPoint,
    ) {
        let address = endpoint.get_remote_address().clone();
        let relayed = endpoint.is_relayed();
        self.peers.entry(peer_id).or_default().links.insert(
            connection_id,
            Link {
                address: address.clone(),
                relayed,
                hole_punched: false,
            },
        );
        tracing::debug!(peer = %peer_id, relayed, "connected");
        self.sync_input(Input::Connected(peer_id));
        if !relayed {
            self.reserve_on_relay(peer_id);
            self.close_relayed(peer_id);
        }
        if self.relays.contains_key(&peer_id) {
            // Members unreachable a moment ago may be reachable
            // through this relay now: try them at once.
            self.last_dial.retain(|p, _| self.peers.contains_key(p));
        }
        if endpoint.is_dialer() && !relayed {
            if let Some(known) = self.known.get_mut(&peer_id) {
                known.remember(address);
            }
        }
        self.join_attempts.remove(&peer_id);
        if let Some(waiters) = self.join_waiters.remove(&peer_id) {
            for (ticket, reply) in waiters {
                self.send_join(peer_id, ticket, reply);
            }
        }
        // One side starts the session (it runs both ways), so a
        // catch-up is not sent twice; the smaller peer id starts.
        if *self.swarm.local_peer_id() < peer_id || self.resync.remove(&peer_id) {
            self.sync_shared_groups(peer_id);
        }
        self.note_member(peer_id);
    }

    /// One of our addresses is gone (the laptop moved, the network changed):
    /// connections made over it are dead even if no error says so yet.
    fn on_address_gone(&mut self, address: Multiaddr) {
        // Drop them all and reach every member and relay again at once.
        tracing::info!(%address, "address gone; reconnecting");
        let peers: Vec<PeerId> = self.peers.keys().copied().collect();
        for peer in peers {
            let _ = self.swarm.disconnect_peer_id(peer);
            // They may still send over the dead path for a while:
            // this side asks for what it missed once reconnected.
            self.resync.insert(peer);
        }
        self.last_dial.clear();
    }

    /// A request of ours got no answer.
    fn on_request_failed(
        &mut self,
        request_id: OutboundRequestId,
        peer: PeerId,
        error: request_response::OutboundFailure,
    ) {
        tracing::debug!(%peer, %error, "sync request failed");
        match self.pending.remove(&request_id) {
            Some((_, Pending::Join(reply, ticket))) => self.retry_join(peer, ticket, reply),
            Some((peer, Pending::Sync(doc))) => {
                self.sync_input(Input::Failed { peer, doc });
            }
            Some((_, Pending::Probe(reply))) => {
                let _ = reply.send(Err(error.to_string()));
            }
            None => {}
        }
    }

    /// A peer told us its addresses: remember the direct ones.
    fn on_identified(&mut self, peer_id: PeerId, info: identify::Info) {
        for addr in &info.listen_addrs {
            self.swarm
                .behaviour_mut()
                .kad
                .add_address(&peer_id, addr.clone());
        }
        let direct: Vec<Multiaddr> = info
            .listen_addrs
            .into_iter()
            .filter(|a| !reach::is_circuit(a))
            .collect();
        if let Some(known) = self.known.get_mut(&peer_id) {
            for addr in direct.iter().rev() {
                known.remember(addr.clone());
            }
        }
        if let Some(p) = self.peers.get_mut(&peer_id) {
            p.direct_addrs = direct;
        }
    }

    /// Peers found on the local network: dial those not connected.
    fn on_found_nearby(&mut self, found: Vec<(PeerId, Multiaddr)>) {
        for (peer, addr) in found {
            if peer != *self.swarm.local_peer_id() && !self.swarm.is_connected(&peer) {
                tracing::info!(%peer, %addr, "found on the local network");
                self.swarm
                    .behaviour_mut()
                    .kad
                    .add_address(&peer, addr.clone());
                let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
                    .addresses(vec![addr])
                    .build();
                let _ = self.swarm.dial(opts);
            }
        }
    }

    fn on_gossip(&mut self, source: PeerId, id: MessageId, message: gossipsub::Message) {
        let opened = open_gossip(
            self.seals.get(&message.topic),
            &message.data,
            machine_now_ms(),
        );
        if let Err(refused) = &opened {
            refused.count(&mut self.counts);
            self.swarm
                .behaviour_mut()
                .gossipsub
                .report_message_validation_result(&id, &source, refused.acceptance());
        }
        match opened {
            Ok((group, changes)) => {
                self.gossip_queue.push((id, source, group, changes));
                for (id, source) in shed_overload(&mut self.gossip_queue, MAX_QUEUED_GOSSIP_BYTES) {
                    self.counts.shed += 1;
                    self.swarm
                        .behaviour_mut()
                        .gossipsub
                        .report_message_validation_result(&id, &source, MessageAcceptance::Ignore);
                }
                self.validate_queue();
            }
            Err(Refused::Unopened(group)) => {
                // A member whose node lacks a new key asks the sender for
                // the group document, which brings the key.
                tracing::debug!(peer = %source, group = %group.short(), "gossip sealed with a key this node does not hold");
                let me = self.key.id();
                if self.replica.is_member(&group, &me) {
                    self.start_sync(source, group);
                }
            }
            Err(Refused::Untimely(group, why)) => {
                // No sync with the sender: a replayer would have it do
                // work for nothing, and an honest member's changes come by
                // anti-entropy (every 15 s) whatever its clock says.
                tracing::debug!(peer = %source, group = %group.short(), reason = %why, "gossip refused by its seal time");
            }
            Err(Refused::Invalid(reason)) => {
                tracing::warn!(peer = %source, reason, "gossip message rejected");
            }
        }
    }

    /// Apply everything queued as one batch per document, off the loop,
    /// with the messages kept waiting (judged again now that more came).
    fn validate_queue(&mut self) {
        if !self.gossip_queue.is_empty() {
            self.validate_now();
        }
    }

    /// Start validating the queue and the messages kept waiting, unless a
    /// batch is being validated (its end starts the next one).
    fn validate_now(&mut self) {
        if self.validating {
            return;
        }
        self.validating = true;
        let mut batch = std::mem::take(&mut self.gossip_waiting);
        batch.append(&mut self.gossip_queue);
        let replica = self.replica.clone();
        let done = self.done_tx.clone();
        self.tasks.spawn_blocking(move || {
            let verdicts = validate_guarded(&*replica, &batch);
            let _ = done.blocking_send(Done::Validated(batch, verdicts));
        });
    }

    /// Judge the messages kept waiting again: a sync stored something they
    /// may wait for.
    fn retry_waiting_gossip(&mut self) {
        if !self.gossip_waiting.is_empty() {
            self.validate_now();
        }
    }

    /// Report a validated message to gossipsub, and count it.
    fn report_gossip(&mut self, id: &MessageId, source: &PeerId, verdict: Verdict) {
        self.waiting_since.remove(id);
        let acceptance = match verdict {
            Verdict::Accepted => {
                self.counts.accepted += 1;
                MessageAcceptance::Accept
            }
            Verdict::Rejected => {
                self.counts.rejected += 1;
                MessageAcceptance::Reject
            }
            Verdict::Known => {
                self.counts.ignored += 1;
                self.counts.known += 1;
                MessageAcceptance::Ignore
            }
            Verdict::Waiting => {
                self.counts.ignored += 1;
                self.counts.waited += 1;
                MessageAcceptance::Ignore
            }
        };
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(id, source, acceptance);
    }

    /// Give up the waiting messages kept longer than [`GOSSIP_WAIT`] (or
    /// past [`MAX_WAITING_GOSSIP_BYTES`]): ignored, and their senders asked
    /// by sync for what this node lacks.
    fn expire_waiting_gossip(&mut self) {
        let now = Instant::now();
        let mut kept = Vec::new();
        let mut kept_bytes = 0;
        let mut syncs = Vec::new();
        for message in std::mem::take(&mut self.gossip_waiting) {
            let (id, source, group, _) = &message;
            let since = self.waiting_since.get(id).copied().unwrap_or(now);
            let bytes = queued_bytes(&message);
            if now.duration_since(since) < GOSSIP_WAIT
                && kept_bytes + bytes <= MAX_WAITING_GOSSIP_BYTES
            {
                kept_bytes += bytes;
                kept.push(message);
                continue;
            }
            self.report_gossip(id, source, Verdict::Waiting);
            syncs.extend(
                self.replica
                    .docs_of(group)
                    .into_iter()
                    .map(|doc| (*source, doc)),
            );
        }
        self.gossip_waiting = kept;
        syncs.sort_unstable();
        syncs.dedup();
        for (peer, doc) in syncs {
            self.start_sync(peer, doc);
        }
    }

    fn on_done(&mut self, done: Done) {
        match done {
            Done::Validated(batch, verdicts) => {
                let now = Instant::now();
                for (message, verdict) in batch.into_iter().zip(verdicts) {
                    if verdict == Verdict::Waiting {
                        self.waiting_since.entry(message.0.clone()).or_insert(now);
                        self.gossip_waiting.push(message);
                    } else {
                        self.report_gossip(&message.0, &message.1, verdict);
                    }
                }
                self.expire_waiting_gossip();
                self.validating = false;
                self.validate_queue();
            }
            Done::Respond(channel, response) => {
                if self
                    .swarm
                    .behaviour_mut()
                    .sync
                    .send_response(channel, response)
                    .is_err()
                {
                    tracing::debug!("peer went away before the answer");
                }
            }
            Done::Synced(peer, doc, applied) => {
                self.sync_input(Input::Applied { peer, doc, applied })
            }
            Done::Pull(peer, doc) => self.start_sync(peer, doc),
            Done::SyncReady(peer, doc, request) => {
                self.sync_input(Input::Prepared { peer, doc, request })
            }
            Done::Joined(inviter, result, reply) => {
                if let Ok(doc) = &result {
                    if let Some(genesis) = self.replica.genesis(doc) {
                        self.subscribe(*doc, &genesis);
                    }
                    // Fetch anything the join answer did not carry.
                    self.start_sync(inviter, *doc);
                    self.note_member(inviter);
                }
                let _ = reply.send(result);
            }
        }
    }

    fn on_request(&mut self, peer: PeerId, request: Request, channel: ResponseChannel<Response>) {
        let replica = self.replica.clone();
        let done = self.done_tx.clone();
        let Some(member) = member_of(&peer) else {
            let _ = self
                .swarm
                .behaviour_mut()
                .sync
                .send_response(channel, sync::refused("unknown peer key type"));
            return;
        };
        match request {
            Request::Sync {
                doc,
                heads,
                changes,
                more,
            } => {
                // A stranger learns nothing, not even whether we hold the
                // group: the same answer as for a group we do not have.
                if !sync::accepts(&*replica, &member, &doc, heads.len()) {
                    tracing::debug!(%peer, doc = %doc.short(), "sync refused");
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .sync
                        .send_response(channel, sync::refused("unknown document"));
                    return;
                }
                self.tasks.spawn_blocking(move || {
                    let answer = sync::answer(&*replica, &member, doc, &heads, changes, more);
                    for opened in answer.opened {
                        let _ = done.blocking_send(Done::Pull(peer, opened));
                    }
                    let _ = done.blocking_send(Done::Respond(channel, answer.response));
                    if answer.pull {
                        let _ = done.blocking_send(Done::Pull(peer, doc));
                    }
                });
            }
            Request::Join { ticket } => {
                let me = self.key.id();
                self.tasks.spawn_blocking(move || {
                    let response = match admit(&*replica, &ticket, me, member) {
                        Ok(()) => {
                            let (mut changes, _) =
                                replica.changes_since(&ticket.group, &[], SYNC_BATCH_BYTES);
                            if !replica.is_member(&ticket.group, &member) {
                                // Admitted but awaiting the entry vote: the
                                // founding change (name and charter) only.
                                changes.truncate(1);
                            }
                            Response::Joined { changes }
                        }
                        Err(reason) => {
                            tracing::info!(%peer, %reason, "join refused");
                            sync::refused(&reason)
                        }
                    };
                    let _ = done.blocking_send(Done::Respond(channel, response));
                });
            }
        }
    }

    fn on_response(&mut self, peer: PeerId, request_id: OutboundRequestId, response: Response) {
        let Some((_, pending)) = self.pending.remove(&request_id) else {
            return;
        };
        let replica = self.replica.clone();
        let done = self.done_tx.clone();
        match (pending, response) {
            (Pending::Sync(doc), response) => {
                self.sync_input(Input::Answered {
                    peer,
                    doc,
                    response,
                });
            }
            (Pending::Join(reply, ticket), Response::Joined { changes }) => {
                let expected = ticket.group;
                let doc = changes.first().map(|c| c.doc);
                self.tasks.spawn_blocking(move || {
                    let result = match doc {
                        None => Err("the inviter sent an empty group".to_string()),
                        // Only the group the ticket names, nothing else.
                        Some(doc) if doc != expected || changes.iter().any(|c| c.doc != doc) => {
                            Err(
                                "the inviter sent changes of another group than the ticket's"
                                    .into(),
                            )
                        }
                        Some(doc) => replica.apply_remote(doc, changes, true).and_then(|report| {
                            match (report.rejected.first(), replica.heads(&doc)) {
                                (Some(r), _) => {
                                    Err(format!("the inviter sent an invalid change: {}", r.reason))
                                }
                                (None, Some(h)) if !h.is_empty() => Ok(doc),
                                _ => Err("the inviter's answer did not contain the group".into()),
                            }
                        }),
                    };
                    let _ = done.blocking_send(Done::Joined(peer, result, reply));
                });
            }
            (Pending::Probe(reply), response) => {
                let _ = reply.send(match response {
                    Response::Sync { changes, .. } => Ok(Hash32::of(&encoding::encode(&changes))),
                    Response::Refused { reason } => Err(reason),
                    Response::Joined { .. } => Err("joined".into()),
                });
            }
            (Pending::Join(reply, _), Response::Refused { reason }) => {
                let _ = reply.send(Err(format!("the inviter refused: {reason}")));
            }
            (pending, other) => {
                tracing::warn!(%peer, response = ?std::mem::discriminant(&other), "unexpected answer");
                if let Pending::Join(reply, _) = pending {
                    let _ = reply.send(Err("the inviter answered something unexpected".into()));
                }
            }
        }
    }

    /// A join request was lost with its connection (a relayed connection
    /// replaced, a drop): ask again, over the connection still open or a new
    /// dial, until the join's deadline. Admission is idempotent for the same
    /// member and ticket, so asking twice never admits twice.
    fn retry_join(&mut self, inviter: PeerId, ticket: Ticket, reply: JoinReply) {
        if self.swarm.is_connected(&inviter) {
            self.send_join(inviter, ticket, reply);
            return;
        }
        let addrs = self.inviter_addrs(inviter, &ticket);
        self.join_waiters
            .entry(inviter)
            .or_default()
            .push((ticket, reply));
        self.dial_for_join(inviter, addrs);
    }

    /// Where to dial the inviter: the ticket's addresses, and a circuit
    /// through each of our relays (the inviter may hold a slot there that
    /// its ticket does not name).
    fn inviter_addrs(&self, inviter: PeerId, ticket: &Ticket) -> Vec<Multiaddr> {
        let mut addrs: Vec<Multiaddr> =
            ticket.addrs.iter().filter_map(|a| a.parse().ok()).collect();
        for relay in self.relays.values() {
            let circuit = reach::circuit_via(&relay.addr, inviter);
            if !addrs.contains(&circuit) {
                addrs.push(circuit);
            }
        }
        addrs
    }

    /// Joins past their deadline fail in plain words; members and relays
    /// we are not connected to are dialed again (directly and through each
    /// relay), so a node that restarted, dropped or moved is back in its
    /// groups within seconds.
    fn housekeeping(&mut self) {
        if !self.validating {
            self.expire_waiting_gossip();
        }
        let now = Instant::now();
        let expired: Vec<PeerId> = self
            .join_attempts
            .iter()
            .filter(|(_, a)| a.deadline <= now)
            .map(|(p, _)| *p)
            .collect();
        for inviter in expired {
            if !self.swarm.is_connected(&inviter) {
                self.fail_joins(inviter);
            }
        }
        let retry: Vec<(PeerId, Vec<Multiaddr>)> = self
            .join_attempts
            .iter_mut()
            .filter(|(_, a)| a.retry_at.is_some_and(|t| t <= now))
            .map(|(p, a)| {
                a.retry_at = None;
                (*p, a.addrs.clone())
            })
            .collect();
        for (inviter, addrs) in retry {
            if !self.swarm.is_connected(&inviter) {
                self.dial_for_join(inviter, addrs);
            }
        }
        let due =
            |last: Option<&Instant>| last.is_none_or(|t| now.duration_since(*t) >= REDIAL_AFTER);
        let relays: Vec<(PeerId, Multiaddr)> = self
            .relays
            .iter()
            .filter(|(p, _)| !self.swarm.is_connected(p))
            .map(|(p, r)| (*p, r.addr.clone()))
            .collect();
        for (peer, addr) in relays {
            if due(self.last_dial.get(&peer)) {
                self.last_dial.insert(peer, now);
                let opts = DialOpts::peer_id(peer)
                    .addresses(vec![addr])
                    .condition(PeerCondition::Disconnected)
                    .build();
                if let Err(e) = self.swarm.dial(opts) {
                    tracing::debug!(relay = %peer, error = %e, "cannot dial relay");
                }
            }
        }
        let members: Vec<(PeerId, Vec<Multiaddr>)> = self
            .known
            .iter()
            .filter(|(p, _)| !self.swarm.is_connected(p))
            .map(|(p, k)| (*p, k.addrs.clone()))
            .collect();
        for (peer, mut addrs) in members {
            if !due(self.last_dial.get(&peer)) {
                continue;
            }
            self.last_dial.insert(peer, now);
            addrs.extend(
                self.relays
                    .iter()
                    .filter(|(r, _)| self.swarm.is_connected(r))
                    .map(|(_, r)| reach::circuit_via(&r.addr, peer)),
            );
            if addrs.is_empty() {
                continue;
            }
            // Beside any dial still hanging on a dead address (a dial to a
            // path that vanished can take 20 s to give up).
            let opts = DialOpts::peer_id(peer)
                .addresses(addrs)
                .condition(PeerCondition::Disconnected)
                .build();
            if let Err(e) = self.swarm.dial(opts) {
                tracing::debug!(%peer, error = %e, "cannot dial member");
            }
        }
    }

    /// A direct connection to `peer` is up: close the relayed ones. A
    /// relay's circuits are few and someone else's to lend; a request
    /// still on one is asked again over the direct connection.
    fn close_relayed(&mut self, peer: PeerId) {
        let Some(p) = self.peers.get(&peer) else {
            return;
        };
        let relayed: Vec<_> = p
            .links
            .iter()
            .filter(|(_, l)| l.relayed)
            .map(|(id, _)| *id)
            .collect();
        for id in relayed {
            self.swarm.close_connection(id);
        }
    }

    /// Reserve a slot on `peer` if it is one of our relays and we hold none.
    fn reserve_on_relay(&mut self, peer: PeerId) {
        let Some(relay) = self.relays.get(&peer) else {
            return;
        };
        if relay.listener.is_some() {
            return;
        }
        match self
            .swarm
            .listen_on(relay.addr.clone().with(Protocol::P2pCircuit))
        {
            Ok(id) => {
                tracing::info!(relay = %peer, "reserving a slot on relay");
                if let Some(entry) = self.relays.get_mut(&peer) {
                    entry.listener = Some(id);
                }
            }
            Err(e) => tracing::warn!(relay = %peer, error = %e, "cannot reserve a slot on relay"),
        }
    }

    /// Start a sync session with `peer` for `doc`, unless one is running
    /// (then it runs again when that one ends).
    fn start_sync(&mut self, peer: PeerId, doc: Hash32) {
        // Only a member's node (an ed25519 peer id) syncs; no session with
        // any other ever runs or waits.
        if member_of(&peer).is_some() {
            self.sync_input(Input::Start { peer, doc });
        }
    }

    /// Feed the sync sessions what happened and carry out what they say.
    fn sync_input(&mut self, input: Input<PeerId>) {
        let outputs = self.sessions.handle(input, Instant::now(), &*self.replica);
        for output in outputs {
            self.sync_output(output);
        }
    }

    /// Carry out one thing the sync sessions said to do: disk work goes
    /// off the loop and comes back as a [`Done`].
    fn sync_output(&mut self, output: Output<PeerId>) {
        match output {
            Output::Prepare { peer, doc } => {
                let Some(member) = member_of(&peer) else {
                    return;
                };
                let replica = self.replica.clone();
                let done = self.done_tx.clone();
                self.tasks.spawn_blocking(move || {
                    let request = sync::prepare(&*replica, &member, doc);
                    let _ = done.blocking_send(Done::SyncReady(peer, doc, request));
                });
            }
            Output::Send { peer, doc, request } => {
                let id = self.swarm.behaviour_mut().sync.send_request(&peer, request);
                self.pending.insert(id, (peer, Pending::Sync(doc)));
            }
            Output::Apply {
                peer,
                doc,
                heads,
                changes,
                more,
            } => {
                let Some(member) = member_of(&peer) else {
                    return;
                };
                let replica = self.replica.clone();
                let done = self.done_tx.clone();
                self.tasks.spawn_blocking(move || {
                    let (applied, opened) =
                        sync::apply_answer(&*replica, &member, doc, &heads, changes, more);
                    for opened in opened {
                        let _ = done.blocking_send(Done::Pull(peer, opened));
                    }
                    let _ = done.blocking_send(Done::Synced(peer, doc, applied));
                });
            }
            Output::Forget { peer, doc } => {
                let Some(member) = member_of(&peer) else {
                    return;
                };
                let replica = self.replica.clone();
                self.tasks
                    .spawn_blocking(move || replica.forget_peer_heads(&member, &doc));
            }
            Output::Stored { .. } => self.retry_waiting_gossip(),
            Output::Ended { peer, doc, took } => {
                tracing::trace!(%peer, doc = %doc.short(), ?took, "sync session ended");
            }
        }
    }

    fn sync_shared_groups(&mut self, peer: PeerId) {
        let Some(member) = member_of(&peer) else {
            return;
        };
        let groups: Vec<Hash32> = self.seals.values().map(GroupSeals::group).collect();
        for group in groups {
            if self.replica.is_member(&group, &member) {
                for doc in self.replica.docs_of(&group) {
                    self.start_sync(peer, doc);
                }
            }
        }
    }

    /// Compare heads with every connected member; retry direct connections
    /// to peers reached only through a relay.
    fn anti_entropy(&mut self) {
        // Refresh the Kademlia routing table (no-op until it knows a peer).
        let _ = self.swarm.behaviour_mut().kad.bootstrap();
        // Keep reaching the nodes of fellow members, and only them.
        let known: Vec<PeerId> = self.known.keys().copied().collect();
        for peer in known {
            if !self.shares_group(&peer) {
                self.known.remove(&peer);
            }
        }
        let peers: Vec<PeerId> = self.peers.keys().copied().collect();
        for peer in &peers {
            self.note_member(*peer);
        }
        // What each peer was last known to hold is read from the store,
        // off the loop; a session starts for each document that differs.
        let mut compare = Vec::new();
        for peer in peers {
            let Some(member) = member_of(&peer) else {
                continue;
            };
            for group in self.seals.values().map(GroupSeals::group) {
                if !self.replica.is_member(&group, &member) {
                    continue;
                }
                for doc in self.replica.docs_of(&group) {
                    let heads = self.replica.heads(&doc);
                    compare.push((peer, member, doc, heads));
                }
            }
            if let Some(p) = self.peers.get(&peer) {
                if p.relayed_only() && !p.direct_addrs.is_empty() {
                    let opts = DialOpts::peer_id(peer)
                        .addresses(p.direct_addrs.clone())
                        .condition(PeerCondition::Always)
                        .build();
                    let _ = self.swarm.dial(opts);
                }
            }
        }
        let replica = self.replica.clone();
        let done = self.done_tx.clone();
        self.tasks.spawn_blocking(move || {
            for (peer, member, doc, heads) in compare {
                if replica.peer_heads(&member, &doc) != heads {
                    let _ = done.blocking_send(Done::Pull(peer, doc));
                }
            }
        });
    }

    /// Whether `peer` is on the roll of a group this node follows.
    fn shares_group(&self, peer: &PeerId) -> bool {
        let Some(member) = member_of(peer) else {
            return false;
        };
        self.seals
            .values()
            .any(|seals| self.replica.is_member(&seals.group(), &member))
    }

    /// Remember a connected peer's node as one to reach again if it is a
    /// fellow member.
    fn note_member(&mut self, peer: PeerId) {
        if self.known.contains_key(&peer) || !self.shares_group(&peer) {
            return;
        }
        let mut known = Known::default();
        if let Some(p) = self.peers.get(&peer) {
            for addr in p.direct_addrs.iter().rev() {
                known.remember(addr.clone());
            }
        }
        self.known.insert(peer, known);
    }

    fn peer_infos(&self) -> Vec<PeerInfo> {
        let group_names: Vec<(Hash32, String)> = self
            .seals
            .values()
            .map(|s| (s.group(), s.group().short()))
            .collect();
        let mut out: Vec<PeerInfo> = self
            .peers
            .iter()
            .filter_map(|(peer, p)| Some((peer, p, p.best()?)))
            .map(|(peer, p, link)| {
                let groups = member_of(peer)
                    .map(|m| {
                        group_names
                            .iter()
                            .filter(|(g, _)| self.replica.is_member(g, &m))
                            .map(|(_, n)| n.clone())
                            .collect()
                    })
                    .unwrap_or_default();
                PeerInfo {
                    peer: peer.to_string(),
                    groups,
                    address: link.address.to_string(),
                    relayed: link.relayed,
                    hole_punched: link.hole_punched,
                    connection: reach::link_kind(link).to_string(),
                    lan: is_lan(&link.address),
                    latency_ms: p.rtt.map(|d| d.as_secs_f64() * 1000.0),
                    score: self.swarm.behaviour().gossipsub.peer_score(peer),
                }
            })
            .collect();
        out.sort_by(|a, b| a.peer.cmp(&b.peer));
        out
    }

    /// The network's status as the loop knows it, with each group's
    /// connected members (whether they are in sync is for the caller to
    /// fill in, off the loop).
    fn status(&self) -> (NetStatus, Vec<Vec<MemberId>>) {
        let (sync, members) = self
            .seals
            .values()
            .map(|seals| {
                let group = &seals.group();
                let members: Vec<MemberId> = self
                    .peers
                    .keys()
                    .filter_map(member_of)
                    .filter(|m| self.replica.is_member(group, m))
                    .collect();
                let sync = GroupSync {
                    group: *group,
                    heads: self.replica.heads(group).unwrap_or_default(),
                    peers: Vec::new(),
                    seal_key: seals.current().map(|s| hex_of(&s.key_id())),
                    seal_keys_held: seals.held(),
                };
                (sync, members)
            })
            .unzip();
        let status = NetStatus {
            listening: self.swarm.listeners().map(|a| a.to_string()).collect(),
            external: self
                .swarm
                .external_addresses()
                .map(|a| a.to_string())
                .collect(),
            connected_peers: self.peers.len(),
            nat: format!("{:?}", self.swarm.behaviour().autonat.nat_status()).to_lowercase(),
            reachability: reach::reachability(
                &self.swarm.behaviour().autonat.nat_status(),
                &self.relays,
            ),
            relays: self
                .relays
                .iter()
                .map(|(peer, r)| RelaySlot {
                    relay: peer.to_string(),
                    connected: self.swarm.is_connected(peer),
                    reserved: r.reserved,
                })
                .collect(),
            sync,
            gossip: GossipCounts {
                unique_received: self.metric_total("topic_msg_recv_counts_total"),
                copies_received: self.metric_total("topic_msg_recv_counts_unfiltered_total"),
                ..self.counts.clone()
            },
            sync_traffic: crate::SyncCounts {
                bytes_sent: self
                    .traffic
                    .bytes_sent
                    .load(std::sync::atomic::Ordering::Relaxed),
                bytes_received: self
                    .traffic
                    .bytes_received
                    .load(std::sync::atomic::Ordering::Relaxed),
                requests_sent: self
                    .traffic
                    .requests_sent
                    .load(std::sync::atomic::Ordering::Relaxed),
            },
        };
        (status, members)
    }

    /// Sum over topics of one gossipsub counter.
    fn metric_total(&self, name: &str) -> u64 {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.metrics).is_err() {
            return 0;
        }
        text.lines()
            .filter(|l| l.split(['{', ' ']).next() == Some(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }
}

/// Admit `member` with `ticket` if it is a ticket this node issued, still
/// valid, for a group it holds.
fn admit(
    replica: &dyn Replica,
    ticket: &Ticket,
    me: MemberId,
    member: MemberId,
) -> Result<(), String> {
    if ticket.inviter != me {
        return Err("this ticket was not issued by this node".into());
    }
    ticket.verify(machine_now_ms()).map_err(|e| e.to_string())?;
    if replica.heads(&ticket.group).is_none() {
        return Err("unknown document".into());
    }
    replica.admit(&ticket.group, member, ticket.id(), ticket.signature.clone())
}

/// The overload policy: while more than `max_bytes` of changes wait for
/// validation, shed the oldest waiting message of a ledger period (a
/// payment) first; only when none is left, the oldest of a group document
/// (governance and distress signals, which live there, go last). A shed
/// message is ignored, not rejected: nobody is penalised, it is not
/// forwarded, and its changes come by sync later.
fn shed_overload(queue: &mut Vec<Queued>, max_bytes: usize) -> Vec<(MessageId, PeerId)> {
    let mut total: usize = queue.iter().map(queued_bytes).sum();
    let mut shed = Vec::new();
    while total > max_bytes {
        let is_period = |q: &Queued| q.3[0].doc != q.2;
        let Some(at) = queue
            .iter()
            .position(is_period)
            .or((!queue.is_empty()).then_some(0))
        else {
            break;
        };
        let message = queue.remove(at);
        total -= queued_bytes(&message);
        shed.push((message.0, message.1));
    }
    shed
}

/// The change bytes of a gossip message waiting for validation.
fn queued_bytes(q: &Queued) -> usize {
    q.3.iter().map(|c| c.change.len()).sum()
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sorted(mut v: Vec<Hash32>) -> Vec<Hash32> {
    v.sort();
    v
}

/// Private, loopback or link-local: the same local network.
fn is_lan(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_private() || ip.is_loopback() || ip.is_link_local(),
        Protocol::Ip6(ip) => {
            let ip = IpAddr::V6(ip);
            ip.is_loopback() || matches!(ip, IpAddr::V6(v6) if (v6.segments()[0] & 0xfe00) == 0xfc00 || (v6.segments()[0] & 0xffc0) == 0xfe80)
        }
        _ => false,
    })
}

/// The machine's time, for what the transport stamps and checks (sealed
/// gossip's age, a ticket's expiry). Not the node's `Clock`: tests move
/// that one to make governance time pass on some nodes and not others,
/// and gossip between them must still be fresh by the wall.
fn machine_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nestwork_docs::{ApplyReport, Charter, GroupGenesis, GroupKind, SignedDoc, Writer};
    use std::sync::Mutex;

    /// A replica holding one group document and nothing else; it panics
    /// when asked to apply the change `panic_on` (a stand-in for a bug).
    struct OneDoc {
        doc: Mutex<SignedDoc>,
        panic_on: Option<Hash32>,
    }

    impl Replica for OneDoc {
        fn groups(&self) -> Vec<(Hash32, Vec<u8>)> {
            Vec::new()
        }
        fn group_of(&self, doc: &Hash32) -> Option<Hash32> {
            let id = self.doc.lock().expect("lock").id();
            (id == *doc).then_some(id)
        }
        fn docs_of(&self, group: &Hash32) -> Vec<Hash32> {
            vec![*group]
        }
        fn genesis(&self, _: &Hash32) -> Option<Vec<u8>> {
            None
        }
        fn is_member(&self, _: &Hash32, _: &MemberId) -> bool {
            false
        }
        fn heads(&self, _: &Hash32) -> Option<Vec<Hash32>> {
            None
        }
        fn changes_since(&self, _: &Hash32, _: &[Hash32], _: usize) -> (Vec<SignedChange>, bool) {
            (Vec::new(), false)
        }
        fn apply_remote(
            &self,
            _: Hash32,
            changes: Vec<SignedChange>,
            _: bool,
        ) -> Result<ApplyReport, String> {
            if changes.iter().any(|c| Some(c.hash) == self.panic_on) {
                panic!("a bug in validation");
            }
            Ok(self.doc.lock().expect("lock").apply(changes))
        }
        fn admit(&self, _: &Hash32, _: MemberId, _: Hash32, _: Vec<u8>) -> Result<(), String> {
            Err("not here".into())
        }
        fn peer_heads(&self, _: &MemberId, _: &Hash32) -> Option<Vec<Hash32>> {
            None
        }
        fn set_peer_heads(&self, _: &MemberId, _: &Hash32, _: &[Hash32]) {}
        fn forget_peer_heads(&self, _: &MemberId, _: &Hash32) {}
        fn subscribe(&self) -> tokio::sync::broadcast::Receiver<DocEvent> {
            tokio::sync::broadcast::channel(1).1
        }
        fn keyring(&self, _: &Hash32) -> Option<nestwork_docs::seal::Keyring> {
            None
        }
    }

    fn writer(device: u8) -> Writer {
        Writer::new(MemberKey::from_secret([1; 32]), [device; 8])
    }

    fn group() -> SignedDoc {
        let genesis = GroupGenesis {
            name: "Riverside".to_string(),
            kind: GroupKind::Hub,
            parent: None,
            unit: "hours".to_string(),
            created_at_ms: 1_700_000_000_000,
            nonce: [1; 16],
            charter: Charter::default(),
        };
        SignedDoc::create_group(&writer(1), genesis, 5)
            .expect("create")
            .0
    }

    /// A description edit made on a copy of `doc` by device `device`.
    fn edit(doc: &SignedDoc, device: u8, text: &str) -> SignedChange {
        doc.clone()
            .set_description(&writer(device), text, 6)
            .expect("describe")
            .expect("a change")
    }

    fn message(n: u8, doc: &SignedDoc, change: SignedChange) -> Queued {
        (
            MessageId::new(&[n]),
            PeerId::random(),
            doc.id(),
            vec![change],
        )
    }

    /// Gossip arrives in any order: a change whose dependency has not come
    /// yet waits (the loop keeps its message and judges it again with the
    /// next batch, where it was ignored and everything fetched by sync: a
    /// soak node took 6,011 of 61,646 messages from gossip), and is taken
    /// once that change comes; a message whose changes are all held
    /// already is known, not accepted again.
    #[test]
    fn a_change_before_the_one_it_builds_on_waits_and_is_taken_when_that_comes() {
        let base = group();
        let mut author = base.clone();
        let first = author
            .set_description(&writer(1), "one", 6)
            .expect("describe")
            .expect("a change");
        let second = author
            .set_description(&writer(1), "two", 7)
            .expect("describe")
            .expect("a change");
        let replica = OneDoc {
            doc: Mutex::new(base.clone()),
            panic_on: None,
        };
        let early = message(2, &base, second);
        assert_eq!(
            validate_batch(&replica, std::slice::from_ref(&early)),
            vec![Verdict::Waiting]
        );
        let batch = vec![early, message(1, &base, first.clone())];
        assert_eq!(
            validate_batch(&replica, &batch),
            vec![Verdict::Accepted, Verdict::Accepted]
        );
        assert_eq!(
            validate_batch(&replica, &[message(3, &base, first)]),
            vec![Verdict::Known]
        );
        let doc = replica.doc.lock().expect("lock");
        assert_eq!(doc.description(), "two");
    }

    /// Finding 3: a change whose (actor, seq) is held with other content
    /// made the whole batch fail, rejecting honest messages batched with it.
    #[test]
    fn finding3_a_forked_change_is_ignored_and_honest_messages_batched_with_it_are_accepted() {
        let base = group();
        let held = edit(&base, 1, "one");
        let fork = edit(&base, 1, "two");
        let honest = edit(&base, 2, "three");
        let mut doc = base.clone();
        assert_eq!(doc.apply(vec![held]).applied.len(), 1);
        let replica = OneDoc {
            doc: Mutex::new(doc),
            panic_on: None,
        };
        let batch = vec![message(1, &base, fork.clone()), message(2, &base, honest)];
        assert_eq!(
            validate_batch(&replica, &batch),
            vec![Verdict::Known, Verdict::Accepted]
        );
        let doc = replica.doc.lock().expect("lock");
        assert_eq!(doc.forks(), &[fork][..], "the fork is kept as proof");
    }

    /// Finding 5 (overload): when validation falls behind, payments are
    /// shed before the group document, oldest first, down to the bound.
    #[test]
    fn finding5_overload_sheds_payments_first_and_the_group_document_last() {
        let base = group();
        let change = edit(&base, 1, "one");
        let size = change.change.len();
        let period = |n: u8| {
            let mut c = change.clone();
            c.doc = Hash32::of(b"a ledger period");
            message(n, &base, c)
        };
        let mut queue = vec![
            message(1, &base, change.clone()),
            period(2),
            message(3, &base, change.clone()),
            period(4),
        ];
        assert!(shed_overload(&mut queue, 4 * size).is_empty());
        let shed = shed_overload(&mut queue, 2 * size);
        let ids = |q: &[Queued]| q.iter().map(|m| m.0.clone()).collect::<Vec<_>>();
        assert_eq!(
            shed.into_iter().map(|(id, _)| id).collect::<Vec<_>>(),
            vec![MessageId::new(&[2]), MessageId::new(&[4])],
            "the payments went first, oldest first"
        );
        assert_eq!(
            ids(&queue),
            vec![MessageId::new(&[1]), MessageId::new(&[3])]
        );
        let shed = shed_overload(&mut queue, size);
        assert_eq!(
            shed[0].0,
            MessageId::new(&[1]),
            "then the oldest of the group"
        );
        assert_eq!(ids(&queue), vec![MessageId::new(&[3])]);
    }

    /// Finding 5: a panic in validation used to unwind out of the blocking
    /// task, so the loop never heard back and never validated again.
    #[test]
    fn finding5_a_panic_in_validation_rejects_its_message_and_the_others_are_judged() {
        let base = group();
        let bad = edit(&base, 1, "one");
        let honest = edit(&base, 2, "two");
        let replica = OneDoc {
            doc: Mutex::new(base.clone()),
            panic_on: Some(bad.hash),
        };
        let batch = vec![message(1, &base, bad), message(2, &base, honest)];
        assert_eq!(
            validate_guarded(&replica, &batch),
            vec![Verdict::Rejected, Verdict::Accepted]
        );
    }

    /// Issue 15, finding 4: a sealed message recorded and published again
    /// after gossipsub's duplicate cache forgot it was decoded and applied
    /// in full (every change a duplicate) by every node, at no cost to the
    /// sender. Now the loop refuses it by its seal time before decoding:
    /// it is counted, ignored without penalty, and never queued for
    /// validation, so nothing is applied.
    #[test]
    fn finding_4_a_sealed_message_replayed_after_the_duplicate_window_is_counted_and_never_applied()
    {
        let base = group();
        let change = edit(&base, 1, "one");
        let seals = GroupSeals::new(base.id(), b"genesis");
        let seal = seals.current().expect("the genesis key");
        let now = machine_now_ms();
        let sent = seal.seal(&encoding::encode(&vec![change.clone()]), now);

        // When it is sent: opened and decoded, to be queued and applied.
        let (on, changes) = open_gossip(Some(&seals), &sent, now).expect("fresh gossip");
        assert_eq!(on, base.id());
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].hash, change.hash);

        // The same bytes once gossipsub has forgotten them.
        let later = now + crate::topic::DUPLICATE_WINDOW.as_millis() as u64;
        let refused = open_gossip(Some(&seals), &sent, later).expect_err("a replay");
        assert!(
            matches!(refused, Refused::Untimely(g, OpenError::Stale { .. }) if g == base.id()),
            "{refused:?}"
        );
        assert_eq!(refused.acceptance(), MessageAcceptance::Ignore);
        let mut counts = GossipCounts::default();
        refused.count(&mut counts);
        assert_eq!(
            (counts.untimely, counts.ignored, counts.rejected),
            (1, 1, 0),
            "counted, not held against the sender"
        );

        // Refused before decoding: an old payload that is not changes at
        // all is refused by its time, a fresh one as malformed.
        let junk = |at| seal.seal(b"not a batch of changes", at);
        assert!(matches!(
            open_gossip(Some(&seals), &junk(now), later),
            Err(Refused::Untimely(..))
        ));
        assert_eq!(
            open_gossip(Some(&seals), &junk(later), later),
            Err(Refused::Invalid("malformed payload"))
        );
        // Sealed ahead of this node's clock: refused the same way.
        assert!(matches!(
            open_gossip(Some(&seals), &sent, now - 10 * 60 * 1000),
            Err(Refused::Untimely(_, OpenError::Ahead { .. }))
        ));
    }
}
