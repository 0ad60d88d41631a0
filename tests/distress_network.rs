//! Distress signals across real nodes: a signal reaches every member of a
//! hub at once; unanswered, it climbs to the region after the escalation
//! time and crosses to a mutual-aid treaty partner; answered in time it
//! stays; an answer in the region stops it climbing further; a flood from
//! one member is limited while another member's signal still arrives; a
//! node that was away sees the open signals when it comes back.

use std::time::{Duration, Instant};

use nestwork_core::{GroupId, Hash32, SignalId};
use nestwork_docs::distress::{Category, Severity};
use nestwork_docs::governance::TreatyKind;
use nestwork_node::distress::{AnswerRequest, Answering, RaiseRequest};
use nestwork_node::governance::ProposeRequest;
use nestwork_node::Clock;
use nestwork_testkit::distress::{answer, held, raise, seen};
use nestwork_testkit::governance::{pass, roll_of};
use nestwork_testkit::{group_of, loopback_config, wait_until, TestNode};

const LIMIT: Duration = Duration::from_secs(60);

/// Whether `n` holds `signal` in `group`'s document, and by which path.
fn path_in(n: &TestNode, group: &Hash32, signal: &Hash32) -> Option<Vec<GroupId>> {
    seen(n, Some(group), signal).map(|v| v.path)
}

