//! A full disk (issue 15, finding 7): a node whose data directory fills up
//! refuses the write that does not fit with a clear error, changes nothing
//! else, keeps answering (the group stays listed and readable), and takes
//! writes again once space returns; every acknowledged change is there,
//! also after a restart.
//!
//! The data directory is a 2 MiB tmpfs the test mounts, which needs root:
//! elsewhere the test says SKIPPED with the reason (under CI=true it fails
//! instead, as CI runs as root).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{json, nw, ok, wait_for, RunningNode};

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(at).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(Tmpfs(at.to_path_buf()))
    }

    fn resize(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .expect("remount");
        assert!(status.success(), "remount");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Article text that does not compress (Automerge deflates large changes).
fn noise(seed: u64) -> String {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..7_900)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect()
}

fn proposal_ids(dir: &Path) -> Vec<String> {
    let listed = json(dir, &["proposals", "Hub"]);
    let mut ids: Vec<String> = listed["proposals"]
        .as_array()
        .expect("proposals")
        .iter()
        .map(|p| p["id"].as_str().expect("id").to_string())
        .collect();
    ids.sort();
    ids
}

#[test]
fn a_full_disk_refuses_the_write_keeps_answering_and_resumes_when_space_returns() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let disk = match Tmpfs::mount(&tmp.path().join("disk"), "2m") {
        Ok(d) => d,
        Err(why) if std::env::var("CI").as_deref() != Ok("true") => {
            println!("SKIPPED: cannot mount a tmpfs for the data directory ({why}); run as root");
            return;
        }
        Err(why) => panic!("cannot mount a tmpfs for the data directory: {why}"),
    };
    let dir = disk.0.join("node");
    let node = RunningNode::start(&dir);
    ok(&dir, &["group", "create", "Hub"]);

    // Write until the disk is full.
    let mut acknowledged = Vec::new();
    let mut refusal = None;
    for i in 0..400u64 {
        let out = nw(
            &dir,
            &[
                "--json",
                "propose",
                "Hub",
                "add-article",
                &format!("T{i}"),
                &noise(i),
            ],
        );
        if out.status.success() {
            let view: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
            acknowledged.push(view["id"].as_str().expect("id").to_string());
        } else {
            refusal = Some(String::from_utf8_lossy(&out.stderr).to_string());
            break;
        }
    }
    let refusal = refusal.expect("the disk filled up");
    assert!(refusal.contains("No space left on device"), "{refusal}");
    assert!(
        acknowledged.len() > 10,
        "{} written first",
        acknowledged.len()
    );

    // It keeps answering, and keeps refusing writes with the reason.
    assert!(ok(&dir, &["group", "list"]).contains("Hub"));
    assert!(ok(&dir, &["status"]).contains("groups    1"));
    let again = nw(
        &dir,
        &["propose", "Hub", "add-article", "More", &noise(999)],
    );
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("No space left on device"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    // Space returns: writes resume, and what is held is exactly what was
    // acknowledged, and the new one.
    disk.resize("16m");
    let after: serde_json::Value = json(&dir, &["propose", "Hub", "add-article", "After", "x"]);
    acknowledged.push(after["id"].as_str().expect("id").to_string());
    acknowledged.sort();
    assert_eq!(proposal_ids(&dir), acknowledged);

    // And all of it is on disk.
    assert!(node.terminate().success());
    let _node = RunningNode::start(&dir);
    wait_for("the group after a restart", Duration::from_secs(10), || {
        ok(&dir, &["group", "list"]).contains("Hub")
    });
    assert_eq!(proposal_ids(&dir), acknowledged);
}
