//! `charter`, `propose`, `vote`, `proposals`, `group leave` and `treaty`:
//! the governance commands.

use nestwork_api::client::Client;
use nestwork_api::wire::{
    CharterView, Draft, ProposalView, ProposeRequest, TreatyView, VoteRequest,
};
use nestwork_docs::governance::{Choice, Outcome, Seat, TreatyStatus};
use nestwork_node::DataDir;

use crate::cli::DraftCommand;
use crate::output::{secs, when, Output};

/// `nestwork charter show GROUP`
pub fn charter_show(dir: &DataDir, out: &Output, group: &str) -> anyhow::Result<()> {
    let charter = Client::connect(dir)?.charter(group)?;
    out.print(&charter, || charter_text(&charter))
}

/// `nestwork charter edit GROUP KIND ARGS...` (the creator, before anyone joins)
pub fn charter_edit(
    dir: &DataDir,
    out: &Output,
    group: &str,
    req: &ProposeRequest,
) -> anyhow::Result<()> {
    let charter = Client::connect(dir)?.edit_charter(group, req)?;
    out.print(&charter, || charter_text(&charter))
}

/// `nestwork propose GROUP KIND ARGS...`
pub fn propose(
    dir: &DataDir,
    out: &Output,
    group: &str,
    req: &ProposeRequest,
) -> anyhow::Result<()> {
    let p = Client::connect(dir)?.propose(group, req)?;
    out.print(&p, || {
        format!(
            "Proposal {} submitted in {}: {}\nVoting closes {}. Vote with: nestwork vote {} yes|no|abstain",
            p.state.id.to_hex(),
            p.group_name,
            p.summary,
            when(p.state.deadline_ms),
            p.state.id.short()
        )
    })
}

/// `nestwork draft new|edit|list|submit`
pub fn draft(dir: &DataDir, out: &Output, action: DraftCommand) -> anyhow::Result<()> {
    let client = Client::connect(dir)?;
    let show = |d: &Draft| {
        format!(
            "draft {} ({} {}){}\n  {}",
            d.id,
            d.kind,
            d.args.join(" "),
            d.submitted
                .as_ref()
                .map(|p| format!(", submitted as proposal {}", &p[..12.min(p.len())]))
                .unwrap_or_default(),
            d.text.replace('\n', "\n  ")
        )
    };
    match action {
        DraftCommand::New { group, kind } => {
            let d = client.new_draft(&group, &kind.request())?;
            out.print(&d, || {
                format!(
                    "{}\nEdit with: nestwork draft edit {group} {} TEXT; submit with: nestwork draft submit {group} {}",
                    show(&d),
                    d.id,
                    d.id
                )
            })
        }
        DraftCommand::Edit { group, draft, text } => {
            let d = client.edit_draft(&group, &draft, text)?;
            out.print(&d, || show(&d))
        }
        DraftCommand::List { group } => {
            let drafts = client.drafts(&group)?;
            out.print(&drafts, || {
                if drafts.is_empty() {
                    return "No drafts.".to_string();
                }
                drafts.iter().map(show).collect::<Vec<_>>().join("\n")
            })
        }
        DraftCommand::Submit { group, draft } => {
            let p = client.submit_draft(&group, &draft)?;
            out.print(&p, || {
                format!("Submitted; the text is frozen.\n{}", proposal_text(&p))
            })
        }
    }
}

/// `nestwork vote PROPOSAL yes|no|abstain [--for GROUP]`
pub fn vote(
    dir: &DataDir,
    out: &Output,
    proposal: &str,
    choice: Choice,
    for_group: Option<String>,
) -> anyhow::Result<()> {
    let req = VoteRequest { choice, for_group };
    let p = Client::connect(dir)?.vote(proposal, &req)?;
    out.print(&p, || format!("Vote recorded.\n{}", proposal_text(&p)))
}

