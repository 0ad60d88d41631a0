//! Seal keys per membership epoch (issue 13), on real nodes: a member who
//! leaves takes no key made after, the others agree on a new one at once
//! and go on talking by gossip, and a member admitted later is given it.
//! And a sealed message published again after gossipsub's duplicate window
//! is refused by its seal time (issue 15, finding 4).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nestwork_core::{GroupId, Hash32};
use nestwork_docs::{SignedDoc, Writer};
use nestwork_net::topic::DUPLICATE_WINDOW;
use nestwork_net::GroupSync;
use nestwork_testkit::governance::roll_of;
use nestwork_testkit::{converged, group_of, key, wait_until, TestNode};

const LIMIT: Duration = Duration::from_secs(60);

async fn seal_of(n: &TestNode, group: &Hash32) -> Option<GroupSync> {
    let status = n.net.status().await.expect("status");
    status.sync.into_iter().find(|s| s.group.hash32() == *group)
}

/// Wait until every node of `nodes` seals with one key that is not the
/// group's first (someone has left), and return its short id.
async fn new_key_everywhere(nodes: &[&TestNode], group: &Hash32) -> String {
    for _ in 0..6000 {
        let mut keys = Vec::new();
        for n in nodes {
            keys.push(
                seal_of(n, group)
                    .await
                    .filter(|s| s.seal_keys_held > 1)
                    .and_then(|s| s.seal_key),
            );
        }
        if let Some(k) = &keys[0] {
            if keys.iter().all(|x| x.as_ref() == Some(k)) {
                return k.clone();
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the members did not agree on a new seal key");
}

async fn accepted(n: &TestNode) -> u64 {
    n.net.status().await.expect("status").gossip.accepted
}

/// Edit the description on `from` and wait until `to` has it by gossip
/// (its count of accepted gossip rises).
async fn heard_by_gossip(from: &TestNode, to: &TestNode, group: &Hash32, text: &str) {
    let before = accepted(to).await;
    from.node.describe(&group.to_hex(), text).expect("describe");
    wait_until("the edit to arrive", LIMIT, || {
        to.description(group).as_deref() == Some(text)
    })
    .await;
    for _ in 0..3000 {
        if accepted(to).await > before {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the edit did not arrive by gossip");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_who_leaves_takes_no_key_made_after() {
    let (nodes, hub) = group_of(3).await;
    let all: Vec<&TestNode> = nodes.iter().collect();
    roll_of(&all, &hub, 3).await;
    let first = seal_of(&nodes[0], &hub).await.and_then(|s| s.seal_key);
    assert!(
        first.is_some(),
        "the genesis key serves while nobody has left"
    );

    nodes[2].node.leave(&hub.to_hex(), true).expect("leave");
    let stayers = [&nodes[0], &nodes[1]];
    roll_of(&stayers, &hub, 2).await;
    let new = new_key_everywhere(&stayers, &hub).await;
    assert_ne!(Some(new), first);
    // The leaver holds the keys it had, and nothing to seal with.
    let theirs = seal_of(&nodes[2], &hub).await.expect("still held");
    assert_eq!(theirs.seal_keys_held, 1, "no key made after it left");
    assert_eq!(theirs.seal_key, None);

    heard_by_gossip(&nodes[0], &nodes[1], &hub, "after the exit").await;
    assert_ne!(
        nodes[2].description(&hub).as_deref(),
        Some("after the exit")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_newcomer_after_rotation_reads_new_gossip() {
    let (nodes, hub) = group_of(3).await;
    let all: Vec<&TestNode> = nodes.iter().collect();
    roll_of(&all, &hub, 3).await;
    nodes[2].node.leave(&hub.to_hex(), true).expect("leave");
    let stayers = [&nodes[0], &nodes[1]];
    roll_of(&stayers, &hub, 2).await;
    let key = new_key_everywhere(&stayers, &hub).await;

    let newcomer = TestNode::start(9).await;
    nodes[0].admit(&newcomer, hub).await;
    let now = [&nodes[0], &nodes[1], &newcomer];
    roll_of(&now, &hub, 3).await;
    // The current key is sealed to the newcomer (not a new epoch).
    assert_eq!(new_key_everywhere(&now, &hub).await, key);
    newcomer.connect(&nodes[1]).await;
    heard_by_gossip(&nodes[1], &newcomer, &hub, "welcome").await;
    heard_by_gossip(&newcomer, &nodes[0], &hub, "thank you").await;
}

/// Issue 15, finding 4: a sealed message recorded and published again
/// after gossipsub's duplicate cache forgot it was decoded and applied in
/// full by every node, at no cost to the sender. Its seal time now refuses
/// it before anything in it is decoded: counted, not applied, and not held
/// against the sender. (The replayer here is a member, so that the bytes
/// can be made with an old seal time rather than waited three minutes
/// for; to a receiver, a stranger re-publishing recorded bytes looks the
/// same.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_4_gossip_sealed_before_the_duplicate_window_is_refused_and_not_applied() {
    let a = TestNode::start(1).await;
    let b = TestNode::start(2).await;
    let group = a.create_group("Replays");
    a.admit(&b, group).await;
    converged(&[&a, &b], &group, LIMIT).await;
    // Until B has taken a change by gossip, a message could go nowhere.
    let mut warm = false;
    for i in 0..600 {
        let _ = a.node.describe(&group.to_hex(), &format!("warm up {i}"));
        tokio::time::sleep(Duration::from_millis(100)).await;
        if accepted(&b).await > 0 {
            warm = true;
            break;
        }
    }
    assert!(warm, "gossip never carried a change from A to B");
    converged(&[&a, &b], &group, LIMIT).await;

    // A change A's node never stored (made with A's key on another
    // device), so only this gossip can bring it to B.
    let mut replica = SignedDoc::empty(group);
    replica.apply(a.node.export(&group.to_hex()).expect("export").changes);
    let change = replica
        .set_description(&Writer::new(key(1), [0xee; 8]), "replayed", 1)
        .expect("change")
        .expect("a change");
    let payload = nestwork_core::encoding::encode(&vec![change.clone()]);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let sealed_then = now - (DUPLICATE_WINDOW + Duration::from_secs(1)).as_millis() as u64;
    a.net
        .publish_raw_sealed_at(GroupId::from(group), payload.clone(), sealed_then)
        .await
        .expect("publish");

    let mut gossip = b.net.status().await.expect("status").gossip;
    for _ in 0..3000 {
        if gossip.untimely > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        gossip = b.net.status().await.expect("status").gossip;
    }
    assert_eq!(gossip.untimely, 1, "refused by its seal time: {gossip:?}");
    assert_eq!(gossip.rejected, 0, "and not as invalid: {gossip:?}");
    assert!(
        !b.heads(&group).contains(&change.hash),
        "the change in it was not applied"
    );
    let peers = b.net.peers().await.expect("peers");
    let sender = peers
        .iter()
        .find(|p| p.peer == a.peer().to_string())
        .expect("A");
    assert!(
        !matches!(sender.score, Some(s) if s < 0.0),
        "the sender is not penalised: {sender:?}"
    );

    // The same change sealed now is taken.
    a.net
        .publish_raw(GroupId::from(group), payload)
        .await
        .expect("publish");
    wait_until("the change sealed now to reach B", LIMIT, || {
        b.description(&group).as_deref() == Some("replayed")
    })
    .await;
}
