//! The store's twin in memory: the same answers as the sled [`Store`]
//! (`tests/contract.rs` checks it), nothing on disk, for tests that need a
//! node but not its disk.
//!
//! [`Store`]: crate::Store

use std::collections::BTreeMap;
use std::sync::Mutex;

use nestwork_core::{Hash32, SignedChange};

use crate::{DocMeta, DocStore, Result, Salvaged};

/// Everything a [`MemoryStore`] holds, under one lock, so every write is
/// atomic as sled's transactions are.
#[derive(Default)]
struct Held {
    docs: BTreeMap<Hash32, DocMeta>,
    /// By document, then by the order stored (sled's key: document id and
    /// a sequence number).
    changes: BTreeMap<(Hash32, u64), SignedChange>,
    next_seq: u64,
    marks: BTreeMap<Hash32, Vec<u8>>,
    set_aside: BTreeMap<(Hash32, u64), SignedChange>,
    peers: BTreeMap<([u8; 32], Hash32), Vec<Hash32>>,
}

/// A store in memory. Writes are "durable" at once: there is no disk.
#[derive(Default)]
pub struct MemoryStore {
    held: Mutex<Held>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The key a change is stored under, as the sled store makes it, so that
/// [`Salvaged`] keys and [`DocStore::set_aside`] mean the same in both.
fn key_of(doc: &Hash32, seq: u64) -> Vec<u8> {
    crate::change_key(doc, seq).to_vec()
}

fn seq_of(key: &[u8]) -> Option<(Hash32, u64)> {
    let doc: [u8; 32] = key.get(..32)?.try_into().ok()?;
    let seq: [u8; 8] = key.get(32..40)?.try_into().ok()?;
    Some((Hash32(doc), u64::from_be_bytes(seq)))
}

impl DocStore for MemoryStore {
    fn reopen(&self) -> Result<()> {
        Ok(())
    }

    fn is_open(&self) -> bool {
        true
    }

    fn append_all(
        &self,
        docs_in: &[(Hash32, &DocMeta, &[SignedChange])],
        note: Option<(&Hash32, &[u8])>,
    ) -> Result<()> {
        crate::check_sizes(docs_in)?;
        let mut held = self.held();
        for (doc, meta, changes) in docs_in {
            held.marks.remove(doc);
            held.docs.entry(*doc).or_insert_with(|| (*meta).clone());
            for c in changes.iter() {
                let seq = held.next_seq;
                held.next_seq += 1;
                held.changes.insert((*doc, seq), c.clone());
            }
        }
        if let Some((id, value)) = note {
            held.marks.insert(*id, value.to_vec());
        }
        Ok(())
    }

    fn unflushed(&self) -> u64 {
        0
    }

    fn set_mark(&self, doc: &Hash32, note: &[u8]) -> Result<()> {
        self.held().marks.insert(*doc, note.to_vec());
        Ok(())
    }

    fn mark(&self, doc: &Hash32) -> Result<Option<Vec<u8>>> {
        Ok(self.held().marks.get(doc).cloned())
    }

    fn remove_mark(&self, doc: &Hash32) -> Result<()> {
        self.held().marks.remove(doc);
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }

    fn docs(&self) -> Result<Vec<(Hash32, DocMeta)>> {
        Ok(self
            .held()
            .docs
            .iter()
            .map(|(id, meta)| (*id, meta.clone()))
            .collect())
    }

    fn changes(&self, doc: &Hash32) -> Result<Vec<SignedChange>> {
        Ok(self
            .held()
            .changes
            .range((*doc, 0)..=(*doc, u64::MAX))
            .map(|(_, c)| c.clone())
            .collect())
    }

    fn salvage(&self, doc: &Hash32) -> Result<Salvaged> {
        // Nothing in memory is damaged by a disk.
        Ok(Salvaged {
            changes: self
                .held()
                .changes
                .range((*doc, 0)..=(*doc, u64::MAX))
                .map(|((d, seq), c)| (key_of(d, *seq), c.clone()))
                .collect(),
            damaged: Vec::new(),
        })
    }

    fn set_aside(&self, keys: &[Vec<u8>]) -> Result<()> {
        let mut held = self.held();
        for at in keys.iter().filter_map(|k| seq_of(k)) {
            if let Some(c) = held.changes.remove(&at) {
                held.set_aside.insert(at, c);
            }
        }
        Ok(())
    }

    fn set_peer_heads(&self, peer: &[u8; 32], doc: &Hash32, heads: &[Hash32]) -> Result<()> {
        self.held().peers.insert((*peer, *doc), heads.to_vec());
        Ok(())
    }

    fn forget_peer_heads(&self, peer: &[u8; 32], doc: &Hash32) -> Result<()> {
        self.held().peers.remove(&(*peer, *doc));
        Ok(())
    }

    fn peer_heads(&self, peer: &[u8; 32], doc: &Hash32) -> Result<Option<Vec<Hash32>>> {
        Ok(self.held().peers.get(&(*peer, *doc)).cloned())
    }

    fn change_count(&self) -> usize {
        self.held().changes.len()
    }

    fn size_on_disk(&self) -> u64 {
        0
    }
}
