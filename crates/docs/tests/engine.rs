//! The signed-document engine against honest and hostile changes.

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{Automerge, Change, ReadDoc, ScalarValue, ROOT};
use nestwork_core::{Hash32, MemberKey, SignedChange};
use nestwork_docs::engine::{DESCRIPTION_KEY, FREE_KEY, RECORDS_KEY};
use nestwork_docs::{Charter, GroupGenesis, GroupKind, GroupView, RecordBody, SignedDoc, Writer};
use proptest::prelude::*;

fn writer(n: u8, device: u8) -> Writer {
    Writer::new(MemberKey::from_secret([n; 32]), [device; 8])
}

fn genesis(name: &str) -> GroupGenesis {
    GroupGenesis {
        name: name.to_string(),
        kind: GroupKind::Hub,
        parent: None,
        unit: "hours".to_string(),
        // The tests' records claim small times; a record may not claim a
        // time much before what it builds on.
        created_at_ms: 1,
        nonce: [1; 16],
        charter: Charter::default(),
    }
}

/// A raw Automerge copy of a signed document, for crafting hostile changes.
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

/// Make a change on `raw` with `f` and sign it as `signer` for `doc`.
fn hostile_change(
    raw: &mut Automerge,
    signer: &MemberKey,
    doc: Hash32,
    f: impl FnOnce(
        &mut automerge::transaction::Transaction<'_>,
    ) -> Result<(), automerge::AutomergeError>,
) -> SignedChange {
    raw.transact_with(|_| CommitOptions::default().with_time(1), f)
        .map_err(|f| f.error)
        .expect("transaction");
    let mut change = raw.get_last_local_change().expect("change");
    SignedChange::sign(
        signer,
        doc,
        Hash32(change.hash().0),
        change.bytes().into_owned(),
    )
}

fn replica_of(doc: &SignedDoc) -> SignedDoc {
    let mut replica = SignedDoc::empty(doc.id());
    let report = replica.apply(doc.changes_since(&[]));
    assert!(report.rejected.is_empty(), "{:?}", report.rejected);
    replica
}

#[test]
fn a_new_group_has_its_creator_as_first_member_and_the_default_charter() {
    let w = writer(1, 1);
    let (doc, first) = SignedDoc::create_group(&w, genesis("Riverside"), 5).expect("create");
    assert!(first.verify().is_ok());
    let view = GroupView::of(&doc).expect("view");
    assert_eq!(view.name, "Riverside");
    assert_eq!(view.members, vec![w.id()]);
    assert_eq!(view.creator, w.id());
    let charter = nestwork_docs::CharterView::of(&doc, 1).expect("charter");
    assert_eq!(charter.articles.len(), Charter::default().articles.len());
    assert_eq!(
        doc.id(),
        doc.records().keys().next().copied().expect("genesis")
    );
}

#[test]
fn bad_genesis_is_refused_before_signing() {
    let w = writer(1, 1);
    for name in ["", "   ", &"n".repeat(81)] {
        assert!(
            SignedDoc::create_group(&w, genesis(name), 5).is_err(),
            "{name:?}"
        );
    }
}

#[test]
fn a_replica_verifies_and_reaches_the_same_view() {
    let w = writer(1, 1);
    let (mut doc, _) = SignedDoc::create_group(&w, genesis("Riverside"), 5).expect("create");
    doc.set_description(&w, "We share tools.", 6)
        .expect("describe");
    let replica = replica_of(&doc);
    assert_eq!(GroupView::of(&replica), GroupView::of(&doc));
    assert_eq!(replica.description(), "We share tools.");
}

#[test]
fn tampered_and_truncated_changes_are_rejected_and_change_nothing() {
    let w = writer(1, 1);
    let (mut doc, _) = SignedDoc::create_group(&w, genesis("Riverside"), 5).expect("create");
    let good = doc
        .set_description(&w, "hello", 6)
        .expect("describe")
        .expect("a change");
    let mut replica = SignedDoc::empty(doc.id());
    replica.apply(doc.changes_since(&[]).into_iter().take(1).collect());
    let before = replica.heads();

    let mut flipped = good.clone();
    let last = flipped.change.len() - 1;
    flipped.change[last] ^= 0x55;
    let mut truncated = good.clone();
    truncated.change.truncate(good.change.len() / 2);
    let mut bad_sig = good.clone();
    bad_sig.signature[0] ^= 1;
    let mut other_doc = good.clone();
    other_doc.doc = Hash32::of(b"elsewhere");

    for (what, bad) in [
        ("flipped", flipped),
        ("truncated", truncated),
        ("bad signature", bad_sig),
        ("other doc", other_doc),
    ] {
        let report = replica.apply(vec![bad]);
        assert_eq!(report.rejected.len(), 1, "{what}: {report:?}");
        assert!(report.applied.is_empty(), "{what}");
        assert_eq!(replica.heads(), before, "{what} changed the document");
    }
    assert_eq!(replica.apply(vec![good]).applied.len(), 1);
}

