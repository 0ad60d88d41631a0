//! libp2p networking for a Nestwork node.
//!
//! One task (the [`actor`]) owns the libp2p `Swarm`; the rest of the node
//! holds a [`NetHandle`] that sends it commands over a bounded channel, each
//! with a oneshot for the reply. The network never touches the store or a
//! document directly: it reaches them through the [`Replica`] trait, which
//! the node implements, so every change that arrives is checked by the same
//! engine as a local one before it is stored, and stored (flushed) before it
//! is forwarded.
//!
//! - [`behaviour`]: the composed libp2p behaviour (TCP and QUIC with Noise
//!   and Yamux; identify, ping, mDNS, Kademlia, relay client and server,
//!   DCUtR, AutoNAT, gossipsub, the sync protocol, a block list);
//! - [`topic`]: topic names and sealed gossip payloads;
//! - [`protocol`]: the sync and join protocol and its bounded codec;
//! - [`sync`]: the sync session as a state machine with no I/O, and the
//!   disk work it asks for (tested over a simulated network in
//!   `tests/sync_sim.rs`);
//! - [`reach`]: connections, relay slots and members to reach again, and
//!   the plain words for where the node stands;
//! - [`ticket`]: invite tickets;
//! - [`actor`]: the event loop and the handle; it drives the sync
//!   sessions, carrying out what they say.

pub mod actor;
pub mod behaviour;
mod intake;
mod join;
pub mod protocol;
pub mod reach;
mod setup;
pub mod sync;
pub mod ticket;
pub mod topic;

use nestwork_core::{DocId, GroupId, Hash32, MemberId, SignedChange};
use nestwork_docs::ApplyReport;
use serde::{Deserialize, Serialize};

pub use actor::{spawn, NetHandle};
pub use ticket::{Ticket, TicketError};

/// What went wrong in one of the network's public functions, in words the
/// person running the node can act on.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The event loop has stopped (the node is shutting down).
    #[error("the network is not running")]
    Stopped,
    /// The member key could not be made a libp2p identity.
    #[error("the member key cannot be used as a libp2p identity: {0}")]
    Key(String),
    /// A transport or the behaviour could not be built.
    #[error("cannot set up the network: {0}")]
    Setup(String),
    /// A configured address does not parse.
    #[error("{what} {addr:?}: {reason}")]
    Address {
        /// Which setting: listen, external, peer or relay address.
        what: &'static str,
        /// The address as configured.
        addr: String,
        /// Why it does not parse.
        reason: String,
    },
    /// A bootstrap or relay address lacks the peer id that tells whom it
    /// reaches.
    #[error("{0} must end with /p2p/PEER_ID")]
    NoPeerId(libp2p::Multiaddr),
    /// Listening on an address was refused (taken, or not this machine's).
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: libp2p::Multiaddr,
        /// Why.
        reason: String,
    },
    /// A listener failed while the network started.
    #[error("listening failed: {0}")]
    ListenFailed(String),
    /// The listeners did not come up in time.
    #[error("listen addresses were not bound within 10 s")]
    ListenTimeout,
    /// A dial could not be started (a bad address, the peer blocked).
    #[error("cannot dial: {0}")]
    Dial(String),
    /// Joining a group failed; the reason is meant for the person joining
    /// (an expired ticket, the inviter unreachable or refusing).
    #[error("{0}")]
    Join(String),
    /// A test's sync probe was refused or failed.
    #[error("{0}")]
    Probe(String),
}

impl From<actor::Stopped> for NetError {
    fn from(_: actor::Stopped) -> Self {
        NetError::Stopped
    }
}

/// The network's settings (the `[network]` section of the config).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetConfig {
    /// Multiaddrs to listen on.
    pub listen: Vec<String>,
    /// Find peers on the local network by mDNS.
    pub mdns: bool,
    /// Peers to contact at start (multiaddrs ending in `/p2p/PEER_ID`), for
    /// Kademlia and reach beyond the local network.
    pub bootstrap: Vec<String>,
    /// Relays to reserve a slot on (multiaddrs ending in `/p2p/PEER_ID`), so
    /// that peers behind other NATs can reach this node through them.
    pub relays: Vec<String>,
    /// Serve as a relay for other nodes.
    pub relay_server: bool,
    /// Addresses at which others can reach this node (a forwarded port on
    /// a home router, a public address). A relay serves only once it knows
    /// one; a relay with none configured announces its listen addresses.
    pub external: Vec<String>,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            listen: vec![
                "/ip4/0.0.0.0/tcp/0".into(),
                "/ip4/0.0.0.0/udp/0/quic-v1".into(),
            ],
            mdns: true,
            bootstrap: Vec::new(),
            relays: Vec::new(),
            relay_server: false,
            external: Vec::new(),
        }
    }
}

