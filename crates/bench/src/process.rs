//! Real `nestwork` node processes for the benchmark programs: found
//! beside the running program (or `NESTWORK_SOAK_BIN`), started on
//! 127.0.0.1 with mDNS off, measured from /proc, stopped cleanly.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nestwork_api::client::Client;
use nestwork_node::DataDir;

/// The `nestwork` binary built beside this one.
pub fn nestwork_binary() -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os("NESTWORK_SOAK_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let me = std::env::current_exe()?;
    let bin = me.with_file_name("nestwork");
    if !bin.exists() {
        bail!(
            "{} not found: build it first (scripts/bench and scripts/soak do)",
            bin.display()
        );
    }
    Ok(bin)
}

/// Run one `nestwork` command on `dir` and wait for it to succeed.
pub fn run_cmd(bin: &Path, dir: &DataDir, args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new(bin)
        .arg("--data-dir")
        .arg(dir.root())
        .args(args)
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("nestwork {args:?} failed");
    }
    Ok(())
}

/// A running node process.
pub struct Proc {
    child: Child,
    stopped: bool,
    /// The node's own process id (from `api.json`: with a wrapper, the
    /// child is the wrapper).
    pub pid: u32,
}

impl Proc {
    /// Start `nestwork run` on `dir` (under `wrap`, a command line such
    /// as a profiler, if given) and wait until its API answers.
    pub fn start(bin: &Path, dir: &DataDir, wrap: Option<&str>) -> anyhow::Result<Proc> {
        let _ = std::fs::remove_file(dir.api_file());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.root().join("node.log"))?;
        let mut cmd = match wrap {
            Some(w) => {
                let mut parts = w.split_whitespace();
                let mut cmd = Command::new(parts.next().context("empty wrapper")?);
                cmd.args(parts).arg(bin);
                cmd
            }
            None => Command::new(bin),
        };
        let child = cmd
            .arg("--data-dir")
            .arg(dir.root())
            .args(["run", "--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0"])
            .env(
                "RUST_LOG",
                std::env::var("NESTWORK_SOAK_LOG")
                    .unwrap_or_else(|_| "warn,nestwork_node::ledger=info".into()),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("spawning nestwork run")?;
        let t = Instant::now();
        loop {
            if let (Ok(c), Some(ep)) = (
                Client::connect(dir),
                nestwork_api::endpoint::Endpoint::read(dir),
            ) {
                if c.status().is_ok() {
                    return Ok(Proc {
                        child,
                        stopped: false,
                        pid: ep.pid,
                    });
                }
            }
            if t.elapsed() > Duration::from_secs(120) {
                bail!("node did not start within 120 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Resident memory, from /proc (0 where there is none).
    pub fn rss_bytes(&self) -> u64 {
        nestwork_node::status::resident_bytes_of(&self.pid.to_string())
    }

    /// SIGTERM, and wait for a clean exit.
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.stopped = true;
        Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.stopped {
            return;
        }
        // An error path: stop the node all the same.
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        let _ = self.child.wait();
    }
}
