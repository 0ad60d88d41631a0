//! The command surface (DESIGN.md §8). Flags may grow; names stay.

use clap::{Parser, Subcommand};

use crate::proposal::{CharterEditKind, DraftKind, ProposalKind};
use nestwork_docs::distress::{Category, Severity};
use nestwork_docs::governance::Choice;
use nestwork_docs::GroupKind;
use std::path::PathBuf;

/// Nestwork: charters, mutual credit and distress signals for
/// self-governing communities, peer to peer.
#[derive(Parser, Debug)]
#[command(name = "nestwork", version, propagate_version = true)]
pub struct Args {
    /// The node's data directory (default: ~/.local/share/nestwork).
    #[arg(long, global = true, env = "NESTWORK_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Every command.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create your member key and the data directory.
    Init,
    /// Run the node: store, network, local API.
    Run {
        /// Config file (default: DATA_DIR/config.toml if present).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Port for the local API on 127.0.0.1 (0: any free port).
        #[arg(long, value_name = "PORT")]
        api_port: Option<u16>,
        /// Listen for peers on this multiaddr (repeatable; replaces the
        /// configured list), e.g. /ip4/127.0.0.1/tcp/0.
        #[arg(long = "listen", value_name = "MULTIADDR")]
        listen: Vec<String>,
        /// Do not look for peers on the local network by mDNS.
        #[arg(long)]
        no_mdns: bool,
    },
    /// Print your member id.
    Id,
    /// Node health: member, groups, store, network and sync state.
    Status,
    /// Connected peers: who, where, direct or relayed, LAN or not, latency.
    Peers,
    /// Back up and restore your member key.
    Key {
        #[command(subcommand)]
        action: KeyCommand,
    },
    /// Groups and tiers.
    Group {
        #[command(subcommand)]
        action: GroupCommand,
    },
    /// A group's charter.
    Charter {
        #[command(subcommand)]
        action: CharterCommand,
    },
    /// Put a proposal to a group's vote; prints its id. `propose GROUP
    /// --help` lists the kinds, `propose GROUP KIND --help` a kind's
    /// arguments.
    #[command(subcommand_value_name = "KIND", subcommand_help_heading = "Kinds")]
    Propose {
        /// Id, id prefix or name of the group.
        group: String,
        /// The kind of proposal, with its arguments.
        #[command(subcommand)]
        kind: ProposalKind,
    },
    /// Drafts of proposals, edited together before they are submitted.
    Draft {
        #[command(subcommand)]
        action: DraftCommand,
    },
    /// Vote on a proposal (your last vote before the decision counts).
    Vote {
        /// The proposal id, or a unique start of it.
        proposal: String,
        /// yes, no or abstain.
        choice: Choice,
        /// As a delegate in a parent tier: the child group you vote for.
        #[arg(long = "for", value_name = "GROUP")]
        for_group: Option<String>,
    },
    /// A group's proposals: open ones first, with tallies and outcomes.
    Proposals {
        /// Id, id prefix or name of the group.
        group: String,
    },
    /// Distress signals: raise, answer, list, watch.
    Distress {
        #[command(subcommand)]
        action: DistressCommand,
    },
    /// Treaties between groups.
    Treaty {
        #[command(subcommand)]
        action: TreatyCommand,
    },
    /// Pay a member (or the group's commons) from your account.
    Pay {
        /// Id, id prefix or name of the group.
        group: String,
        /// The payee: a member id (or a unique start of one), or "commons".
        member: String,
        /// Whole units of the group's ledger (integers only).
        amount: u64,
        /// What it is for.
        #[arg(long, value_name = "TEXT", default_value = "")]
        memo: String,
    },
    /// Balances in a group: everyone's, or one member's.
    Balance {
        /// Id, id prefix or name of the group.
        group: String,
        /// A member id (or a unique start of one), or "commons".
        member: Option<String>,
    },
    /// A group's payments, newest first.
    Ledger {
        /// Id, id prefix or name of the group.
        group: String,
        /// Only payments to or from this member (or "commons").
        #[arg(long, value_name = "MEMBER")]
        account: Option<String>,
        /// Page number, from 1.
        #[arg(long, default_value_t = 1)]
        page: usize,
        /// Payments per page.
        #[arg(long, default_value_t = 20)]
        per_page: usize,
    },
    /// Set credit limits directly (the group's creator; the group changes
    /// them with `propose GROUP set-limits`): one member's, or the group
    /// default when no member is named.
    Limit {
        /// Id, id prefix or name of the group.
        group: String,
        /// The lowest balance allowed (zero or below).
        #[arg(long, allow_hyphen_values = true)]
        floor: i64,
        /// The highest balance allowed (zero or above).
        #[arg(long)]
        ceiling: i64,
        /// Whose limits (default: the group default).
        #[arg(long, value_name = "MEMBER")]
        member: Option<String>,
    },
}

