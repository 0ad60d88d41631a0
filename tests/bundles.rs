//! Bundles (`group export` / `group import`) carry a whole group: its
//! document and every ledger period, old ones kept on disk only included.
//! An import goes through the path a peer's changes take, all or nothing:
//! a payment against the rules, a period of another group or tampered bytes
//! refuse the whole bundle and store nothing.

use std::collections::{BTreeMap, BTreeSet};

use nestwork_core::{ChangeBundle, GroupId, Hash32, MemberKey, SignedChange};
use nestwork_docs::ledger::{Account, Ledger, Limits, NoProposals};
use nestwork_docs::{RecordBody, SignedDoc, Writer};
use nestwork_node::ledger::{group_heads_to_cite, period_id};
use nestwork_node::node::NodeError;
use nestwork_node::{DataDir, Node};
use nestwork_testkit::ledger_sim::{sign_payment, LedgerSim};

const PERIOD: u32 = 10;
const PAYMENTS: usize = 60;

fn open(dir: &std::path::Path, seed: u8) -> Node {
    let data = DataDir::new(dir);
    data.ensure().expect("data dir");
    Node::open(&data, MemberKey::from_secret([seed; 32])).expect("open")
}

/// Every balance of the group and the number of payments, as the node
/// shows them.
fn ledger_of(node: &Node, group: &Hash32) -> (Vec<(String, i128)>, usize, usize) {
    let view = node.balance(&group.to_hex(), None).expect("balance");
    assert_eq!(view.total, 0, "balances sum to zero");
    let listed = node
        .ledger(&group.to_hex(), None, 0, 1_000)
        .expect("ledger")
        .payments
        .len();
    let balances = view
        .accounts
        .into_iter()
        .map(|a| (a.account, a.balance))
        .collect();
    (balances, view.payments, listed)
}

/// A busy group: members 0 to 2 pay, 3 and 4 only receive. Returns the
/// simulation and every payment's changes by period, in the order made.
fn busy_group() -> (LedgerSim, Vec<(u64, Vec<SignedChange>)>) {
    let mut sim = LedgerSim::new(5, PERIOD);
    sim.payers = 3;
    let mut made = Vec::new();
    for _ in 0..PAYMENTS {
        made.push(sim.pay());
    }
    (sim, made)
}

/// A node that received the group and `payments` of its payments from a
/// peer, a period at a time.
fn node_with(
    dir: &std::path::Path,
    sim: &LedgerSim,
    made: &[(u64, Vec<SignedChange>)],
    payments: usize,
) -> Node {
    let group = sim.replica.group.id();
    let node = open(dir, 9);
    node.apply_remote(
        GroupId::from(group).doc(),
        sim.replica.group.changes_since(&[]),
        true,
    )
    .expect("join");
    let mut by_period: BTreeMap<u64, Vec<SignedChange>> = BTreeMap::new();
    for (period, changes) in &made[..payments] {
        by_period
            .entry(*period)
            .or_default()
            .extend(changes.iter().cloned());
    }
    for (period, changes) in by_period {
        let report = node
            .apply_remote(period_id(&GroupId::from(group), period), changes, false)
            .expect("apply");
        assert!(
            report.rejected.is_empty() && report.missing_deps.is_empty(),
            "{:?}",
            report.rejected.first()
        );
    }
    node
}

