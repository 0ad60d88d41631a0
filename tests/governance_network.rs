//! Governance across real nodes: a hub amends its charter by vote, a member
//! leaves and can no longer vote or pay, a hub joins a region whose
//! delegate votes there, and a treaty between two hubs becomes active,
//! lapses when the clock passes its end, and holds when both renew it.

use std::time::Duration;

use nestwork_core::{GroupId, Hash32, ProposalId};
use nestwork_docs::governance::{Choice, Outcome, Seat, TreatyKind, TreatyStatus};
use nestwork_node::governance::{ProposeRequest, VoteRequest};
use nestwork_node::node::PayRequest;
use nestwork_testkit::governance::{
    has_proposal, outcome, passed_everywhere, propose, roll_of, vote,
};
use nestwork_testkit::{group_of, wait_until, TestNode};

const LIMIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hub_amends_an_article_and_a_leaver_can_no_longer_vote_or_pay() {
    let (nodes, hub) = group_of(5).await;
    let all: Vec<&TestNode> = nodes.iter().collect();
    roll_of(&all, &hub, 5).await;

    let amended =
        "Each revision cycle the members meet and amend or reaffirm a quarter of these articles.";
    let p = propose(
        &nodes[1],
        &hub,
        ProposeRequest::AmendArticle {
            article: 4,
            text: amended.to_string(),
        },
    );
    assert_eq!(p.state.seats, 5);
    has_proposal(&all, &hub, &p.state.id).await;
    for n in &nodes[..2] {
        vote(n, &p.state.id, Choice::Yes, None);
    }
    assert_eq!(outcome(&nodes[1], &hub, &p.state.id), Some(Outcome::Open));
    vote(&nodes[2], &p.state.id, Choice::Yes, None);
    // Three yes of five seats: two more no votes would leave 60%, so it is
    // decided at once, on every node.
    passed_everywhere(&all, &hub, &p.state.id).await;
    for n in &all {
        let charter = n.node.charter(&hub.to_hex()).expect("charter");
        let article = charter
            .articles
            .iter()
            .find(|a| a.number == 4)
            .expect("article 4");
        assert_eq!(article.text, amended);
    }
    // A vote after the decision is refused, and changes nothing.
    let late = nodes[3].node.vote(
        &p.state.id.to_hex(),
        &VoteRequest {
            choice: Choice::No,
            for_group: None,
        },
    );
    assert!(late.is_err(), "a vote after the decision");

    // A draft edited by two members, then submitted: its text is frozen.
    let draft = nodes[0]
        .node
        .draft_new(
            &hub.to_hex(),
            &ProposeRequest::AddArticle {
                title: Some("Tools".into()),
                text: "Tools are lent.".into(),
            },
        )
        .expect("draft");
    wait_until("the draft on member 2's node", LIMIT, || {
        nodes[1]
            .node
            .drafts(&hub.to_hex())
            .is_ok_and(|d| d.len() == 1)
    })
    .await;
    nodes[1]
        .node
        .draft_edit(
            &hub.to_hex(),
            &draft.id,
            "Tools are lent to any member who asks.",
        )
        .expect("edit");
    wait_until("the edit back on member 1's node", LIMIT, || {
        nodes[0]
            .node
            .drafts(&hub.to_hex())
            .is_ok_and(|d| d[0].text.ends_with("who asks."))
    })
    .await;
    let submitted = nodes[0]
        .node
        .draft_submit(&hub.to_hex(), &draft.id)
        .expect("submit");
    assert!(matches!(
        &submitted.state.proposal.action,
        nestwork_docs::governance::Action::AddArticle { text, .. } if text == "Tools are lent to any member who asks."
    ));
    assert!(nodes[0]
        .node
        .draft_edit(&hub.to_hex(), &draft.id, "changed after")
        .is_err());

    // Limits and the commons fund move only by passed proposals; the
    // proposer's node signs what they order, and every node accepts it.
    let pay = |n: &TestNode, to: String, amount: u64| {
        n.node
            .pay(
                &hub.to_hex(),
                &PayRequest {
                    to,
                    amount,
                    memo: String::new(),
                    request_id: None,
                },
            )
            .expect("pay")
    };
    pay(&nodes[2], "commons".into(), 20);
    wait_until("the gift to the commons on every node", LIMIT, || {
        all.iter().all(|n| {
            n.node
                .balance(&hub.to_hex(), Some("commons"))
                .is_ok_and(|b| b.accounts[0].balance == 20)
        })
    })
    .await;
    let member3 = nodes[3].member().to_string();
    let limits = propose(
        &nodes[1],
        &hub,
        ProposeRequest::SetLimits {
            member: Some(member3.to_string()),
            floor: -50,
            ceiling: 100,
        },
    );
    let payout = propose(
        &nodes[1],
        &hub,
        ProposeRequest::Payout {
            member: member3.to_string(),
            amount: 8,
            memo: "boots".into(),
        },
    );
    has_proposal(&all, &hub, &payout.state.id).await;
    for n in &nodes[..3] {
        vote(n, &limits.state.id, Choice::Yes, None);
        vote(n, &payout.state.id, Choice::Yes, None);
    }
    wait_until("the new limits and the payout on every node", LIMIT, || {
        all.iter().all(|n| {
            n.node
                .balance(&hub.to_hex(), Some(&member3))
                .is_ok_and(|b| {
                    b.accounts[0].floor == -50
                        && b.accounts[0].ceiling == 100
                        && b.accounts[0].balance == 8
                })
        })
    })
    .await;
    let commons = nodes[0]
        .node
        .balance(&hub.to_hex(), Some("commons"))
        .expect("commons");
    assert_eq!(commons.accounts[0].balance, 12);
    // Nobody pays out of the commons without a passed proposal.
    let failed = propose(
        &nodes[0],
        &hub,
        ProposeRequest::Payout {
            member: member3.to_string(),
            amount: 5,
            memo: String::new(),
        },
    );
    has_proposal(&all, &hub, &failed.state.id).await;
    for n in &nodes[..3] {
        vote(n, &failed.state.id, Choice::No, None);
    }
    wait_until("the payout proposal to fail", LIMIT, || {
        outcome(&nodes[0], &hub, &failed.state.id) == Some(Outcome::Failed)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        nodes[0]
            .node
            .balance(&hub.to_hex(), Some("commons"))
            .expect("commons")
            .accounts[0]
            .balance,
        12,
        "a failed payout pays nothing"
    );

    // Member 4 pays member 0, then leaves; nobody can stop it.
    nodes[4]
        .node
        .pay(
            &hub.to_hex(),
            &PayRequest {
                to: nodes[0].member().to_string(),
                amount: 5,
                memo: "seeds".into(),
                request_id: None,
            },
        )
        .expect("pay before leaving");
    let before = nodes[4]
        .node
        .leave(&hub.to_hex(), false)
        .expect("what leaving does");
    assert!(!before.done);
    assert!(before.consequence.contains("-5"), "{}", before.consequence);
    nodes[4].node.leave(&hub.to_hex(), true).expect("leave");
    roll_of(&all, &hub, 4).await;

    let q = propose(
        &nodes[0],
        &hub,
        ProposeRequest::AddArticle {
            title: Some("Tools".into()),
            text: "Tools are shared.".into(),
        },
    );
    assert_eq!(q.state.seats, 4, "the leaver has no seat");
    // What is written after an exit no longer reaches the leaver (issue
    // 13), so it cannot even find the proposal to vote on.
    has_proposal(&all[..4], &hub, &q.state.id).await;
    let refused = nodes[4].node.vote(
        &q.state.id.to_hex(),
        &VoteRequest {
            choice: Choice::Yes,
            for_group: None,
        },
    );
    assert!(refused.is_err(), "a leaver's vote");
    let refused = nodes[4].node.pay(
        &hub.to_hex(),
        &PayRequest {
            to: nodes[0].member().to_string(),
            amount: 1,
            memo: String::new(),
            request_id: None,
        },
    );
    assert!(refused
        .expect_err("refused")
        .to_string()
        .contains("cannot pay"));
    let refused = nodes[0].node.pay(
        &hub.to_hex(),
        &PayRequest {
            to: nodes[4].member().to_string(),
            amount: 1,
            memo: String::new(),
            request_id: None,
        },
    );
    assert!(refused
        .expect_err("refused")
        .to_string()
        .contains("no longer"));
}

/// Hub: nodes 1-3 (node 1 founds it). Region: node 4 founds it; node 1
/// joins it too, to be the hub's delegate. The hub joins the region, the
/// region admits it, and the hub names node 1 its delegate, whose node
/// files the delegation in the region. Returns the hub's nodes, the hub,
/// the region's founder and the region.
async fn hub_in_region() -> (Vec<TestNode>, Hash32, TestNode, Hash32) {
    let (hub_nodes, hub) = group_of(3).await;
    let region_founder = TestNode::start(4).await;
    let region = region_founder.create_group("North Valley");
    region_founder.admit(&hub_nodes[0], region).await;
    let delegate = &hub_nodes[0];
    let hub_all: Vec<&TestNode> = hub_nodes.iter().collect();
    roll_of(&hub_all, &hub, 3).await;
    roll_of(&[&region_founder, delegate], &region, 2).await;

    // The hub decides to join; the region admits it by its own rules.
    let join = propose(
        delegate,
        &hub,
        ProposeRequest::JoinParent {
            group: region.to_hex(),
        },
    );
    has_proposal(&hub_all, &hub, &join.state.id).await;
    vote(&hub_nodes[0], &join.state.id, Choice::Yes, None);
    vote(&hub_nodes[1], &join.state.id, Choice::Yes, None);
    passed_everywhere(&hub_all, &hub, &join.state.id).await;

    let admit = propose(
        &region_founder,
        &region,
        ProposeRequest::AdmitGroup {
            group: hub.to_hex(),
        },
    );
    has_proposal(&[&region_founder, delegate], &region, &admit.state.id).await;
    vote(&region_founder, &admit.state.id, Choice::Yes, None);
    vote(delegate, &admit.state.id, Choice::Yes, None);
    passed_everywhere(&[&region_founder, delegate], &region, &admit.state.id).await;

    // The hub names its delegate; the delegate's node files it in the region.
    let member = delegate.member().to_string();
    let name = propose(
        &hub_nodes[1],
        &hub,
        ProposeRequest::SetDelegates {
            members: vec![member.to_string()],
        },
    );
    has_proposal(&hub_all, &hub, &name.state.id).await;
    for n in &hub_nodes[..2] {
        vote(n, &name.state.id, Choice::Yes, None);
    }
    passed_everywhere(&hub_all, &hub, &name.state.id).await;
    wait_until("the delegation to reach the region", LIMIT, || {
        region_founder
            .node
            .charter(&region.to_hex())
            .is_ok_and(|c| {
                c.child_delegations
                    .iter()
                    .any(|d| d.delegation.child.hash32() == hub)
            })
    })
    .await;
    (hub_nodes, hub, region_founder, region)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hub_joins_a_region_and_its_delegate_votes_there() {
    let (hub_nodes, hub, region_founder, region) = hub_in_region().await;
    let delegate = &hub_nodes[0];

    // A region proposal: three seats (two members and the hub).
    let p = propose(
        &region_founder,
        &region,
        ProposeRequest::AddArticle {
            title: None,
            text: "Hubs help each other.".into(),
        },
    );
    assert_eq!(p.state.seats, 3);
    has_proposal(&[&region_founder, delegate], &region, &p.state.id).await;
    vote(delegate, &p.state.id, Choice::Yes, Some(&hub));
    wait_until("the hub's vote to count in the region", LIMIT, || {
        region_founder
            .node
            .proposals(&region.to_hex())
            .is_ok_and(|v| {
                v.proposals.iter().any(|x| {
                    x.state.id == p.state.id
                        && x.state.votes.contains_key(&Seat::Group(GroupId::from(hub)))
                })
            })
    })
    .await;
    // A delegate vote for a group that is not in the region is refused.
    let stranger = Hash32([7; 32]);
    let refused = delegate.node.vote(
        &p.state.id.to_hex(),
        &VoteRequest {
            choice: Choice::Yes,
            for_group: Some(stranger.to_hex()),
        },
    );
    assert!(refused
        .expect_err("refused")
        .to_string()
        .contains("not in this tier"));
    // A member of the hub who is no delegate cannot vote in the region.
    assert!(hub_nodes[1]
        .node
        .vote(
            &p.state.id.to_hex(),
            &VoteRequest {
                choice: Choice::Yes,
                for_group: Some(hub.to_hex()),
            },
        )
        .is_err());
}

fn treaty_status(n: &TestNode, group: &Hash32, treaty: &Hash32) -> Option<TreatyStatus> {
    n.node
        .treaties(Some(&group.to_hex()))
        .ok()?
        .into_iter()
        .find(|t| t.state.id == *treaty)
        .map(|t| t.state.status)
}

/// Both hubs ratify (or renew) by passing the same kind of proposal; the
/// liaison (a member of both) carries each decision to the other hub.
async fn both_pass(
    a: &TestNode,
    b: &TestNode,
    hub_a: &Hash32,
    hub_b: &Hash32,
    req_a: ProposeRequest,
    req_b: ProposeRequest,
) {
    let pa = propose(a, hub_a, req_a);
    vote(a, &pa.state.id, Choice::Yes, None);
    passed_everywhere(&[a], hub_a, &pa.state.id).await;
    let pb = propose(b, hub_b, req_b);
    has_proposal(&[a, b], hub_b, &pb.state.id).await;
    vote(b, &pb.state.id, Choice::Yes, None);
    vote(a, &pb.state.id, Choice::Yes, None);
    passed_everywhere(&[a, b], hub_b, &pb.state.id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_treaty_is_active_once_both_ratify_lapses_at_its_end_and_holds_when_renewed() {
    // Hub A: node 1 alone. Hub B: node 2, and node 1 as liaison.
    let a = TestNode::start(1).await;
    let b = TestNode::start(2).await;
    let hub_a = a.create_group("Riverside");
    let hub_b = b.create_group("Hillside");
    b.admit(&a, hub_b).await;
    roll_of(&[&a, &b], &hub_b, 2).await;
    let day = Duration::from_secs(24 * 3600);
    let advance = |by: Duration| {
        a.node.clock().advance(by);
        b.node.clock().advance(by);
    };

    // One treaty, 30 days, not renewed.
    let pa = propose(
        &a,
        &hub_a,
        ProposeRequest::NewTreaty {
            group: hub_b.to_hex(),
            treaty_kind: TreatyKind::MutualAid,
            duration_secs: 30 * 86_400,
            terms: "Distress signals cross between Riverside and Hillside.".into(),
        },
    );
    let nestwork_docs::governance::Action::RatifyTreaty { treaty } = &pa.state.proposal.action
    else {
        panic!("a treaty proposal");
    };
    let lapsing = treaty.id();
    vote(&a, &pa.state.id, Choice::Yes, None);
    wait_until("hub A to ratify", LIMIT, || {
        treaty_status(&a, &hub_a, &lapsing) == Some(TreatyStatus::AwaitingOther)
    })
    .await;
    // Ratified by one side only: not active anywhere. The liaison's node
    // carries A's ratification to B, where it waits for B's decision.
    wait_until("A's ratification to reach B", LIMIT, || {
        treaty_status(&b, &hub_b, &lapsing) == Some(TreatyStatus::Proposed)
    })
    .await;
    let pb = propose(
        &b,
        &hub_b,
        ProposeRequest::RatifyTreaty {
            treaty: lapsing.to_hex(),
        },
    );
    has_proposal(&[&a, &b], &hub_b, &pb.state.id).await;
    vote(&b, &pb.state.id, Choice::Yes, None);
    vote(&a, &pb.state.id, Choice::Yes, None);
    wait_until("the treaty to be active on both sides", LIMIT, || {
        treaty_status(&a, &hub_a, &lapsing) == Some(TreatyStatus::Active)
            && treaty_status(&b, &hub_b, &lapsing) == Some(TreatyStatus::Active)
    })
    .await;

    // A second treaty, 30 days, which both renew for 60 more.
    let hub_b_hex = hub_b.to_hex();
    let pa = propose(
        &a,
        &hub_a,
        ProposeRequest::NewTreaty {
            group: hub_b_hex,
            treaty_kind: TreatyKind::Cooperation,
            duration_secs: 30 * 86_400,
            terms: "Tools are lent between the hubs.".into(),
        },
    );
    let nestwork_docs::governance::Action::RatifyTreaty { treaty } = &pa.state.proposal.action
    else {
        panic!("a treaty proposal");
    };
    let renewed = treaty.id();
    vote(&a, &pa.state.id, Choice::Yes, None);
    passed_everywhere(&[&a], &hub_a, &pa.state.id).await;
    wait_until("A's ratification to reach B", LIMIT, || {
        treaty_status(&b, &hub_b, &renewed) == Some(TreatyStatus::Proposed)
    })
    .await;
    let pb = propose(
        &b,
        &hub_b,
        ProposeRequest::RatifyTreaty {
            treaty: renewed.to_hex(),
        },
    );
    has_proposal(&[&a, &b], &hub_b, &pb.state.id).await;
    vote(&b, &pb.state.id, Choice::Yes, None);
    vote(&a, &pb.state.id, Choice::Yes, None);
    wait_until("the second treaty to be active", LIMIT, || {
        treaty_status(&a, &hub_a, &renewed) == Some(TreatyStatus::Active)
    })
    .await;
    let renewed_hex = renewed.to_hex();
    both_pass(
        &a,
        &b,
        &hub_a,
        &hub_b,
        ProposeRequest::RenewTreaty {
            treaty: renewed_hex.clone(),
            duration_secs: 60 * 86_400,
        },
        ProposeRequest::RenewTreaty {
            treaty: renewed_hex,
            duration_secs: 60 * 86_400,
        },
    )
    .await;
    wait_until("both renewals to be known on both sides", LIMIT, || {
        [(&a, &hub_a), (&b, &hub_b)].iter().all(|(n, g)| {
            n.node
                .treaties(Some(&g.to_hex()))
                .is_ok_and(|ts| ts.iter().any(|t| t.state.id == renewed && t.days_left > 60))
        })
    })
    .await;

    // 31 days on: the first has lapsed by itself, the renewed one holds.
    advance(day * 31);
    for (n, g) in [(&a, &hub_a), (&b, &hub_b)] {
        assert_eq!(treaty_status(n, g, &lapsing), Some(TreatyStatus::Expired));
        assert_eq!(treaty_status(n, g, &renewed), Some(TreatyStatus::Active));
    }
    // An expired treaty cannot be renewed.
    let refused = a.node.propose(
        &hub_a.to_hex(),
        &ProposeRequest::RenewTreaty {
            treaty: lapsing.to_hex(),
            duration_secs: 30 * 86_400,
        },
    );
    assert!(refused
        .expect_err("refused")
        .to_string()
        .contains("expired"));
}

/// Issue 14, finding 1, on real nodes. The founder sets a 40 s voting
/// period; a proposal gets one yes and one no. Member 3's machine clock
/// runs 30 s behind the others'. Before decision records, its yes vote
/// after the deadline (inside the window by its clock) turned the FAILED
/// proposal into PASSED on every node. Now the proposer's node signs the
/// decision at the deadline; member 3's node refuses to vote once it holds
/// it, and a vote its modified node signs on a copy without the decision
/// (claiming a time before the deadline) reaches the others and changes
/// nothing anywhere. Beside it, a payout from the commons passes at the
/// same deadline (one yes, one abstention) and is paid; a late "no" the
/// modified node signs the same way (which would have failed it) pays
/// nothing back and changes no balance.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn finding_1_a_slow_clock_does_not_flip_a_decided_proposal() {
    use nestwork_docs::governance::{Choice, Vote};
    use nestwork_docs::{RecordBody, SignedDoc, Writer};
    use nestwork_node::Clock;
    use nestwork_testkit::key;

    let ahead = Clock::default();
    ahead.advance(Duration::from_secs(30));
    let n1 = TestNode::start_clocked(1, &ahead).await;
    let n2 = TestNode::start_clocked(2, &ahead).await;
    let n3 = TestNode::start(3).await;
    let hub = n1.create_group("Hub");
    n1.node
        .charter_edit(
            &hub.to_hex(),
            &ProposeRequest::SetRule {
                rule: "voting_period".into(),
                value: "40s".into(),
            },
        )
        .expect("the founder sets the voting period");
    n1.admit(&n2, hub).await;
    n1.admit(&n3, hub).await;
    let all = [&n1, &n2, &n3];
    roll_of(&all, &hub, 3).await;
    n2.node
        .pay(
            &hub.to_hex(),
            &PayRequest {
                to: "commons".into(),
                amount: 20,
                memo: String::new(),
                request_id: None,
            },
        )
        .expect("a gift to the commons");
    let balance_of = |n: &TestNode, account: &str| {
        n.node
            .balance(&hub.to_hex(), Some(account))
            .map_or(i128::MIN, |b| b.accounts[0].balance)
    };
    wait_until("the gift on every node", LIMIT, || {
        all.iter().all(|n| balance_of(n, "commons") == 20)
    })
    .await;

    let p = propose(
        &n1,
        &hub,
        ProposeRequest::AddArticle {
            title: Some("Tools".into()),
            text: "Tools are shared.".into(),
        },
    );
    let id = p.state.id;
    let member3 = n3.member().to_string();
    let payout = propose(
        &n1,
        &hub,
        ProposeRequest::Payout {
            member: member3.to_string(),
            amount: 8,
            memo: "boots".into(),
        },
    )
    .state
    .id;
    has_proposal(&all, &hub, &id).await;
    has_proposal(&all, &hub, &payout).await;
    vote(&n1, &id, Choice::Yes, None);
    vote(&n2, &id, Choice::No, None);
    vote(&n1, &payout, Choice::Yes, None);
    vote(&n2, &payout, Choice::Abstain, None);
    let tallied = |n: &TestNode| {
        n.node.proposals(&hub.to_hex()).is_ok_and(|ps| {
            ps.proposals
                .iter()
                .any(|x| x.state.id == id && x.state.yes == 1 && x.state.no == 1)
        })
    };
    // (Node 3 counts a vote once its clock reaches the vote's time, 30 s
    // on: here it need only hold them.)
    wait_until("both votes on nodes 1 and 2", LIMIT, || {
        tallied(&n1) && tallied(&n2)
    })
    .await;
    let held = |n: &TestNode| n.node.export(&hub.to_hex()).map_or(0, |b| b.changes.len());
    wait_until("both votes on node 3", LIMIT, || held(&n3) == held(&n1)).await;
    // Member 3's node as it stands before the deadline: a modified node
    // keeps this copy to sign on.
    assert!(n1.node.now_ms() < p.state.deadline_ms, "the test ran slow");
    let mut copy = SignedDoc::empty(hub);
    copy.apply(n3.node.export(&hub.to_hex()).expect("export").changes);

    // The deadline passes on nodes 1 and 2; node 1 (the proposer's) signs
    // the decision, and it reaches every node, node 3 included.
    ahead.advance(Duration::from_secs(41));
    wait_until("FAILED everywhere", LIMIT, || {
        all.iter()
            .all(|n| outcome(n, &hub, &id) == Some(Outcome::Failed))
    })
    .await;
    wait_until("the payout passed and paid everywhere", LIMIT, || {
        all.iter().all(|n| {
            outcome(n, &hub, &payout) == Some(Outcome::Passed)
                && balance_of(n, &member3) == 8
                && balance_of(n, "commons") == 12
        })
    })
    .await;
    // By node 3's clock the window is still open; its node refuses anyway.
    assert!(n3.node.now_ms() < p.state.deadline_ms);
    let refused = n3.node.vote(
        &id.to_hex(),
        &VoteRequest {
            choice: Choice::Yes,
            for_group: None,
        },
    );
    assert!(refused.is_err(), "node 3 holds the decision");

    // Its modified node signs a yes vote on the copy without the decision,
    // claiming a time inside the window, and gossips it.
    let device = Writer::new(key(3), [0x66; 8]);
    let now3 = n3.node.now_ms();
    let (late, change) = copy
        .sign_record_anyway(
            &device,
            RecordBody::Vote(Vote {
                proposal: id,
                choice: Choice::Yes,
                cast_at_ms: now3,
                for_group: None,
            }),
            now3,
        )
        .expect("signed anyway");
    let (late_no, no_change) = copy
        .sign_record_anyway(
            &device,
            RecordBody::Vote(Vote {
                proposal: payout,
                choice: Choice::No,
                cast_at_ms: now3,
                for_group: None,
            }),
            now3,
        )
        .expect("signed anyway");
    n3.net
        .publish_raw(
            GroupId::from(hub),
            nestwork_core::encoding::encode(&vec![change, no_change]),
        )
        .await
        .expect("publish");
    let listed = |n: &TestNode| {
        n.node.proposals(&hub.to_hex()).is_ok_and(|ps| {
            ps.proposals
                .iter()
                .any(|x| x.state.id == id && x.state.ignored.iter().any(|i| i.vote == late))
        })
    };
    wait_until(
        "the late vote held and not counted on nodes 1 and 2",
        LIMIT,
        || listed(&n1) && listed(&n2),
    )
    .await;
    let late_no_listed = |n: &TestNode| {
        n.node.proposals(&hub.to_hex()).is_ok_and(|ps| {
            ps.proposals
                .iter()
                .any(|x| x.state.id == payout && x.state.ignored.iter().any(|i| i.vote == late_no))
        })
    };
    wait_until(
        "the late no held and not counted on nodes 1 and 2",
        LIMIT,
        || late_no_listed(&n1) && late_no_listed(&n2),
    )
    .await;
    for n in &all {
        assert_eq!(outcome(n, &hub, &id), Some(Outcome::Failed));
        assert!(tallied(n), "still one yes and one no");
        assert_eq!(outcome(n, &hub, &payout), Some(Outcome::Passed));
        assert_eq!(balance_of(n, &member3), 8, "paid once, and kept");
        assert_eq!(balance_of(n, "commons"), 12);
    }
    // And long after, when every clock has passed the deadline.
    ahead.advance(Duration::from_secs(600));
    for n in &all[..2] {
        assert_eq!(outcome(n, &hub, &id), Some(Outcome::Failed));
    }
}

/// Issue 14, finding 5, on real nodes. Node 5 is a member of the region
/// and never was one of the hub. Its modified node signs a delegation that
/// names itself the hub's delegate and a ratification by the hub of a
/// treaty with the region, each with a "decision" of its own making, and
/// gossips them. Node 4, which holds only the region, refuses both: it
/// checks the hub's signed records each one cites, and their signer is not
/// shown to be a member of the hub. The real delegation stands.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn finding_5_a_forged_delegation_and_ratification_are_refused_by_a_region_only_node() {
    use nestwork_core::SignedRecord;
    use nestwork_docs::governance::{
        Action, Counterpart, Decision, Delegation, Proposal, Treaty, TreatyAct, TreatyKind,
    };
    use nestwork_docs::proof::{DecisionProof, MemberProof};
    use nestwork_docs::{RecordBody, SignedDoc, Writer};
    use nestwork_testkit::key;

    let (hub_nodes, hub, region_founder, region) = hub_in_region().await;
    let forger = TestNode::start(5).await;
    region_founder.admit(&forger, region).await;
    roll_of(&[&region_founder, &forger], &region, 3).await;
    assert!(
        region_founder.node.export(&hub.to_hex()).is_err(),
        "node 4 holds only the region"
    );

    // What node 5 can get hold of: the hub's founding record (any member
    // of the hub may show it) and its own copy of the region.
    let mut hub_copy = SignedDoc::empty(hub);
    hub_copy.apply(
        hub_nodes[1]
            .node
            .export(&hub.to_hex())
            .expect("export")
            .changes,
    );
    let founding =
        MemberProof::of(&GroupId::from(hub), hub_copy.records(), &[]).expect("founding record");
    let mut region_copy = SignedDoc::empty(region);
    region_copy.apply(
        forger
            .node
            .export(&region.to_hex())
            .expect("export")
            .changes,
    );
    let now = forger.node.now_ms();
    let signed_by_5 = |body: RecordBody| SignedRecord::sign(&key(5), body.encode());
    let own_decision = |action: Action| {
        let p = signed_by_5(RecordBody::Proposal(Proposal {
            action,
            submitted_at_ms: now - 60_000,
        }));
        let d = signed_by_5(RecordBody::Decision(Decision {
            proposal: ProposalId::from(p.id()),
            counted: Vec::new(),
            passed: true,
            decided_at_ms: now,
            signed_at_ms: now,
        }));
        let proof = DecisionProof {
            proposal: p.encode(),
            decision: d.encode(),
            members: founding.clone(),
        };
        (ProposalId::from(p.id()), proof)
    };
    let me = forger.member();
    let (named, proof) = own_decision(Action::SetDelegates {
        delegates: vec![me],
    });
    let delegation = RecordBody::Delegation(Delegation {
        child: GroupId::from(hub),
        delegates: vec![me],
        proposal: named,
        from_ms: now,
        until_ms: now + 28 * 24 * 3_600_000,
        proof,
    });
    let parties = if hub < region {
        [hub, region]
    } else {
        [region, hub]
    };
    let treaty = Treaty {
        parties: parties.map(GroupId::from),
        kind: TreatyKind::MutualAid,
        terms: "The hub answers every call of the region.".into(),
        start_ms: now,
        end_ms: now + 30 * 24 * 3_600_000,
    };
    let (ratified, proof) = own_decision(Action::RatifyTreaty {
        treaty: treaty.clone(),
    });
    let counterpart = RecordBody::Counterpart(Counterpart {
        treaty: treaty.id(),
        group: GroupId::from(hub),
        proposal: ratified,
        act: TreatyAct::Ratified(treaty.clone()),
        at_ms: now,
        proof,
    });
    let device = Writer::new(key(5), [0x55; 8]);
    let rejected_before = region_founder
        .net
        .status()
        .await
        .expect("status")
        .gossip
        .rejected;
    let stored_before = region_founder.node.status().changes;
    for body in [delegation, counterpart] {
        let (_, change) = region_copy
            .clone()
            .sign_record_anyway(&device, body, now)
            .expect("signed anyway");
        forger
            .net
            .publish_raw(
                GroupId::from(region),
                nestwork_core::encoding::encode(&vec![change]),
            )
            .await
            .expect("publish");
    }
    let start = std::time::Instant::now();
    loop {
        let status = region_founder.net.status().await.expect("status");
        if status.gossip.rejected >= rejected_before + 2 {
            break;
        }
        assert!(start.elapsed() < LIMIT, "node 4 did not refuse both");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(region_founder.node.status().changes, stored_before);
    let charter = region_founder
        .node
        .charter(&region.to_hex())
        .expect("charter");
    let seat = charter
        .child_delegations
        .iter()
        .find(|d| d.delegation.child.hash32() == hub)
        .expect("the hub's delegation");
    assert_eq!(seat.delegation.delegates, vec![hub_nodes[0].member()]);
    let treaties = region_founder
        .node
        .treaties(Some(&region.to_hex()))
        .expect("treaties");
    assert!(treaties.iter().all(|t| t.state.id != treaty.id()));
}
