//! Seal keys per membership epoch (issue 13), on real nodes: a member who
//! leaves takes no key made after, the others agree on a new one at once
//! and go on talking by gossip, and a member admitted later is given it.

use std::time::Duration;

use nestwork_core::Hash32;
use nestwork_net::GroupSync;
use nestwork_testkit::governance::roll_of;
use nestwork_testkit::{group_of, wait_until, TestNode};

const LIMIT: Duration = Duration::from_secs(60);

async fn seal_of(n: &TestNode, group: &Hash32) -> Option<GroupSync> {
    let status = n.net.status().await.expect("status");
    status.sync.into_iter().find(|s| s.group == *group)
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