#[test]
fn a_bundle_carries_every_ledger_period_and_the_copy_has_the_same_balances() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (sim, made) = busy_group();
    let group = sim.replica.group.id();
    let a = node_with(&tmp.path().join("a"), &sim, &made, PAYMENTS);
    let status = a.status();
    assert_eq!(status.payments, PAYMENTS);
    assert!(status.periods_on_disk >= 1, "{status:?}");
    let want = ledger_of(&a, &group);
    assert_eq!(want.1, PAYMENTS);

    let bundle = a.export(&group.to_hex()).expect("export");
    let periods: BTreeSet<u64> = bundle.periods.iter().map(|p| p.period).collect();
    assert!(periods.len() >= 5, "{periods:?}");
    // Through the file's bytes, as `group export` and `group import` do.
    let bytes = bundle.encode();
    assert_eq!(&bytes[..8], b"NWBUNDL2");
    let read = ChangeBundle::decode(&bytes).expect("decode");
    assert_eq!(read, bundle);

    let b_dir = tmp.path().join("b");
    let b = open(&b_dir, 2);
    let report = b.import(read.clone()).expect("import");
    assert_eq!(report.applied, bundle.change_count());
    assert_eq!(report.periods, bundle.periods.len());
    assert_eq!(report.payments, PAYMENTS);
    assert_eq!(ledger_of(&b, &group), want);
    // Old periods leave memory on the copy too.
    assert!(b.status().periods_on_disk >= 1, "{:?}", b.status());

    // Again: nothing new.
    let again = b.import(read.clone()).expect("again");
    assert_eq!(again.applied, 0);
    assert_eq!(again.duplicates, bundle.change_count());
    assert_eq!(b.status().changes, bundle.change_count());

    // The copy is on disk: it survives a restart, and exports the same.
    drop(b);
    let b = open(&b_dir, 2);
    assert_eq!(ledger_of(&b, &group), want);
    let mut copy = b.export(&group.to_hex()).expect("export the copy");
    let mut original = bundle.clone();
    for bundle in [&mut copy, &mut original] {
        bundle.changes.sort_by_key(|c| c.hash);
        for p in &mut bundle.periods {
            p.changes.sort_by_key(|c| c.hash);
        }
    }
    assert_eq!(copy, original);

    // A node holding part of the group merges the rest.
    let c = node_with(&tmp.path().join("c"), &sim, &made, PAYMENTS / 3);
    let before = c.status().changes;
    let report = c.import(bundle.clone()).expect("merge");
    assert_eq!(report.applied + before, bundle.change_count());
    assert!(report.duplicates > 0);
    assert_eq!(ledger_of(&c, &group), want);
}

/// A payment signed outside the rules, in period 0 of the group, by a
/// modified node: `writer` signs it with a ledger that holds other limits
/// than the group's, and no check of the roll, citing the group's heads.
fn forged_payment(
    sim: &LedgerSim,
    writer: &Writer,
    limits: Limits,
    amount: u64,
) -> Vec<SignedChange> {
    let group = sim.replica.group.id();
    let forger = Ledger::new("hours", sim.writer(0).id(), limits, PERIOD);
    let payment = forger
        .prepare(
            &writer.id(),
            Account::Member(writer.id()),
            Account::Member(sim.writer(3).id()),
            amount,
            "forged",
            None,
            1,
            group_heads_to_cite(&sim.replica.group),
            &|_| true,
            &NoProposals,
        )
        .expect("within the forger's rules");
    assert_eq!(payment.period, 0);
    let mut period = SignedDoc::ledger_period(group, 0).expect("period");
    let (_, change) = period
        .sign_record_anyway(writer, RecordBody::Payment(payment), 1)
        .expect("signed anyway");
    vec![change]
}

#[test]
fn a_bundle_with_a_payment_against_the_rules_is_refused_whole() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (sim, made) = busy_group();
    let group = sim.replica.group.id();
    let a = node_with(&tmp.path().join("a"), &sim, &made, PAYMENTS);
    let honest = a.export(&group.to_hex()).expect("export");
    let wide = Limits {
        floor: -1_000_000_000,
        ceiling: 1_000_000_000,
    };

    // Member 4 never paid: its first payment, far below its floor.
    let overdrawn = forged_payment(&sim, sim.writer(4), wide, 1_000_000);
    // Someone never admitted pays.
    let outsider = Writer::new(MemberKey::from_secret([77; 32]), [7; 8]);
    let stranger = forged_payment(&sim, &outsider, wide, 1);

    let b = open(&tmp.path().join("b"), 2);
    let c = node_with(&tmp.path().join("c"), &sim, &made, PAYMENTS / 3);
    let c_before = (ledger_of(&c, &group), c.status().changes);
    for (what, forged) in [("overdrawn", overdrawn), ("outsider", stranger)] {
        let mut bundle = honest.clone();
        let period0 = bundle
            .periods
            .iter_mut()
            .find(|p| p.period == 0)
            .expect("period 0");
        period0.changes.extend(forged);
        let bundle = ChangeBundle::decode(&bundle.encode()).expect("well formed");

        // Both are refused outright: one overdrawn, one by someone not on
        // the roll at the group heads it cites.
        let err = b.import(bundle.clone()).expect_err(what);
        assert!(
            matches!(err, NodeError::BundleRefused { .. }),
            "{what}: {err}"
        );
        let text = err.to_string();
        assert!(
            text.contains("nothing was stored") && text.contains("ledger period 0"),
            "{what}: {text}"
        );
        assert!(b.groups().is_empty(), "{what}: a group was kept");
        assert_eq!(b.status().changes, 0, "{what}: something was stored");

        // A node holding part of the group takes nothing of it either.
        let err = c.import(bundle).expect_err(what);
        assert!(
            err.to_string().contains("nothing was stored"),
            "{what}: {err}"
        );
        assert_eq!(
            (ledger_of(&c, &group), c.status().changes),
            c_before,
            "{what}: the partial node changed"
        );
    }
}

