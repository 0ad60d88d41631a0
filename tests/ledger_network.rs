//! The ledger across real nodes: limits that hold through a partition, and
//! a double spend caught on every node.

use std::time::Duration;

use nestwork_core::{DocId, GroupId, Hash32};
use nestwork_net::Replica;
use nestwork_node::ledger::BalanceView;
use nestwork_node::node::{LimitRequest, PayRequest};
use nestwork_testkit::{converged, group_of, wait_until, TestNode};

const LIMIT: Duration = Duration::from_secs(90);

async fn connect_all(nodes: &[TestNode]) {
    for i in 0..nodes.len() {
        for j in i + 1..nodes.len() {
            nodes[i].connect(&nodes[j]).await;
        }
    }
}

/// Cut every link between `left` and `right` and wait until it is cut.
async fn partition(left: &[TestNode], right: &[TestNode]) {
    for a in left {
        for b in right {
            a.net.block(b.peer()).await.expect("block");
            b.net.block(a.peer()).await.expect("block");
        }
    }
    for a in left {
        wait_for_peers(a, right, false).await;
    }
}

async fn heal(left: &[TestNode], right: &[TestNode]) {
    for a in left {
        for b in right {
            a.net.unblock(b.peer()).await.expect("unblock");
            b.net.unblock(a.peer()).await.expect("unblock");
        }
    }
    for a in left {
        for b in right {
            a.connect(b).await;
        }
    }
}