/// `nestwork proposals GROUP`
pub fn proposals(dir: &DataDir, out: &Output, group: &str) -> anyhow::Result<()> {
    let view = Client::connect(dir)?.proposals(group)?;
    out.print(&view, || {
        let mut text = format!("Proposals of {}\n", view.group_name);
        if view.proposals.is_empty() {
            text.push_str("  none yet. Propose with: nestwork propose GROUP KIND ARGS...\n");
        }
        for p in &view.proposals {
            text.push('\n');
            text.push_str(&proposal_text(p));
            text.push('\n');
        }
        for l in &view.lotteries {
            text.push_str(&format!(
                "\nLottery for {} (proposal {}, seed {}): {}\n",
                l.role,
                l.proposal.short(),
                l.seed.short(),
                l.picked
                    .iter()
                    .map(|m| m.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        text.trim_end().to_string()
    })
}

/// `nestwork group leave GROUP [--yes]`
pub fn leave(dir: &DataDir, out: &Output, group: &str, confirm: bool) -> anyhow::Result<()> {
    let view = Client::connect(dir)?.leave(group, confirm)?;
    out.print(&view, || {
        if view.done {
            format!(
                "You have left {}. {}.",
                view.group_name,
                capital(&view.consequence)
            )
        } else {
            format!(
                "Leaving {}: {}.\nNobody can stop you. To leave now: nestwork group leave {} --yes",
                view.group_name, view.consequence, group
            )
        }
    })
}

/// `nestwork treaty list [--group GROUP]`
pub fn treaty_list(dir: &DataDir, out: &Output, group: Option<String>) -> anyhow::Result<()> {
    let treaties = Client::connect(dir)?.treaties(group.as_deref())?;
    out.print(&treaties, || {
        if treaties.is_empty() {
            return "No treaties.".to_string();
        }
        treaties
            .iter()
            .map(|t| {
                format!(
                    "{}  {} with {}  {}  {}",
                    t.state.id.short(),
                    t.group_name,
                    other_name(t),
                    t.state.treaty.kind.as_str(),
                    status_text(t)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    })
}

/// `nestwork treaty show TREATY`
pub fn treaty_show(dir: &DataDir, out: &Output, treaty: &str) -> anyhow::Result<()> {
    let views = Client::connect(dir)?.treaty(treaty)?;
    out.print(&views, || {
        let mut text = String::new();
        if let Some(t) = views.first() {
            text.push_str(&format!(
                "Treaty {}\n  kind   {}\n  terms  {}\n  from   {}\n  until  {} (unless both parties renew)\n",
                t.state.id.to_hex(),
                t.state.treaty.kind.as_str(),
                t.state.treaty.terms,
                when(t.state.treaty.start_ms),
                when(t.state.end_ms()),
            ));
        }
        for t in &views {
            text.push_str(&format!(
                "  as {} sees it (with {}): {}\n",
                t.group_name,
                other_name(t),
                status_text(t)
            ));
        }
        text.trim_end().to_string()
    })
}

fn other_name(t: &TreatyView) -> String {
    t.other_name
        .clone()
        .unwrap_or_else(|| format!("group {}", t.state.other.short()))
}

fn status_text(t: &TreatyView) -> String {
    match t.state.status {
        TreatyStatus::Proposed => "not ratified by this group yet".to_string(),
        TreatyStatus::AwaitingOther => "ratified here; waiting for the other party".to_string(),
        TreatyStatus::NotStarted => {
            format!("ratified by both; starts {}", when(t.state.treaty.start_ms))
        }
        TreatyStatus::Active => format!("ACTIVE, {} days left", t.days_left),
        TreatyStatus::Expired => format!("expired {}", when(t.state.end_ms())),
        TreatyStatus::Ended => "ended by a party".to_string(),
    }
}

fn proposal_text(p: &ProposalView) -> String {
    let s = &p.state;
    let outcome = match s.outcome {
        Outcome::Open => format!("OPEN until {}", when(s.deadline_ms)),
        Outcome::Deciding => format!(
            "VOTING OVER {}, decision being recorded",
            s.decided_at_ms.map(when).unwrap_or_default()
        ),
        Outcome::Passed => format!("PASSED {}", s.decided_at_ms.map(when).unwrap_or_default()),
        Outcome::Failed => format!("FAILED {}", s.decided_at_ms.map(when).unwrap_or_default()),
    };
    let mut text = format!(
        "{}  {}\n  {}\n  yes {}, no {}, abstain {} of {} seats (quorum {}%, approval {}%)\n  proposed by {}",
        s.id.short(),
        outcome,
        p.summary,
        s.yes,
        s.no,
        s.abstain,
        s.seats,
        s.quorum_percent,
        s.approval_percent,
        s.proposer
    );
    if let nestwork_docs::governance::Action::AmendArticle { text: t, .. }
    | nestwork_docs::governance::Action::AddArticle { text: t, .. } = &s.proposal.action
    {
        text.push_str(&format!("\n  text: {t}"));
    }
    if let Some(e) = &s.effect {
        text.push_str(&format!("\n  {e}"));
    }
    for (seat, (choice, _)) in &s.votes {
        let who = match seat {
            Seat::Member(m) => m.short(),
            Seat::Group(g) => format!("group {}", g.short()),
        };
        text.push_str(&format!("\n    {who}: {choice:?}"));
    }
    for i in &s.ignored {
        text.push_str(&format!(
            "\n    not counted ({}): {}",
            i.voter.short(),
            i.reason
        ));
    }
    text
}

/// The charter as people read it.
pub fn charter_text(c: &CharterView) -> String {
    let r = &c.rules;
    let mut out = format!(
        "Charter of {} ({}, {})\n\nArticles\n",
        c.group_name,
        c.kind.as_str(),
        c.group.short()
    );
    for a in &c.articles {
        let flag = if a.overdue {
            "  [OVERDUE for revision]"
        } else {
            ""
        };
        out.push_str(&format!(
            "  {}. {}{}\n     {}\n     (last ratified {})\n",
            a.number,
            a.title,
            flag,
            a.text,
            when(a.revised_at_ms)
        ));
    }
    if !c.repealed.is_empty() {
        out.push_str(&format!("  repealed: {}\n", numbers(&c.repealed)));
    }
    out.push_str(&format!(
        "\nRevision\n  cycle {} began {}; {} of the {} articles it asks for revisited",
        c.cycle.0 + 1,
        when(c.cycle.1),
        c.revisited_this_cycle,
        c.revisit_per_cycle
    ));
    if !c.overdue.is_empty() {
        out.push_str(&format!("\n  overdue: articles {}", numbers(&c.overdue)));
    }
    out.push_str(&format!(
        "\n\nRules\n  quorum               {}% of seats\n  approval             {}% of yes and no votes\n  voting period        {}\n  revision cycle       {}, {}% of articles each cycle\n  distress escalation  {}\n  distress signals     at most {} per member per hour\n  credit limits        floor {}, ceiling {} at founding (set-limits proposals change them)\n  entry                {}\n  leaving              {}\n",
        r.quorum_percent,
        r.approval_percent,
        secs(r.voting_period_secs),
        secs(r.revision_cycle_secs),
        r.revision_share_percent,
        secs(r.distress_escalation_secs),
        r.distress_per_hour,
        r.default_credit_floor,
        r.default_credit_ceiling,
        if r.entry_needs_vote { "by invite and a vote" } else { "by invite" },
        if r.exit_credit_to_commons {
            "at any time; a positive balance goes to the commons"
        } else {
            "at any time; the balance stays on the books"
        },
    ));
    if let Some(p) = c.parent {
        out.push_str(&format!("\nParent tier  {}\n", p.short()));
    }
    if let Some((d, until, _)) = &c.delegates {
        out.push_str(&format!(
            "Delegates    {} (until {})\n",
            d.iter().map(|m| m.short()).collect::<Vec<_>>().join(", "),
            when(*until)
        ));
    }
    if !c.children.is_empty() {
        out.push_str(&format!(
            "Child groups {}\n",
            c.children
                .iter()
                .map(|g| g.short())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    out.push_str(&format!("\nMembers ({})\n", c.members.len()));
    for m in &c.members {
        out.push_str(&format!("  {m}\n"));
    }
    for m in &c.awaiting_entry {
        out.push_str(&format!("  {m} (awaiting an entry vote)\n"));
    }
    for (m, at) in &c.former {
        out.push_str(&format!("  {m} (left {})\n", when(*at)));
    }
    if c.founders_may_edit {
        out.push_str("\nNobody has joined yet: the creator may still edit this charter directly (nestwork charter edit).\n");
    }
    if c.open_proposals > 0 {
        out.push_str(&format!(
            "\n{} open proposals: nestwork proposals {}\n",
            c.open_proposals,
            c.group.short()
        ));
    }
    out.trim_end().to_string()
}

/// Article numbers as "1, 4, 7".
fn numbers(list: &[u32]) -> String {
    list.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn capital(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}