#[test]
fn tampered_bundles_and_foreign_periods_are_refused_and_store_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (sim, made) = busy_group();
    let group = sim.replica.group.id();
    let a = node_with(&tmp.path().join("a"), &sim, &made, PAYMENTS / 2);
    let honest = a.export(&group.to_hex()).expect("export");
    let mut b = open(&tmp.path().join("b"), 2);
    fn nothing_stored(b: &Node, what: &str) {
        assert!(b.groups().is_empty(), "{what}: a group was kept");
        assert_eq!(b.status().changes, 0, "{what}: something was stored");
    }

    // A signature broken in a ledger period.
    let mut bundle = honest.clone();
    bundle.periods[1].changes[0].signature[5] ^= 1;
    let err = b.import(bundle).expect_err("bad signature");
    let text = err.to_string();
    assert!(
        text.contains("ledger period 1") && text.contains("nothing was stored"),
        "{text}"
    );
    nothing_stored(&b, "bad signature");

    // A period document of another group, or under another number.
    let mut bundle = honest.clone();
    bundle.periods[0].doc = period_id(&GroupId::from(Hash32::of(b"another group")), 0).hash32();
    let err = b.import(bundle).expect_err("foreign period");
    assert!(err.to_string().contains("is not ledger period 0"), "{err}");
    nothing_stored(&b, "foreign period");
    let mut bundle = honest.clone();
    bundle.periods[0].period = 7;
    let err = b.import(bundle).expect_err("renumbered period");
    assert!(err.to_string().contains("is not ledger period 7"), "{err}");
    nothing_stored(&b, "renumbered period");

    // A period without the group's genesis.
    let mut bundle = honest.clone();
    bundle.changes.clear();
    let err = b.import(bundle).expect_err("no genesis");
    assert!(err.to_string().contains("genesis"), "{err}");
    nothing_stored(&b, "no genesis");

    // Bytes flipped anywhere: the file does not decode, or the import is
    // refused. The only exception is a change's own bytes where they do
    // not count (the padding bits of a compressed change's deflate
    // stream): Automerge reads the same change, with the same signed
    // hash, so the group is the same as from the honest bundle.
    let bytes = honest.encode();
    let step = (bytes.len() / 41).max(1);
    let mut fresh = 0;
    for pos in (0..bytes.len()).step_by(step) {
        let mut bad = bytes.clone();
        bad[pos] ^= 0x5a;
        if let Ok(bundle) = ChangeBundle::decode(&bad) {
            if b.import(bundle.clone()).is_ok() {
                assert!(
                    same_signed_content(&honest, &bundle),
                    "a flip at byte {pos} of {} was taken",
                    bytes.len()
                );
                assert_eq!(ledger_of(&b, &group), ledger_of(&a, &group));
                fresh += 1;
                b = open(&tmp.path().join(format!("b{fresh}")), 2);
            }
        }
        nothing_stored(&b, &format!("flip at {pos}"));
    }
    let err = ChangeBundle::decode(&bytes[..bytes.len() / 2]).expect_err("truncated");
    assert!(err.to_string().contains("malformed bundle"), "{err}");

    // The honest bundle still imports whole.
    let report = b.import(honest.clone()).expect("import");
    assert_eq!(report.applied, honest.change_count());
    assert_eq!(ledger_of(&b, &group), ledger_of(&a, &group));
}

