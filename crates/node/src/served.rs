//! Cold ledger periods read back to answer peers' syncs.
//!
//! A peer that is behind asks for periods this node keeps on disk only
//! (their payments are all counted in the base). Loading such a period
//! into the ledger to answer costs Automerge's whole load and a count of
//! its payments, under the node's lock, and the next move of the base
//! unloads it again: in a soak, a third of a busy node's time went to
//! this. The answer needs only the stored changes and their dependencies,
//! read without the lock and kept for the last few periods asked for.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use nestwork_core::{DocId, Hash32};
use nestwork_docs::engine::StoredGraph;

/// Periods kept: a catch-up asks for one period after another, a few
/// peers at a time.
const KEPT: usize = 4;

/// One period kept: its document, its heads (sorted) and its changes.
type Kept = (DocId, Vec<Hash32>, Arc<StoredGraph>);

/// The last cold periods read back for peers, by document and heads.
#[derive(Default)]
pub struct ServedPeriods {
    kept: Mutex<VecDeque<Kept>>,
}

impl ServedPeriods {
    /// Period `doc` as it was with `heads` (sorted), if kept.
    pub fn get(&self, doc: &DocId, heads: &[Hash32]) -> Option<Arc<StoredGraph>> {
        let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        kept.iter()
            .find(|(d, h, _)| d == doc && h == heads)
            .map(|(_, _, g)| g.clone())
    }

    /// Keep `graph`, period `doc` with `heads` (sorted), dropping the
    /// oldest kept when full and any older state of the same period.
    pub fn keep(&self, doc: DocId, heads: Vec<Hash32>, graph: Arc<StoredGraph>) {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        kept.retain(|(d, _, _)| *d != doc);
        if kept.len() >= KEPT {
            kept.pop_front();
        }
        kept.push_back((doc, heads, graph));
    }
}