#[test]
fn a_change_signed_by_someone_other_than_its_actor_is_rejected() {
    let creator = writer(1, 1);
    let (doc, _) = SignedDoc::create_group(&creator, genesis("Riverside"), 5).expect("create");
    let mut raw = raw_copy(&doc, &creator);
    let description = description_obj(&raw);
    // The creator's actor id, but signed by a stranger's key.
    let stranger = MemberKey::from_secret([9; 32]);
    let forged = hostile_change(&mut raw, &stranger, doc.id(), |tx| {
        tx.splice_text(&description, 0, 0, "x")
    });
    let mut replica = replica_of(&doc);
    let report = replica.apply(vec![forged]);
    assert_eq!(report.rejected.len(), 1);
    assert!(
        report.rejected[0].reason.contains("actor id"),
        "{:?}",
        report.rejected
    );
}

#[test]
fn a_non_member_cannot_write() {
    let creator = writer(1, 1);
    let stranger = writer(9, 1);
    let (doc, _) = SignedDoc::create_group(&creator, genesis("Riverside"), 5).expect("create");
    let mut raw = raw_copy(&doc, &stranger);
    let description = description_obj(&raw);
    let change = hostile_change(&mut raw, stranger.key(), doc.id(), |tx| {
        tx.splice_text(&description, 0, 0, "x")
    });
    let mut replica = replica_of(&doc);
    let report = replica.apply(vec![change]);
    assert!(
        report.rejected[0].reason.contains("not a member"),
        "{:?}",
        report.rejected
    );
    assert_eq!(replica.description(), "");
}

#[test]
fn deleting_or_overwriting_a_signed_record_is_rejected() {
    let creator = writer(1, 1);
    let (doc, _) = SignedDoc::create_group(&creator, genesis("Riverside"), 5).expect("create");
    let key = doc.id().to_hex();

    let mut raw = raw_copy(&doc, &creator);
    let records = records_obj(&raw);
    let delete = hostile_change(&mut raw, creator.key(), doc.id(), |tx| {
        tx.delete(&records, key.as_str())
    });

    let mut raw = raw_copy(&doc, &creator);
    let overwrite = hostile_change(&mut raw, creator.key(), doc.id(), |tx| {
        tx.put(&records, key.as_str(), ScalarValue::Bytes(vec![1, 2, 3]))
    });

    let mut raw = raw_copy(&doc, &creator);
    let top = hostile_change(&mut raw, creator.key(), doc.id(), |tx| {
        tx.put(ROOT, RECORDS_KEY, "gone")
    });

    for (what, change, needle) in [
        ("delete", delete, "deletes signed record"),
        ("overwrite", overwrite, "overwrites signed record"),
        ("top level", top, "top level"),
    ] {
        let mut replica = replica_of(&doc);
        let before = GroupView::of(&replica);
        let report = replica.apply(vec![change]);
        assert_eq!(report.rejected.len(), 1, "{what}");
        assert!(
            report.rejected[0].reason.contains(needle),
            "{what}: {:?}",
            report.rejected
        );
        assert_eq!(GroupView::of(&replica), before, "{what} changed the view");
    }
}

#[test]
fn a_second_genesis_record_is_refused() {
    let creator = writer(1, 1);
    let (mut doc, _) = SignedDoc::create_group(&creator, genesis("Riverside"), 5).expect("create");
    let err = doc
        .add_record(
            &creator,
            RecordBody::GroupGenesis(genesis("Again")),
            &mut nestwork_docs::engine::NoLedger,
            6,
        )
        .expect_err("second genesis");
    assert!(err.to_string().contains("first change"), "{err}");
}

#[test]
fn changes_waiting_for_dependencies_are_held_back_then_applied() {
    let w = writer(1, 1);
    let (mut doc, _) = SignedDoc::create_group(&w, genesis("Riverside"), 5).expect("create");
    doc.set_description(&w, "a", 6).expect("describe");
    doc.set_description(&w, "ab", 7).expect("describe");
    let all = doc.changes_since(&[]);
    let mut replica = SignedDoc::empty(doc.id());
    let report = replica.apply(vec![all[2].clone()]);
    assert_eq!(report.missing_deps.len(), 1);
    assert!(replica.heads().is_empty());
    let report = replica.apply(all.clone());
    assert_eq!(report.applied.len(), 3);
    assert_eq!(replica.heads(), doc.heads());
}

fn description_obj(raw: &Automerge) -> automerge::ObjId {
    let (_, free) = raw.get(ROOT, FREE_KEY).expect("get").expect("free");
    let (_, text) = raw
        .get(&free, DESCRIPTION_KEY)
        .expect("get")
        .expect("description");
    text
}

