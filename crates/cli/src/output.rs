//! How the client commands print: text for people, JSON with `--json`, and
//! times in one format.

use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;

/// How to print: text or JSON.
pub(crate) struct Output {
    pub(crate) json: bool,
}

impl Output {
    pub(crate) fn print<T: Serialize>(
        &self,
        value: &T,
        text: impl FnOnce() -> String,
    ) -> anyhow::Result<()> {
        use std::io::Write;
        let body = if self.json {
            serde_json::to_string_pretty(value)?
        } else {
            text()
        };
        match writeln!(std::io::stdout().lock(), "{body}") {
            // The reader went away (`nestwork ... | head`): not our failure.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            other => Ok(other?),
        }
    }
}

/// A time in milliseconds since the epoch, as RFC 3339 (UTC, seconds).
pub(crate) fn when(ms: u64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// A span in seconds, in words (`1day 2h`).
pub(crate) fn secs(s: u64) -> String {
    humantime::format_duration(Duration::from_secs(s)).to_string()
}