/// `nestwork key ...`
#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Write your key to FILE (readable by you only). Keep it safe.
    Export {
        /// Where to write it.
        file: PathBuf,
        /// Overwrite FILE if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Restore your key from FILE.
    Import {
        /// The backup.
        file: PathBuf,
        /// Replace a different key already in the data directory.
        #[arg(long)]
        force: bool,
    },
}

/// `nestwork group ...`
#[derive(Subcommand, Debug)]
pub enum GroupCommand {
    /// Found a group with the default charter; you are its first member.
    Create {
        /// Its name (1 to 80 characters).
        name: String,
        /// hub, region or federation.
        #[arg(long, default_value = "hub")]
        kind: GroupKind,
        /// The group it belongs to (id, id prefix or name).
        #[arg(long, value_name = "GROUP")]
        parent: Option<String>,
        /// A first description.
        #[arg(long, value_name = "TEXT")]
        description: Option<String>,
        /// The unit of the group's ledger (amounts are whole numbers of it,
        /// so name the smallest unit you count in).
        #[arg(long, default_value = "hours")]
        unit: String,
        /// The default credit floor: how far below zero an account may go.
        #[arg(long, allow_hyphen_values = true)]
        floor: Option<i64>,
        /// The default credit ceiling: how much an account may hold.
        #[arg(long)]
        ceiling: Option<i64>,
    },
    /// Your groups.
    List,
    /// One group: members, parent, description, sync heads.
    Show {
        /// Id, id prefix or name.
        group: String,
    },
    /// Replace a group's description (members edit it together).
    Describe {
        /// Id, id prefix or name.
        group: String,
        /// The new description.
        text: String,
    },
    /// Print an invite ticket (text and QR code) for someone to join.
    Invite {
        /// Id, id prefix or name.
        group: String,
        /// How long the ticket stays valid (e.g. 30m, 2h, 7days).
        #[arg(long, default_value = "7days", value_parser = humantime::parse_duration)]
        expires: std::time::Duration,
    },
    /// Join a group with an invite ticket: reach the inviter, be admitted,
    /// sync the group.
    Join {
        /// The ticket text (nwinvite2...).
        ticket: String,
    },
    /// Write a group's signed changes, its ledger periods included, to FILE
    /// (to carry it by hand).
    Export {
        /// Id, id prefix or name.
        group: String,
        /// Where to write the bundle.
        file: PathBuf,
    },
    /// Verify and import a bundle written by `group export`, as a peer's
    /// sync is checked: all of it, or nothing.
    Import {
        /// The bundle.
        file: PathBuf,
    },
    /// Leave a group, at once, by your own signed word. Without --yes,
    /// says what happens to your balance first.
    Leave {
        /// Id, id prefix or name.
        group: String,
        /// Leave now.
        #[arg(long)]
        yes: bool,
    },
}