fn records_obj(raw: &Automerge) -> automerge::ObjId {
    raw.get(ROOT, RECORDS_KEY).expect("get").expect("records").1
}

/// Build a document with concurrent edits from several devices of the
/// creator: each device works on its own copy and they merge.
fn concurrent_history(edits: &[(u8, String)]) -> (SignedDoc, Vec<SignedChange>) {
    let w = writer(1, 0);
    let (doc, _) = SignedDoc::create_group(&w, genesis("Riverside"), 5).expect("create");
    let mut devices: Vec<SignedDoc> = (0..3).map(|_| replica_of(&doc)).collect();
    let mut all = doc.changes_since(&[]);
    for (i, (device, text)) in edits.iter().enumerate() {
        let d = (*device % 3) as usize;
        let dev_writer = writer(1, d as u8 + 1);
        if let Some(change) = devices[d]
            .set_description(&dev_writer, text, 10 + i as u64)
            .expect("edit")
        {
            all.push(change);
        }
        // Now and then a device hears from the others.
        if i % 3 == 2 {
            let known = all.clone();
            devices[(d + 1) % 3].apply(known);
        }
    }
    (doc, all)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn replicas_converge_whatever_the_order_and_duplicates(
        edits in proptest::collection::vec((0u8..3, "[a-z ]{0,12}"), 1..12),
        seed in any::<u64>(),
        chunk in 1usize..6,
    ) {
        use rand::{seq::SliceRandom, SeedableRng};
        let (doc, all) = concurrent_history(&edits);
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);

        let mut reference = SignedDoc::empty(doc.id());
        let report = reference.apply(all.clone());
        prop_assert!(report.rejected.is_empty());
        prop_assert!(report.missing_deps.is_empty());

        // A second replica gets the same changes shuffled, some twice, in
        // small batches, keeping back those whose dependencies are missing.
        let mut delivery = all.clone();
        delivery.extend(all.iter().take(all.len() / 2).cloned());
        delivery.shuffle(&mut rng);
        let mut replica = SignedDoc::empty(doc.id());
        let mut held: Vec<SignedChange> = Vec::new();
        for batch in delivery.chunks(chunk) {
            let mut input = std::mem::take(&mut held);
            input.extend(batch.iter().cloned());
            let report = replica.apply(input);
            prop_assert!(report.rejected.is_empty(), "{:?}", report.rejected);
            held = report.missing_deps;
        }
        if !held.is_empty() {
            let report = replica.apply(held);
            prop_assert!(report.missing_deps.is_empty());
        }
        let mut a = reference.heads();
        let mut b = replica.heads();
        a.sort();
        b.sort();
        prop_assert_eq!(a, b);
        prop_assert_eq!(GroupView::of(&reference), GroupView::of(&replica));
        prop_assert_eq!(reference.description(), replica.description());
    }
}

#[test]
fn an_admitted_member_can_write_and_every_replica_agrees() {
    use nestwork_docs::Admission;
    let creator = writer(1, 1);
    let newcomer = writer(2, 1);
    let (mut doc, _) = SignedDoc::create_group(&creator, genesis("Riverside"), 5).expect("create");
    let admission = Admission::self_issued(
        creator.key(),
        &doc.group(),
        newcomer.id(),
        Hash32::of(b"ticket"),
        6,
    );
    doc.add_record(
        &creator,
        RecordBody::Admission(admission),
        &mut nestwork_docs::engine::NoLedger,
        6,
    )
    .expect("admit");
    assert!(doc.admission_by_ticket(&Hash32::of(b"ticket")).is_some());

    // The newcomer's node receives the history, then writes.
    let mut theirs = replica_of(&doc);
    let change = theirs
        .set_description(&newcomer, "hello from the newcomer", 7)
        .expect("write")
        .expect("change");
    let report = doc.apply(vec![change]);
    assert_eq!(report.applied.len(), 1, "{:?}", report.rejected);
    assert_eq!(GroupView::of(&doc).expect("view").members.len(), 2);
    assert_eq!(GroupView::of(&doc), GroupView::of(&theirs));

    // A non-member cannot admit anyone (or themselves).
    let stranger = writer(3, 1);
    let mut raw = raw_copy(&doc, &stranger);
    let records = records_obj(&raw);
    let record = nestwork_core::SignedRecord::sign(
        stranger.key(),
        RecordBody::Admission(Admission::self_issued(
            creator.key(),
            &doc.group(),
            stranger.id(),
            Hash32::of(b"x"),
            8,
        ))
        .encode(),
    );
    let forged = hostile_change(&mut raw, stranger.key(), doc.id(), |tx| {
        tx.put(
            &records,
            record.id().to_hex(),
            ScalarValue::Bytes(record.encode()),
        )
    });
    let report = doc.apply(vec![forged]);
    assert!(
        report.rejected[0].reason.contains("not a member"),
        "{:?}",
        report.rejected
    );
}
