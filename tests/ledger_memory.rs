//! What a node holds in memory follows the recent ledger periods, not the
//! whole history: one real node (real store, real signed changes) receives
//! a busy group's payments through 30 periods, and after every batch what
//! it counts itself as held (loaded period documents, their changes and
//! records, payments past the base, ledger index entries) stays under a
//! bound set by the period length alone. A late payment, from a member
//! whose node was a few periods behind, makes the node count its ledger
//! again from a checkpoint a little below it: it reads back only the
//! periods from there, one at a time, and holds only the periods from the
//! late payment on, not all 30. Closed
//! periods stay readable from disk, and a restart counts the same.
//!
//! Each bound caught a real leak: a late record used to bring every period
//! back into memory, and a ledger that moved its base dropped from its
//! closings' cuts every chain past the new base, so the next base could
//! not move (every other period, or for good where closings were signed
//! concurrently).

use std::collections::BTreeMap;

use nestwork_core::{GroupId, Hash32, MemberKey, SignedChange};
use nestwork_net::Replica;
use nestwork_node::ledger::period_id;
use nestwork_node::ledger_marks::CHECKPOINT_EVERY;
use nestwork_node::{DataDir, Node};
use nestwork_testkit::ledger_sim::{sign_payment, LedgerSim, LedgerState};

/// Payments per period.
const PERIOD: usize = 20;
/// Periods the node runs through.
const PERIODS: usize = 30;

fn open(dir: &std::path::Path) -> Node {
    let data = DataDir::new(dir);
    data.ensure().expect("data dir");
    Node::open(&data, MemberKey::from_secret([1; 32])).expect("open")
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

/// What the node holds, by its own count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Held {
    periods_loaded: usize,
    documents: usize,
    changes: usize,
    records: usize,
    payments: usize,
    index_entries: usize,
}

fn held(node: &Node) -> Held {
    let status = node.status();
    let m = node.memory();
    Held {
        periods_loaded: status.periods_loaded,
        documents: m.documents_loaded,
        changes: m.changes_loaded,
        records: m.records_loaded,
        payments: status.payments_in_memory,
        index_entries: m.ledger_index_entries,
    }
}

/// The bound, for a node that holds `periods` periods' worth of payments:
/// a few documents of at most a period's changes each (a period's payments,
/// its closings and its opening), and per payment held a handful of index
/// entries. Nothing here depends on how many periods have passed.
fn bound(periods: usize) -> Held {
    Held {
        periods_loaded: periods,
        documents: periods + 1,
        changes: periods * (PERIOD + 4) + 16,
        records: periods * (PERIOD + 4) + 16,
        payments: periods * PERIOD,
        index_entries: periods * PERIOD * 6 + 200,
    }
}

fn assert_within(what: &str, h: Held, b: Held) {
    let fields = [
        (
            "period documents loaded",
            h.periods_loaded,
            b.periods_loaded,
        ),
        ("documents loaded", h.documents, b.documents),
        ("changes loaded", h.changes, b.changes),
        ("records loaded", h.records, b.records),
        ("payments in memory", h.payments, b.payments),
        ("ledger index entries", h.index_entries, b.index_entries),
    ];
    for (name, value, limit) in fields {
        assert!(
            value <= limit,
            "{what}: {name} {value} over the bound {limit} ({h:?})"
        );
    }
}

/// What the network reads from the node's directory (without the node's
/// lock) agrees with what the node holds: the group document, then every
/// period delivered so far (loaded or on disk) and the open one after them,
/// each with heads that leave
/// nothing of it out; the members on the roll, and no one else.
fn assert_listed(node: &Node, sim: &LedgerSim, log: &[(u64, Vec<SignedChange>)]) {
    let group = sim.replica.group.id();
    let docs = node.docs_of(&GroupId::from(group));
    assert_eq!(
        docs.first(),
        Some(&GroupId::from(group).doc()),
        "the group document comes first"
    );
    let mut periods: Vec<u64> = log.iter().map(|(p, _)| *p).collect();
    periods.sort_unstable();
    periods.dedup();
    for p in &periods {
        assert!(
            docs.contains(&period_id(&GroupId::from(group), *p)),
            "period {p} is listed"
        );
    }
    // The next period is open, empty, and listed too: peers push into it
    // and this node asks for it before it holds any change there.
    let next = periods.last().map_or(0, |p| p + 1);
    assert!(
        docs.contains(&period_id(&GroupId::from(group), next)),
        "the open period {next} is listed"
    );
    for doc in &docs {
        assert_eq!(node.group_of(doc), Some(GroupId::from(group)));
        let heads = node.heads(doc).expect("listed heads");
        let (left_out, _) = node.changes_since(doc, &heads, 1);
        assert!(
            left_out.is_empty(),
            "the listed heads of {doc:?} are behind"
        );
    }
    for m in sim.members() {
        assert!(node.is_member(&GroupId::from(group).doc(), &m));
    }
    let stranger = MemberKey::from_secret([99; 32]).id();
    assert!(!node.is_member(&GroupId::from(group).doc(), &stranger));
}

