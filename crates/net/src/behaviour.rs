#![allow(missing_docs)] // the NetworkBehaviour derive generates an undocumented event enum
//! The composed libp2p behaviour and its tuning.

use std::time::Duration;

use libp2p::gossipsub::{
    self, AllowAllSubscriptionFilter, MaxCountSubscriptionFilter, MessageAuthenticity,
    PeerScoreParams, PeerScoreThresholds, TopicScoreParams, ValidationMode,
};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    allow_block_list, autonat, connection_limits, dcutr, identify, identity, kad, mdns, ping,
    relay, request_response, StreamProtocol,
};
use nestwork_core::Hash32;

use crate::protocol::{Codec, PROTOCOL};
use crate::topic::DUPLICATE_WINDOW;

/// Identify's protocol version string.
pub const IDENTIFY_VERSION: &str = "/nestwork/1";
pub use nestwork_core::limits::MAX_GOSSIP_BYTES;
use nestwork_core::limits::{
    MAX_CONNECTIONS_PER_PEER, MAX_INCOMING_CONNECTIONS, MAX_PEER_TOPICS, MAX_PENDING_INCOMING,
    MAX_SYNC_STREAMS,
};

/// Everything a Nestwork node speaks.
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    /// Refuses connections from blocked peers (used to cut a partition in
    /// tests, and to shut out abusive peers).
    pub blocks: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    /// Exchange of listen addresses and protocols.
    pub identify: identify::Behaviour,
    /// Liveness and latency.
    pub ping: ping::Behaviour,
    /// Local network discovery (off with `--no-mdns`).
    pub mdns: Toggle<mdns::tokio::Behaviour>,
    /// Wider discovery.
    pub kad: kad::Behaviour<kad::store::MemoryStore>,
    /// Reach and be reached through relays.
    pub relay_client: relay::client::Behaviour,
    /// Serve as a relay (off unless configured).
    pub relay_server: Toggle<relay::Behaviour>,
    /// Upgrade relayed connections to direct ones by hole punching.
    pub dcutr: dcutr::Behaviour,
    /// Learn whether we are reachable from outside.
    pub autonat: autonat::Behaviour,
    /// Live propagation on group topics.
    pub gossipsub: gossipsub::Behaviour,
    /// Catch-up sync and joining.
    pub sync: request_response::Behaviour<Codec>,
    /// Bounds on connections, so that strangers cannot open without limit
    /// (see `nestwork_core::limits`).
    pub limits: connection_limits::Behaviour,
}

impl Behaviour {
    /// Build the behaviour for `key`.
    pub fn new(
        key: &identity::Keypair,
        relay_client: relay::client::Behaviour,
        mdns_on: bool,
        relay_server: bool,
        metrics: &mut prometheus_client::registry::Registry,
        sync_codec: Codec,
    ) -> Result<Behaviour, Box<dyn std::error::Error + Send + Sync>> {
        let peer_id = key.public().to_peer_id();
        let mdns = if mdns_on {
            Some(
                mdns::tokio::Behaviour::new(mdns::Config::default(), peer_id)
                    .map_err(|e| format!("mDNS: {e}"))?,
            )
        } else {
            None
        };
        let mut kad = kad::Behaviour::new(peer_id, kad::store::MemoryStore::new(peer_id));
        kad.set_mode(Some(kad::Mode::Server));
        let mut gossipsub = gossipsub::Behaviour::new_with_subscription_filter(
            MessageAuthenticity::Signed(key.clone()),
            gossip_config()?,
            subscription_filter(),
        )?
        .with_metrics(metrics, Default::default());
        gossipsub.with_peer_score(score_params(), score_thresholds())?;
        Ok(Behaviour {
            blocks: Default::default(),
            identify: identify::Behaviour::new(identify::Config::new(
                IDENTIFY_VERSION.into(),
                key.public(),
            )),
            // Two pings unanswered close a connection (see the actor): a
            // dead path is noticed in about 20 s, not TCP's minutes.
            ping: ping::Behaviour::new(
                ping::Config::new()
                    .with_interval(Duration::from_secs(5))
                    .with_timeout(Duration::from_secs(5)),
            ),
            mdns: mdns.into(),
            kad,
            relay_client,
            relay_server: relay_server
                .then(|| relay::Behaviour::new(peer_id, relay_config()))
                .into(),
            dcutr: dcutr::Behaviour::new(peer_id),
            autonat: autonat::Behaviour::new(peer_id, Default::default()),
            gossipsub,
            sync: request_response::Behaviour::with_codec(
                sync_codec,
                [(
                    StreamProtocol::new(PROTOCOL),
                    request_response::ProtocolSupport::Full,
                )],
                request_response::Config::default()
                    .with_request_timeout(Duration::from_secs(60))
                    .with_max_concurrent_streams(MAX_SYNC_STREAMS),
            ),
            limits: connection_limits::Behaviour::new(
                connection_limits::ConnectionLimits::default()
                    .with_max_established_per_peer(Some(MAX_CONNECTIONS_PER_PEER))
                    .with_max_established_incoming(Some(MAX_INCOMING_CONNECTIONS))
                    .with_max_pending_incoming(Some(MAX_PENDING_INCOMING)),
            ),
        })
    }
}

/// A relay for a group's members carries whole sync sessions, not just a
/// hole-punching handshake: the default limits (2 minutes, 128 KiB per
/// circuit) would cut a catch-up short.
/// A community's relay: circuits last (members sync through them), and a
/// member whose laptop restarted or moved, leaving a dead connection or
/// two the relay has not noticed yet, still gets a slot. The rate limits
/// against floods stay libp2p's.
fn relay_config() -> relay::Config {
    relay::Config {
        max_circuit_duration: Duration::from_secs(24 * 60 * 60),
        max_circuit_bytes: 1 << 30,
        max_reservations_per_peer: 8,
        max_circuits: 64,
        max_circuits_per_peer: 8,
        ..relay::Config::default()
    }
}

