//! The in-memory twin answers as the sled store does: random sequences of
//! the operations a node performs, run on both, observed after every step.

use nestwork_core::{Hash32, MemberKey, SignedChange};
use nestwork_store::{DocMeta, DocStore, MemoryStore, Store};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    /// Append `n` new changes to document `doc`, perhaps with a note.
    Append {
        doc: u8,
        n: u8,
        note: Option<u8>,
    },
    SetMark {
        doc: u8,
        value: u8,
    },
    RemoveMark {
        doc: u8,
    },
    SetPeerHeads {
        peer: u8,
        doc: u8,
        heads: u8,
    },
    ForgetPeerHeads {
        peer: u8,
        doc: u8,
    },
    /// Set aside the `nth` stored change of `doc` (as a damaged entry is).
    SetAside {
        doc: u8,
        nth: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3u8, 1..4u8, proptest::option::of(0..3u8))
            .prop_map(|(doc, n, note)| Op::Append { doc, n, note }),
        1 => (0..3u8, any::<u8>()).prop_map(|(doc, value)| Op::SetMark { doc, value }),
        1 => (0..3u8).prop_map(|doc| Op::RemoveMark { doc }),
        1 => (0..2u8, 0..3u8, 0..3u8).prop_map(|(peer, doc, heads)| Op::SetPeerHeads { peer, doc, heads }),
        1 => (0..2u8, 0..3u8).prop_map(|(peer, doc)| Op::ForgetPeerHeads { peer, doc }),
        1 => (0..3u8, 0..4u8).prop_map(|(doc, nth)| Op::SetAside { doc, nth }),
    ]
}

fn doc(n: u8) -> Hash32 {
    Hash32::of(&[b'd', n])
}

fn meta(n: u8) -> DocMeta {
    DocMeta {
        kind: format!("kind {n}"),
        first_stored_ms: u64::from(n),
    }
}

/// Everything the node can read back.
fn observe(store: &dyn DocStore) -> String {
    let mut seen = format!(
        "docs {:?}\ncount {}\n",
        store.docs().expect("docs"),
        store.change_count()
    );
    for d in 0..3 {
        let hashes: Vec<Hash32> = store
            .changes(&doc(d))
            .expect("changes")
            .iter()
            .map(|c| c.hash)
            .collect();
        let salvaged: Vec<Hash32> = store
            .salvage(&doc(d))
            .expect("salvage")
            .changes
            .iter()
            .map(|(_, c)| c.hash)
            .collect();
        assert_eq!(hashes, salvaged, "salvage finds what changes lists");
        seen.push_str(&format!(
            "doc {d}: {hashes:?} mark {:?}\n",
            store.mark(&doc(d)).expect("mark")
        ));
        for p in 0..2u8 {
            seen.push_str(&format!(
                "  peer {p}: {:?}\n",
                store.peer_heads(&[p; 32], &doc(d)).expect("peer heads")
            ));
        }
    }
    seen
}

fn run(store: &dyn DocStore, op: &Op, made: &mut u32) {
    let key = MemberKey::from_secret([1; 32]);
    match op {
        Op::Append { doc: d, n, note } => {
            let changes: Vec<SignedChange> = (0..*n)
                .map(|_| {
                    *made += 1;
                    SignedChange::sign(
                        &key,
                        doc(*d),
                        Hash32::of(&made.to_be_bytes()),
                        made.to_be_bytes().to_vec(),
                    )
                })
                .collect();
            let note_id = note.map(|n| Hash32::of(&[b'n', n]));
            let note_value = note.map(|n| vec![n; 3]);
            let note = note_id.as_ref().zip(note_value.as_deref());
            store
                .append_all(&[(doc(*d), &meta(*d), &changes)], note)
                .expect("append");
        }
        Op::SetMark { doc: d, value } => store.set_mark(&doc(*d), &[*value]).expect("set mark"),
        Op::RemoveMark { doc: d } => store.remove_mark(&doc(*d)).expect("remove mark"),
        Op::SetPeerHeads {
            peer,
            doc: d,
            heads,
        } => {
            let heads: Vec<Hash32> = (0..*heads).map(|h| Hash32::of(&[h])).collect();
            store
                .set_peer_heads(&[*peer; 32], &doc(*d), &heads)
                .expect("peer heads");
        }
        Op::ForgetPeerHeads { peer, doc: d } => store
            .forget_peer_heads(&[*peer; 32], &doc(*d))
            .expect("forget"),
        Op::SetAside { doc: d, nth } => {
            let salvaged = store.salvage(&doc(*d)).expect("salvage");
            if let Some((k, _)) = salvaged.changes.get(usize::from(*nth)) {
                store.set_aside(std::slice::from_ref(k)).expect("set aside");
            }
        }
    }
    store.flush().expect("flush");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(if std::env::var_os("CI").is_some() { 32 } else { 128 }))]

    #[test]
    fn the_memory_store_answers_as_the_sled_store_does(ops in proptest::collection::vec(op(), 1..40)) {
        let sled = Store::temporary().expect("sled");
        let memory = MemoryStore::new();
        let (mut made_sled, mut made_memory) = (0, 0);
        for op in &ops {
            run(&sled, op, &mut made_sled);
            run(&memory, op, &mut made_memory);
            prop_assert_eq!(observe(&sled), observe(&memory), "after {:?}", op);
        }
    }
}

#[test]
fn a_change_over_the_limit_is_refused_by_both_and_nothing_is_kept() {
    let key = MemberKey::from_secret([1; 32]);
    let big = SignedChange::sign(
        &key,
        doc(0),
        Hash32::of(b"big"),
        vec![0; nestwork_core::limits::MAX_CHANGE_BYTES + 1],
    );
    let small = SignedChange::sign(&key, doc(0), Hash32::of(b"small"), vec![1; 8]);
    let sled = Store::temporary().expect("sled");
    let memory = MemoryStore::new();
    for store in [&sled as &dyn DocStore, &memory] {
        let refused = store.append_all(&[(doc(0), &meta(0), &[small.clone(), big.clone()])], None);
        assert!(refused.is_err(), "a change over the limit must be refused");
        assert!(store.changes(&doc(0)).expect("changes").is_empty());
        assert!(store.docs().expect("docs").is_empty());
    }
}
