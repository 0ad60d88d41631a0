//! Hostile bytes against a whole node (issue 15): what a member or a peer
//! sends must never stop the node, now or at its next start.

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, Automerge, Change, ReadDoc, ScalarValue, ROOT};
use nestwork_core::{ChangeBundle, Hash32, MemberKey, SignedChange};
use nestwork_docs::engine::FREE_KEY;
use nestwork_node::node::CreateGroup;
use nestwork_node::{DataDir, Node, NodeError};

const SEED: u8 = 1;

fn key() -> MemberKey {
    MemberKey::from_secret([SEED; 32])
}

fn node_in(dir: &std::path::Path) -> Node {
    Node::open(&DataDir::new(dir), key()).expect("open")
}

fn create(node: &Node, name: &str) -> Hash32 {
    node.create_group(CreateGroup {
        name: name.into(),
        kind: None,
        parent: None,
        description: Some("tools and seeds".into()),
        unit: None,
        floor: None,
        ceiling: None,
    })
    .expect("create")
    .id
    .hash32()
}

/// A raw Automerge copy of the group's document, writing as `key` from a
/// device of its own (as a member's modified node would).
fn raw_copy(node: &Node, group: Hash32) -> Automerge {
    let bundle = node.export(&group.to_hex()).expect("export");
    let changes: Vec<Change> = bundle
        .changes
        .into_iter()
        .map(|c| Change::from_bytes(c.change).expect("parses"))
        .collect();
    let mut actor = key().id().0.to_vec();
    actor.extend_from_slice(&[0xEE; 8]);
    let mut raw = Automerge::new().with_actor(ActorId::from(actor));
    raw.apply_changes(changes).expect("apply");
    raw
}

/// A valid free-area change by the group's founder putting `value` under
/// `free`, signed and sent in the form Automerge sends it (compressed when
/// that is smaller).
fn free_change(raw: &mut Automerge, group: Hash32, value: ScalarValue) -> SignedChange {
    let free = match raw.get(ROOT, FREE_KEY).expect("get") {
        Some((_, id)) => id,
        None => panic!("no free area"),
    };
    raw.transact_with(
        |_| CommitOptions::default().with_time(1),
        |tx| tx.put(&free, "blob", value).map(|_| ()),
    )
    .map_err(|f| f.error)
    .expect("transaction");
    let mut change = raw.get_last_local_change().expect("change");
    SignedChange::sign(
        &key(),
        group,
        Hash32(change.hash().0),
        change.bytes().into_owned(),
    )
}

/// Bytes that do not compress (xorshift), so the change stays large on the
/// wire.
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn import(node: &Node, group: Hash32, change: SignedChange) -> Result<(), NodeError> {
    node.import(ChangeBundle::of_group(group, vec![change]))
        .map(|_| ())
}

/// Finding 1: a member's valid free-area change over `MAX_CHANGE_BYTES`
/// used to be accepted and stored, and then every start failed on it.
#[test]
fn finding1_an_oversized_change_is_refused_with_a_reason_and_the_node_restarts() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let group = {
        let node = node_in(tmp.path());
        let group = create(&node, "Riverside");
        let mut raw = raw_copy(&node, group);
        let big = free_change(
            &mut raw,
            group,
            ScalarValue::Bytes(noise(nestwork_core::limits::MAX_CHANGE_BYTES)),
        );
        assert!(big.encode().len() > nestwork_core::limits::MAX_CHANGE_BYTES);
        match import(&node, group, big) {
            Err(NodeError::BundleRefused { rejections: r, .. }) => {
                assert!(r[0].reason.contains("over the limit"), "{r:?}")
            }
            other => panic!("an oversized change was not refused: {other:?}"),
        }
        node.close().expect("close");
        group
    };
    let node = node_in(tmp.path());
    assert_eq!(
        node.group(&group.to_hex()).expect("group").name,
        "Riverside"
    );
}

/// Finding 6: a failed flush reported an error though the payment was
/// made, so a retried `pay` paid twice. A request id makes the retry
/// answer with the payment already made, also after a restart.
#[test]
fn finding6_a_pay_retried_with_the_same_request_id_pays_once_even_after_a_restart() {
    use nestwork_node::node::PayRequest;
    let tmp = tempfile::tempdir().expect("tempdir");
    let req = PayRequest {
        to: "commons".into(),
        amount: 3,
        memo: "pump".into(),
        request_id: Some("cli-7f3a".into()),
    };
    let (group, first) = {
        let node = node_in(tmp.path());
        let group = create(&node, "Riverside");
        let first = node.pay(&group.to_hex(), &req).expect("pay");
        let again = node.pay(&group.to_hex(), &req).expect("retry");
        assert_eq!(again.id, first.id, "the retry made a second payment");
        // The same id for another payment is refused, not ignored.
        let other = PayRequest {
            amount: 4,
            ..req.clone()
        };
        assert!(matches!(
            node.pay(&group.to_hex(), &other),
            Err(NodeError::Invalid(_))
        ));
        node.close().expect("close");
        (group, first)
    };
    let node = node_in(tmp.path());
    let again = node
        .pay(&group.to_hex(), &req)
        .expect("retry after restart");
    assert_eq!(again.id, first.id);
    let balance = node.balance(&group.to_hex(), None).expect("balance");
    assert_eq!(balance.payments, 1);
    // Without a request id, each request is a payment of its own.
    let fresh = PayRequest {
        request_id: None,
        ..req
    };
    assert_ne!(node.pay(&group.to_hex(), &fresh).expect("pay").id, first.id);
}
