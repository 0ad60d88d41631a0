//! A roll that holds, on real nodes (issue 13): a member voted out gets
//! nothing written after, and a modified node of theirs that signs anyway
//! is refused by every other node.

use std::time::Duration;

use nestwork_core::{DocId, GroupId, Hash32, SignedChange};
use nestwork_docs::distress::{Category, Severity, Signal};
use nestwork_docs::governance::{Choice, Vote};
use nestwork_docs::ledger::{Account, Payment};
use nestwork_docs::{Admission, RecordBody, SignedDoc, Writer};
use nestwork_node::governance::ProposeRequest;
use nestwork_node::node::PayRequest;
use nestwork_testkit::governance::{has_proposal, passed_everywhere, propose, roll_of, vote};
use nestwork_testkit::{group_of, key, wait_until, TestNode};

const LIMIT: Duration = Duration::from_secs(60);

/// Gossip messages a node rejected, and the ones it ignored or accepted
/// (a message counts as one or the other once the node has judged it).
async fn gossip_counts(n: &TestNode) -> (u64, u64) {
    let g = n.net.status().await.expect("status").gossip;
    (g.rejected, g.ignored + g.accepted)
}

/// Wait until every node of `nodes` seals `group`'s gossip with one key,
/// made since the group began (someone has left: a new epoch).
async fn new_seal_key_everywhere(nodes: &[&TestNode], group: &Hash32) {
    for _ in 0..6000 {
        let mut keys = Vec::new();
        for n in nodes {
            let status = n.net.status().await.expect("status");
            keys.push(
                status
                    .sync
                    .iter()
                    .find(|s| s.group.hash32() == *group)
                    .filter(|s| s.seal_keys_held > 1)
                    .and_then(|s| s.seal_key.clone()),
            );
        }
        if keys[0].is_some() && keys.iter().all(|k| *k == keys[0]) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the remaining members did not agree on a new seal key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn finding_1_a_removed_member_gets_nothing_more_and_is_refused_everything() {
    let (nodes, hub) = group_of(3).await;
    let all: Vec<&TestNode> = nodes.iter().collect();
    roll_of(&all, &hub, 3).await;
    let out = &nodes[2];
    let stayers = [&nodes[0], &nodes[1]];

    // Gossip carries changes to every node before the vote.
    wait_until("gossip to reach the third node", LIMIT, || {
        let _ = nodes[0].node.describe(&hub.to_hex(), "warm up");
        out.description(&hub).as_deref() == Some("warm up")
    })
    .await;

    let p = propose(
        &nodes[0],
        &hub,
        ProposeRequest::RemoveMember {
            member: out.member().to_string(),
        },
    );
    has_proposal(&all, &hub, &p.state.id).await;
    vote(&nodes[0], &p.state.id, Choice::Yes, None);
    vote(&nodes[1], &p.state.id, Choice::Yes, None);
    passed_everywhere(&stayers, &hub, &p.state.id).await;
    roll_of(&stayers, &hub, 2).await;
    wait_until("the removed node to see its removal", LIMIT, || {
        out.node
            .charter(&hub.to_hex())
            .is_ok_and(|c| c.members.len() == 2)
    })
    .await;
    new_seal_key_everywhere(&stayers, &hub).await;

    // An edit made afterwards reaches the other member, and the removed
    // node (running honest code) takes none of it (it cannot open it).
    let (_, ignored_before) = gossip_counts(out).await;
    nodes[0]
        .node
        .describe(&hub.to_hex(), "after the removal")
        .expect("describe");
    wait_until("the edit on the other member's node", LIMIT, || {
        nodes[1].description(&hub).as_deref() == Some("after the removal")
    })
    .await;
    // Wait until it has judged the edit's gossip, then look.
    let mut ignored_now = ignored_before;
    for _ in 0..3000 {
        ignored_now = gossip_counts(out).await.1;
        if ignored_now > ignored_before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(ignored_now > ignored_before, "the edit's gossip reached it");
    assert_eq!(out.description(&hub).as_deref(), Some("warm up"));

    // Its node, modified to sign anyway, tries everything.
    let writer = Writer::new(key(out.seed), [0x66; 8]);
    let mut theirs = SignedDoc::empty(hub);
    let copy = theirs.apply(out.node.export(&hub.to_hex()).expect("export").changes);
    assert!(copy.rejected.is_empty());
    let now = out.node.now_ms();
    let q = propose(
        &nodes[0],
        &hub,
        ProposeRequest::AddArticle {
            title: Some("Tools".into()),
            text: "Tools are shared.".into(),
        },
    );
    has_proposal(&all[..2], &hub, &q.state.id).await;
    let mut hostile: Vec<SignedChange> = Vec::new();
    // A vote (on a proposal it learns of by other means).
    // Each change is built on the copy alone, so each is judged on its own.
    let mut with_q = theirs.clone();
    with_q.apply(nodes[0].node.export(&hub.to_hex()).expect("export").changes);
    hostile.push(
        with_q
            .sign_record_anyway(
                &writer,
                RecordBody::Vote(Vote {
                    proposal: q.state.id,
                    choice: Choice::No,
                    cast_at_ms: now,
                    for_group: None,
                }),
                now,
            )
            .expect("sign")
            .1,
    );
    // Re-admitting itself, directly and through a sock puppet.
    let puppet = Writer::new(key(77), [0x77; 8]);
    hostile.push(
        theirs
            .clone()
            .sign_record_anyway(
                &writer,
                RecordBody::Admission(Admission::self_issued(
                    writer.key(),
                    &GroupId::from(hub),
                    puppet.id(),
                    Hash32([77; 32]),
                    now,
                )),
                now,
            )
            .expect("sign")
            .1,
    );
    hostile.push(
        theirs
            .clone()
            .sign_record_anyway(
                &puppet,
                RecordBody::Admission(Admission::self_issued(
                    puppet.key(),
                    &GroupId::from(hub),
                    writer.id(),
                    Hash32([78; 32]),
                    now,
                )),
                now,
            )
            .expect("sign")
            .1,
    );
    // A distress signal, and an edit.
    hostile.push(
        theirs
            .clone()
            .sign_record_anyway(
                &writer,
                RecordBody::Signal(Signal {
                    group: theirs.group(),
                    category: Category::Safety,
                    severity: Severity::Critical,
                    text: "let me back in".into(),
                    location: None,
                    raised_at_ms: now,
                    expires_at_ms: now + 3_600_000,
                    seq: 1,
                    prev: None,
                }),
                now,
            )
            .expect("sign")
            .1,
    );
    hostile.push(
        theirs
            .clone()
            .set_description_anyway(&writer, "still here", now)
            .expect("sign")
            .expect("change"),
    );
    let (rejected_before, ignored_before) = gossip_counts(&nodes[0]).await;
    for change in &hostile {
        out.net
            .publish_raw(
                GroupId::from(hub),
                nestwork_core::encoding::encode(&vec![change.clone()]),
            )
            .await
            .expect("publish");
    }
    // A payment from its account, in the ledger's first period, citing the
    // group heads its node holds (after its removal), as its node fills
    // them in.
    let mut cited = theirs.heads();
    cited.sort_unstable();
    let mut period = SignedDoc::ledger_period(hub, 0).expect("period");
    let (_, pay) = period
        .sign_record_anyway(
            &writer,
            RecordBody::Payment(Payment {
                from: Account::Member(writer.id()),
                to: Account::Member(nodes[0].member()),
                amount: 5,
                memo: "for nothing".into(),
                seq: 1,
                prev: None,
                period: 0,
                closing: None,
                seen: Vec::new(),
                limits: None,
                proposal: None,
                made_at_ms: now,
                group_heads: cited,
            }),
            now,
        )
        .expect("sign");
    out.net
        .publish_raw(
            GroupId::from(hub),
            nestwork_core::encoding::encode(&vec![pay.clone()]),
        )
        .await
        .expect("publish");

    // The member it is connected to refuses what reaches it by gossip (and
    // the sender's score pays, so gossipsub may drop the rest unjudged).
    let mut counts = (rejected_before, ignored_before);
    for _ in 0..6000 {
        counts = gossip_counts(&nodes[0]).await;
        if counts.0 > rejected_before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        counts.0 > rejected_before,
        "hostile gossip judged: {counts:?}"
    );
    // However they arrive, every other node refuses each group change and
    // the payment.
    for n in stayers {
        for change in &hostile {
            let report = n
                .node
                .apply_remote(GroupId::from(hub).doc(), vec![change.clone()], false)
                .expect("judged");
            assert_eq!(report.rejected.len(), 1, "{:?}", report.applied);
        }
        // The payment cites the group's heads after the removal: its
        // payer is off the roll there.
        let report = n
            .node
            .apply_remote(DocId::from(pay.doc), vec![pay.clone()], false)
            .expect("judged");
        assert_eq!(report.rejected.len(), 1, "{:?}", report.applied);
        assert!(
            report.rejected[0]
                .reason
                .contains("is not on the group's roll at the group heads their payment cites"),
            "{}",
            report.rejected[0].reason
        );
    }
    // Nor can anyone pay it: an honest node refuses to sign that.
    let refused = nodes[0]
        .node
        .pay(
            &hub.to_hex(),
            &PayRequest {
                to: out.member().to_string(),
                amount: 1,
                memo: String::new(),
                request_id: None,
            },
        )
        .expect_err("the payee is out");
    assert!(
        refused
            .to_string()
            .contains("no longer on this group's roll"),
        "{refused}"
    );
    for n in stayers {
        let bundle = n.node.export(&hub.to_hex()).expect("export");
        for h in &hostile {
            assert!(bundle.changes.iter().all(|c| c.hash != h.hash));
        }
        let charter = n.node.charter(&hub.to_hex()).expect("charter");
        assert_eq!(charter.members.len(), 2, "nobody came back");
        assert_eq!(n.description(&hub).as_deref(), Some("after the removal"));
    }
    for n in stayers {
        let balance = n
            .node
            .balance(&hub.to_hex(), Some(&out.member().to_string()))
            .expect("balance");
        assert_eq!(balance.accounts[0].balance, 0, "the payment holds nowhere");
        assert_eq!(balance.payments, 0);
    }

    // And its sync request gets exactly a stranger's answer.
    let asked = out
        .net
        .probe_sync(nodes[0].peer(), GroupId::from(hub).doc())
        .await
        .map_err(|e| e.to_string());
    let unknown = out
        .net
        .probe_sync(nodes[0].peer(), DocId::from(Hash32::of(b"no such group")))
        .await
        .map_err(|e| e.to_string());
    assert_eq!(asked, Err("unknown document".to_string()));
    assert_eq!(asked, unknown);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn finding_3_a_newcomer_awaiting_the_entry_vote_sees_only_the_founding_change() {
    let (nodes, hub) = group_of(2).await;
    let all: Vec<&TestNode> = nodes.iter().collect();
    let p = propose(
        &nodes[0],
        &hub,
        ProposeRequest::SetRule {
            rule: "entry_needs_vote".into(),
            value: "true".into(),
        },
    );
    has_proposal(&all, &hub, &p.state.id).await;
    vote(&nodes[0], &p.state.id, Choice::Yes, None);
    vote(&nodes[1], &p.state.id, Choice::Yes, None);
    passed_everywhere(&all, &hub, &p.state.id).await;
    nodes[0]
        .node
        .describe(&hub.to_hex(), "members only")
        .expect("describe");

    // Admitted by ticket, awaiting the vote: the founding change only, and
    // a stranger's answer to its sync requests.
    let newcomer = TestNode::start(9).await;
    nodes[0].admit(&newcomer, hub).await;
    let held = newcomer.node.export(&hub.to_hex()).expect("export").changes;
    assert_eq!(held.len(), 1, "the founding change only");
    assert_ne!(newcomer.description(&hub).as_deref(), Some("members only"));
    let asked = newcomer
        .net
        .probe_sync(nodes[0].peer(), GroupId::from(hub).doc())
        .await
        .map_err(|e| e.to_string());
    assert_eq!(asked, Err("unknown document".to_string()));

    // Voted in, it catches up.
    let q = propose(
        &nodes[0],
        &hub,
        ProposeRequest::AdmitMember {
            member: newcomer.member().to_string(),
        },
    );
    has_proposal(&all, &hub, &q.state.id).await;
    vote(&nodes[0], &q.state.id, Choice::Yes, None);
    vote(&nodes[1], &q.state.id, Choice::Yes, None);
    passed_everywhere(&all, &hub, &q.state.id).await;
    wait_until("the member voted in to catch up", LIMIT, || {
        newcomer.description(&hub).as_deref() == Some("members only")
    })
    .await;
}

/// A former member's node, modified to open whatever gossip it can with
/// what its node holds and keep it: it claims everyone is a member and
/// records every change it gets out of a gossip message.
struct Eavesdropper {
    node: std::sync::Arc<nestwork_node::Node>,
    opened: std::sync::Mutex<Vec<Hash32>>,
}

impl Eavesdropper {
    fn held(&self) -> &dyn nestwork_net::Replica {
        &*self.node
    }
}

impl nestwork_net::Replica for Eavesdropper {
    fn groups(&self) -> Vec<(GroupId, Vec<u8>)> {
        self.held().groups()
    }
    fn group_of(&self, doc: &DocId) -> Option<GroupId> {
        self.held().group_of(doc)
    }
    fn docs_of(&self, group: &GroupId) -> Vec<DocId> {
        self.held().docs_of(group)
    }
    fn genesis(&self, group: &GroupId) -> Option<Vec<u8>> {
        self.held().genesis(group)
    }
    fn is_member(&self, _: &DocId, _: &nestwork_core::MemberId) -> bool {
        true
    }
    fn heads(&self, doc: &DocId) -> Option<Vec<Hash32>> {
        self.held().heads(doc)
    }
    fn changes_since(
        &self,
        doc: &DocId,
        have: &[Hash32],
        max_bytes: usize,
    ) -> (Vec<SignedChange>, bool) {
        self.held().changes_since(doc, have, max_bytes)
    }
    fn apply_remote(
        &self,
        _: DocId,
        changes: Vec<SignedChange>,
        _: bool,
    ) -> Result<nestwork_docs::ApplyReport, String> {
        let mut opened = self.opened.lock().expect("lock");
        opened.extend(changes.iter().map(|c| c.hash));
        Ok(nestwork_docs::ApplyReport::default())
    }
    fn admit(
        &self,
        _: &GroupId,
        _: nestwork_core::MemberId,
        _: Hash32,
        _: Vec<u8>,
    ) -> Result<(), String> {
        Err("no".into())
    }
    fn peer_heads(&self, peer: &nestwork_core::MemberId, doc: &DocId) -> Option<Vec<Hash32>> {
        self.held().peer_heads(peer, doc)
    }
    fn set_peer_heads(&self, peer: &nestwork_core::MemberId, doc: &DocId, heads: &[Hash32]) {
        self.held().set_peer_heads(peer, doc, heads)
    }
    fn forget_peer_heads(&self, peer: &nestwork_core::MemberId, doc: &DocId) {
        self.held().forget_peer_heads(peer, doc)
    }
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<nestwork_net::DocEvent> {
        nestwork_net::Replica::subscribe(&*self.node)
    }
    fn keyring(&self, group: &GroupId) -> Option<nestwork_docs::seal::Keyring> {
        self.held().keyring(group)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn finding_4_a_removed_member_cannot_open_gossip_sent_after_removal() {
    let (mut nodes, hub) = group_of(3).await;
    let all: Vec<&TestNode> = nodes.iter().collect();
    roll_of(&all, &hub, 3).await;
    wait_until("gossip to reach the third node", LIMIT, || {
        let _ = nodes[0].node.describe(&hub.to_hex(), "warm up");
        nodes[2].description(&hub).as_deref() == Some("warm up")
    })
    .await;
    let p = propose(
        &nodes[0],
        &hub,
        ProposeRequest::RemoveMember {
            member: nodes[2].member().to_string(),
        },
    );
    has_proposal(&all, &hub, &p.state.id).await;
    vote(&nodes[0], &p.state.id, Choice::Yes, None);
    vote(&nodes[1], &p.state.id, Choice::Yes, None);
    let stayers = [&nodes[0], &nodes[1]];
    passed_everywhere(&stayers, &hub, &p.state.id).await;
    roll_of(&stayers, &hub, 2).await;
    wait_until("the removed node to see its removal", LIMIT, || {
        nodes[2]
            .node
            .charter(&hub.to_hex())
            .is_ok_and(|c| c.members.len() == 2)
    })
    .await;

    // The removed member's node comes back modified: it keeps everything
    // its node held (keys included) and opens all the gossip it can.
    let out = nodes.pop().expect("third node");
    let (dir, seed, _tmp) = out.stop().await;
    let data = nestwork_node::DataDir::new(&dir);
    let held = std::sync::Arc::new(
        tokio::task::spawn_blocking(move || nestwork_node::Node::open(&data, key(seed)))
            .await
            .expect("join")
            .expect("open"),
    );
    let spy = std::sync::Arc::new(Eavesdropper {
        node: held,
        opened: std::sync::Mutex::new(Vec::new()),
    });
    let spy_net = nestwork_net::spawn(nestwork_testkit::loopback_config(), key(seed), spy.clone())
        .await
        .expect("network");
    for n in &nodes {
        spy_net.dial(n.addr().await).await.expect("dial");
    }

    // The remaining members go on talking until a message of theirs has
    // reached the eavesdropper and been judged by it.
    let judged = |s: nestwork_net::GossipCounts| s.accepted + s.ignored + s.rejected;
    let before = judged(spy_net.status().await.expect("status").gossip);
    let mut reached = false;
    let mut last = String::new();
    for i in 0..40 {
        last = format!("after the removal {i}");
        nodes[0]
            .node
            .describe(&hub.to_hex(), &last)
            .expect("describe");
        for _ in 0..100 {
            if judged(spy_net.status().await.expect("status").gossip) > before {
                reached = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if reached {
            break;
        }
    }
    assert!(
        reached,
        "gossip sent after the removal reached the former member's node"
    );
    assert!(
        spy.opened.lock().expect("lock").is_empty(),
        "the former member opened gossip sent after the removal"
    );
    // The remaining members still converge by gossip.
    wait_until("the other member to get the last edit", LIMIT, || {
        nodes[1].description(&hub).as_deref() == Some(last.as_str())
    })
    .await;
    spy_net.shutdown().await;
}
