//! Real nodes in one process, for multi-node tests and benchmarks.
//!
//! Each [`TestNode`] is a full node (sled store in a temporary directory,
//! the signed-document engine, the libp2p network) listening on 127.0.0.1
//! with mDNS off, with a key seeded from a number so runs are repeatable.
//! Waits are on conditions with a deadline that fails loudly, never blind
//! sleeps.

pub mod distress;
pub mod governance;
pub mod ledger_sim;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use libp2p::{Multiaddr, PeerId};
use nestwork_core::{DocId, GroupId, Hash32, MemberId, MemberKey, SignedChange};
use nestwork_docs::{SignedDoc, Writer};
use nestwork_net::actor::peer_of;
use nestwork_net::{NetConfig, NetHandle, Replica, Ticket};
use nestwork_node::node::CreateGroup;
use nestwork_node::{Clock, DataDir, Node, Running};

/// One running node.
pub struct TestNode {
    /// The node.
    pub node: Arc<Node>,
    /// Its network.
    pub net: NetHandle,
    /// Its seed (its key is `[seed; 32]`).
    pub seed: u8,
    running: Running,
    dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

/// How often a test node's ticker runs besides after changes (`nestwork
/// run`: once a second).
pub const TICK_EVERY: Duration = Duration::from_millis(200);

/// Network settings for tests: loopback TCP, mDNS off.
pub fn loopback_config() -> NetConfig {
    NetConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".into()],
        mdns: false,
        ..NetConfig::default()
    }
}

/// The key of seed `seed`.
pub fn key(seed: u8) -> MemberKey {
    MemberKey::from_secret([seed; 32])
}

impl TestNode {
    /// A fresh node with key `[seed; 32]` in a new temporary directory.
    pub async fn start(seed: u8) -> TestNode {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("node");
        let mut n = TestNode::start_in(&dir, seed, loopback_config()).await;
        n._tmp = Some(tmp);
        n
    }

    /// A fresh node whose clock is `clock` (shared, so tests move the
    /// time of several nodes at once).
    pub async fn start_clocked(seed: u8, clock: &Clock) -> TestNode {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("node");
        let mut n = TestNode::start_with(&dir, seed, loopback_config(), clock.clone()).await;
        n._tmp = Some(tmp);
        n
    }

    /// A node on an existing data directory (a restart) with `config`.
    pub async fn start_in(dir: &Path, seed: u8, config: NetConfig) -> TestNode {
        TestNode::start_with(dir, seed, config, Clock::default()).await
    }

    /// [`TestNode::start_in`] with a clock of the test's.
    pub async fn start_with(dir: &Path, seed: u8, config: NetConfig, clock: Clock) -> TestNode {
        let data = DataDir::new(dir);
        data.ensure().expect("data dir");
        let running = Running::start(&data, key(seed), clock, config, TICK_EVERY)
            .await
            .expect("start node");
        TestNode {
            node: running.node.clone(),
            net: running.net.clone(),
            running,
            seed,
            dir: dir.to_path_buf(),
            _tmp: None,
        }
    }

    /// The member id.
    pub fn member(&self) -> MemberId {
        key(self.seed).id()
    }

    /// The peer id.
    pub fn peer(&self) -> PeerId {
        peer_of(&self.member())
    }

    /// A dialable address, with `/p2p/<peer>`.
    pub async fn addr(&self) -> Multiaddr {
        let status = self.net.status().await.expect("status");
        let a: Multiaddr = status
            .listening
            .first()
            .expect("listening")
            .parse()
            .expect("addr");
        a.with(libp2p::multiaddr::Protocol::P2p(self.peer()))
    }

    /// Dial `other`.
    pub async fn connect(&self, other: &TestNode) {
        self.net.dial(other.addr().await).await.expect("dial");
    }

    /// Stop the network and close the store; returns what a restart needs.
    pub async fn stop(self) -> (PathBuf, u8, Option<tempfile::TempDir>) {
        let TestNode {
            node,
            net,
            running,
            seed,
            dir,
            _tmp,
        } = self;
        drop((node, net));
        running.stop().await.expect("stop node");
        (dir, seed, _tmp)
    }

    /// Sorted heads of `doc`.
    pub fn heads(&self, doc: &Hash32) -> Vec<Hash32> {
        let mut h = Replica::heads(&*self.node, &DocId::from(*doc)).unwrap_or_default();
        h.sort();
        h
    }