fn answers_on(n: &TestNode, signal: &Hash32) -> usize {
    seen(n, None, signal).map_or(0, |v| v.answers.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn signals_reach_the_hub_climb_the_tiers_and_cross_treaties() {
    let clock = Clock::default();
    let mut hub_nodes = Vec::new();
    for seed in 1..=5 {
        hub_nodes.push(TestNode::start_clocked(seed, &clock).await);
    }
    let region_node = TestNode::start_clocked(6, &clock).await;
    let partner_node = TestNode::start_clocked(7, &clock).await;
    let liaison = &hub_nodes[0];
    let hub = liaison.create_group("Riverside");
    for n in &hub_nodes[1..] {
        liaison.admit(n, hub).await;
    }
    let region = region_node.create_group("North Valley");
    let federation = region_node.create_group("The Wide Federation");
    let partner = partner_node.create_group("Hillside");
    region_node.admit(liaison, region).await;
    partner_node.admit(liaison, partner).await;
    let hub_all: Vec<&TestNode> = hub_nodes.iter().collect();
    roll_of(&hub_all, &hub, 5).await;
    roll_of(&[&region_node, liaison], &region, 2).await;
    roll_of(&[&partner_node, liaison], &partner, 2).await;

    // Tiers: the hub joins the region, the region joins the federation.
    let three: Vec<&TestNode> = hub_nodes[..3].iter().collect();
    let region_hex = region.to_hex();
    pass(
        liaison,
        &three,
        &hub_all,
        &hub,
        ProposeRequest::JoinParent {
            group: region_hex.to_string(),
        },
    )
    .await;
    let both = [&region_node, liaison];
    pass(
        &region_node,
        &both,
        &both,
        &region,
        ProposeRequest::AdmitGroup {
            group: hub.to_hex(),
        },
    )
    .await;
    pass(
        &region_node,
        &both,
        &both,
        &region,
        ProposeRequest::JoinParent {
            group: federation.to_hex(),
        },
    )
    .await;
    pass(
        &region_node,
        &[&region_node],
        &[&region_node],
        &federation,
        ProposeRequest::AdmitGroup {
            group: region_hex.to_string(),
        },
    )
    .await;
    // A mutual-aid treaty between the hub and Hillside.
    let p = pass(
        liaison,
        &three,
        &hub_all,
        &hub,
        ProposeRequest::NewTreaty {
            group: partner.to_hex(),
            treaty_kind: TreatyKind::MutualAid,
            duration_secs: 90 * 86_400,
            terms: "Distress signals cross between us.".into(),
        },
    )
    .await;
    let nestwork_docs::governance::Action::RatifyTreaty { treaty } = &p.state.proposal.action
    else {
        panic!("a treaty");
    };
    let treaty = treaty.id().to_hex();
    wait_until("the ratification to reach Hillside", LIMIT, || {
        partner_node.node.treaty(&treaty).is_ok()
    })
    .await;
    let pair = [&partner_node, liaison];
    pass(
        &partner_node,
        &pair,
        &pair,
        &partner,
        ProposeRequest::RatifyTreaty {
            treaty: treaty.to_string(),
        },
    )
    .await;
    wait_until("the treaty to be active in the hub", LIMIT, || {
        liaison.node.treaties(Some(&hub.to_hex())).is_ok_and(|ts| {
            ts.iter()
                .any(|t| t.state.status == nestwork_docs::governance::TreatyStatus::Active)
        })
    })
    .await;

    // A signal reaches all five members of the hub.
    let start = Instant::now();
    let unanswered = raise(&hub_nodes[1], &hub, "Fell from the roof, leg broken");
    wait_until("the signal on every hub node", LIMIT, || {
        hub_nodes
            .iter()
            .all(|n| path_in(n, &hub, &unanswered).is_some())
    })
    .await;
    println!("signal on all 5 hub nodes in {:?}", start.elapsed());
    let answered = raise(&hub_nodes[2], &hub, "Out of water at the camp");
    wait_until("the second signal everywhere", LIMIT, || {
        hub_nodes
            .iter()
            .all(|n| path_in(n, &hub, &answered).is_some())
    })
    .await;
    answer(&hub_nodes[3], &answered, Answering::Ack, None);
    wait_until("the ack on the liaison's node", LIMIT, || {
        answers_on(liaison, &answered) == 1
    })
    .await;
    assert!(
        path_in(&region_node, &region, &unanswered).is_none(),
        "not before its time"
    );

    // Past the escalation time (5 minutes) from when the liaison's node
    // first held it: the unanswered one climbs to the region and crosses
    // to the treaty partner; the answered one stays.
    held(liaison, &hub, &unanswered).await;
    clock.advance(Duration::from_secs(6 * 60));
    wait_until(
        "the signal in the region and at the treaty partner",
        LIMIT,
        || {
            path_in(&region_node, &region, &unanswered) == Some(vec![GroupId::from(hub)])
                && path_in(&partner_node, &partner, &unanswered) == Some(vec![GroupId::from(hub)])
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        path_in(&region_node, &region, &answered).is_none(),
        "an answered signal stays"
    );

    // Answered in the region: it does not climb to the federation.
    answer(&region_node, &unanswered, Answering::Ack, None);
    clock.advance(Duration::from_secs(6 * 60));
    // One not answered anywhere does climb on: hub, region, federation.
    let lonely = raise(&hub_nodes[4], &hub, "Eviction notice, bailiffs at the door");
    held(liaison, &hub, &lonely).await;
    clock.advance(Duration::from_secs(6 * 60));
    wait_until("the third signal in the region", LIMIT, || {
        path_in(&region_node, &region, &lonely).is_some()
    })
    .await;
    held(&region_node, &region, &lonely).await;
    clock.advance(Duration::from_secs(6 * 60));
    wait_until("the third signal in the federation", LIMIT, || {
        path_in(&region_node, &federation, &lonely)
            == Some(vec![GroupId::from(hub), GroupId::from(region)])
    })
    .await;
    assert!(
        path_in(&region_node, &federation, &unanswered).is_none(),
        "an answer in the region stopped it"
    );
    // The answer in the region is seen with the signal wherever it is held.
    assert!(answers_on(liaison, &unanswered) >= 1);
    // Bad answers: unknown signal, a resolve by someone who is neither
    // raiser nor responder.
    let err = hub_nodes[3]
        .node
        .distress_answer(
            &"ab".repeat(32),
            &AnswerRequest {
                kind: Answering::Ack,
                text: String::new(),
                eta_secs: None,
            },
        )
        .expect_err("unknown signal");
    assert!(err.to_string().contains("no signal matches"), "{err}");
    let err = hub_nodes[3]
        .node
        .distress_answer(
            &lonely.to_hex(),
            &AnswerRequest {
                kind: Answering::Resolve,
                text: String::new(),
                eta_secs: None,
            },
        )
        .expect_err("not raiser or responder");
    assert!(err.to_string().contains("only the raiser"), "{err}");
    answer(&hub_nodes[3], &lonely, Answering::Respond, None);
    answer(&hub_nodes[3], &lonely, Answering::Resolve, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_is_limited_and_another_members_signal_still_arrives() {
    let (nodes, group) = group_of(5).await;
    let all: Vec<&TestNode> = nodes.iter().collect();
    roll_of(&all, &group, 5).await;
    let flooder = nodes[1].node.clone();
    let g = group.to_hex();
    let flood = tokio::task::spawn_blocking(move || {
        let (mut accepted, mut limited) = (0, 0);
        let start = Instant::now();
        for i in 0..1000 {
            let r = flooder.distress_raise(
                &g,
                &RaiseRequest {
                    category: Category::Other,
                    severity: Severity::Low,
                    location: None,
                    expires_secs: None,
                    text: format!("flood {i}"),
                },
            );
            match r {
                Ok(_) => accepted += 1,
                Err(e) if e.to_string().contains("rate limit") => limited += 1,
                Err(e) => panic!("unexpected: {e}"),
            }
        }
        (accepted, limited, start.elapsed())
    });
    let start = Instant::now();
    let legit = raise(&nodes[2], &group, "Smoke in the stairwell");
    wait_until("the legitimate signal everywhere", LIMIT, || {
        nodes.iter().all(|n| path_in(n, &group, &legit).is_some())
    })
    .await;
    let delivered = start.elapsed();
    let (accepted, limited, took) = flood.await.expect("flood");
    println!("flood: {accepted} accepted, {limited} refused in {took:?}; legitimate signal on all 5 nodes in {delivered:?}");
    assert_eq!(
        accepted, 10,
        "the charter's default: 10 per member per hour"
    );
    assert_eq!(limited, 990);
    wait_until("the flooder's ten everywhere, and no more", LIMIT, || {
        nodes.iter().all(|n| {
            n.node
                .distress_list(Some(&group.to_hex()), true)
                .is_ok_and(|l| {
                    l.iter()
                        .filter(|s| s.view.raiser == nodes[1].member())
                        .count()
                        == 10
                })
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_that_was_away_sees_open_signals_when_it_returns() {
    let (mut nodes, group) = group_of(3).await;
    let all: Vec<&TestNode> = nodes.iter().collect();
    roll_of(&all, &group, 3).await;
    let away = nodes.pop().expect("node 3");
    let (dir, seed, tmp) = away.stop().await;
    let signal = raise(&nodes[1], &group, "Flooding on the lower road");
    let back = TestNode::start_in(&dir, seed, loopback_config()).await;
    back.connect(&nodes[0]).await;
    wait_until(
        "the returning node to catch up on the signal",
        LIMIT,
        || {
            back.node
                .distress_list(None, false)
                .is_ok_and(|l| l.iter().any(|s| s.view.id.hash32() == signal))
        },
    )
    .await;
    drop(tmp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forged_signals_from_a_flooding_key_are_rejected_and_penalised() {
    use nestwork_docs::distress::{Category, Severity, Signal};
    use nestwork_docs::{NoLedger, RecordBody, SignedDoc, Writer};
    use nestwork_net::Replica;

    let (nodes, group) = group_of(3).await;
    for i in 0..3 {
        for j in i + 1..3 {
            nodes[i].connect(&nodes[j]).await;
        }
    }
    let all: Vec<&TestNode> = nodes.iter().collect();
    roll_of(&all, &group, 3).await;
    // The flooder (node 3) keeps a copy of the group as it is now, raises
    // one honest signal, then signs a thousand more on its copy: each is a
    // second signal number 1, which no node accepts.
    let flooder = &nodes[2];
    let replica: &dyn Replica = &*flooder.node;
    let mut copy = SignedDoc::empty(group);
    copy.apply(
        replica
            .changes_since(&GroupId::from(group).doc(), &[], usize::MAX)
            .0,
    );
    let honest = raise(flooder, &group, "first and only");
    wait_until("the honest signal everywhere", LIMIT, || {
        nodes.iter().all(|n| path_in(n, &group, &honest).is_some())
    })
    .await;
    let writer = Writer::new(nestwork_testkit::key(3), [9; 8]);
    let now = flooder.node.now_ms();
    let forged: Vec<nestwork_core::SignedChange> = (0..1000)
        .map(|i| {
            let mut fork = copy.clone();
            let body = RecordBody::Signal(Signal {
                group: GroupId::from(group),
                category: Category::Other,
                severity: Severity::Critical,
                text: format!("flood {i}"),
                location: None,
                raised_at_ms: now,
                expires_at_ms: now + 3_600_000,
                seq: 1,
                prev: None,
            });
            fork.add_record(&writer, body, &mut NoLedger, now)
                .expect("sign")
                .1
        })
        .collect();
    let stored_before = nodes[0].node.status().changes;
    let sender = flooder.net.clone();
    let flood = tokio::spawn(async move {
        for change in forged {
            sender
                .publish_raw(
                    GroupId::from(group),
                    nestwork_core::encoding::encode(&vec![change]),
                )
                .await
                .expect("publish");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    let start = Instant::now();
    let legit = raise(&nodes[1], &group, "Gas smell in the kitchen");
    wait_until("the legitimate signal during the flood", LIMIT, || {
        path_in(&nodes[0], &group, &legit).is_some()
    })
    .await;
    println!(
        "legitimate signal delivered in {:?} during the forged flood",
        start.elapsed()
    );
    flood.await.expect("flood");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        nodes[0].node.status().changes,
        stored_before + 1,
        "only the legitimate signal was stored"
    );
    let status = nodes[0].net.status().await.expect("status");
    assert!(status.gossip.rejected >= 1, "{:?}", status.gossip);
    let peers = nodes[0].net.peers().await.expect("peers");
    let score = peers
        .iter()
        .find(|p| p.peer == flooder.peer().to_string())
        .and_then(|p| p.score);
    assert!(
        score.is_some_and(|s| s < 0.0),
        "the flooder's score drops: {score:?}"
    );
}

/// Issue 14, finding 4, on real nodes. Node 2 (a member of the hub only)
/// keeps a copy of the hub, and three hours later its modified node signs
/// thirty signals on that copy, six minutes apart from the moment of the
/// copy: every ten back is an hour older and none is earlier than what it
/// builds on, so every node accepts them, and by their claimed times all
/// are long past the escalation time. The liaison's node counts the
/// escalation time from when it first held each one, so none climbs at
/// once; and it carries at most `distress_per_hour` (10) of one raiser's
/// calls into each group above in any hour, so the backdated chain does
/// not flood the region.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn finding_4_backdated_signals_neither_escalate_early_nor_flood_the_region() {
    use nestwork_docs::distress::{Category, Severity, Signal, MAX_EXPIRY_MS};
    use nestwork_docs::{RecordBody, SignedDoc, Writer};
    use nestwork_testkit::distress::nest;
    use nestwork_testkit::key;

    let nest = nest().await;
    let [liaison, caller, in_region, _] = &nest.nodes[..] else {
        panic!("four nodes");
    };
    let hub = nest.hub;
    let mut copy = SignedDoc::empty(hub);
    copy.apply(caller.node.export(&hub.to_hex()).expect("export").changes);
    let then = caller.node.now_ms();
    nest.clock.advance(Duration::from_secs(3 * 3600 + 600));

    let device = Writer::new(key(2), [0x42; 8]);
    let mut prev = None;
    let mut ids = Vec::new();
    let mut changes = Vec::new();
    for k in 0..30u64 {
        let at = then + k * 6 * 60_000;
        let body = RecordBody::Signal(Signal {
            group: GroupId::from(hub),
            category: Category::Other,
            severity: Severity::Critical,
            text: format!("backdated call {k}"),
            location: None,
            raised_at_ms: at,
            expires_at_ms: at + MAX_EXPIRY_MS,
            seq: k + 1,
            prev,
        });
        let (id, change) = copy
            .sign_record_anyway(&device, body, at)
            .expect("signed anyway");
        prev = Some(SignalId::from(id));
        ids.push(id);
        changes.push(change);
    }
    caller
        .net
        .publish_raw(
            GroupId::from(hub),
            nestwork_core::encoding::encode(&changes),
        )
        .await
        .expect("publish");
    for id in &ids {
        held(liaison, &hub, id).await;
    }
    let in_the_region = || {
        in_region
            .node
            .distress_list(Some(&nest.region.to_hex()), true)
            .map_or(0, |l| {
                l.iter()
                    .filter(|s| s.view.raiser == caller.member())
                    .count()
            })
    };
    // Several ticks: by their claimed times all are hours overdue.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(in_the_region(), 0, "none climbs before its time here");

    nest.clock.advance(Duration::from_secs(6 * 60));
    wait_until("ten calls in the region", LIMIT, || in_the_region() >= 10).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(in_the_region(), 10, "at most ten of one raiser's an hour");

    nest.clock.advance(Duration::from_secs(3600));
    wait_until("ten more an hour later", LIMIT, || in_the_region() >= 20).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(in_the_region(), 20);
}
