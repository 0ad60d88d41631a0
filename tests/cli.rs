//! The `nestwork` binary, driven as a member would drive it: each command,
//! and each bad input with its error and exit code.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;

#[test]
fn init_id_and_key_backup() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("a");
    let out = ok(&dir, &["init"]);
    let id = ok(&dir, &["id"]).trim().to_string();
    assert!(id.starts_with("12D3KooW"), "{id}");
    assert!(out.contains(&id));
    assert_eq!(json(&dir, &["id"])["member"], id.as_str());
    let mode = std::fs::metadata(dir.join("member.key"))
        .expect("key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "key file must be owner-only");

    // init twice: refused, key unchanged.
    let err = fails(&dir, &["init"], 1);
    assert!(err.contains("already has a member key"), "{err}");
    assert_eq!(ok(&dir, &["id"]).trim(), id);

    // export, then import elsewhere; over an existing key needs --force.
    let backup = tmp.path().join("backup.key");
    ok(&dir, &["key", "export", backup.to_str().expect("path")]);
    let err = fails(&dir, &["key", "export", backup.to_str().expect("path")], 1);
    assert!(err.contains("--force"), "{err}");
    let other = tmp.path().join("b");
    ok(&other, &["init"]);
    let err = fails(
        &other,
        &["key", "import", backup.to_str().expect("path")],
        1,
    );
    assert!(err.contains("--force"), "{err}");
    assert_ne!(ok(&other, &["id"]).trim(), id);
    ok(
        &other,
        &["key", "import", "--force", backup.to_str().expect("path")],
    );
    assert_eq!(ok(&other, &["id"]).trim(), id);
}

#[test]
fn a_malformed_key_file_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("a");
    ok(&dir, &["init"]);
    let id = ok(&dir, &["id"]);
    let bad = tmp.path().join("bad.key");
    for content in [
        "",
        "hello",
        "nestwork-member-key-v1 1234",
        "nestwork-member-key-v1 zz",
    ] {
        std::fs::write(&bad, content).expect("write");
        let err = fails(
            &dir,
            &["key", "import", "--force", bad.to_str().expect("path")],
            1,
        );
        assert!(err.contains("bad.key"), "{err}");
        assert_eq!(ok(&dir, &["id"]), id, "a refused import changed the key");
    }
    // A damaged key in the data directory: `id` says so plainly.
    std::fs::write(dir.join("member.key"), "garbage").expect("write");
    let err = fails(&dir, &["id"], 1);
    assert!(err.contains("member.key"), "{err}");
}

#[test]
fn client_commands_without_a_node_say_how_to_start_one() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("a");
    ok(&dir, &["init"]);
    for args in [
        &["status"][..],
        &["group", "list"],
        &["charter", "show", "x"],
    ] {
        let err = fails(&dir, args, 3);
        assert!(
            err.contains("no node is running") && err.contains("nestwork run"),
            "{err}"
        );
    }
    // A stale api.json from a killed node: same answer, not a hang.
    std::fs::write(dir.join("api.json"), r#"{"addr":"127.0.0.1:9","pid":1}"#).expect("write");
    std::fs::write(dir.join("api.token"), "t").expect("write");
    let err = fails(&dir, &["status"], 3);
    assert!(err.contains("no node is running"), "{err}");
}