/// A node that joined a group of four members, the fourth of whom only
/// receives (until it pays late).
fn joined(dir: &std::path::Path) -> (Node, LedgerSim, Hash32) {
    let mut sim = LedgerSim::new(4, PERIOD as u32);
    sim.payers = 3;
    let group = sim.replica.group.id();
    let node = open(dir);
    node.apply_remote(
        GroupId::from(group).doc(),
        sim.replica.group.changes_since(&[]),
        true,
    )
    .expect("join");
    (node, sim, group)
}

/// A member's ledger that holds what was delivered so far (`log`), and
/// from here on hears nothing more.
fn cut_off(sim: &LedgerSim, log: &[(u64, Vec<SignedChange>)]) -> LedgerState {
    let mut late = LedgerState::of(sim.replica.group.clone());
    for (p, changes) in log {
        late.apply(*p, changes.clone());
    }
    late
}

/// Make `count` payments and deliver them to the node (and the
/// simulation's own replica) period by period, as a peer's sync would;
/// every batch is also kept in `log`.
fn deliver(
    node: &Node,
    sim: &mut LedgerSim,
    count: usize,
    log: &mut Vec<(u64, Vec<SignedChange>)>,
) {
    let group = sim.replica.group.id();
    let mut by_period: BTreeMap<u64, Vec<SignedChange>> = BTreeMap::new();
    for _ in 0..count {
        let (period, changes) = sim.pay();
        by_period.entry(period).or_default().extend(changes);
    }
    for (period, changes) in by_period {
        sim.replica.apply(period, changes.clone());
        log.push((period, changes.clone()));
        let report = node
            .apply_remote(period_id(&GroupId::from(group), period), changes, false)
            .expect("apply");
        assert!(
            report.rejected.is_empty() && report.missing_deps.is_empty(),
            "{:?}",
            report.rejected.first()
        );
    }
}

