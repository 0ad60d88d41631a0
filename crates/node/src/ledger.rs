//! A group's ledger on this node: the names it is stored under, and what
//! `balance` and `ledger` show. The ledger itself and its period documents
//! ([`GroupLedger`]), and the gate through which records reach it
//! ([`Gate`]), are pure and live in `nestwork_docs::group_ledger`.

use nestwork_core::{Hash32, MemberId};
use nestwork_docs::ledger::{Account, Equivocation, Ledger, Payment};
use serde::{Deserialize, Serialize};

pub use nestwork_docs::group_ledger::{
    group_heads_to_cite, period_id, Gate, GroupLedger, CHECKPOINT_EVERY,
};

/// The store's kind string for a period document of `group`.
pub fn period_kind(group: &Hash32, period: u64) -> String {
    format!("ledger {} {period}", group.to_hex())
}

/// The group and period of a stored period document's kind string.
pub fn parse_period_kind(kind: &str) -> Option<(Hash32, u64)> {
    let mut parts = kind.split(' ');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("ledger"), Some(group), Some(period), None) => {
            Some((group.parse().ok()?, period.parse().ok()?))
        }
        _ => None,
    }
}

/// One account, for `balance`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccountView {
    /// A member id, or "commons".
    pub account: String,
    /// Received minus paid, over every accepted payment.
    pub balance: i128,
    /// Lowest balance allowed.
    pub floor: i64,
    /// Highest balance allowed.
    pub ceiling: i64,
    /// Over its ceiling (two payers who had not seen each other can pass
    /// it together); it receives nothing more until back under.
    pub over_ceiling: bool,
    /// Why the account is frozen, if it is: two payments with one sequence
    /// number, kept as proof.
    pub frozen: Option<Equivocation>,
}

/// Balances of a group, for `balance`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct BalanceView {
    /// The group.
    pub group: Hash32,
    /// The group's name.
    pub group_name: String,
    /// The ledger's unit.
    pub unit: String,
    /// The accounts asked for.
    pub accounts: Vec<AccountView>,
    /// The sum of every balance in the group (always zero).
    pub total: i128,
    /// Payments accepted.
    pub payments: usize,
    /// Every frozen account in the group, with its proof.
    pub equivocations: Vec<Equivocation>,
}

/// One payment, for `ledger` and `pay`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PaymentView {
    /// The payment id.
    pub id: Hash32,
    /// Paid from.
    pub from: String,
    /// Paid to.
    pub to: String,
    /// Minor units.
    pub amount: u64,
    /// The memo.
    pub memo: String,
    /// Position on the payer's chain.
    pub seq: u64,
    /// The ledger period that stores it.
    pub period: u64,
    /// When, by the payer's clock.
    pub made_at_ms: u64,
    /// Who signed it.
    pub signer: MemberId,
    /// Part of an equivocation (same payer, same sequence number).
    pub equivocation: bool,
}

/// A page of a group's history, for `ledger`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LedgerView {
    /// The group.
    pub group: Hash32,
    /// The group's name.
    pub group_name: String,
    /// The ledger's unit.
    pub unit: String,
    /// Payments, newest first.
    pub payments: Vec<PaymentView>,
    /// How many payments the ledger holds in all.
    pub total: usize,
    /// How many of them can be listed (all: the recent periods from
    /// memory, older ones read from the store).
    pub listed: usize,
    /// Periods and how many payments each holds.
    pub periods: Vec<(u64, u64)>,
    /// Every frozen account, with its proof.
    pub equivocations: Vec<Equivocation>,
}

/// The view of one accepted payment.
pub fn payment_view(ledger: &Ledger, id: Hash32, signer: MemberId, p: &Payment) -> PaymentView {
    let equivocation = ledger
        .frozen(&p.from)
        .is_some_and(|q| q.payments.contains(&id));
    PaymentView {
        id,
        from: p.from.to_string(),
        to: p.to.to_string(),
        amount: p.amount,
        memo: p.memo.clone(),
        seq: p.seq,
        period: p.period,
        made_at_ms: p.made_at_ms,
        signer,
        equivocation,
    }
}

/// The view of one account.
pub fn account_view(ledger: &Ledger, account: &Account) -> AccountView {
    let limits = ledger.limits_of(account);
    let balance = ledger.balance(account);
    AccountView {
        account: account.to_string(),
        balance,
        floor: limits.floor,
        ceiling: limits.ceiling,
        over_ceiling: *account != Account::Commons && balance > i128::from(limits.ceiling),
        frozen: ledger.frozen(account),
    }
}