#[test]
fn groups_and_charters_through_a_running_node() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("a");
    let node = RunningNode::start(&dir);
    let me = ok(&dir, &["id"]).trim().to_string();

    let region = json(
        &dir,
        &["group", "create", "North Valley", "--kind", "region"],
    );
    let hub = json(
        &dir,
        &[
            "group",
            "create",
            "Riverside",
            "--parent",
            "North Valley",
            "--description",
            "Tools and seeds",
        ],
    );
    assert_eq!(hub["parent"], region["id"]);
    assert_eq!(hub["members"][0], me.as_str());
    assert_eq!(hub["kind"], "hub");

    let list = json(&dir, &["group", "list"]);
    assert_eq!(list.as_array().map(Vec::len), Some(2));
    let text = ok(&dir, &["group", "list"]);
    assert!(
        text.contains("Riverside") && text.contains("North Valley"),
        "{text}"
    );

    let id = hub["id"].as_str().expect("id").to_string();
    let shown = json(&dir, &["group", "show", &id[..8]]);
    assert_eq!(shown["name"], "Riverside");
    assert_eq!(shown["description"], "Tools and seeds");
    let described = json(
        &dir,
        &["group", "describe", "Riverside", "Tools, seeds, soup"],
    );
    assert_eq!(described["description"], "Tools, seeds, soup");

    let charter = json(&dir, &["charter", "show", "Riverside"]);
    assert_eq!(charter["articles"][0]["number"], 1);
    assert_eq!(charter["members"][0], me.as_str());
    let text = ok(&dir, &["charter", "show", "Riverside"]);
    assert!(
        text.contains("Free exit") && text.contains("quorum"),
        "{text}"
    );

    let status = json(&dir, &["status"]);
    assert_eq!(status["groups"], 2);
    assert_eq!(status["member"], me.as_str());
    // The node's own memory: resident size and what it holds (two group
    // documents and their open ledger periods).
    let memory = &status["memory"];
    assert!(
        memory["rss_bytes"].as_u64().is_some_and(|b| b > 1 << 20),
        "{memory}"
    );
    assert!(
        memory["documents_loaded"].as_u64().is_some_and(|n| n >= 2),
        "{memory}"
    );
    assert!(
        memory["store_cache_bytes"].as_u64().is_some_and(|b| b > 0),
        "{memory}"
    );
    let text = ok(&dir, &["status"]);
    assert!(
        text.contains("MiB resident") && text.contains("documents"),
        "{text}"
    );

    // Survives a clean restart.
    assert!(
        node.terminate().success(),
        "SIGTERM should stop the node cleanly"
    );
    assert!(
        !dir.join("api.json").exists(),
        "api.json is removed on clean shutdown"
    );
    let _node = RunningNode::start(&dir);
    assert_eq!(
        json(&dir, &["group", "show", "Riverside"])["description"],
        "Tools, seeds, soup"
    );
}

#[test]
fn bad_group_input_gets_a_clear_error_and_changes_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("a");
    let _node = RunningNode::start(&dir);
    let long = "x".repeat(81);
    for (args, needle) in [
        (vec!["group", "create", ""], "empty"),
        (vec!["group", "create", "   "], "empty"),
        (vec!["group", "create", long.as_str()], "limit is 80"),
        (
            vec!["group", "create", "A", "--parent", "nowhere"],
            "no group matches",
        ),
        (vec!["group", "show", "nowhere"], "no group matches"),
        (
            vec!["charter", "show", "nowhere"],
            "hint: `nestwork group list` shows your groups",
        ),
    ] {
        let err = fails(&dir, &args, 1);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    // A kind that is none of the three: bad usage (exit 2), naming them.
    let err = fails(&dir, &["group", "create", "A", "--kind", "galaxy"], 2);
    assert!(
        err.contains("unknown group kind \"galaxy\": expected hub, region or federation"),
        "{err}"
    );
    assert_eq!(json(&dir, &["status"])["changes"], 0);
    assert_eq!(
        json(&dir, &["group", "list"]).as_array().map(Vec::len),
        Some(0)
    );
}

#[test]
fn a_second_node_on_the_same_data_directory_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("a");
    let _node = RunningNode::start(&dir);
    let before = std::fs::read(dir.join("api.json")).expect("api.json");
    let err = fails(
        &dir,
        &["run", "--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0"],
        1,
    );
    assert!(err.contains("in use by another nestwork process"), "{err}");
    assert_eq!(
        std::fs::read(dir.join("api.json")).expect("api.json"),
        before,
        "the first node's api.json was clobbered"
    );
    assert!(
        nw(&dir, &["status"]).status.success(),
        "the first node still answers"
    );
}

#[test]
fn a_wrong_api_token_gets_401_with_a_json_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("a");
    let _node = RunningNode::start(&dir);
    std::fs::write(dir.join("api.token"), "wrong").expect("write");
    let err = fails(&dir, &["status"], 1);
    assert!(err.contains("wrong API token"), "{err}");
    let err = fails(&dir, &["group", "create", "Sneaky"], 1);
    assert!(err.contains("wrong API token"), "{err}");
}