#[test]
fn memory_follows_the_recent_periods_through_thirty_periods_and_a_late_payment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (node, mut sim, group) = joined(dir.path());
    let mut log = Vec::new();
    // The base moves up with every closing: at most the period before the
    // newest closing, the newest, and the next one (open, empty) are held.
    let steady = bound(3);
    let mut most = held(&node);
    let mut late_state = None;
    for period in 1..=PERIODS - 4 {
        for _ in 0..2 {
            deliver(&node, &mut sim, PERIOD / 2, &mut log);
            let h = held(&node);
            most = most.max(h);
            if period >= 3 {
                assert_within(&format!("period {period}"), h, steady);
            }
        }
        if period == PERIODS - 8 {
            // The fourth member's node stops hearing from the others here.
            late_state = Some(cut_off(&sim, &log));
        }
    }
    assert_listed(&node, &sim, &log);
    let status = node.status();
    assert_eq!(status.payments, (PERIODS - 4) * PERIOD);
    assert!(
        status.periods_on_disk >= PERIODS - 10,
        "old periods leave memory: {status:?}"
    );

    // Its late payment: filed in the period it last saw, it can only be
    // judged against the history below the node's base.
    let mut late = late_state.expect("the late member's state");
    let to = sim.members()[0];
    let (late_period, changes) = sign_payment(
        &mut late.ledger,
        group,
        sim.writer(3),
        &late.group,
        to,
        1,
        "late",
    );
    assert!(late_period + 3 <= (PERIODS - 4) as u64, "{late_period}");
    let doc = period_id(&GroupId::from(group), late_period);
    let first = node
        .apply_remote(doc, changes.clone(), false)
        .expect("apply");
    assert!(first.rejected.is_empty(), "{:?}", first.rejected.first());
    // Counted again from the newest checkpoint two periods or more below
    // the late payment's, it reads back the periods from there on, not the
    // whole history, and holds only those from two below the late one.
    let behind = (PERIODS - 4) as u64 - late_period;
    let reread = node.memory().periods_reread;
    println!("a payment {behind} periods late: {reread} periods read back");
    assert!(
        reread <= behind + 3 + CHECKPOINT_EVERY,
        "a payment {behind} periods late made the node read back {reread} of {} periods",
        PERIODS - 4
    );
    let reloaded = bound(behind as usize + 6);
    assert_within("after counting the history again", held(&node), reloaded);
    // The peer sends it again (the next sync): now it is judged, and taken.
    let again = node.apply_remote(doc, changes, false).expect("apply");
    assert!(
        again.rejected.is_empty() && again.missing_deps.is_empty(),
        "{again:?}"
    );
    assert_within("with the late payment", held(&node), reloaded);
    assert_listed(&node, &sim, &log);
    assert_eq!(node.status().payments, (PERIODS - 4) * PERIOD + 1);
    // What every member counts: the simulation's replica (which never
    // needed its history) plus the late payment.
    let expected = |sim: &LedgerSim| -> BTreeMap<String, i128> {
        let mut all: BTreeMap<String, i128> = sim
            .replica
            .ledger
            .ledger
            .balances()
            .iter()
            .map(|(a, b)| (a.to_string(), *b))
            .collect();
        *all.entry(sim.members()[3].to_string()).or_default() -= 1;
        *all.entry(to.to_string()).or_default() += 1;
        all.retain(|_, b| *b != 0);
        all
    };
    let shown = |node: &Node| -> BTreeMap<String, i128> {
        balances(node, &group)
            .into_iter()
            .filter(|(_, b)| *b != 0)
            .collect()
    };
    assert_eq!(
        shown(&node),
        expected(&sim),
        "the node counts what the members count"
    );

    // The hold lifts after a few more periods: back to the steady bound.
    for _ in 0..4 {
        deliver(&node, &mut sim, PERIOD, &mut log);
    }
    // The simulated members never see the late payment (only this node
    // does), so no closing covers its chain: it stays held, and so does its
    // period document. One period more, for good, not one per period.
    let after_late = bound(4);
    assert_within("periods after the late payment", held(&node), after_late);
    assert_eq!(shown(&node), expected(&sim));
    let before = balances(&node, &group);
    let total = node.status().payments;
    assert_eq!(total, PERIODS * PERIOD + 1);

    // Closed periods are read from disk when asked for.
    let oldest = node
        .ledger(&group.to_hex(), None, total - 1, 1)
        .expect("the oldest payment");
    assert_eq!(oldest.payments.len(), 1);
    assert_eq!(oldest.payments[0].period, 0);

    // A restart counts the same, holding as little.
    node.close().expect("close");
    drop(node);
    let node = open(dir.path());
    assert_eq!(node.status().payments, total);
    assert_eq!(balances(&node, &group), before);
    assert_within("after a restart", held(&node), after_late);
    assert_listed(&node, &sim, &log);
    println!("most held while running: {most:?}");
}

/// The crash soak's lost payments: a member whose node heard nothing after
/// the first few payments keeps paying in period 0, while the others have
/// closed several periods. Their node must take those payments: counted
/// again with no base at all (a base under period 0's closings cuts a
/// payment that saw less than them), not reloaded at every sync forever.
#[test]
fn payments_in_the_first_period_from_a_member_cut_off_since_are_taken() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (node, mut sim, group) = joined(dir.path());
    let mut log = Vec::new();
    deliver(&node, &mut sim, 3, &mut log);
    // The fourth member's node stops hearing from the others here.
    let mut late = cut_off(&sim, &log);
    for _ in 0..6 {
        deliver(&node, &mut sim, PERIOD, &mut log);
    }
    assert!(node.status().periods_on_disk > 0, "the base moved up");
    let to = sim.members()[0];
    let mut sent = 0;
    for _ in 0..3 {
        let (period, changes) = sign_payment(
            &mut late.ledger,
            group,
            sim.writer(3),
            &late.group,
            to,
            1,
            "late",
        );
        assert_eq!(period, 0, "the late member never saw a closing");
        let doc = period_id(&GroupId::from(group), period);
        // The first delivery may find the history below the base needed;
        // a peer sends again at the next sync, and that one is taken.
        let mut taken = false;
        for _ in 0..2 {
            let report = node
                .apply_remote(doc, changes.clone(), false)
                .expect("apply");
            assert!(report.rejected.is_empty(), "{:?}", report.rejected.first());
            if report.missing_deps.is_empty() {
                taken = true;
                break;
            }
        }
        assert!(taken, "late payment {sent} still waits after a reload");
        sent += 1;
    }
    assert_eq!(node.status().payments, 3 + 6 * PERIOD + sent);
    let total: i128 = balances(&node, &group).iter().map(|(_, b)| b).sum();
    assert_eq!(total, 0);
}