/// Whether two bundles hold the same changes by author, document, hash
/// and signature (their bytes may still differ).
fn same_signed_content(a: &ChangeBundle, b: &ChangeBundle) -> bool {
    let key = |x: &ChangeBundle| {
        let mut all: Vec<_> = x
            .changes
            .iter()
            .chain(x.periods.iter().flat_map(|p| p.changes.iter()))
            .map(|c| (c.author, c.doc, c.hash, c.signature.clone()))
            .collect();
        all.sort_by_key(|(_, _, hash, _)| *hash);
        all
    };
    a.doc == b.doc && key(a) == key(b)
}

/// The fuzz target's committed seed (written by `fuzz/examples/seeds.rs`)
/// is a bundle of the current format, ledger period included, that a node
/// imports whole.
#[test]
fn the_fuzz_seed_with_a_ledger_period_imports_whole() {
    let seed = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus/bundle_import/group-with-ledger");
    let bytes = std::fs::read(&seed).expect("the committed seed");
    assert_eq!(&bytes[..8], b"NWBUNDL2");
    let bundle = ChangeBundle::decode(&bytes).expect("decode");
    assert_eq!(bundle.periods.len(), 1);
    let tmp = tempfile::tempdir().expect("tempdir");
    let node = open(tmp.path(), 3);
    let report = node.import(bundle.clone()).expect("import");
    assert_eq!(report.applied, bundle.change_count());
    assert_eq!(report.payments, 1);
}

/// A bundle can carry a late payment: one its payer signed in an old
/// period after being cut off, which a node whose ledger base has moved
/// past that period can only judge against the history below its base. The
/// import counts that history again, as a sync from a peer makes the node
/// do, and takes the payment; the node holds it after a restart too.
#[test]
fn a_late_payment_in_an_old_period_merges_through_the_history_below_the_base() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut sim = LedgerSim::new(4, PERIOD);
    sim.payers = 3;
    let group = sim.replica.group.id();
    let made: Vec<_> = (0..100).map(|_| sim.pay()).collect();
    // The fourth member's node stopped hearing from the others after 20.
    let mut late = nestwork_testkit::ledger_sim::LedgerState::of(sim.replica.group.clone());
    for (p, changes) in &made[..20] {
        late.apply(*p, changes.clone());
    }
    let to = sim.members()[0];
    let (late_period, late_changes) = sign_payment(
        &mut late.ledger,
        group,
        sim.writer(3),
        &late.group,
        to,
        1,
        "late",
    );
    assert!(late_period <= 2, "{late_period}");

    let c_dir = tmp.path().join("c");
    let c = node_with(&c_dir, &sim, &made, made.len());
    assert!(c.status().periods_on_disk >= 5, "{:?}", c.status());
    let mut bundle = c.export(&group.to_hex()).expect("export");
    let before = ledger_of(&c, &group);
    let period = bundle
        .periods
        .iter_mut()
        .find(|p| p.period == late_period)
        .expect("the late payment's period");
    period.changes.extend(late_changes.iter().cloned());

    let report = c.import(bundle.clone()).expect("import the late payment");
    assert_eq!(report.applied, late_changes.len());
    assert_eq!(report.payments, made.len() + 1);
    let mut want = before.clone();
    want.1 += 1;
    want.2 += 1;
    for (account, balance) in &mut want.0 {
        if *account == sim.members()[3].to_string() {
            *balance -= 1;
        }
        if *account == to.to_string() {
            *balance += 1;
        }
    }
    assert_eq!(ledger_of(&c, &group), want);
    drop(c);
    let c = open(&c_dir, 9);
    assert_eq!(ledger_of(&c, &group), want, "after a restart");

    // A fresh node takes the same bundle in order, without needing to.
    let b = open(&tmp.path().join("b"), 2);
    b.import(bundle).expect("import on a fresh node");
    assert_eq!(ledger_of(&b, &group), want);
}