#[test]
fn bundles_move_a_group_and_tampered_ones_change_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    let _na = RunningNode::start(&a);
    let _nb = RunningNode::start(&b);
    let hub = json(
        &a,
        &["group", "create", "Riverside", "--description", "Tools"],
    );
    // The ledger travels too: a payment in its first period.
    ok(&a, &["pay", "Riverside", "commons", "5", "--memo", "soup"]);
    let file = tmp.path().join("riverside.bundle");
    let file_s = file.to_str().expect("path");
    ok(&a, &["group", "export", "Riverside", file_s]);
    let good = std::fs::read(&file).expect("bundle");

    let bad_file = tmp.path().join("bad.bundle");
    let bad_s = bad_file.to_str().expect("path");
    let mut corrupt = good.clone();
    let n = corrupt.len();
    corrupt[n - 3] ^= 0xff; // inside the last signature
    let mut truncated = good.clone();
    truncated.truncate(n / 2);
    let mut wrong_header = good.clone();
    wrong_header[0] = b'X';
    for (what, bytes, needle) in [
        ("corrupted", corrupt, "refused"),
        ("truncated", truncated, "malformed bundle"),
        ("not a bundle", wrong_header, "not a Nestwork bundle"),
    ] {
        std::fs::write(&bad_file, bytes).expect("write");
        let err = fails(&b, &["group", "import", bad_s], 1);
        assert!(err.contains(needle), "{what}: {err}");
        assert_eq!(
            json(&b, &["status"])["changes"],
            0,
            "{what} stored something"
        );
    }

    let report = json(&b, &["group", "import", file_s]);
    assert_eq!(report["applied"], 3, "{report}");
    assert_eq!(report["periods"], 1, "{report}");
    assert_eq!(report["payments"], 1, "{report}");
    let copy = json(&b, &["group", "show", "Riverside"]);
    assert_eq!(copy["id"], hub["id"]);
    assert_eq!(copy["heads"], hub["heads"]);
    assert_eq!(copy["description"], "Tools");
    assert_eq!(
        json(&b, &["balance", "Riverside"]),
        json(&a, &["balance", "Riverside"])
    );
    let again = json(&b, &["group", "import", file_s]);
    assert_eq!(again["applied"], 0, "{again}");
}

#[test]
fn bad_expired_and_tampered_tickets_are_refused_with_a_clear_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    let _na = RunningNode::start(&a);
    let _nb = RunningNode::start(&b);
    ok(&a, &["group", "create", "Riverside"]);

    let err = fails(&b, &["group", "join", "hello"], 1);
    assert!(err.contains("not a valid invite ticket"), "{err}");

    let ticket = json(&a, &["group", "invite", "Riverside", "--expires", "1h"])["ticket"]
        .as_str()
        .expect("ticket")
        .to_string();
    // Change one character in the middle: either it no longer parses, or
    // the signature no longer matches.
    let mut chars: Vec<char> = ticket.chars().collect();
    let i = chars.len() / 2;
    chars[i] = if chars[i] == '2' { '3' } else { '2' };
    let tampered: String = chars.into_iter().collect();
    let err = fails(&b, &["group", "join", &tampered], 1);
    assert!(err.contains("invite ticket"), "{err}");

    let short = json(&a, &["group", "invite", "Riverside", "--expires", "1s"])["ticket"]
        .as_str()
        .expect("ticket")
        .to_string();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let err = fails(&b, &["group", "join", &short], 1);
    assert!(err.contains("expired"), "{err}");

    assert_eq!(
        json(&b, &["group", "list"]).as_array().map(Vec::len),
        Some(0),
        "nothing was joined"
    );
}

#[test]
fn a_join_whose_inviter_is_down_says_so_in_plain_words() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    let na = RunningNode::start(&a);
    let _nb = RunningNode::start(&b);
    ok(&a, &["group", "create", "Riverside"]);
    let ticket = json(&a, &["group", "invite", "Riverside", "--expires", "1h"])["ticket"]
        .as_str()
        .expect("ticket")
        .to_string();
    na.kill();

    let err = fails(&b, &["group", "join", &ticket], 1);
    assert!(
        err.contains(
            "the inviter's node could not be reached directly or through a relay; is it running?"
        ),
        "{err}"
    );
    // No libp2p error text reaches the member.
    for raw in ["Dial error", "Transport", "PeerCondition", "Os {"] {
        assert!(!err.contains(raw), "raw libp2p text in: {err}");
    }
    assert_eq!(
        json(&b, &["group", "list"]).as_array().map(Vec::len),
        Some(0),
        "nothing was joined"
    );
}
