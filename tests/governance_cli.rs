//! Governance through the `nestwork` binary, as a member drives it: the
//! founder edits the charter before anyone joins, proposals and votes,
//! bad proposals and votes refused with a reason, leaving.

mod common;

use common::{fails, json, ok, RunningNode};

#[test]
fn proposals_votes_and_leaving_from_the_command_line() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("a");
    let _node = RunningNode::start(&dir);
    json(&dir, &["group", "create", "Riverside"]);

    // Nobody else has joined: the founder edits the charter directly.
    let edited = json(
        &dir,
        &[
            "charter",
            "edit",
            "Riverside",
            "add-article",
            "Seeds",
            "Seeds are saved and shared.",
        ],
    );
    assert_eq!(edited["articles"][4]["title"], "Seeds");
    assert_eq!(edited["founders_may_edit"], true);

    // Bad proposals: refused with the reason, nothing stored.
    let changes = json(&dir, &["status"])["changes"].clone();
    for (args, needle) in [
        (
            vec!["propose", "Riverside", "abolish-money"],
            "unknown proposal kind",
        ),
        (
            vec!["propose", "Riverside", "amend-article"],
            "usage: propose GROUP amend-article N TEXT",
        ),
        (
            vec!["propose", "Riverside", "amend-article", "99", "text"],
            "no article 99",
        ),
        (
            vec!["propose", "Riverside", "set-rule", "quorum_percent", "250"],
            "a share is at most 100",
        ),
        (
            vec!["propose", "Riverside", "set-rule", "tyranny", "1"],
            "unknown rule",
        ),
        (
            vec!["propose", "Riverside", "payout", "commons", "5"],
            "no member matches",
        ),
        (
            vec!["propose", "Riverside", "set-delegates", "xyz"],
            "no parent tier",
        ),
        (
            vec!["propose", "Riverside", "renew-treaty", "abcd", "30days"],
            "no treaty",
        ),
        (vec!["vote", "abcdef", "yes"], "no proposal matches"),
    ] {
        let err = fails(&dir, &args, 1);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    assert_eq!(json(&dir, &["status"])["changes"], changes);

    // A proposal, printed with its id; a vote of the only seat decides it.
    let text = ok(
        &dir,
        &[
            "propose",
            "Riverside",
            "amend-article",
            "2",
            "Any member may leave at any time.",
        ],
    );
    assert!(
        text.contains("Proposal") && text.contains("nestwork vote"),
        "{text}"
    );
    let listed = json(&dir, &["proposals", "Riverside"]);
    let id = listed["proposals"][0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    assert_eq!(listed["proposals"][0]["outcome"], "open");
    let err = fails(&dir, &["vote", &id[..8], "perhaps"], 1);
    assert!(err.contains("yes, no or abstain"), "{err}");
    let voted = json(&dir, &["vote", &id[..8], "yes"]);
    assert_eq!(voted["outcome"], "passed");
    let err = fails(&dir, &["vote", &id[..8], "no"], 1);
    assert!(err.contains("votes no longer count"), "{err}");
    let charter = json(&dir, &["charter", "show", "Riverside"]);
    assert_eq!(
        charter["articles"][1]["text"],
        "Any member may leave at any time."
    );
    let text = ok(&dir, &["proposals", "Riverside"]);
    assert!(text.contains("PASSED"), "{text}");

    // Leaving says what happens first, then leaves.
    let text = ok(&dir, &["group", "leave", "Riverside"]);
    assert!(text.contains("--yes") && text.contains("balance"), "{text}");
    assert_eq!(
        json(&dir, &["charter", "show", "Riverside"])["members"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    let text = ok(&dir, &["group", "leave", "Riverside", "--yes"]);
    assert!(text.contains("You have left"), "{text}");
    let charter = json(&dir, &["charter", "show", "Riverside"]);
    assert_eq!(charter["members"].as_array().map(Vec::len), Some(0));
    let err = fails(&dir, &["propose", "Riverside", "add-article", "More."], 1);
    assert!(err.contains("only members on the roll"), "{err}");
    let text = ok(&dir, &["treaty", "list"]);
    assert!(text.contains("No treaties"), "{text}");
}
