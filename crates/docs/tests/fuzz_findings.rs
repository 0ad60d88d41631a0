//! Inputs the fuzz targets (`fuzz/`, `scripts/fuzz`) found, kept as
//! regression tests. Each rebuilds the fuzz fixture's group (the same keys,
//! times and records as `fuzz/src/lib.rs`, so the found bytes mean the same
//! thing here) and replays the input.

use automerge::Change;
use nestwork_core::{Hash32, MemberKey, SignedChange};
use nestwork_docs::record::Admission;
use nestwork_docs::{Charter, GroupGenesis, GroupKind, NoLedger, RecordBody, SignedDoc, Writer};

const T0: u64 = 1_700_000_000_000;

/// The fuzz fixture: a group founded by key 1 with key 2 admitted.
fn fixture() -> (Writer, SignedDoc) {
    let founder = Writer::new(MemberKey::from_secret([1; 32]), [1; 8]);
    let member = MemberKey::from_secret([2; 32]);
    let genesis = GroupGenesis {
        name: "Riverside".into(),
        kind: GroupKind::Hub,
        parent: None,
        unit: "hours".into(),
        created_at_ms: T0,
        nonce: [7; 16],
        charter: Charter::default(),
    };
    let (mut doc, _) = SignedDoc::create_group(&founder, genesis, T0).expect("create");
    let group = doc.group();
    let admission = Admission::self_issued(
        founder.key(),
        &group,
        member.id(),
        Hash32::of(b"fuzz ticket"),
        T0 + 1_000,
    );
    doc.add_record(
        &founder,
        RecordBody::Admission(admission),
        &mut NoLedger,
        T0 + 1_000,
    )
    .expect("admit");
    (founder, doc)
}

/// Sign `found` (raw Automerge change bytes a fuzz target found) as the
/// founder, as their own hostile node would, and check the document
/// refuses it and is left as it was.
fn refuse_found_change(founder: &Writer, doc: &mut SignedDoc, found: &[u8]) {
    let hash = Change::from_bytes(found.to_vec())
        .expect("Automerge parses the found change")
        .hash();
    let signed = SignedChange::sign(founder.key(), doc.id(), Hash32(hash.0), found.to_vec());
    let heads = doc.heads();
    let report = doc.apply(vec![signed]);
    assert!(report.applied.is_empty(), "the change was applied");
    assert_eq!(report.rejected.len(), 1, "{report:?}");
    assert_eq!(doc.heads(), heads, "the document changed");
}

/// change_apply found a founder's change (a mutated description edit)
/// that Automerge parses and the engine's checks pass, but on which
/// Automerge's batch apply panics (`assertion failed:
/// self.entry.is_empty()`, op_set2/change/batch.rs:136): the panic went
/// through `SignedDoc::apply`, under the node's lock on the sync path.
#[test]
fn fuzz_change_apply_a_change_that_panics_automerge_apply_is_refused_and_the_document_still_works()
{
    let (founder, mut doc) = fixture();
    refuse_found_change(
        &founder,
        &mut doc,
        include_bytes!("data/fuzz-change-apply-panic.bin"),
    );

    // The document still takes an honest change.
    let edit = doc
        .clone()
        .set_description(&founder, "Neighbours sharing tools and time.", T0 + 2_000)
        .expect("describe")
        .expect("a change");
    let report = doc.apply(vec![edit]);
    assert_eq!(report.applied.len(), 1, "{report:?}");
    assert_eq!(doc.description(), "Neighbours sharing tools and time.");
}

/// change_apply found a founder's change (the fixture's description edit
/// with other bytes) that Automerge parses and applies without error, but
/// after which `changes_since` panics inside Automerge (`MissingDep` in
/// its change collector): the bytes are not Automerge's own encoding of
/// the change, so its re-encoding hashes differently and the change graph
/// names a hash no change has. `changes_since` serves every sync and
/// export, so a member could make every node that took it panic there.
#[test]
fn fuzz_change_apply_a_change_not_in_automerges_own_encoding_is_refused_and_the_document_still_serves(
) {
    let (founder, mut doc) = fixture();
    refuse_found_change(
        &founder,
        &mut doc,
        include_bytes!("data/fuzz-change-changes-since-missing-dep.bin"),
    );
    assert_eq!(doc.changes_since(&[]).len(), 2, "the document serves");
}