/// Something that happened to a document on this node.
#[derive(Clone, Debug)]
pub struct DocEvent {
    /// The document.
    pub doc: DocId,
    /// The changes, as stored.
    pub changes: Vec<SignedChange>,
    /// Made here (to publish) rather than received.
    pub local: bool,
    /// For changes made here to a group document: the seal key current at
    /// their causal past, to seal them with (whoever was on the roll then
    /// may read them).
    pub seal_with: Option<Hash32>,
}

/// What the network needs from the node.
///
/// The lookups (`groups`, `group_of`, `docs_of`, `genesis`, `is_member`,
/// `heads`, `keyring`) are called on the event loop: they must answer from
/// memory at once, never waiting for the disk or for a writer. Every other
/// method may wait (for the disk, or for the node's lock, which a writer
/// holds while the store flushes) and is called off the loop, in
/// `spawn_blocking`.
pub trait Replica: Send + Sync + 'static {
    /// Every group this node holds, with its genesis record's bytes (the
    /// seed of the group's gossip seal).
    fn groups(&self) -> Vec<(GroupId, Vec<u8>)>;
    /// The group a document belongs to (a group document belongs to
    /// itself); `None` for a document this node does not hold.
    fn group_of(&self, doc: &DocId) -> Option<GroupId>;
    /// Whether `doc` is a group's own document (not a ledger period) this
    /// node holds.
    fn is_group_doc(&self, doc: &DocId) -> bool {
        self.group_of(doc).is_some_and(|g| g.doc() == *doc)
    }
    /// Every document of a group this node holds: the group document and
    /// its ledger periods.
    fn docs_of(&self, group: &GroupId) -> Vec<DocId>;
    /// The genesis bytes of one group.
    fn genesis(&self, group: &GroupId) -> Option<Vec<u8>>;
    /// Whether `member` is on the roll of the group `doc` belongs to.
    fn is_member(&self, doc: &DocId, member: &MemberId) -> bool;
    /// The document's heads (`None` if this node does not hold it).
    fn heads(&self, doc: &DocId) -> Option<Vec<Hash32>>;
    /// Changes not in the history of those of `have` this node knows, in
    /// causal order, up to about `max_bytes`; `true` if more remain.
    fn changes_since(
        &self,
        doc: &DocId,
        have: &[Hash32],
        max_bytes: usize,
    ) -> (Vec<SignedChange>, bool);
    /// Check and apply changes from a peer; store what is valid. Changes to
    /// a document this node does not hold are refused unless `joining`.
    fn apply_remote(
        &self,
        doc: DocId,
        changes: Vec<SignedChange>,
        joining: bool,
    ) -> Result<ApplyReport, String>;
    /// Admit `member` to the group with the invite `ticket` (issued by this
    /// node, which signed it with `ticket_signature`); refuses a ticket that
    /// was already used.
    fn admit(
        &self,
        group: &GroupId,
        member: MemberId,
        ticket: Hash32,
        ticket_signature: Vec<u8>,
    ) -> Result<(), String>;
    /// The heads `peer` had when last synced.
    fn peer_heads(&self, peer: &MemberId, doc: &DocId) -> Option<Vec<Hash32>>;
    /// Remember the heads `peer` has.
    fn set_peer_heads(&self, peer: &MemberId, doc: &DocId, heads: &[Hash32]);
    /// Forget the heads `peer` was last known to have: unknown again.
    fn forget_peer_heads(&self, peer: &MemberId, doc: &DocId);
    /// Events about documents (local changes to publish, new groups).
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<DocEvent>;
    /// The group's gossip seal keys as this node holds them now, and the
    /// one to seal with; `None` for a group this node does not hold.
    fn keyring(&self, group: &GroupId) -> Option<nestwork_docs::seal::Keyring>;
}

