//! Client commands: each asks the running node over its API (or, for keys
//! and ids, reads the data directory) and prints text or, with `--json`,
//! JSON.

use std::path::Path;

use anyhow::{bail, Context};
use nestwork_api::client::Client;
use nestwork_api::wire::{CreateGroup, GroupView, PeerInfo, StatusReport};
use nestwork_node::{identity, DataDir};

use crate::cli::{Args, CharterCommand, Command, GroupCommand, KeyCommand, TreatyCommand};
use crate::output::{secs, when, Output};

/// Carry out one command.
pub fn dispatch(args: Args) -> anyhow::Result<()> {
    let dir = args
        .data_dir
        .map(DataDir::new)
        .unwrap_or_else(DataDir::default_location);
    let out = Output { json: args.json };
    match args.command {
        Command::Init => {
            let key = identity::init(&dir)?;
            out.print(&serde_json::json!({"member": key.id().to_string(), "data_dir": dir.root()}), || {
                format!(
                    "Created your member key in {}\nYour member id: {}\nBack it up with: nestwork key export FILE",
                    dir.key_file().display(),
                    key.id()
                )
            })
        }
        Command::Run {
            config,
            api_port,
            listen,
            no_mdns,
        } => crate::run::run(
            &dir,
            crate::run::RunFlags {
                config,
                api_port,
                listen,
                no_mdns,
            },
        ),
        Command::Id => {
            let key = identity::load(&dir)?;
            out.print(&serde_json::json!({"member": key.id().to_string()}), || {
                key.id().to_string()
            })
        }
        Command::Status => {
            let status = Client::connect(&dir)?.status()?;
            out.print(&status, || status_text(&status))
        }
        Command::Peers => {
            let peers = Client::connect(&dir)?.peers()?;
            out.print(&peers, || peers_text(&peers))
        }
        Command::Key { action } => key_command(&dir, &out, action),
        Command::Group { action } => group_command(&dir, &out, action),
        Command::Charter {
            action: CharterCommand::Show { group },
        } => crate::governance::charter_show(&dir, &out, &group),
        Command::Charter {
            action: CharterCommand::Edit { group, kind },
        } => crate::governance::charter_edit(&dir, &out, &group, &kind.request()),
        Command::Propose { group, kind } => {
            crate::governance::propose(&dir, &out, &group, &kind.request())
        }
        Command::Vote {
            proposal,
            choice,
            for_group,
        } => crate::governance::vote(&dir, &out, &proposal, choice, for_group),
        Command::Distress { action } => crate::distress::distress(&dir, &out, action),
        Command::Draft { action } => crate::governance::draft(&dir, &out, action),
        Command::Proposals { group } => crate::governance::proposals(&dir, &out, &group),
        Command::Treaty {
            action: TreatyCommand::List { group },
        } => crate::governance::treaty_list(&dir, &out, group),
        Command::Treaty {
            action: TreatyCommand::Show { treaty },
        } => crate::governance::treaty_show(&dir, &out, &treaty),
        Command::Pay {
            group,
            member,
            amount,
            memo,
        } => crate::ledger::pay(&dir, &out, &group, member, amount, memo),
        Command::Balance { group, member } => crate::ledger::balance(&dir, &out, &group, member),
        Command::Ledger {
            group,
            account,
            page,
            per_page,
        } => crate::ledger::ledger(&dir, &out, &group, account, page, per_page),
        Command::Limit {
            group,
            floor,
            ceiling,
            member,
        } => crate::ledger::limit(
            &dir,
            &out,
            &group,
            nestwork_node::node::LimitRequest {
                member,
                floor,
                ceiling,
            },
        ),
    }
}

fn key_command(dir: &DataDir, out: &Output, action: KeyCommand) -> anyhow::Result<()> {
    match action {
        KeyCommand::Export { file, force } => {
            let key = identity::export(dir, &file, force)?;
            out.print(&serde_json::json!({"member": key.id().to_string(), "file": file}), || {
                format!(
                    "Wrote the key of {} to {}. Anyone holding this file can act as you: keep it safe.",
                    key.id(),
                    file.display()
                )
            })
        }
        KeyCommand::Import { file, force } => {
            if Client::connect(dir).and_then(|c| c.status()).is_ok() {
                bail!(
                    "a node is running on {}; stop it before changing its key",
                    dir.root().display()
                );
            }
            let key = identity::import(dir, &file, force)?;
            out.print(&serde_json::json!({"member": key.id().to_string()}), || {
                format!("Imported the key of {}", key.id())
            })
        }
    }
}