async fn wait_for_peers(a: &TestNode, others: &[TestNode], connected: bool) {
    for _ in 0..1000 {
        let peers = a.net.peers().await.expect("peers");
        let linked = others
            .iter()
            .any(|b| peers.iter().any(|p| p.peer == b.peer().to_string()));
        if linked == connected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the partition did not take");
}

fn pay(n: &TestNode, group: &Hash32, to: &TestNode, amount: u64) -> Result<(), String> {
    n.node
        .pay(
            &group.to_hex(),
            &PayRequest {
                to: to.member().to_string(),
                amount,
                memo: String::new(),
                request_id: None,
            },
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn balances(n: &TestNode, group: &Hash32) -> BalanceView {
    n.node.balance(&group.to_hex(), None).expect("balances")
}

/// Wait until every node holds `payments` payments and the same balances.
async fn settled(nodes: &[&TestNode], group: &Hash32, payments: usize) {
    wait_until("every node to hold the same payments", LIMIT, || {
        let first = balances(nodes[0], group);
        first.payments == payments && nodes.iter().all(|n| balances(n, group) == first)
    })
    .await;
}

fn balance_of(view: &BalanceView, n: &TestNode) -> i128 {
    view.accounts
        .iter()
        .find(|a| a.account == n.member().to_string())
        .map(|a| a.balance)
        .expect("account")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_heals_with_every_payment_and_every_honest_account_in_its_limits() {
    let (nodes, group) = group_of(5).await;
    connect_all(&nodes).await;
    // The founder sets the group default: floor -100, ceiling 500.
    nodes[0]
        .node
        .set_limit(
            &group.to_hex(),
            &LimitRequest {
                member: None,
                floor: -100,
                ceiling: 500,
            },
        )
        .expect("limits");
    converged(&nodes.iter().collect::<Vec<_>>(), &group, LIMIT).await;

    let (left, right) = nodes.split_at(3);
    partition(left, right).await;

    // Left: the payer spends up to its floor, and is refused past it.
    let payer = &left[1];
    for _ in 0..3 {
        pay(payer, &group, &left[2], 30).expect("within the floor");
    }
    let refused = pay(payer, &group, &left[0], 20).expect_err("past the floor");
    assert!(
        refused.contains("would take you to -110 hours; your floor is -100 hours"),
        "{refused}"
    );
    pay(payer, &group, &left[0], 10).expect("exactly to the floor");
    // Right keeps trading, and pays the payer, who cannot see it yet.
    pay(&right[0], &group, &right[1], 40).expect("right");
    pay(&right[1], &group, &right[0], 15).expect("right");
    pay(&right[1], &group, payer, 25).expect("to the payer across the cut");
    settled(&left.iter().collect::<Vec<_>>(), &group, 4).await;
    settled(&right.iter().collect::<Vec<_>>(), &group, 3).await;
    // The payer still cannot spend what it has not seen.
    assert!(pay(payer, &group, &left[0], 1).is_err());

    heal(left, right).await;
    let all: Vec<&TestNode> = nodes.iter().collect();
    settled(&all, &group, 7).await;
    let view = balances(&nodes[4], &group);
    assert_eq!(view.total, 0, "balances sum to zero");
    assert!(view.equivocations.is_empty());
    assert_eq!(balance_of(&view, payer), -100 + 25);
    assert_eq!(balance_of(&view, &left[2]), 90);
    assert_eq!(balance_of(&view, &right[0]), -40 + 15);
    for a in &view.accounts {
        assert!(a.balance >= -100 && a.balance <= 500, "{a:?}");
    }
    // Having seen the payment across the cut, the payer can spend it.
    pay(payer, &group, &left[0], 25).expect("now it is seen");
    settled(&all, &group, 8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_key_signing_twice_on_two_sides_is_flagged_on_every_node_with_the_same_proof() {
    let (nodes, group) = group_of(5).await;
    connect_all(&nodes).await;
    let (left, right) = nodes.split_at(3);
    partition(left, right).await;

    // The cheat's own node (right) pays; a second machine with the same
    // key, on the left, signs another payment with the same number.
    let cheat = &right[1];
    pay(cheat, &group, &right[0], 60).expect("first spend");
    let cheat_key = cheat.seed;
    let (doc, forged) =
        left[0].payment_from_elsewhere(group, cheat_key, [7; 8], left[1].member(), 70);
    let report = Replica::apply_remote(&*left[0].node, DocId::from(doc), vec![forged], false)
        .expect("apply");
    assert_eq!(report.applied.len(), 1, "valid on its own side: {report:?}");
    settled(&left.iter().collect::<Vec<_>>(), &group, 1).await;
    settled(&right.iter().collect::<Vec<_>>(), &group, 1).await;

    heal(left, right).await;
    let all: Vec<&TestNode> = nodes.iter().collect();
    settled(&all, &group, 2).await;
    let proofs: Vec<_> = nodes
        .iter()
        .map(|n| balances(n, &group).equivocations)
        .collect();
    assert_eq!(proofs[0].len(), 1, "one frozen account");
    assert_eq!(proofs[0][0].account.to_string(), cheat.member().to_string());
    assert_eq!(proofs[0][0].seq, 1);
    assert!(
        proofs.windows(2).all(|w| w[0] == w[1]),
        "the same proof everywhere"
    );
    // Both payments stand; the cheat is the one past its limit, and frozen.
    let view = balances(&nodes[0], &group);
    assert_eq!(balance_of(&view, cheat), -130);
    assert_eq!(view.total, 0);
    let refused = pay(cheat, &group, &right[0], 1).expect_err("frozen");
    assert!(refused.contains("frozen"), "{refused}");
    let status = nodes[2].node.status();
    assert_eq!(status.equivocations.len(), 1);
}

/// A node that knows of a ledger period before it holds the period below
/// it (it got one payment of that one) syncs both side by side: the later
/// period's answer arrives first, and its payments wait for the closing
/// they cite. They are asked for again as soon as the earlier period is
/// stored, not at the next anti-entropy round 15 s later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_period_synced_before_the_earlier_one_is_fetched_again_once_that_one_lands() {
    use std::collections::BTreeMap;

    use nestwork_core::SignedChange;
    use nestwork_node::ledger::period_id;
    use nestwork_testkit::ledger_sim::LedgerSim;

    const PERIOD: u32 = 300;
    let mut sim = LedgerSim::new(3, PERIOD);
    let group = sim.replica.group.id();
    let genesis = sim.replica.group.changes_since(&[]);
    let mut first = Vec::new();
    let mut by_period: BTreeMap<u64, Vec<SignedChange>> = BTreeMap::new();
    for i in 0..PERIOD as usize + 5 {
        let (p, changes) = sim.pay();
        if i == 0 {
            first = changes.clone();
        }
        by_period.entry(p).or_default().extend(changes);
    }
    assert_eq!(
        by_period.len(),
        2,
        "a full period and a few payments past it"
    );
    // The sim's members 0 and 1 have the keys of seeds 1 and 2. The node
    // with the smaller peer id starts the sync on connecting: make it the
    // one behind, so that it asks for both periods at once.
    let peer = |seed: u8| nestwork_net::actor::peer_of(&nestwork_testkit::key(seed).id());
    let (behind, ahead) = if peer(1) < peer(2) { (1, 2) } else { (2, 1) };
    let a = TestNode::start(ahead).await;
    Replica::apply_remote(&*a.node, GroupId::from(group).doc(), genesis.clone(), true)
        .expect("genesis");
    for (p, changes) in by_period {
        let report = Replica::apply_remote(
            &*a.node,
            period_id(&GroupId::from(group), p),
            changes,
            false,
        )
        .expect("apply");
        assert!(report.rejected.is_empty() && report.missing_deps.is_empty());
    }
    let total = PERIOD as usize + 5;
    assert_eq!(a.node.status().payments, total);

    let c = TestNode::start(behind).await;
    assert!(c.peer() < a.peer(), "the node behind starts the sync");
    Replica::apply_remote(&*c.node, GroupId::from(group).doc(), genesis, true).expect("genesis");
    Replica::apply_remote(&*c.node, period_id(&GroupId::from(group), 0), first, false)
        .expect("first payment");
    assert!(
        c.node
            .docs_of(&GroupId::from(group))
            .contains(&period_id(&GroupId::from(group), 1)),
        "the node behind knows of period 1 before it holds period 0's closing"
    );
    c.connect(&a).await;
    // Its anti-entropy round ran when it started, with no peer; the next
    // is 15 s later.
    wait_until(
        "the node behind to hold both periods without waiting for anti-entropy",
        Duration::from_secs(12),
        || c.node.status().payments == total,
    )
    .await;
}
