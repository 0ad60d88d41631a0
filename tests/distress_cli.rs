//! Distress signals through the `nestwork` binary: raise, watch (JSON
//! lines and the alarm text), answer, list, and bad input refused with a
//! reason and nothing stored.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{bin, fails, json, ok, RunningNode};

/// `nestwork distress watch` in the background; its lines on a channel.
struct Watch {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Watch {
    fn start(dir: &std::path::Path, json: bool) -> Watch {
        let mut cmd = Command::new(bin());
        cmd.arg("--data-dir").arg(dir);
        if json {
            cmd.arg("--json");
        }
        let mut child = cmd
            .args(["distress", "watch"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("watch");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Watch { child, lines }
    }

    /// The first line containing `needle`, within ten seconds.
    fn until(&self, needle: &str) -> String {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(10)) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!("watch never printed {needle:?}"),
            }
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn raise_watch_answer_and_refuse_bad_signals() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("a");
    let _node = RunningNode::start(&dir);
    json(&dir, &["group", "create", "Riverside"]);
    let watch = Watch::start(&dir, true);
    let alarm = Watch::start(&dir, false);

    let changes = json(&dir, &["status"])["changes"].clone();
    let long = "x".repeat(1001);
    for (args, needle) in [
        (
            vec![
                "distress",
                "raise",
                "Riverside",
                "--category",
                "medical",
                "--severity",
                "high",
                "",
            ],
            "empty",
        ),
        (
            vec![
                "distress",
                "raise",
                "Riverside",
                "--category",
                "medical",
                "--severity",
                "high",
                &long,
            ],
            "limit is 1000",
        ),
        (
            vec![
                "distress",
                "raise",
                "Riverside",
                "--category",
                "medical",
                "--severity",
                "low",
                "--expires",
                "30days",
                "x",
            ],
            "at most 7 days",
        ),
        (
            vec![
                "distress",
                "raise",
                "Nowhere",
                "--category",
                "medical",
                "--severity",
                "low",
                "x",
            ],
            "no group matches",
        ),
        (vec!["distress", "ack", "abcdef"], "no signal matches"),
        (
            vec!["distress", "ack", "abcdef"],
            "hint: `nestwork distress list --all` shows them",
        ),
    ] {
        let err = fails(&dir, &args, 1);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    // Words that name no category or severity: bad usage (exit 2), refused
    // before anything reaches the node, naming what is expected.
    for (args, needle) in [
        (
            vec![
                "distress",
                "raise",
                "Riverside",
                "--category",
                "volcano",
                "--severity",
                "high",
                "x",
            ],
            "unknown category \"volcano\": expected one of medical",
        ),
        (
            vec![
                "distress",
                "raise",
                "Riverside",
                "--category",
                "medical",
                "--severity",
                "meh",
                "x",
            ],
            "unknown severity \"meh\": expected low, high or critical",
        ),
    ] {
        let err = fails(&dir, &args, 2);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    assert_eq!(
        json(&dir, &["status"])["changes"],
        changes,
        "nothing stored"
    );

    let raised = json(
        &dir,
        &[
            "distress",
            "raise",
            "Riverside",
            "--category",
            "medical",
            "--severity",
            "critical",
            "--location",
            "north camp",
            "Leg broken by the well",
        ],
    );
    let id = raised["id"].as_str().expect("id").to_string();
    let line = watch.until("Leg broken by the well");
    let event: serde_json::Value = serde_json::from_str(&line).expect("one JSON object per line");
    assert_eq!(event["id"], id.as_str());
    assert_eq!(event["status"], "open");
    alarm.until("!!! DISTRESS [CRITICAL] medical in Riverside");

    ok(
        &dir,
        &["distress", "respond", &id[..8], "--eta", "10m", "on my way"],
    );
    let line = watch.until("on my way");
    assert!(line.contains(&id), "{line}");
    let listed = json(&dir, &["distress", "list"]);
    assert_eq!(listed[0]["answers"][0]["text"], "on my way");
    let text = ok(&dir, &["distress", "list"]);
    assert!(
        text.contains("north camp") && text.contains("on the way"),
        "{text}"
    );

    ok(&dir, &["distress", "resolve", &id[..8], "help came"]);
    assert_eq!(
        json(&dir, &["distress", "list"]).as_array().map(Vec::len),
        Some(0)
    );
    assert_eq!(
        json(&dir, &["distress", "list", "--all"])[0]["status"],
        "resolved"
    );
    let err = fails(&dir, &["distress", "ack", &id[..8]], 1);
    assert!(err.contains("resolved already"), "{err}");

    // Someone no longer on the roll cannot raise.
    ok(&dir, &["group", "leave", "Riverside", "--yes"]);
    let err = fails(
        &dir,
        &[
            "distress",
            "raise",
            "Riverside",
            "--category",
            "safety",
            "--severity",
            "high",
            "x",
        ],
        1,
    );
    assert!(err.contains("only members on the roll"), "{err}");
}

/// The id of the only open signal `dir`'s node shows, once it shows one.
fn only_signal(dir: &std::path::Path) -> Option<String> {
    let list = json(dir, &["distress", "list"]);
    let items = list.as_array()?;
    (items.len() == 1).then(|| items[0]["id"].as_str().map(str::to_string))?
}

#[test]
fn help_from_the_region_reaches_the_caller_through_the_binary() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let [founder, caller, in_region] = ["a", "b", "c"].map(|d| tmp.path().join(d));
    let _nodes = [&founder, &caller, &in_region].map(|d| RunningNode::start(d));

    // A region, a hub under it that the region admits, and a short
    // escalation time, all set before anyone else joins.
    json(
        &founder,
        &["group", "create", "North Valley", "--kind", "region"],
    );
    let hub = json(
        &founder,
        &["group", "create", "Riverside", "--parent", "North Valley"],
    );
    let hub_id = hub["id"].as_str().expect("id");
    ok(
        &founder,
        &[
            "charter",
            "edit",
            "Riverside",
            "set-rule",
            "distress_escalation",
            "2s",
        ],
    );
    ok(
        &founder,
        &["propose", "North Valley", "admit-group", hub_id],
    );
    let proposals = json(&founder, &["proposals", "North Valley"]);
    let p = proposals["proposals"][0]["id"].as_str().expect("proposal");
    assert_eq!(
        json(&founder, &["vote", &p[..8], "yes"])["outcome"],
        "passed"
    );
    // The caller joins only the hub, the responder only the region.
    for (who, group) in [(&caller, "Riverside"), (&in_region, "North Valley")] {
        let ticket = json(&founder, &["group", "invite", group, "--expires", "1h"])["ticket"]
            .as_str()
            .expect("ticket")
            .to_string();
        ok(who, &["group", "join", &ticket]);
    }
    let watch = Watch::start(&caller, false);

    ok(
        &caller,
        &[
            "distress",
            "raise",
            "Riverside",
            "--category",
            "medical",
            "--severity",
            "critical",
            "Leg broken by the well",
        ],
    );
    watch.until("!!! DISTRESS [CRITICAL] medical in Riverside");
    // Nobody in the hub answers: it climbs to the region.
    let mut signal = None;
    common::wait_for(
        "the call to reach the region",
        Duration::from_secs(30),
        || {
            signal = only_signal(&in_region);
            signal.is_some()
        },
    );
    let signal = signal.expect("signal");
    let short = &signal[..8];

    // Every answer given in the region reaches the caller, saying where.
    ok(&in_region, &["distress", "ack", short, "seen it"]);
    watch.until(" in North Valley: seen \"seen it\"");
    ok(
        &in_region,
        &["distress", "respond", short, "--eta", "15m", "on my way"],
    );
    let line = watch.until(" in North Valley: on the way (eta 15 min, about ");
    assert!(line.contains("\"on my way\""), "{line}");
    ok(&in_region, &["distress", "resolve", short, "help came"]);
    watch.until(" in North Valley: resolved \"help came\"");
    let all = json(&caller, &["distress", "list", "--all"]);
    assert_eq!(all[0]["status"], "resolved", "{all}");
    assert_eq!(all[0]["answers"].as_array().map(Vec::len), Some(3));
}

/// Found by hand: with `nestwork distress watch` connected, SIGTERM (or
/// Ctrl-C) never stopped the node. The API's graceful shutdown waited for
/// every open request, and the watcher's event stream never ends.
#[test]
fn a_node_stops_on_sigterm_while_a_member_watches_for_signals() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("a");
    let mut node = RunningNode::start(&dir);
    json(&dir, &["group", "create", "Riverside"]);
    let watch = Watch::start(&dir, true);
    ok(
        &dir,
        &[
            "distress",
            "raise",
            "Riverside",
            "--category",
            "food-water",
            "--severity",
            "low",
            "Out of water",
        ],
    );
    // The watcher's stream is open once it printed the signal.
    watch.until("Out of water");

    Command::new("kill")
        .args(["-TERM", &node.child.id().to_string()])
        .status()
        .expect("kill");
    let limit = std::time::Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = node.child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            std::time::Instant::now() < limit,
            "the node did not stop within 15 s of SIGTERM while a member watched"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status}");
    drop(watch);
}
