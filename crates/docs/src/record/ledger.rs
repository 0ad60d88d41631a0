//! The ledger's records: payments, credit limits and period closings,
//! and the accounts they name. What they must satisfy is in
//! [`crate::ledger`].

use nestwork_core::{Hash32, MemberId};
use serde::{Deserialize, Serialize};

/// An account on a group's ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Account {
    /// The group's solidarity fund, spent only by passed proposals.
    Commons,
    /// A member's account.
    Member(MemberId),
}

/// A payment, signed by the member who makes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    /// The account paid from: the signer's own, or the commons (then
    /// `proposal` names the passed proposal that orders it).
    pub from: Account,
    /// The account paid to.
    pub to: Account,
    /// Minor units, 1 to [`MAX_AMOUNT`].
    pub amount: u64,
    /// Free text, up to [`MAX_MEMO_CHARS`] characters.
    pub memo: String,
    /// Position on the `from` chain, from 1.
    pub seq: u64,
    /// The previous payment on the `from` chain (`None` only for seq 1).
    pub prev: Option<Hash32>,
    /// The ledger period (document) this payment is stored in: one past
    /// the period of `closing`, or 0 without one.
    pub period: u64,
    /// The newest period closing the payer had seen; the payment's causal
    /// past holds at least its cut.
    pub closing: Option<Hash32>,
    /// The newest payment of every other chain the payer had seen, sorted.
    pub seen: Vec<Hash32>,
    /// The newest credit-limit change the payer had seen.
    pub limits: Option<Hash32>,
    /// For a payment out of the commons: the passed proposal ordering it.
    pub proposal: Option<Hash32>,
    /// When, by the payer's clock (ms since the Unix epoch). Shown, never
    /// used in a verdict.
    pub made_at_ms: u64,
    /// The heads of the group document the payer's node held when it
    /// wrote this (1 to [`MAX_GROUP_HEADS`], sorted): the payer and the
    /// payee must both be on the group's roll there.
    pub group_heads: Vec<Hash32>,
}

/// A change of credit limits, by the member entitled to set them (the
/// group's creator; passed proposals once governance exists). Limit changes
/// form a chain of their own, cited by payments.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreditLimit {
    /// Whose limits: one member's, or the group default when `None`.
    pub member: Option<MemberId>,
    /// Lowest balance allowed (zero or below).
    pub floor: i64,
    /// Highest balance allowed (zero or above).
    pub ceiling: i64,
    /// Position on the limit chain, from 1.
    pub seq: u64,
    /// The previous limit change (`None` only for seq 1).
    pub prev: Option<Hash32>,
    /// The passed proposal that orders it (`None`: set by the group's
    /// creator directly).
    pub proposal: Option<Hash32>,
}

/// The close of a ledger period, signed by the member whose node made it,
/// stored as the first record of the next period. Any member may sign one;
/// every node checks the balances against the payments it covers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeriodClose {
    /// The period it closes.
    pub period: u64,
    /// The closing of the period before, which this one builds on (`None`
    /// only for period 0).
    pub prev: Option<Hash32>,
    /// The cut: the newest payment of every chain, sorted by id.
    pub heads: Vec<Hash32>,
    /// Every non-zero balance at the cut, sorted by account.
    pub balances: Vec<(Account, i128)>,
    /// How many payments the cut covers.
    pub payments: u64,
    /// The heads of the group document the signer's node held when it
    /// signed this (1 to [`MAX_GROUP_HEADS`], sorted): the signer must be
    /// on the group's roll there.
    pub group_heads: Vec<Hash32>,
}