fn group_command(dir: &DataDir, out: &Output, action: GroupCommand) -> anyhow::Result<()> {
    let client = Client::connect(dir)?;
    match action {
        GroupCommand::Create {
            name,
            kind,
            parent,
            description,
            unit,
            floor,
            ceiling,
        } => {
            let req = CreateGroup {
                name,
                kind: Some(kind),
                parent,
                description,
                unit: Some(unit),
                floor,
                ceiling,
            };
            let view = client.create_group(&req)?;
            out.print(&view, || {
                format!(
                    "Created group {} ({})\n\n{}",
                    view.name,
                    view.id,
                    group_text(&view)
                )
            })
        }
        GroupCommand::List => {
            let groups = client.groups()?;
            out.print(&groups, || groups_text(&groups))
        }
        GroupCommand::Show { group } => {
            let view = client.group(&group)?;
            out.print(&view, || group_text(&view))
        }
        GroupCommand::Describe { group, text } => {
            let view = client.describe(&group, text)?;
            out.print(&view, || group_text(&view))
        }
        GroupCommand::Invite { group, expires } => {
            let invite = client.invite(&group, Some(expires.as_secs().max(1)))?;
            out.print(&invite, || {
                format!(
                    "Invite to {} (valid until {}):\n\n{}\n\n{}\nThe newcomer runs: nestwork group join TICKET",
                    invite.group_name,
                    when(invite.expires_at_ms),
                    invite.ticket,
                    invite.qr
                )
            })
        }
        GroupCommand::Join { ticket } => {
            let view = client.join(ticket)?;
            out.print(&view, || {
                format!("Joined {}\n\n{}", view.name, group_text(&view))
            })
        }
        GroupCommand::Export { group, file } => {
            let bytes = client.export(&group)?;
            nestwork_node::data_dir::write_atomic(&file, &bytes, 0o600)
                .with_context(|| format!("writing {}", file.display()))?;
            out.print(
                &serde_json::json!({"file": file, "bytes": bytes.len()}),
                || format!("Wrote {} bytes to {}", bytes.len(), file.display()),
            )
        }
        GroupCommand::Import { file } => {
            let bytes = read_bounded(&file)?;
            let report = client.import(&bytes)?;
            out.print(&report, || {
                format!(
                    "Imported group {} ({}): {} new changes, {} already here; {} ledger periods, {} payments",
                    report.group_name,
                    report.doc.short(),
                    report.applied,
                    report.duplicates,
                    report.periods,
                    report.payments
                )
            })
        }
        GroupCommand::Leave { group, yes } => crate::governance::leave(dir, out, &group, yes),
    }
}

