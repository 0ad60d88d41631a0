//! A real node whose ledger runs through many periods: it signs nothing
//! here, it receives a busy group's history (payments and the period
//! closings members signed) and keeps only the recent periods in memory;
//! after a restart it opens only those from disk, and a newcomer still
//! gets the whole history from it, old periods included, with the same
//! balances.

use std::collections::BTreeMap;

use nestwork_core::{GroupId, Hash32, MemberKey, SignedChange};
use nestwork_net::Replica;
use nestwork_node::ledger::period_id;
use nestwork_node::{DataDir, Node};
use nestwork_testkit::ledger_sim::LedgerSim;

const PERIOD: u32 = 10;

fn open(dir: &std::path::Path, seed: u8) -> Node {
    let data = DataDir::new(dir);
    data.ensure().expect("data dir");
    Node::open(&data, MemberKey::from_secret([seed; 32])).expect("open")
}

/// Every balance of the group, as the node shows it.
fn balances(node: &Node, group: &Hash32) -> Vec<(String, i128)> {
    let view = node.balance(&group.to_hex(), None).expect("balance");
    assert_eq!(view.total, 0, "balances sum to zero");
    view.accounts
        .into_iter()
        .map(|a| (a.account, a.balance))
        .collect()
}

#[test]
fn old_periods_leave_memory_stay_on_disk_and_are_served_to_newcomers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sim = LedgerSim::new(5, PERIOD);
    let group = sim.replica.group.id();
    let node = open(&dir.path().join("a"), 1);
    node.apply_remote(
        GroupId::from(group).doc(),
        sim.replica.group.changes_since(&[]),
        true,
    )
    .expect("join");
    for _ in 0..30 {
        let mut by_period: BTreeMap<u64, Vec<SignedChange>> = BTreeMap::new();
        for _ in 0..10 {
            let (period, changes) = sim.pay();
            by_period.entry(period).or_default().extend(changes);
        }
        for (period, changes) in by_period {
            sim.replica.apply(period, changes.clone());
            let report = node
                .apply_remote(period_id(&GroupId::from(group), period), changes, false)
                .expect("apply");
            assert!(report.rejected.is_empty() && report.missing_deps.is_empty());
        }
    }
    let status = node.status();
    assert_eq!(status.payments, 300);
    assert!(
        status.payments_in_memory <= 4 * PERIOD as usize,
        "{} payments in memory",
        status.payments_in_memory
    );
    assert!(status.periods_on_disk >= 20, "{status:?}");
    let before = balances(&node, &group);
    assert_eq!(sim.len(), 300);
    // The whole history can be paged through, newest first: the recent
    // periods from memory, the older ones read back from the store.
    let mut seen = std::collections::BTreeSet::new();
    for page in 0..10 {
        let view = node
            .ledger(&group.to_hex(), None, page * 40, 40)
            .expect("page");
        assert_eq!(
            view.payments.len(),
            if page < 7 {
                40
            } else if page == 7 {
                20
            } else {
                0
            }
        );
        seen.extend(view.payments.iter().map(|p| p.id));
    }
    assert_eq!(seen.len(), 300, "every payment listed once");
    let oldest = node
        .ledger(&group.to_hex(), None, 299, 1)
        .expect("last page");
    assert_eq!(
        oldest.payments[0].period, 0,
        "the oldest payment is in period 0"
    );

    // A restart opens only the recent periods.
    node.close().expect("close");
    drop(node);
    let node = open(&dir.path().join("a"), 1);
    let status = node.status();
    assert_eq!(status.payments, 300);
    assert!(status.periods_on_disk >= 20, "{status:?}");
    assert!(status.periods_loaded <= 5, "{status:?}");
    assert_eq!(balances(&node, &group), before);

    // A newcomer gets every period, cold ones included, and agrees.
    let newcomer = open(&dir.path().join("b"), 2);
    let docs = node.docs_of(&GroupId::from(group));
    assert!(docs.len() >= 30, "{} documents", docs.len());
    let (genesis, _) = node.changes_since(&GroupId::from(group).doc(), &[], usize::MAX);
    newcomer
        .apply_remote(GroupId::from(group).doc(), genesis, true)
        .expect("join");
    // In period order: a node opens the period after the newest it has.
    for period in 0..docs.len() as u64 - 1 {
        let doc = period_id(&GroupId::from(group), period);
        assert!(docs.contains(&doc), "period {period} is listed");
        let (changes, more) = node.changes_since(&doc, &[], usize::MAX);
        assert!(!more);
        if changes.is_empty() {
            // The next period, open and still empty.
            assert_eq!(period, docs.len() as u64 - 2);
            continue;
        }
        let report = newcomer.apply_remote(doc, changes, false).expect("apply");
        assert!(report.rejected.is_empty(), "{:?}", report.rejected.first());
    }
    assert_eq!(newcomer.status().payments, 300);
    assert_eq!(balances(&newcomer, &group), before);
    // Serving old periods did not load them: they are answered from the
    // store (crates/node/src/served.rs).
    assert!(node.status().periods_loaded <= 5, "{:?}", node.status());
}
