//! Multi-node scenarios: real nodes in one process, on loopback, mDNS off,
//! seeded keys, and waits on conditions with deadlines.

use std::time::Duration;

use nestwork_core::{DocId, GroupId, Hash32, SignedChange};
use nestwork_docs::{SignedDoc, Writer};
use nestwork_net::NetConfig;
use nestwork_testkit::{converged, group_of, key, loopback_config, wait_until, TestNode};

const LIMIT: Duration = Duration::from_secs(60);

/// Logs for a failing run: `RUST_LOG=nestwork_net=debug cargo test ...`.
fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

async fn connect_all(nodes: &[TestNode]) {
    for i in 0..nodes.len() {
        for j in i + 1..nodes.len() {
            nodes[i].connect(&nodes[j]).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_a_change_on_one_appears_on_all() {
    let (nodes, group) = group_of(5).await;
    for n in &nodes {
        let roll = n.node.group(&group.to_hex()).expect("group").members;
        assert_eq!(roll.len(), 5, "every node sees all five members");
    }
    nodes[3]
        .node
        .describe(&group.to_hex(), "made on node 3")
        .expect("describe");
    wait_until("the change on all five nodes", LIMIT, || {
        nodes
            .iter()
            .all(|n| n.description(&group).as_deref() == Some("made on node 3"))
    })
    .await;
    converged(&nodes.iter().collect::<Vec<_>>(), &group, LIMIT).await;

    // Once the gossip mesh has formed, changes travel by gossip (not only
    // by the periodic anti-entropy sync): well within its 15 s period.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let start = std::time::Instant::now();
    nodes[1]
        .node
        .describe(&group.to_hex(), "by gossip")
        .expect("describe");
    wait_until(
        "the second change on all five nodes",
        Duration::from_secs(5),
        || {
            nodes
                .iter()
                .all(|n| n.description(&group).as_deref() == Some("by gossip"))
        },
    )
    .await;
    assert!(start.elapsed() < Duration::from_secs(5));
    let mut accepted = 0;
    for n in &nodes {
        accepted += n.net.status().await.expect("status").gossip.accepted;
    }
    assert!(accepted >= 1, "gossip carried the change");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_stopped_during_1000_changes_rejoins_and_converges() {
    let (mut nodes, group) = group_of(3).await;
    connect_all(&nodes).await;
    let (dir, seed, tmp) = nodes.pop().expect("node").stop().await;
    for i in 0..1000 {
        nodes[0]
            .node
            .describe(&group.to_hex(), &format!("edit {i}"))
            .expect("describe");
    }
    converged(&nodes.iter().collect::<Vec<_>>(), &group, LIMIT).await;

    let back = TestNode::start_in(&dir, seed, loopback_config()).await;
    back.connect(&nodes[0]).await;
    let all: Vec<&TestNode> = nodes.iter().chain(std::iter::once(&back)).collect();
    converged(&all, &group, LIMIT).await;
    assert_eq!(back.description(&group).as_deref(), Some("edit 999"));
    drop(tmp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_store_was_damaged_starts_names_the_group_and_gets_it_back_from_a_peer() {
    let (mut nodes, group) = group_of(2).await;
    connect_all(&nodes).await;
    for i in 0..20 {
        nodes[0]
            .node
            .describe(&group.to_hex(), &format!("edit {i}"))
            .expect("describe");
    }
    converged(&nodes.iter().collect::<Vec<_>>(), &group, LIMIT).await;
    let (dir, seed, tmp) = nodes.pop().expect("node").stop().await;
    // One stored change of the group document damaged, as a bad sector or
    // a stray write would.
    {
        let store = nestwork_store::Store::open(&nestwork_node::DataDir::new(&dir).store_dir())
            .expect("store");
        store
            .damage_entry(&group, 8, b"not a change any more")
            .expect("damage");
        nestwork_store::DocStore::flush(&store).expect("flush");
    }
    let back = TestNode::start_in(&dir, seed, loopback_config()).await;
    let damaged = back.node.status().damaged;
    assert_eq!(damaged.len(), 1, "{damaged:?}");
    assert_eq!(damaged[0].doc, GroupId::from(group).doc());
    assert!(damaged[0].name.is_some(), "named: {damaged:?}");
    assert!(damaged[0].what.contains("set aside"), "{}", damaged[0].what);
    assert_ne!(
        back.heads(&group),
        nodes[0].heads(&group),
        "something is missing"
    );
    // The peer sends back what was set aside.
    back.connect(&nodes[0]).await;
    let both = [&nodes[0], &back];
    converged(&both, &group, LIMIT).await;
    assert_eq!(back.description(&group).as_deref(), Some("edit 19"));
    // And it is stored whole again: the next start finds nothing damaged.
    let (dir, seed, tmp2) = back.stop().await;
    let again = TestNode::start_in(&dir, seed, loopback_config()).await;
    assert!(again.node.status().damaged.is_empty());
    assert_eq!(again.heads(&group), nodes[0].heads(&group));
    assert_eq!(again.description(&group).as_deref(), Some("edit 19"));
    drop((tmp, tmp2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_where_both_sides_write_heals_to_identical_state() {
    let (nodes, group) = group_of(5).await;
    connect_all(&nodes).await;
    let (left, right) = nodes.split_at(3);
    for a in left {
        for b in right {
            a.net.block(b.peer()).await.expect("block");
            b.net.block(a.peer()).await.expect("block");
        }
    }
    for a in left {
        let cut = |peers: &[nestwork_net::PeerInfo]| {
            !right
                .iter()
                .any(|b| peers.iter().any(|p| p.peer == b.peer().to_string()))
        };
        let mut ok = false;
        for _ in 0..600 {
            if cut(&a.net.peers().await.expect("peers")) {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(ok, "the partition cuts every cross link");
    }
    for round in 0..5 {
        left[round % 3]
            .node
            .describe(&group.to_hex(), &format!("left {round}"))
            .expect("left");
        right[round % 2]
            .node
            .describe(&group.to_hex(), &format!("right {round}"))
            .expect("right");
    }
    converged(&left.iter().collect::<Vec<_>>(), &group, LIMIT).await;
    converged(&right.iter().collect::<Vec<_>>(), &group, LIMIT).await;
    assert_ne!(
        left[0].heads(&group),
        right[0].heads(&group),
        "the sides diverged while cut"
    );

    for a in left {
        for b in right {
            a.net.unblock(b.peer()).await.expect("unblock");
            b.net.unblock(a.peer()).await.expect("unblock");
        }
    }
    left[0].connect(&right[0]).await;
    right[1].connect(&left[2]).await;
    converged(&nodes.iter().collect::<Vec<_>>(), &group, LIMIT).await;
    let views: Vec<_> = nodes
        .iter()
        .map(|n| n.node.group(&group.to_hex()).expect("group"))
        .collect();
    assert!(
        views.windows(2).all(|w| w[0] == w[1]),
        "identical views after healing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_line_a_forged_change_stops_at_the_first_hop() {
    let a = TestNode::start(1).await;
    let b = TestNode::start(2).await;
    let c = TestNode::start(3).await;
    a.net.block(c.peer()).await.expect("block");
    c.net.block(a.peer()).await.expect("block");
    let group = a.create_group("Line");
    a.admit(&b, group).await;
    b.admit(&c, group).await;
    converged(&[&a, &b, &c], &group, LIMIT).await;

    // Wait for the gossip mesh A-B-C to form, then send the forgery.
    wait_until("gossip to carry a first change", LIMIT, || {
        let _ = a.node.describe(&group.to_hex(), "warm up");
        c.description(&group).as_deref() == Some("warm up")
    })
    .await;
    // A valid change made with A's key on another device, then a forged
    // copy of it: same content, broken signature.
    let mut replica = SignedDoc::empty(group);
    replica.apply(a.node.export(&group.to_hex()).expect("export").changes);
    let other_device = Writer::new(key(1), [0xee; 8]);
    let valid: SignedChange = replica
        .set_description(&other_device, "sent along the line", 1)
        .expect("change")
        .expect("a change");
    let mut forged = valid.clone();
    forged.signature[10] ^= 0x40;

    a.net
        .publish_raw(
            GroupId::from(group),
            nestwork_core::encoding::encode(&vec![forged.clone()]),
        )
        .await
        .expect("publish");
    let mut b_rejected = 0;
    for _ in 0..600 {
        b_rejected = b.net.status().await.expect("status").gossip.rejected;
        if b_rejected > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(b_rejected >= 1, "B rejects the forged change");

    // The genuine change still travels A -> B -> C, after the forgery.
    a.net
        .publish_raw(
            GroupId::from(group),
            nestwork_core::encoding::encode(&vec![valid.clone()]),
        )
        .await
        .expect("publish");
    wait_until("the genuine change to reach C", LIMIT, || {
        c.description(&group).as_deref() == Some("sent along the line")
    })
    .await;
    let c_status = c.net.status().await.expect("status");
    assert_eq!(c_status.gossip.rejected, 0, "C never received the forgery");
    assert!(b.heads(&group).contains(&valid.hash));
    let forged_hash: Hash32 = forged.hash;
    assert_eq!(
        forged_hash, valid.hash,
        "same content; only the signature differs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_who_connects_learns_nothing_of_the_group() {
    let (nodes, group) = group_of(2).await;
    let stranger = TestNode::start(9).await;
    stranger.connect(&nodes[0]).await;
    nodes[0]
        .node
        .describe(&group.to_hex(), "members only")
        .expect("describe");
    wait_until("the member to get the change", LIMIT, || {
        nodes[1].description(&group).as_deref() == Some("members only")
    })
    .await;

    let asked = stranger
        .net
        .probe_sync(nodes[0].peer(), GroupId::from(group).doc())
        .await
        .map_err(|e| e.to_string());
    let unknown = stranger
        .net
        .probe_sync(nodes[0].peer(), DocId::from(Hash32::of(b"no such group")))
        .await
        .map_err(|e| e.to_string());
    assert_eq!(
        asked,
        Err("unknown document".to_string()),
        "no records for a stranger"
    );
    assert_eq!(
        asked, unknown,
        "the refusal does not even reveal that the group exists"
    );
    assert!(stranger.node.groups().is_empty());
    let peers = stranger.net.peers().await.expect("peers");
    assert!(
        peers.iter().any(|p| p.peer == nodes[0].peer().to_string()),
        "the stranger was connected"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_that_cannot_dial_each_other_connect_through_a_relay() {
    logs();
    let relay_tmp = tempfile::tempdir().expect("tmp");
    let relay = TestNode::start_in(
        &relay_tmp.path().join("relay"),
        7,
        NetConfig {
            relay_server: true,
            ..loopback_config()
        },
    )
    .await;
    // A listens on no address of its own: only a slot on the relay.
    let tmp = tempfile::tempdir().expect("tmp");
    let a = TestNode::start_in(
        &tmp.path().join("a"),
        1,
        NetConfig {
            listen: Vec::new(),
            relays: vec![relay.addr().await.to_string()],
            ..loopback_config()
        },
    )
    .await;
    let c = TestNode::start(3).await;
    let mut circuit = Vec::new();
    for _ in 0..600 {
        circuit = a.net.status().await.expect("status").listening;
        if circuit.iter().any(|l| l.contains("p2p-circuit")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        circuit.iter().all(|l| l.contains("p2p-circuit")) && !circuit.is_empty(),
        "A is reachable only through the relay: {circuit:?}"
    );

    let group = a.create_group("Behind a NAT");
    a.admit(&c, group).await;
    let peers = c.net.peers().await.expect("peers");
    let to_a = peers
        .iter()
        .find(|p| p.peer == a.peer().to_string())
        .expect("connected to A");
    assert!(
        to_a.relayed,
        "the connection to A goes through the relay: {to_a:?}"
    );
    a.node
        .describe(&group.to_hex(), "through the relay")
        .expect("describe");
    wait_until("the change to cross the relay", LIMIT, || {
        c.description(&group).as_deref() == Some("through the relay")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_flooding_garbage_and_replays_is_penalised_and_the_group_carries_on() {
    let (nodes, group) = group_of(3).await;
    connect_all(&nodes).await;
    wait_until("gossip to carry a first change", LIMIT, || {
        let _ = nodes[0].node.describe(&group.to_hex(), "warm up");
        nodes[1].description(&group).as_deref() == Some("warm up")
            && nodes[2].description(&group).as_deref() == Some("warm up")
    })
    .await;
    let stored_before = nodes[0].node.status().changes;
    let old = nodes[0]
        .node
        .export(&group.to_hex())
        .expect("export")
        .changes[0]
        .clone();

    // Node 2 (a member) floods: payloads that open but are not changes, and
    // replays of an old valid change.
    for i in 0..300u32 {
        let junk: Vec<u8> = (0..64)
            .map(|j| (i as u8).wrapping_mul(31).wrapping_add(j))
            .collect();
        nodes[2]
            .net
            .publish_raw(GroupId::from(group), junk)
            .await
            .expect("publish");
        if i % 3 == 0 {
            nodes[2]
                .net
                .publish_raw(
                    GroupId::from(group),
                    nestwork_core::encoding::encode(&vec![old.clone()]),
                )
                .await
                .expect("publish");
        }
    }

    // The flood does not stop a legitimate change from node 1.
    nodes[1]
        .node
        .describe(&group.to_hex(), "still heard")
        .expect("describe");
    wait_until("the legitimate change to reach node 0", LIMIT, || {
        nodes[0].description(&group).as_deref() == Some("still heard")
    })
    .await;

    let status = nodes[0].net.status().await.expect("node 0 still answers");
    assert!(
        status.gossip.rejected >= 1,
        "garbage is rejected: {:?}",
        status.gossip
    );
    assert_eq!(
        nodes[0].node.status().changes,
        stored_before + 1,
        "only the legitimate change was stored: no garbage, no replay"
    );
    let peers = nodes[0].net.peers().await.expect("peers");
    let flooder = peers
        .iter()
        .find(|p| p.peer == nodes[2].peer().to_string())
        .expect("flooder");
    assert!(
        flooder.score.is_some_and(|s| s < 0.0),
        "the flooder's score drops: {flooder:?}"
    );
}

/// gossipsub's default subscription filter drops a peer's whole
/// subscription message when it names more than 100 topics: a member of
/// more than 100 groups had its subscriptions ignored by every peer it
/// connected to, and got changes only from the anti-entropy sync (15 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_of_more_than_100_groups_still_gets_live_gossip() {
    let a = TestNode::start(1).await;
    let b = TestNode::start(2).await;
    for i in 0..120 {
        a.create_group(&format!("group {i}"));
    }
    let hub = a.create_group("Hub");
    // B connects now: A's subscriptions reach it in one message of 121.
    a.admit(&b, hub).await;
    converged(&[&a, &b], &hub, LIMIT).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    b.node.describe(&hub.to_hex(), "live").expect("describe");
    wait_until(
        "B's change to reach A by gossip, well within the sync period",
        Duration::from_secs(5),
        || a.description(&hub).as_deref() == Some("live"),
    )
    .await;
    let accepted = a.net.status().await.expect("status").gossip.accepted;
    assert!(accepted >= 1, "gossip carried the change");
}
