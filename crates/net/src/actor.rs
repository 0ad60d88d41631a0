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
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, MessageId, TopicHash};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::SwarmEvent;
use libp2p::{dcutr, identify, mdns, ping, relay, Multiaddr, PeerId, Swarm};
use nestwork_core::{encoding, DocId, GroupId, Hash32, MemberId, MemberKey, SignedChange};
use tokio::sync::{mpsc, oneshot};
use tokio_util::task::TaskTracker;

use crate::behaviour::{topic_score_params, Behaviour, BehaviourEvent, MAX_GOSSIP_BYTES};
use crate::intake::{
    machine_now_ms, open_gossip, validate_guarded, GossipIntake, Queued, Refused, Verdict,
};
use crate::join::{Joins, INVITER_UNREACHABLE};
use crate::protocol::{Request, Response, SYNC_BATCH_BYTES};
use crate::reach::{self, Known, Link, Peer, Relay};
use crate::setup::{build_swarm, dial_first_peers, listen, relays_of};
use crate::sync::{self, Input, Output, Sessions};
use crate::ticket::Ticket;
use crate::topic::{docs_topic, short_key_id, GroupSeals, ShortKeyId};
use crate::{
    DocEvent, GossipCounts, GroupSync, NetConfig, NetError, NetStatus, PeerInfo, RelaySlot, Replica,
};

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
        group: GroupId,
        name: String,
        expires_at_ms: u64,
        reply: oneshot::Sender<Ticket>,
    },
    Join(Ticket, JoinReply),
    Block(PeerId),
    Unblock(PeerId),
    /// Bytes to seal and publish on a group's topic, sealed at a given
    /// time (`None`: now).
    PublishRaw(GroupId, Vec<u8>, Option<u64>),
    ProbeSync(PeerId, DocId, ProbeReply),
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
        group: GroupId,
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
    pub async fn join(&self, ticket: Ticket) -> Result<GroupId, NetError> {
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
    pub async fn publish_raw(&self, group: GroupId, payload: Vec<u8>) -> Result<(), Stopped> {
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
        group: GroupId,
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
    pub async fn probe_sync(&self, peer: PeerId, doc: DocId) -> Result<String, NetError> {
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
        intake: GossipIntake::default(),
        sessions: Sessions::default(),
        peers: HashMap::new(),
        joins: Joins::default(),
        known: HashMap::new(),
        last_dial,
        resync: HashSet::new(),
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

/// Where the answer to a join goes.
type JoinReply = oneshot::Sender<Result<GroupId, String>>;
/// Where the answer to a probe goes: the hash of the changes it sent.
type ProbeReply = oneshot::Sender<Result<Hash32, String>>;

/// Blocking work finished off the loop.
enum Done {
    /// A gossip batch was applied: its messages, and what became of each.
    Validated(Vec<Queued>, Vec<Verdict>),
    /// An inbound request was handled.
    Respond(ResponseChannel<Response>, Response),
    /// A sync answer was applied.
    Synced(PeerId, DocId, sync::Applied),
    /// A member said it holds more for us than fit its request: ask it.
    Pull(PeerId, DocId),
    /// A sync session's request was worked out (`None`: nothing to ask).
    SyncReady(PeerId, DocId, Option<Request>),
    /// A join answer was applied.
    Joined(PeerId, Result<GroupId, String>, JoinReply),
}

/// What an outbound request was for.
enum Pending {
    /// A sync session's request, for this document.
    Sync(DocId),
    /// A join, with its ticket (sent again if the connection drops).
    Join(JoinReply, Ticket),
    /// A test's probe: answered with what came back.
    Probe(ProbeReply),
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
    /// Gossip opened and waiting for its verdict, and the counts.
    intake: GossipIntake,
    /// The sync sessions: what runs, waits its turn, waits for changes.
    sessions: Sessions<PeerId>,
    peers: HashMap<PeerId, Peer>,
    /// Joins waiting for a connection to their inviter, and the dials
    /// made for them.
    joins: Joins<(Ticket, JoinReply)>,
    /// Members' nodes we have been connected to, to reach again.
    known: HashMap<PeerId, Known>,
    /// When each member or relay was last dialed (not to hammer them).
    last_dial: HashMap<PeerId, Instant>,
    /// Peers this node lost when its address changed: it starts the
    /// catch-up with them on reconnecting, whichever side usually would.
    resync: HashSet<PeerId>,
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

    fn subscribe(&mut self, group: GroupId, genesis: &[u8]) {
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

    fn seal_for(&self, group: &GroupId) -> Option<&GroupSeals> {
        self.seals.get(&IdentTopic::new(docs_topic(group)).hash())
    }

    /// Take the group's keys as the node now holds them (after a change to
    /// the group document: a new key, a member gone or admitted).
    fn refresh_keys(&mut self, group: GroupId) {
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
                self.start_sync(peer, group.doc());
            }
        }
    }

    fn on_doc_event(&mut self, event: DocEvent) {
        // A group document not listed yet belongs to the group it founds.
        let group = (self.replica.group_of(&event.doc))
            .unwrap_or_else(|| GroupId::from(event.doc.hash32()));
        if self.seal_for(&group).is_none() {
            if let Some(genesis) = self.replica.genesis(&group) {
                self.subscribe(group, &genesis);
            }
        } else if event.doc == group.doc() {
            self.refresh_keys(group);
        }
        if !event.local || event.changes.is_empty() {
            return;
        }
        // Sealed with the key current at the changes' causal past: whoever
        // was on the roll then may read them (a removal reaches the member
        // removed), nobody who was off it.
        let key = if event.doc == group.doc() {
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
        group: GroupId,
        doc: DocId,
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
                                let theirs = replica.peer_heads(&m, &sync.group.doc()).map(sorted);
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
                self.publish(group, group.doc(), key, bytes, at)
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

    fn start_join(&mut self, ticket: Ticket, reply: JoinReply) {
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
        self.joins.wait(inviter, (ticket, reply));
        self.dial_for_join(inviter, addrs);
    }

    /// Dial the inviter for the joins waiting on it. The dial runs beside
    /// any other dial to the same peer (Kademlia, a relay, hole punching):
    /// whichever connects first carries the join.
    fn dial_for_join(&mut self, inviter: PeerId, addrs: Vec<Multiaddr>) {
        let opts = DialOpts::peer_id(inviter)
            .addresses(addrs.clone())
            .condition(PeerCondition::Always)
            .build();
        let id = opts.connection_id();
        let dial = match self.swarm.dial(opts) {
            Ok(()) => Some(id),
            Err(e) => {
                tracing::info!(peer = %inviter, error = %e, "cannot dial the inviter");
                None
            }
        };
        if !self.joins.dialed(inviter, addrs, dial, Instant::now()) {
            self.fail_joins(inviter);
        }
    }

    /// Every dial made for a join failed: try again shortly, or fail the
    /// joins past their deadline (see [`Joins::retry_later`]).
    fn join_dials_failed(&mut self, inviter: PeerId) {
        if !self.joins.retry_later(inviter, Instant::now()) {
            self.fail_joins(inviter);
        }
    }

    /// Tell every join waiting on `inviter` that it could not be reached.
    fn fail_joins(&mut self, inviter: PeerId) {
        for (_, reply) in self.joins.fail(inviter) {
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
                // Only our own dials for a join decide it; another dial's
                // failure is not the join's.
                if self.joins.dial_failed(peer, connection_id) && !self.swarm.is_connected(&peer) {
                    self.join_dials_failed(peer);
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
        for (ticket, reply) in self.joins.connected(peer_id) {
            self.send_join(peer_id, ticket, reply);
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
            refused.count(&mut self.intake.counts);
            self.swarm
                .behaviour_mut()
                .gossipsub
                .report_message_validation_result(&id, &source, refused.acceptance());
        }
        match opened {
            Ok((group, changes)) => {
                for (id, source) in self.intake.queue((id, source, group, changes)) {
                    self.swarm
                        .behaviour_mut()
                        .gossipsub
                        .report_message_validation_result(&id, &source, MessageAcceptance::Ignore);
                }
                self.validate(false);
            }
            Err(Refused::Unopened(group)) => {
                // A member whose node lacks a new key asks the sender for
                // the group document, which brings the key.
                tracing::debug!(peer = %source, group = %group.short(), "gossip sealed with a key this node does not hold");
                let me = self.key.id();
                if self.replica.is_member(&group.doc(), &me) {
                    self.start_sync(source, group.doc());
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

    /// Validate the next batch off the loop (see
    /// [`GossipIntake::next_batch`] for `retry`), unless one runs.
    fn validate(&mut self, retry: bool) {
        let Some(batch) = self.intake.next_batch(retry) else {
            return;
        };
        let replica = self.replica.clone();
        let done = self.done_tx.clone();
        self.tasks.spawn_blocking(move || {
            let verdicts = validate_guarded(&*replica, &batch);
            let _ = done.blocking_send(Done::Validated(batch, verdicts));
        });
    }

    /// Report a validated message to gossipsub, and count it.
    fn report_gossip(&mut self, id: &MessageId, source: &PeerId, verdict: Verdict) {
        let acceptance = self.intake.account(id, verdict);
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(id, source, acceptance);
    }

    /// Give up waiting messages (see [`GossipIntake::expire`]): ignored,
    /// and their senders asked by sync for what this node lacks.
    fn give_up_gossip(&mut self, given_up: Vec<Queued>) {
        let mut syncs = Vec::new();
        for (id, source, group, _) in given_up {
            self.report_gossip(&id, &source, Verdict::Waiting);
            syncs.extend(
                self.replica
                    .docs_of(&group)
                    .into_iter()
                    .map(|doc| (source, doc)),
            );
        }
        syncs.sort_unstable();
        syncs.dedup();
        for (peer, doc) in syncs {
            self.start_sync(peer, doc);
        }
    }

    fn on_done(&mut self, done: Done) {
        match done {
            Done::Validated(batch, verdicts) => {
                let (report, given_up) = self.intake.judged(batch, verdicts, Instant::now());
                for ((id, source, ..), verdict) in report {
                    self.report_gossip(&id, &source, verdict);
                }
                self.give_up_gossip(given_up);
                self.validate(false);
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
                    self.start_sync(inviter, doc.doc());
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
                                replica.changes_since(&ticket.group.doc(), &[], SYNC_BATCH_BYTES);
                            if !replica.is_member(&ticket.group.doc(), &member) {
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
                let expected = ticket.group.doc();
                let doc = changes.first().map(|c| DocId::from(c.doc));
                self.tasks.spawn_blocking(move || {
                    let result = match doc {
                        None => Err("the inviter sent an empty group".to_string()),
                        // Only the group the ticket names, nothing else.
                        Some(doc)
                            if doc != expected || changes.iter().any(|c| c.doc != doc.hash32()) =>
                        {
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
                                (None, Some(h)) if !h.is_empty() => Ok(ticket.group),
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
        self.joins.wait(inviter, (ticket, reply));
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
        if !self.intake.validating() {
            let given_up = self.intake.expire(Instant::now());
            self.give_up_gossip(given_up);
        }
        let now = Instant::now();
        for inviter in self.joins.expired(now) {
            if !self.swarm.is_connected(&inviter) {
                self.fail_joins(inviter);
            }
        }
        for (inviter, addrs) in self.joins.due_retries(now) {
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
    fn start_sync(&mut self, peer: PeerId, doc: DocId) {
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
            Output::Stored { .. } => self.validate(true),
            Output::Ended { peer, doc, took } => {
                tracing::trace!(%peer, doc = %doc.short(), ?took, "sync session ended");
            }
        }
    }

    fn sync_shared_groups(&mut self, peer: PeerId) {
        let Some(member) = member_of(&peer) else {
            return;
        };
        let groups: Vec<GroupId> = self.seals.values().map(GroupSeals::group).collect();
        for group in groups {
            if self.replica.is_member(&group.doc(), &member) {
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
                if !self.replica.is_member(&group.doc(), &member) {
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
            .any(|seals| self.replica.is_member(&seals.group().doc(), &member))
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
        let group_names: Vec<(GroupId, String)> = self
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
                            .filter(|(g, _)| self.replica.is_member(&g.doc(), &m))
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
                let group = seals.group();
                let members: Vec<MemberId> = self
                    .peers
                    .keys()
                    .filter_map(member_of)
                    .filter(|m| self.replica.is_member(&group.doc(), m))
                    .collect();
                let sync = GroupSync {
                    group,
                    heads: self.replica.heads(&group.doc()).unwrap_or_default(),
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
                ..self.intake.counts.clone()
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
    if replica.heads(&ticket.group.doc()).is_none() {
        return Err("unknown document".into());
    }
    replica.admit(&ticket.group, member, ticket.id(), ticket.signature.clone())
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