    /// The group's description on this node.
    pub fn description(&self, doc: &Hash32) -> Option<String> {
        self.node.group(&doc.to_hex()).ok().map(|g| g.description)
    }

    /// Found a group here.
    pub fn create_group(&self, name: &str) -> Hash32 {
        self.node
            .create_group(CreateGroup {
                name: name.into(),
                ..Default::default()
            })
            .expect("create group")
            .id
            .hash32()
    }

    /// Sign a payment as member `seed` on another device (tag `device`),
    /// built from what this node holds, the way a second machine with the
    /// same key would: it cites this node's view of the ledger. Returns the
    /// period document and the signed change, not yet given to anyone.
    pub fn payment_from_elsewhere(
        &self,
        group: Hash32,
        seed: u8,
        device: [u8; 8],
        to: MemberId,
        amount: u64,
    ) -> (Hash32, SignedChange) {
        use nestwork_docs::group_ledger::{period_id, GroupLedger};
        let replica: &dyn Replica = &*self.node;
        let group_id = GroupId::from(group);
        let mut group_doc = SignedDoc::empty(group);
        let report = group_doc.apply(replica.changes_since(&group_id.doc(), &[], usize::MAX).0);
        assert!(report.rejected.is_empty(), "group copy");
        let mut ledger = GroupLedger::of_group(&group_doc).expect("ledger");
        let mut period = 0;
        loop {
            let id = period_id(&group_id, period);
            if replica.heads(&id).is_none() {
                break;
            }
            // Read as the node reads a period it stored: the node checked
            // every change before it stored it.
            let changes = replica.changes_since(&id, &[], usize::MAX).0;
            let doc = SignedDoc::load_ledger_period(group, period, changes).expect("period");
            ledger.warm(period, doc);
            period += 1;
        }
        let writer = Writer::new(key(seed), device);
        let (period, mut changes) = crate::ledger_sim::sign_payment(
            &mut ledger,
            group,
            &writer,
            &group_doc,
            to,
            amount,
            "from elsewhere",
        );
        assert_eq!(changes.len(), 1, "no period closing due");
        let change = changes.pop().expect("the payment");
        (period_id(&group_id, period).hash32(), change)
    }

    /// Invite from this node and join from `other` over the network.
    pub async fn admit(&self, other: &TestNode, group: Hash32) {
        let view = self.node.group(&group.to_hex()).expect("group");
        let expires = self.node.now_ms() + 600_000;
        let ticket: Ticket = self
            .net
            .invite(GroupId::from(group), view.name, expires)
            .await
            .expect("invite");
        other.net.join(ticket).await.expect("join");
    }
}

/// Wait until `cond` holds; panic with `what` after `limit`.
pub async fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Start `n` nodes (seeds 1..=n); node 0 founds a group and admits the
/// others one by one over the network. Returns the nodes and the group.
pub async fn group_of(n: usize) -> (Vec<TestNode>, Hash32) {
    let mut nodes = Vec::with_capacity(n);
    for i in 0..n {
        nodes.push(TestNode::start(i as u8 + 1).await);
    }
    let group = nodes[0].create_group("Test group");
    for i in 1..n {
        nodes[0].admit(&nodes[i], group).await;
    }
    (nodes, group)
}

/// [`group_of`], then three random links (seeded) from each node, so the
/// group is a mesh as it would be after discovery rather than a star
/// around its founder; waits until every node sees the whole roll.
pub async fn meshed_group(n: usize, seed: u64) -> (Vec<TestNode>, Hash32) {
    use rand::{Rng, SeedableRng};
    let (nodes, group) = group_of(n).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for i in 1..n {
        for _ in 0..3 {
            let j = rng.gen_range(0..n);
            if j != i {
                nodes[i].connect(&nodes[j]).await;
            }
        }
    }
    wait_until(
        "every node to see the whole roll",
        Duration::from_secs(120),
        || {
            nodes.iter().all(|x| {
                x.node
                    .charter(&group.to_hex())
                    .is_ok_and(|c| c.members.len() == n)
            })
        },
    )
    .await;
    (nodes, group)
}

/// Wait until every node has the same heads for `doc`.
pub async fn converged(nodes: &[&TestNode], doc: &Hash32, limit: Duration) {
    wait_until("all nodes to reach the same heads", limit, || {
        let first = nodes[0].heads(doc);
        !first.is_empty() && nodes.iter().all(|n| n.heads(doc) == first)
    })
    .await;
}
