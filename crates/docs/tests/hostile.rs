//! The engine against hostile bytes (issue 15): a change that would cost
//! more than its size, or that reuses an actor's sequence number, is refused
//! on its own and changes nothing else.

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{Automerge, Change, ReadDoc, ScalarValue, ROOT};
use nestwork_core::limits::MAX_CHANGE_DATA_BYTES;
use nestwork_core::{GroupId, Hash32, MemberKey, SignedChange};
use nestwork_docs::engine::FREE_KEY;
use nestwork_docs::{Charter, GroupGenesis, GroupKind, SignedDoc, Writer};

fn writer(n: u8, device: u8) -> Writer {
    Writer::new(MemberKey::from_secret([n; 32]), [device; 8])
}

fn group(w: &Writer) -> SignedDoc {
    let genesis = GroupGenesis {
        name: "Riverside".to_string(),
        kind: GroupKind::Hub,
        parent: None,
        unit: "hours".to_string(),
        created_at_ms: 1_700_000_000_000,
        nonce: [1; 16],
        charter: Charter::default(),
    };
    SignedDoc::create_group(w, genesis, 5).expect("create").0
}

/// A raw Automerge copy of a signed document writing as `actor_of`, for
/// crafting changes a modified node could send.
fn raw_copy(doc: &SignedDoc, actor_of: &Writer) -> Automerge {
    let changes: Vec<Change> = doc
        .changes_since(&[])
        .into_iter()
        .map(|c| Change::from_bytes(c.change).expect("stored change parses"))
        .collect();
    let mut raw = Automerge::new().with_actor(actor_of.actor());
    raw.apply_changes(changes).expect("apply");
    raw
}

/// A change putting `value` at `key` in the free area, signed by `w`, in
/// the form Automerge sends it (compressed when that is smaller).
fn free_put(
    raw: &mut Automerge,
    doc: Hash32,
    w: &Writer,
    key: &str,
    value: ScalarValue,
) -> SignedChange {
    let free = match raw.get(ROOT, FREE_KEY).expect("get") {
        Some((_, id)) => id,
        None => panic!("no free area"),
    };
    raw.transact_with(
        |_| CommitOptions::default().with_time(1),
        |tx| tx.put(&free, key, value).map(|_| ()),
    )
    .map_err(|f| f.error)
    .expect("transaction");
    let mut change = raw.get_last_local_change().expect("change");
    SignedChange::sign(
        w.key(),
        doc,
        Hash32(change.hash().0),
        change.bytes().into_owned(),
    )
}

/// Finding 2: Automerge inflated a compressed change whole before any
/// check; now a compressed change is refused as soon as it inflates past
/// the limit, and honest compressed changes still pass.
#[test]
fn finding2_a_compressed_change_inflating_past_the_limit_is_refused_before_it_is_inflated() {
    let w = writer(1, 1);
    let doc = group(&w);
    let mut raw = raw_copy(&doc, &w);
    let bomb = free_put(
        &mut raw,
        doc.id(),
        &w,
        "zeros",
        ScalarValue::Bytes(vec![0; 8 * MAX_CHANGE_DATA_BYTES]),
    );
    // Small on the wire: the size limit alone does not catch it.
    assert!(bomb.check_size().is_ok(), "{} bytes", bomb.change.len());
    let mut replica = doc.clone();
    let report = replica.apply(vec![bomb]);
    assert!(report.applied.is_empty(), "{report:?}");
    assert_eq!(report.rejected.len(), 1, "{report:?}");
    assert!(
        report.rejected[0]
            .reason
            .contains("inflates past the limit"),
        "{report:?}"
    );
    assert_eq!(replica.heads(), doc.heads());

    // An honest compressed change under the limit is accepted.
    let mut raw = raw_copy(&doc, &w);
    let fine = free_put(
        &mut raw,
        doc.id(),
        &w,
        "zeros",
        ScalarValue::Bytes(vec![0; 64 * 1024]),
    );
    assert!(fine.change.len() < 64 * 1024, "travels compressed");
    let mut replica = doc.clone();
    assert_eq!(replica.apply(vec![fine]).applied.len(), 1);
}