/// A connected peer, for `nestwork peers`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PeerInfo {
    /// Peer id (= member id).
    pub peer: String,
    /// Names of the groups we share with them.
    pub groups: Vec<String>,
    /// The address of the connection.
    pub address: String,
    /// Through a relay rather than direct.
    pub relayed: bool,
    /// A direct connection made by hole punching through NAT (DCUtR).
    #[serde(default)]
    pub hole_punched: bool,
    /// The connection in plain words: direct, direct (hole punched), relayed.
    #[serde(default)]
    pub connection: String,
    /// On the local network (private, loopback or link-local address).
    pub lan: bool,
    /// Last ping round trip, in milliseconds.
    pub latency_ms: Option<f64>,
    /// Their gossip score as we see it (negative after invalid messages).
    pub score: Option<f64>,
}

/// The network's state, for `nestwork status`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct NetStatus {
    /// Addresses we listen on.
    pub listening: Vec<String>,
    /// Addresses others have confirmed reach us.
    pub external: Vec<String>,
    /// Connected peers.
    pub connected_peers: usize,
    /// AutoNAT's view: public, private or unknown.
    pub nat: String,
    /// Where this node stands, in plain words: reachable directly, behind
    /// NAT and reachable through a relay, or not reachable.
    #[serde(default)]
    pub reachability: String,
    /// The configured relays and our slot on each.
    #[serde(default)]
    pub relays: Vec<RelaySlot>,
    /// Per group and connected member: whether we are in sync.
    pub sync: Vec<GroupSync>,
    /// Gossip messages received (after gossipsub's own duplicate filter),
    /// by verdict: accepted and forwarded, ignored (replays, sealed too
    /// long ago, or waiting for dependencies), rejected (invalid; the
    /// sender's score pays).
    pub gossip: GossipCounts,
    /// Traffic of the sync protocol since start.
    pub sync_traffic: SyncCounts,
}

/// A configured relay, for `nestwork status`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RelaySlot {
    /// The relay's peer id.
    pub relay: String,
    /// Connected to it now.
    pub connected: bool,
    /// It accepted our reservation: others can reach us through it.
    pub reserved: bool,
}

/// Sync protocol traffic since the node started.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SyncCounts {
    /// Bytes sent (frames, length prefixes included).
    pub bytes_sent: u64,
    /// Bytes received.
    pub bytes_received: u64,
    /// Requests sent: each is one round trip.
    pub requests_sent: u64,
}

/// Counts of gossip verdicts since the node started.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct GossipCounts {
    /// Verified, stored, forwarded.
    pub accepted: u64,
    /// Already known or waiting for dependencies: not forwarded.
    pub ignored: u64,
    /// Invalid: not stored, not forwarded, sender penalised.
    pub rejected: u64,
    /// Of those ignored: sealed with a key this node does not hold (a
    /// group key made after it left, or one whose record is still on its
    /// way, which a sync with the sender then brings).
    #[serde(default)]
    pub unopened: u64,
    /// Of those ignored: opened, but sealed longer ago than gossip lives
    /// (`topic::MAX_SEAL_AGE`: old gossip replayed after gossipsub forgot
    /// it) or ahead of this node's clock; refused before anything in them
    /// was decoded. A steady count from one member means a clock is off.
    #[serde(default)]
    pub untimely: u64,
    /// Distinct messages received (gossipsub's count after its duplicate
    /// filter).
    pub unique_received: u64,
    /// Copies received, duplicates included: `copies_received /
    /// unique_received` is how many times each message arrived.
    pub copies_received: u64,
    /// Of those ignored: every change was here already (most often
    /// brought by a sync first), or forks its device's history.
    #[serde(default)]
    pub known: u64,
    /// Of those ignored: waited longer than 4 s for changes this node
    /// lacked (gossip arrives in any order; a message waits and is judged
    /// again with the next ones); its sender is then asked by sync.
    #[serde(default)]
    pub waited: u64,
    /// Shed unchecked because validation fell behind (payments first,
    /// the group document with its distress signals last); sync brings
    /// their changes later.
    #[serde(default)]
    pub shed: u64,
}

/// Sync state of one group with each connected member.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GroupSync {
    /// The group.
    pub group: GroupId,
    /// Our heads.
    pub heads: Vec<Hash32>,
    /// Each connected member, and whether their last known heads equal ours.
    pub peers: Vec<(String, bool)>,
    /// The short id (hex) of the key gossip is sealed with now; `None`
    /// while this node holds no key held by members only.
    #[serde(default)]
    pub seal_key: Option<String>,
    /// How many seal keys this node holds for the group.
    #[serde(default)]
    pub seal_keys_held: usize,
}
