//! A document's stored changes as they load after damage: which can load,
//! and how they depend on each other.

use super::*;

/// Of a document's stored changes, in stored order (which is causal), the
/// ones that can still load after damage: each whose bytes parse into the
/// change its envelope names and whose dependencies are all among those
/// kept before it. Returns those, and the positions of the rest (a damaged
/// change and everything built on it), which peers can send again.
pub fn loadable(stored: Vec<SignedChange>) -> (Vec<SignedChange>, Vec<usize>) {
    let mut have: HashSet<ChangeHash> = HashSet::new();
    let (mut kept, mut dropped) = (Vec::new(), Vec::new());
    for (i, s) in stored.into_iter().enumerate() {
        match parse_change(&s.change) {
            Ok(c) if c.hash().0 == s.hash.0 && c.deps().iter().all(|d| have.contains(d)) => {
                have.insert(c.hash());
                kept.push(s);
            }
            _ => dropped.push(i),
        }
    }
    (kept, dropped)
}

/// A document's stored changes with the hashes each depends on, enough to
/// answer a peer's sync without loading the document into Automerge.
#[derive(Debug)]
pub struct StoredGraph {
    changes: Vec<(SignedChange, Vec<Hash32>)>,
}

impl StoredGraph {
    /// Of changes in stored (causal) order, read each one's dependencies.
    pub fn of(stored: Vec<SignedChange>) -> Result<StoredGraph, Error> {
        let mut changes = Vec::with_capacity(stored.len());
        for s in stored {
            let change = parse_change(&s.change).map_err(|e| {
                Error::Malformed(s.doc.to_hex(), format!("stored change {}: {e}", s.hash))
            })?;
            let deps = change.deps().iter().map(|d| Hash32(d.0)).collect();
            changes.push((s, deps));
        }
        Ok(StoredGraph { changes })
    }

    /// The heads: the changes no other one depends on, sorted as
    /// [`SignedDoc::heads`] gives them.
    pub fn heads(&self) -> Vec<Hash32> {
        let depended: HashSet<Hash32> = self
            .changes
            .iter()
            .flat_map(|(_, deps)| deps.iter().copied())
            .collect();
        let mut heads: Vec<Hash32> = self
            .changes
            .iter()
            .map(|(c, _)| c.hash)
            .filter(|h| !depended.contains(h))
            .collect();
        heads.sort_unstable();
        heads
    }

    /// The changes not in the causal past of `have`, in stored order:
    /// what [`SignedDoc::changes_since`] answers (heads this document does
    /// not hold are left out of the reckoning, as there).
    pub fn changes_since(&self, have: &[Hash32]) -> Vec<SignedChange> {
        let at: HashMap<Hash32, usize> = self
            .changes
            .iter()
            .enumerate()
            .map(|(i, (c, _))| (c.hash, i))
            .collect();
        let mut known = vec![false; self.changes.len()];
        let mut todo: Vec<usize> = have.iter().filter_map(|h| at.get(h).copied()).collect();
        while let Some(i) = todo.pop() {
            if std::mem::replace(&mut known[i], true) {
                continue;
            }
            todo.extend(self.changes[i].1.iter().filter_map(|d| at.get(d).copied()));
        }
        self.changes
            .iter()
            .zip(known)
            // A period's fixed opening is never sent (it has no signature).
            .filter(|((c, _), known)| !known && !c.signature.is_empty())
            .map(|((c, _), _)| c.clone())
            .collect()
    }
}
