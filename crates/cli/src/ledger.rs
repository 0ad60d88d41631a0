//! `pay`, `balance`, `ledger` and `limit`: the mutual-credit commands.

use nestwork_api::client::Client;
use nestwork_api::wire::{AccountView, BalanceView, LedgerView, LimitRequest, PayRequest};
use nestwork_node::DataDir;

use crate::output::{when, Output};

/// `nestwork pay GROUP MEMBER AMOUNT [--memo TEXT]`
pub fn pay(
    dir: &DataDir,
    out: &Output,
    group: &str,
    member: String,
    amount: u64,
    memo: String,
) -> anyhow::Result<()> {
    let req = PayRequest {
        to: member,
        amount,
        memo,
        // One per invocation: if the answer is lost and the request is
        // sent again, the node makes the payment once.
        request_id: Some(format!("{:032x}", rand::random::<u128>())),
    };
    let client = Client::connect(dir)?;
    let paid = client.pay(group, &req)?;
    let balance = client.balances(group, Some(&paid.from))?;
    out.print(&paid, || {
        let mine = balance.accounts.first().map_or(0, |a| a.balance);
        format!(
            "Paid {} {} to {} (payment {}, #{} from your account).\nYour balance: {} {}",
            paid.amount,
            balance.unit,
            paid.to,
            paid.id.short(),
            paid.seq,
            mine,
            balance.unit
        )
    })
}

/// `nestwork balance GROUP [MEMBER]`
pub fn balance(
    dir: &DataDir,
    out: &Output,
    group: &str,
    member: Option<String>,
) -> anyhow::Result<()> {
    let view = Client::connect(dir)?.balances(group, member.as_deref())?;
    out.print(&view, || balance_text(&view))
}

/// `nestwork ledger GROUP [--account MEMBER] [--page N] [--per-page N]`
pub fn ledger(
    dir: &DataDir,
    out: &Output,
    group: &str,
    account: Option<String>,
    page: usize,
    per_page: usize,
) -> anyhow::Result<()> {
    let per_page = per_page.clamp(1, 1_000);
    let skip = page.saturating_sub(1) * per_page;
    let view = Client::connect(dir)?.ledger(group, account.as_deref(), skip, per_page)?;
    out.print(&view, || ledger_text(&view, page, per_page))
}

/// `nestwork limit GROUP --floor F --ceiling C [--member MEMBER]`
pub fn limit(dir: &DataDir, out: &Output, group: &str, req: LimitRequest) -> anyhow::Result<()> {
    let view = Client::connect(dir)?.set_limit(group, &req)?;
    out.print(&view, || {
        format!(
            "Limits set: floor {}, ceiling {} {} ({}).\n\n{}",
            req.floor,
            req.ceiling,
            view.unit,
            req.member.as_deref().unwrap_or("group default"),
            balance_text(&view)
        )
    })
}

fn account_line(a: &AccountView, unit: &str) -> String {
    let mut line = format!(
        "{:<54} {:>10} {unit}   floor {}, ceiling {}",
        a.account, a.balance, a.floor, a.ceiling
    );
    if a.over_ceiling {
        line.push_str("   OVER CEILING (receives nothing until back under)");
    }
    if let Some(e) = &a.frozen {
        line.push_str(&format!(
            "   FROZEN: two payments numbered {} ({} and {})",
            e.seq,
            e.payments[0].short(),
            e.payments[1].short()
        ));
    }
    line
}

fn balance_text(v: &BalanceView) -> String {
    let mut out = format!("{} ({}), in {}\n", v.group_name, v.group.short(), v.unit);
    for a in &v.accounts {
        out.push_str(&account_line(a, &v.unit));
        out.push('\n');
    }
    out.push_str(&format!(
        "{} payments; all balances sum to {}\n",
        v.payments, v.total
    ));
    for e in &v.equivocations {
        out.push_str(&format!(
            "Equivocation: {} signed two payments numbered {}: {} and {}. The account is frozen until the group decides.\n",
            e.account, e.seq, e.payments[0], e.payments[1]
        ));
    }
    out.trim_end().to_string()
}

fn ledger_text(v: &LedgerView, page: usize, per_page: usize) -> String {
    let mut out = format!(
        "{} ({}), in {}: {} payments in {} period(s)\n",
        v.group_name,
        v.group.short(),
        v.unit,
        v.total,
        v.periods.len()
    );
    if v.payments.is_empty() {
        out.push_str("No payments on this page.\n");
    }
    for p in &v.payments {
        out.push_str(&format!(
            "{}  {}  {} -> {}  {} {}{}{}\n",
            when(p.made_at_ms),
            p.id.short(),
            short_account(&p.from),
            short_account(&p.to),
            p.amount,
            v.unit,
            if p.memo.is_empty() {
                String::new()
            } else {
                format!("  \"{}\"", p.memo)
            },
            if p.equivocation { "  EQUIVOCATION" } else { "" }
        ));
    }
    let pages = v.listed.div_ceil(per_page).max(1);
    out.push_str(&format!("page {page} of {pages} (--page N for more)\n"));
    for e in &v.equivocations {
        out.push_str(&format!(
            "Equivocation: {} signed two payments numbered {}: {} and {}\n",
            e.account, e.seq, e.payments[0], e.payments[1]
        ));
    }
    out.trim_end().to_string()
}

fn short_account(a: &str) -> String {
    if a.len() > 16 {
        format!("{}..", &a[..14])
    } else {
        a.to_string()
    }
}