/// Found by the bundle tests (issue 15): the four checksum bytes of a
/// compressed change's header are not covered by Automerge's checks (it
/// hashes what inflates), so a change with them altered was taken and
/// stored as received. Now refused like any other altered byte.
#[test]
fn a_compressed_change_with_an_altered_checksum_is_refused() {
    let w = writer(1, 1);
    let doc = group(&w);
    let mut raw = raw_copy(&doc, &w);
    let honest = free_put(
        &mut raw,
        doc.id(),
        &w,
        "zeros",
        ScalarValue::Bytes(vec![0; 4096]),
    );
    assert_eq!(honest.change[8], 2, "travels compressed");
    for at in 4..8 {
        let mut altered = honest.clone();
        altered.change[at] ^= 0x5a;
        let mut replica = doc.clone();
        let report = replica.apply(vec![altered]);
        assert!(report.applied.is_empty(), "byte {at}: {report:?}");
        assert!(
            report.rejected[0].reason.contains("checksum"),
            "byte {at}: {report:?}"
        );
        assert_eq!(replica.heads(), doc.heads());
    }
    let mut replica = doc.clone();
    assert_eq!(replica.apply(vec![honest]).applied.len(), 1);
}

/// A description edit made on a copy of `doc` by `w`.
fn edit(doc: &SignedDoc, w: &Writer, text: &str) -> SignedChange {
    doc.clone()
        .set_description(w, text, 6)
        .expect("describe")
        .expect("a change")
}

/// Finding 3: a change whose (actor, seq) is already held with other
/// content (a copied data directory, or an equivocating author) made
/// Automerge refuse the whole batch.
#[test]
fn finding3_a_duplicate_actor_seq_is_refused_alone_with_proof_and_the_identical_change_ignored() {
    let w = writer(1, 1);
    let base = group(&w);
    let held = edit(&base, &w, "one");
    let fork = edit(&base, &w, "two");
    let honest = edit(&base, &writer(1, 2), "three");
    assert_ne!(held.hash, fork.hash);

    let mut doc = base.clone();
    assert_eq!(doc.apply(vec![held.clone()]).applied.len(), 1);
    let report = doc.apply(vec![fork.clone(), honest.clone()]);
    assert_eq!(report.applied, vec![honest], "{report:?}");
    assert_eq!(report.rejected.len(), 1, "{report:?}");
    assert!(report.rejected[0].reason.contains("forks"), "{report:?}");
    assert_eq!(report.forked, vec![fork.clone()]);
    assert_eq!(doc.forks(), &[fork.clone()][..]);

    // The identical change again: ignored, nothing refused.
    let again = doc.apply(vec![held.clone()]);
    assert_eq!((again.duplicates, again.rejected.len()), (1, 0));

    // Both in one batch, in either order: the same one is kept.
    let mut kept = Vec::new();
    for batch in [
        vec![held.clone(), fork.clone()],
        vec![fork.clone(), held.clone()],
    ] {
        let mut replica = base.clone();
        let report = replica.apply(batch);
        assert_eq!(
            (report.applied.len(), report.forked.len()),
            (1, 1),
            "{report:?}"
        );
        kept.push(report.applied[0].hash);
    }
    assert_eq!(kept[0], kept[1]);
}

/// Finding 5: the closing of the largest period number overflowed (a
/// panic in a debug build) while it was checked.
#[test]
fn finding5_the_closing_of_the_last_period_number_is_refused_not_an_overflow() {
    use nestwork_docs::ledger::PeriodClose;
    use nestwork_docs::rules::{check_record, RecordContext};
    use nestwork_docs::RecordBody;
    let body = RecordBody::PeriodClose(PeriodClose {
        period: u64::MAX,
        prev: None,
        heads: Vec::new(),
        balances: Vec::new(),
        payments: 0,
        group_heads: vec![Hash32::of(b"head")],
    });
    let ctx = RecordContext {
        group: GroupId::from(Hash32::of(b"g")),
        author: writer(1, 1).id(),
        in_genesis_change: false,
        ledger_period: Some(0),
    };
    let err = check_record(&body, &ctx).expect_err("refused");
    assert!(err.0.contains("never be closed"), "{err:?}");
}
