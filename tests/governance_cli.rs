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
        (
            vec!["vote", "abcdef", "yes"],
            "hint: `nestwork proposals GROUP` lists them",
        ),
    ] {
        let err = fails(&dir, &args, 1);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    // Kinds and arguments clap refuses (exit 2), naming what it expects.
    for (args, needle) in [
        (
            vec!["propose", "Riverside", "abolish-money"],
            "unexpected argument 'abolish-money'",
        ),
        (
            vec!["propose", "Riverside", "amend-article"],
            "required arguments were not provided:\n  <N>\n  <TEXT>",
        ),
        (
            vec!["propose", "Riverside", "amend-article", "four", "text"],
            "invalid value 'four' for '<N>'",
        ),
        (
            vec![
                "propose",
                "Riverside",
                "ratify-treaty",
                "abcd",
                "mutual-aid",
            ],
            "<DURATION>",
        ),
        (
            vec!["charter", "edit", "Riverside", "payout", "abcd", "5"],
            "unexpected argument 'payout'",
        ),
        (
            vec!["draft", "new", "Riverside", "lottery", "x", "1"],
            "lottery",
        ),
    ] {
        let err = fails(&dir, &args, 2);
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
    // Not a vote: bad usage (exit 2), before anything reaches the node.
    let err = fails(&dir, &["vote", &id[..8], "perhaps"], 2);
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

/// Every kind's command-line forms reach the node (clap accepts them,
/// negative limits included); a selector that names nothing in the group
/// is refused with what it looked for.
#[test]
fn every_proposal_kind_parses_and_bad_selectors_are_named() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("a");
    let _node = RunningNode::start(&dir);
    json(&dir, &["group", "create", "Riverside"]);
    json(&dir, &["group", "create", "Hillside"]);
    let me = json(&dir, &["status"])["member"]
        .as_str()
        .expect("member id")
        .to_string();
    fn p<'a>(args: &[&'a str]) -> Vec<&'a str> {
        [&["propose", "Riverside"], args].concat()
    }
    // Accepted and submitted.
    for args in [
        p(&["add-article", "Seeds are saved."]),
        p(&["add-article", "Seeds", "Seeds are saved."]),
        p(&["amend-article", "2", "Any member may leave."]),
        p(&["repeal-article", "3"]),
        p(&["reaffirm-article", "1"]),
        p(&["set-rule", "voting_period", "3days"]),
        p(&["set-limits", "default", "-200", "500"]),
        p(&["set-limits", &me, "-50", "100"]),
        p(&["join-parent", "Hillside"]),
        p(&[
            "ratify-treaty",
            "Hillside",
            "mutual-aid",
            "30days",
            "Help crosses.",
        ]),
        p(&["lottery", "stewards", "1"]),
    ] {
        let out = ok(&dir, &args);
        assert!(out.contains("Proposal"), "{args:?}: {out}");
    }
    // Parsed, then refused by the node with a reason about the group.
    for (args, needle) in [
        (
            p(&["payout", &me, "40", "boots", "and", "socks"]),
            "the commons holds 0",
        ),
        (p(&["payout", "zzzz", "40"]), "no member matches \"zzzz\""),
        (p(&["admit-member", "zzzz"]), "is not waiting to enter"),
        (p(&["remove-member", "zzzz"]), "no member matches"),
        (p(&["set-limits", "zzzz", "-1", "1"]), "no member matches"),
        (p(&["leave-parent"]), "no parent tier"),
        (p(&["admit-group", "Nowhere"]), "Nowhere"),
        (p(&["remove-group", "Hillside"]), "not in this tier"),
        (p(&["set-delegates", &me]), "no parent tier"),
        (p(&["ratify-treaty", "abcd"]), "no treaty \"abcd\" is known"),
        (
            p(&["renew-treaty", "abcd", "30days"]),
            "this group has no treaty",
        ),
        (p(&["end-treaty", "abcd"]), "this group has no treaty"),
        (
            p(&["amend-article", "99", "text"]),
            "charter has no article 99",
        ),
    ] {
        let err = fails(&dir, &args, 1);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("usage"), "{args:?}: {err}");
    }
    // The same forms for a direct charter edit and a draft.
    let charter = json(
        &dir,
        &[
            "charter",
            "edit",
            "Hillside",
            "set-rule",
            "voting_period",
            "2days",
        ],
    );
    assert!(charter["rules"].is_object(), "{charter}");
    let draft = json(
        &dir,
        &[
            "draft",
            "new",
            "Riverside",
            "ratify-treaty",
            "Hillside",
            "cooperation",
            "30days",
            "Tools are lent.",
        ],
    );
    assert_eq!(draft["kind"], "ratify-treaty");
    assert_eq!(draft["args"][2], "30days");
    let id = draft["id"].as_str().expect("draft id");
    let submitted = ok(&dir, &["draft", "submit", "Riverside", id]);
    assert!(submitted.contains("Submitted"), "{submitted}");
    // `--help` lists the kinds, and each kind's arguments.
    let help = ok(&dir, &["propose", "Riverside", "--help"]);
    for kind in ["add-article", "set-limits", "ratify-treaty", "lottery"] {
        assert!(help.contains(kind), "{help}");
    }
    let help = ok(&dir, &["propose", "Riverside", "set-limits", "--help"]);
    assert!(
        help.contains("<MEMBER|default> <FLOOR> <CEILING>"),
        "{help}"
    );
    let help = ok(&dir, &["charter", "edit", "Riverside", "--help"]);
    assert!(
        help.contains("set-rule") && !help.contains("payout"),
        "{help}"
    );
}