/// `group list`: one line per group.
fn groups_text(groups: &[GroupView]) -> String {
    if groups.is_empty() {
        return "No groups yet. Found one with: nestwork group create NAME".to_string();
    }
    groups
        .iter()
        .map(|g| {
            let n = g.members.len();
            let plural = if n == 1 { "member" } else { "members" };
            format!(
                "{}  {:<10} {}  ({n} {plural})",
                g.id.short(),
                g.kind.as_str(),
                g.name
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn read_bounded(file: &Path) -> anyhow::Result<Vec<u8>> {
    let limit = nestwork_core::signed::MAX_BUNDLE_BYTES as u64;
    let len = std::fs::metadata(file)
        .with_context(|| format!("reading {}", file.display()))?
        .len();
    if len > limit {
        bail!(
            "{} is {len} bytes; a bundle is at most {limit}",
            file.display()
        );
    }
    std::fs::read(file).with_context(|| format!("reading {}", file.display()))
}

fn status_text(report: &StatusReport) -> String {
    let s = &report.node;
    let mut out = format!(
        "member    {}\nversion   {}\ndata      {}\ngroups    {}\npayments  {} ({} in memory; ledger periods: {} loaded, {} on disk only)\nchanges   {} ({} bytes on disk)\nmemory    {}\nuptime    {}\nloaded in {} ms\n",
        s.member,
        s.version,
        s.data_dir,
        s.groups,
        s.payments,
        s.payments_in_memory,
        s.periods_loaded,
        s.periods_on_disk,
        s.changes,
        s.store_bytes,
        memory_text(&s.memory),
        secs(s.uptime_secs),
        s.load_ms,
    );
    for (group, e) in &s.equivocations {
        out.push_str(&format!(
            "FROZEN    {} in group {}: two payments numbered {} ({} and {})\n",
            e.account,
            group.short(),
            e.seq,
            e.payments[0].short(),
            e.payments[1].short()
        ));
    }
    for d in &s.damaged {
        out.push_str(&format!(
            "DAMAGED   {} ({}): {}\n",
            d.name.as_deref().unwrap_or("unknown group"),
            d.doc.short(),
            d.what
        ));
    }
    for c in &s.charters {
        if !c.overdue.is_empty() || c.open_proposals > 0 {
            out.push_str(&format!(
                "charter   {}: {} open proposals{}\n",
                c.name,
                c.open_proposals,
                if c.overdue.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; articles overdue for revision: {}",
                        c.overdue
                            .iter()
                            .map(u32::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            ));
        }
    }
    match &report.network {
        None => out.push_str("network   not running\n"),
        Some(n) => out.push_str(&network_text(n)),
    }
    out.trim_end().to_string()
}

/// The network's part of `status`: peers, gossip counts, relays, addresses
/// and each group's sync.
fn network_text(n: &nestwork_api::wire::NetStatus) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "network   {} peers connected; {}\n",
        n.connected_peers, n.reachability
    ));
    let g = &n.gossip;
    if g.unique_received > 0 {
        out.push_str(&format!(
            "  gossip: {} messages received, {} stored and forwarded, {} held already, {} waited too long for what they build on (sync brings them), {} invalid\n",
            g.unique_received, g.accepted, g.known, g.waited, g.rejected
        ));
    }
    if n.gossip.shed > 0 {
        out.push_str(&format!(
            "  overloaded: {} gossip messages shed unchecked (sync brings them)\n",
            n.gossip.shed
        ));
    }
    if n.gossip.untimely > 0 {
        out.push_str(&format!(
            "  {} gossip messages refused by their seal time (old gossip replayed, or a clock off by over a minute)\n",
            n.gossip.untimely
        ));
    }
    for r in &n.relays {
        out.push_str(&format!(
            "  relay {}  {}\n",
            r.relay,
            match (r.connected, r.reserved) {
                (_, true) => "slot reserved",
                (true, false) => "connected, no slot yet",
                (false, false) => "not connected",
            }
        ));
    }
    for a in &n.listening {
        out.push_str(&format!("  listening {a}\n"));
    }
    for a in &n.external {
        out.push_str(&format!("  reachable {a}\n"));
    }
    for g in &n.sync {
        let heads: Vec<String> = g.heads.iter().map(|h| h.short()).collect();
        out.push_str(&format!(
            "group {}  heads {}\n",
            g.group.short(),
            heads.join(" ")
        ));
        for (peer, in_sync) in &g.peers {
            out.push_str(&format!(
                "  {peer}  {}\n",
                if *in_sync { "in sync" } else { "syncing" }
            ));
        }
    }
    out
}

/// The node's memory in one line: resident size, then what it holds.
fn memory_text(m: &nestwork_api::wire::MemoryStatus) -> String {
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    let rss = if m.rss_bytes == 0 {
        "resident size unknown".to_string()
    } else {
        format!("{:.1} MiB resident", mib(m.rss_bytes))
    };
    format!(
        "{rss}; holds {} documents ({} changes, {} records), {} ledger index entries; store cache at most {:.0} MiB; {} ledger periods read back for late records",
        m.documents_loaded,
        m.changes_loaded,
        m.records_loaded,
        m.ledger_index_entries,
        mib(m.store_cache_bytes),
        m.periods_reread
    )
}

fn peers_text(peers: &[PeerInfo]) -> String {
    if peers.is_empty() {
        return "No peers connected.".to_string();
    }
    peers
        .iter()
        .map(|p| {
            format!(
                "{}\n  {}  {}  {}  {}\n  groups: {}",
                p.peer,
                p.address,
                p.connection,
                if p.lan { "LAN" } else { "internet" },
                p.latency_ms
                    .map(|l| format!("{l:.1} ms"))
                    .unwrap_or_else(|| "latency unknown".into()),
                if p.groups.is_empty() {
                    "none in common".to_string()
                } else {
                    p.groups.join(", ")
                }
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn group_text(g: &GroupView) -> String {
    let mut out = format!(
        "{} ({})\n  id        {}\n  parent    {}\n  founded   {} by {}\n  changes   {}\n  heads     {}\n  members   {}\n",
        g.name,
        g.kind.as_str(),
        g.id,
        g.parent.map(|p| p.to_hex()).unwrap_or_else(|| "none".into()),
        when(g.created_at_ms),
        g.creator,
        g.changes,
        g.heads.iter().map(|h| h.short()).collect::<Vec<_>>().join(" "),
        g.members.len(),
    );
    for m in &g.members {
        out.push_str(&format!("    {m}\n"));
    }
    if !g.description.is_empty() {
        out.push_str(&format!(
            "  description\n    {}\n",
            g.description.replace('\n', "\n    ")
        ));
    }
    out.trim_end().to_string()
}
