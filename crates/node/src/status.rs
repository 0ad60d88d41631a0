//! Node health for `nestwork status`: what the node holds, on disk and
//! in memory.

use nestwork_docs::{CharterView, SignedDoc};

use crate::node::Node;
use crate::state::State;
use crate::views::{CharterStatus, MemoryStatus, Status};

impl Node {
    /// Node health.
    pub fn status(&self) -> Status {
        let docs = self.lock();
        Status {
            member: self.member().to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            data_dir: self.dir.root().display().to_string(),
            groups: docs.groups.len(),
            changes: self.store.change_count(),
            store_bytes: self.store.size_on_disk(),
            uptime_secs: self.started.elapsed().as_secs(),
            load_ms: self.load_time.as_millis() as u64,
            payments: docs.ledgers.values().map(|l| l.ledger.len()).sum(),
            payments_in_memory: docs.ledgers.values().map(|l| l.ledger.held()).sum(),
            periods_loaded: docs.ledgers.values().map(|l| l.periods.len()).sum(),
            periods_on_disk: docs.ledgers.values().map(|l| l.cold.len()).sum(),
            equivocations: docs
                .ledgers
                .iter()
                .flat_map(|(g, l)| l.ledger.equivocations().into_iter().map(|e| (*g, e)))
                .collect(),
            charters: docs
                .groups
                .values()
                .filter_map(|d| CharterView::of(d, self.now_ms()))
                .map(|c| CharterStatus {
                    group: c.group,
                    name: c.group_name,
                    overdue: c.overdue,
                    open_proposals: c.open_proposals,
                })
                .collect(),
            damaged: docs.damaged.clone(),
            memory: Node::memory_of(&docs),
        }
    }

    /// What the node holds in memory.
    pub fn memory(&self) -> MemoryStatus {
        Node::memory_of(&self.lock())
    }

    fn memory_of(docs: &State) -> MemoryStatus {
        let loaded: Vec<&SignedDoc> = docs
            .groups
            .values()
            .chain(docs.ledgers.values().flat_map(|l| l.periods.values()))
            .collect();
        MemoryStatus {
            rss_bytes: resident_bytes(),
            documents_loaded: loaded.len(),
            changes_loaded: loaded.iter().map(|d| d.change_count()).sum(),
            records_loaded: loaded.iter().map(|d| d.records().len()).sum(),
            ledger_index_entries: docs
                .ledgers
                .values()
                .map(|l| l.ledger.index_entries())
                .sum(),
            store_cache_bytes: nestwork_store::CACHE_BYTES,
            periods_reread: docs.periods_reread,
        }
    }
}

/// Resident memory of this process, from `/proc/self/status` (0 where
/// there is none).
pub fn resident_bytes() -> u64 {
    resident_bytes_of("self")
}

/// Resident memory of process `pid` ("self" for this one), from
/// `/proc/PID/status` (0 where there is none).
pub fn resident_bytes_of(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}