/// `nestwork charter ...`
#[derive(Subcommand, Debug)]
pub enum CharterCommand {
    /// Print a group's charter: articles (with when each was last
    /// revised, and which are overdue), rules, tier, members.
    Show {
        /// Id, id prefix or name.
        group: String,
    },
    /// Edit the charter directly: the creator only, before anyone else
    /// has joined. The kinds are those of `propose` that change articles
    /// and rules, with the same arguments.
    #[command(subcommand_value_name = "KIND", subcommand_help_heading = "Kinds")]
    Edit {
        /// Id, id prefix or name.
        group: String,
        /// The kind of edit, with its arguments.
        #[command(subcommand)]
        kind: CharterEditKind,
    },
}

/// `nestwork draft ...`
#[derive(Subcommand, Debug)]
pub enum DraftCommand {
    /// Start a draft: add-article [TITLE] TEXT, amend-article N TEXT, or
    /// ratify-treaty GROUP KIND DURATION TERMS. The last argument is the
    /// text members edit together.
    #[command(subcommand_value_name = "KIND", subcommand_help_heading = "Kinds")]
    New {
        /// Id, id prefix or name of the group.
        group: String,
        /// The kind of proposal it will be, with its arguments.
        #[command(subcommand)]
        kind: DraftKind,
    },
    /// Replace a draft's text (edits by several members merge).
    Edit {
        /// Id, id prefix or name of the group.
        group: String,
        /// The draft's id.
        draft: String,
        /// The new text.
        text: String,
    },
    /// A group's drafts.
    List {
        /// Id, id prefix or name of the group.
        group: String,
    },
    /// Submit a draft as a proposal: its text is frozen from then on.
    Submit {
        /// Id, id prefix or name of the group.
        group: String,
        /// The draft's id.
        draft: String,
    },
}

/// `nestwork distress ...`
#[derive(Subcommand, Debug)]
pub enum DistressCommand {
    /// Call for help: every member of the group gets it at once; if nobody
    /// answers in time it climbs to the next tier and to mutual-aid partners.
    Raise {
        /// Id, id prefix or name of the group.
        group: String,
        /// medical, safety, shelter, food-water, eviction, legal or other.
        #[arg(long)]
        category: Category,
        /// low, high or critical.
        #[arg(long)]
        severity: Severity,
        /// A coarse location (a street, a camp).
        #[arg(long)]
        location: Option<String>,
        /// How long it asks for help (default 1day, at most 7days).
        #[arg(long, value_parser = humantime::parse_duration)]
        expires: Option<std::time::Duration>,
        /// What is happening.
        text: String,
    },
    /// Say you have seen a signal (stops it climbing further).
    Ack {
        /// The signal id, or a unique start of it.
        signal: String,
        /// A few words.
        text: Option<String>,
    },
    /// Say you are on your way.
    Respond {
        /// The signal id, or a unique start of it.
        signal: String,
        /// When you expect to be there (e.g. 15m).
        #[arg(long, value_parser = humantime::parse_duration)]
        eta: Option<std::time::Duration>,
        /// A few words.
        text: Option<String>,
    },
    /// Close a signal: help came (the raiser, or someone who responded).
    Resolve {
        /// The signal id, or a unique start of it.
        signal: String,
        /// A few words.
        text: Option<String>,
    },
    /// Signals: open ones first, with who has answered.
    List {
        /// Only this group's.
        #[arg(long)]
        group: Option<String>,
        /// Resolved and expired ones too.
        #[arg(long)]
        all: bool,
    },
    /// Print signals and answers as they arrive, until Ctrl-C (one JSON
    /// object per line with --json).
    Watch,
}

/// `nestwork treaty ...`
#[derive(Subcommand, Debug)]
pub enum TreatyCommand {
    /// Treaties of your groups, with their state and days left.
    List {
        /// Only this group's (id, id prefix or name).
        #[arg(long)]
        group: Option<String>,
    },
    /// One treaty, as each of your groups sees it.
    Show {
        /// The treaty id, or a unique start of it.
        treaty: String,
    },
}
