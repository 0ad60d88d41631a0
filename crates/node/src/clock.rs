//! The node's clock. Governance (deadlines, revision cycles, treaty ends)
//! and the timestamps on the records that feed it read time only from
//! here, so tests can move it forward without waiting.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The machine's clock plus an offset that tests may move. Clones share
/// the offset, so several in-process nodes can move together.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
}

impl Clock {
    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        let system = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        (system + self.offset_ms.load(Ordering::Relaxed)).max(0) as u64
    }

    /// Move this clock (and its clones) forward.
    pub fn advance(&self, by: Duration) {
        self.offset_ms
            .fetch_add(by.as_millis() as i64, Ordering::Relaxed);
    }
}
