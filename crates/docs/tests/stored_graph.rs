//! A document's stored changes answer a peer's sync as the loaded
//! document does (`StoredGraph`, used for ledger periods kept on disk).

use nestwork_core::{Hash32, MemberKey, SignedChange};
use nestwork_docs::engine::StoredGraph;
use nestwork_docs::{
    Admission, Charter, GroupGenesis, GroupKind, NoLedger, RecordBody, SignedDoc, Writer,
};

const T0: u64 = 1_700_000_000_000;

fn writer(n: u8) -> Writer {
    Writer::new(MemberKey::from_secret([n; 32]), [n; 8])
}

/// A group founded by member 1.
fn founded() -> SignedDoc {
    let genesis = GroupGenesis {
        name: "Hub".into(),
        kind: GroupKind::Hub,
        parent: None,
        unit: "hours".into(),
        created_at_ms: T0,
        nonce: [5; 16],
        charter: Charter::default(),
    };
    SignedDoc::create_group(&writer(1), genesis, T0)
        .expect("found")
        .0
}

fn sorted(mut v: Vec<Hash32>) -> Vec<Hash32> {
    v.sort_unstable();
    v
}

fn hashes(changes: &[SignedChange]) -> Vec<Hash32> {
    changes.iter().map(|c| c.hash).collect()
}

#[test]
fn stored_changes_answer_a_sync_as_the_loaded_document_does() {
    let mut a = founded();
    let admit = RecordBody::Admission(Admission::self_issued(
        writer(1).key(),
        &a.group(),
        writer(2).id(),
        Hash32([2; 32]),
        T0,
    ));
    a.add_record(&writer(1), admit, &mut NoLedger, T0)
        .expect("admit");
    let mut b = a.clone();
    let mut states = vec![a.heads()];
    // Two members edit at once on their own replicas: two branches.
    for i in 0..5u64 {
        a.set_description(&writer(1), &format!("a{i}"), T0 + i)
            .expect("edit");
        b.set_description(&writer(2), &format!("b{i}"), T0 + i)
            .expect("edit");
        states.push(a.heads());
        states.push(b.heads());
    }
    a.apply(b.changes_since(&[]));
    states.push(a.heads());
    a.set_description(&writer(1), "merged", T0 + 9)
        .expect("edit");
    states.push(a.heads());

    let stored = a.changes_since(&[]);
    let graph = StoredGraph::of(stored.clone()).expect("reads back");
    assert_eq!(graph.heads(), sorted(a.heads()));
    // Every state a peer may be in, a head we do not hold among them, and
    // a mix of the two branches.
    let unknown = Hash32([9; 32]);
    states.push(vec![unknown]);
    states.push([states[1].clone(), states[2].clone(), vec![unknown]].concat());
    states.push(vec![]);
    for have in &states {
        assert_eq!(
            sorted(hashes(&graph.changes_since(have))),
            sorted(hashes(&a.changes_since(have))),
            "a peer at {have:?}"
        );
    }
    assert!(graph.changes_since(&a.heads()).is_empty());
    // Stored order is kept: each change comes after those it builds on.
    assert_eq!(hashes(&graph.changes_since(&[])), hashes(&stored));
}

#[test]
fn a_damaged_stored_change_is_refused_with_its_hash() {
    let doc = founded();
    let mut stored = doc.changes_since(&[]);
    let last = stored.len() - 1;
    let middle = stored[last].change.len() / 2;
    stored[last].change[middle] ^= 0xff;
    let err = StoredGraph::of(stored.clone()).expect_err("damaged");
    assert!(
        err.to_string().contains(&stored[last].hash.to_string()),
        "{err}"
    );
}