/// Late payments that keep coming (every two periods, from members whose
/// nodes saw the group four and nine periods before): each is counted
/// again from a checkpoint a little below it, however long they have kept
/// coming, and what the node holds stays within a bound that does not grow
/// with the number of periods. A base held down by late records and then
/// lifted at once used to leave no checkpoint between the two, so each
/// count started further below its record than the one before (in a soak,
/// a node read back most of its history, under its lock, for records a
/// few periods late).
#[test]
fn late_payments_that_keep_coming_are_counted_from_a_checkpoint_nearby_in_bounded_memory() {
    const ROUNDS: usize = 10;
    const BEHIND: [usize; 2] = [4, 9];
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sim = LedgerSim::new(3 + ROUNDS * BEHIND.len(), PERIOD as u32);
    sim.payers = 3;
    sim.author.keeps_history = true;
    let group = sim.replica.group.id();
    let node = open(dir.path());
    node.apply_remote(
        GroupId::from(group).doc(),
        sim.replica.group.changes_since(&[]),
        true,
    )
    .expect("join");
    let mut log = Vec::new();
    // `seen[k]`: how much of the log was delivered by the end of period k.
    let mut seen = vec![0];
    let mut late_members = 0;
    let mut most = held(&node);
    let mut most_read = 0;
    let mut period = 0;
    while late_members < ROUNDS * BEHIND.len() {
        period += 1;
        deliver(&node, &mut sim, PERIOD, &mut log);
        seen.push(log.len());
        if period < 10 || period % 2 != 0 {
            continue;
        }
        for behind in BEHIND {
            // A member whose node heard nothing for `behind` periods pays:
            // what it saw is the log up to then.
            let at = seen[period - behind];
            let mut view = LedgerState::of(sim.replica.group.clone());
            view.keeps_history = true;
            for (p, changes) in &log[..at] {
                view.apply(*p, changes.clone());
            }
            let (late_period, changes) = sign_payment(
                &mut view.ledger,
                group,
                sim.writer(3 + late_members),
                &view.group,
                sim.members()[0],
                1,
                "late",
            );
            late_members += 1;
            let doc = period_id(&GroupId::from(group), late_period);
            let reread = node.memory().periods_reread;
            let first = node
                .apply_remote(doc, changes.clone(), false)
                .expect("apply");
            assert!(first.rejected.is_empty(), "{:?}", first.rejected.first());
            if !first.missing_deps.is_empty() {
                let again = node
                    .apply_remote(doc, changes.clone(), false)
                    .expect("apply");
                assert!(
                    again.rejected.is_empty() && again.missing_deps.is_empty(),
                    "{again:?}"
                );
            }
            let read_back = node.memory().periods_reread - reread;
            most_read = most_read.max(read_back);
            // From the checkpoint at or below two periods under the late
            // payment; checkpoints are a few periods apart, and a run of
            // them is skipped where the base jumped when a hold lifted.
            let late_by = period as u64 - late_period;
            assert!(
                read_back <= late_by + 6 + 2 * CHECKPOINT_EVERY,
                "late member {late_members}: a payment {late_by} periods late made the node read back {read_back} periods"
            );
            // The other members get it too (their closings cover it), and
            // so does anyone who later rebuilds a view from the log.
            sim.author_receives(late_period, changes.clone());
            log.insert(at, (late_period, changes));
            for s in seen.iter_mut().filter(|s| **s >= at && **s != 0) {
                *s += 1;
            }
            let h = held(&node);
            most = most.max(h);
            // The holds of the last few late payments, each two periods
            // below its payment, nine periods back at most: what is held
            // does not depend on how long late payments have kept coming.
            assert_within(
                &format!("late member {late_members}, period {period}"),
                h,
                bound(BEHIND[1] + 10),
            );
        }
    }
    assert_eq!(node.status().payments, period * PERIOD + late_members);
    let counted: BTreeMap<String, i128> = sim
        .author
        .ledger
        .ledger
        .balances()
        .iter()
        .map(|(a, b)| (a.to_string(), *b))
        .filter(|(_, b)| *b != 0)
        .collect();
    let shown: BTreeMap<String, i128> = balances(&node, &group)
        .into_iter()
        .filter(|(_, b)| *b != 0)
        .collect();
    assert_eq!(shown, counted, "the node counts what the members count");
    println!("with late payments every two periods: most held {most:?}, most periods read back for one {most_read}");
}