/// Which of a peer's topic subscriptions gossipsub keeps: up to
/// [`MAX_PEER_TOPICS`], in one message or over time. gossipsub's default
/// drops a peer's whole subscription message past 100 topics, and a node
/// sends all its topics in one message when it connects: a member of more
/// than 100 groups had its subscriptions ignored by every peer and got no
/// live gossip at all, only the anti-entropy sync. A peer's subscriptions
/// to topics this node does not follow must be kept too, since this node
/// may join that group over the same connection later (peers do not send
/// their subscriptions again).
fn subscription_filter() -> MaxCountSubscriptionFilter<AllowAllSubscriptionFilter> {
    MaxCountSubscriptionFilter {
        filter: AllowAllSubscriptionFilter {},
        max_subscribed_topics: MAX_PEER_TOPICS,
        max_subscriptions_per_request: MAX_PEER_TOPICS,
    }
}

/// Gossipsub tuned for groups of 3 to 200 nodes.
///
/// - Mesh degree 5 (between 3 and 10): in a 3-node group everyone is in
///   everyone's mesh; at 200 nodes a degree of 5 still reaches all in about
///   log5(200) ≈ 3.3 hops, while each node receives fewer duplicate copies
///   than with the default 6 to 12. Lazy gossip (IHAVE) to 6 more peers
///   repairs what eager push misses.
/// - IDONTWANT for every message, however small: a node that has a message
///   tells its mesh at once, so fewer copies cross the wire.
/// - No flood publishing: the publisher sends to its mesh like everyone
///   else, so a change is not sent to every connected peer at once.
/// - Strict signing and explicit validation: nothing is forwarded until the
///   node has checked and stored the signed change inside.
/// - Message ids are content hashes of the sealed payload (the first 20
///   bytes of its SHA-256), not of the sender and sequence number: the same sealed bytes are one message whoever publishes them,
///   so a recorded message re-wrapped in a new envelope (another source,
///   another seqno, its own signature) is still dropped as a duplicate.
///   Changing one byte of the sealed payload breaks its seal instead.
/// - The message cache keeps a message for 15 heartbeats (10.5 s, not
///   gossipsub's 5, 3.5 s): a message is forwarded only once validation
///   has stored its changes, and a node catching up, or under a busy
///   group's full load, validates several seconds behind; past the cache,
///   what it validated is stored but never forwarded (a 60-minute soak
///   logged this hundreds of thousands of times). IHAVE still names only
///   the last 3 heartbeats' messages.
/// - The duplicate cache remembers ids for [`DUPLICATE_WINDOW`], which
///   outlasts the span a sealed message is accepted in (its seal time,
///   inside the seal, must be within `topic::MAX_SEAL_AGE` and
///   `topic::CLOCK_SKEW` of the receiver's clock): a replay is either
///   dropped here or refused as stale, never validated twice.
fn gossip_config() -> Result<gossipsub::Config, String> {
    gossipsub::ConfigBuilder::default()
        .validation_mode(ValidationMode::Strict)
        .validate_messages()
        .message_id_fn(|m| gossipsub::MessageId::from(Hash32::of(&m.data).0[..20].to_vec()))
        .max_transmit_size(MAX_GOSSIP_BYTES)
        .mesh_n(5)
        .mesh_n_low(3)
        .mesh_n_high(10)
        .mesh_outbound_min(2)
        .gossip_lazy(6)
        .heartbeat_interval(Duration::from_millis(700))
        .history_length(15)
        .history_gossip(3)
        .flood_publish(false)
        .idontwant_message_size_threshold(1)
        .duplicate_cache_time(DUPLICATE_WINDOW)
        .build()
        .map_err(|e| format!("gossipsub config: {e}"))
}

/// Peer scoring: an invalid message costs a lot and decays slowly, so a
/// peer that sends forged or malformed messages is soon graylisted (its
/// messages ignored, nothing gossiped to it). Colocation penalties are off:
/// nodes of a field group share one NAT address, and tests share loopback.
/// Mesh delivery penalties are off too: a quiet group is not a faulty one.
fn score_params() -> PeerScoreParams {
    PeerScoreParams {
        ip_colocation_factor_weight: 0.0,
        ..PeerScoreParams::default()
    }
}

/// Score thresholds: gossip to peers above -10, publish to peers above -50,
/// ignore everything from peers below -80.
fn score_thresholds() -> PeerScoreThresholds {
    PeerScoreThresholds {
        gossip_threshold: -10.0,
        publish_threshold: -50.0,
        graylist_threshold: -80.0,
        accept_px_threshold: 10.0,
        opportunistic_graft_threshold: 3.0,
    }
}

/// Scoring for one group topic. The rewards are small (at most 36 for an
/// hour in the mesh, at most 50 for useful first deliveries) and the
/// penalty for invalid messages is large and slow to fade (the count of
/// invalid messages is squared, times -30, decaying 1% a second): two
/// forged or malformed messages take a peer below the graylist threshold,
/// and honest behaviour cannot buy that back quickly.
pub fn topic_score_params() -> TopicScoreParams {
    TopicScoreParams {
        topic_weight: 1.0,
        time_in_mesh_weight: 0.01,
        time_in_mesh_quantum: Duration::from_secs(1),
        time_in_mesh_cap: 3600.0,
        first_message_deliveries_weight: 0.5,
        first_message_deliveries_decay: 0.9,
        first_message_deliveries_cap: 100.0,
        invalid_message_deliveries_weight: -30.0,
        invalid_message_deliveries_decay: 0.99,
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        ..TopicScoreParams::default()
    }
}
