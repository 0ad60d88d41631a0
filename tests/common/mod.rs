//! Drive the real `nestwork` binary: data directories, a running node that
//! is stopped when dropped, and waits on conditions (never blind sleeps).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_nestwork"))
}

/// `nestwork --data-dir DIR ARGS...`, run to completion.
pub fn nw(dir: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env_remove("NESTWORK_DATA_DIR")
        .env_remove("NESTWORK_API_PORT")
        .output()
        .expect("run nestwork")
}

/// Like [`nw`] but the command must succeed; returns stdout.
pub fn ok(dir: &Path, args: &[&str]) -> String {
    let out = nw(dir, args);
    assert!(
        out.status.success(),
        "nestwork {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).expect("utf8")
}

/// Like [`nw`] but the command must fail with `code`; returns stderr.
pub fn fails(dir: &Path, args: &[&str], code: i32) -> String {
    let out = nw(dir, args);
    assert_eq!(
        out.status.code(),
        Some(code),
        "nestwork {args:?}: expected exit {code}; stdout {} stderr {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stderr).expect("utf8")
}

/// Where a running node's warnings go: with `NESTWORK_TEST_LOGS` set, to
/// `DIR.log` beside its data directory (appended across restarts), to
/// look into a failure; otherwise nowhere.
fn node_log(dir: &Path) -> Stdio {
    if std::env::var_os("NESTWORK_TEST_LOGS").is_none() {
        return Stdio::null();
    }
    let mut path = dir.as_os_str().to_owned();
    path.push(".log");
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_or_else(|_| Stdio::null(), Stdio::from)
}

/// JSON output of a successful command.
pub fn json(dir: &Path, args: &[&str]) -> serde_json::Value {
    let mut full = vec!["--json"];
    full.extend_from_slice(args);
    serde_json::from_str(&ok(dir, &full)).expect("json output")
}

/// Wait until `cond` holds, or fail loudly after `limit`.
pub fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `nestwork run` process, killed when dropped.
pub struct RunningNode {
    pub child: Child,
    pub dir: PathBuf,
}

impl RunningNode {
    /// Start a node on `dir` and wait until its API answers.
    pub fn start(dir: &Path) -> RunningNode {
        RunningNode::start_on(dir, "/ip4/127.0.0.1/tcp/0")
    }

    /// [`RunningNode::start`], listening on `listen` (a fixed address lets
    /// its peers dial it again after a restart).
    pub fn start_on(dir: &Path, listen: &str) -> RunningNode {
        let _ = std::fs::remove_file(dir.join("api.json"));
        let child = Command::new(bin())
            .arg("--data-dir")
            .arg(dir)
            .args(["run", "--no-mdns", "--listen", listen])
            .env("RUST_LOG", "warn")
            .env_remove("NESTWORK_API_PORT")
            .stdout(Stdio::null())
            .stderr(node_log(dir))
            .spawn()
            .expect("spawn nestwork run");
        let node = RunningNode {
            child,
            dir: dir.to_path_buf(),
        };
        wait_for("the API to answer", Duration::from_secs(30), || {
            nw(dir, &["status"]).status.success()
        });
        node
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit; returns the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        self.child.wait().expect("wait")
    }
}

impl Drop for RunningNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
