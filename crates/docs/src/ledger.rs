//! The mutual-credit ledger: payments, limits, balances and equivocations.
//! Pure logic, no I/O, no clock.
//!
//! Each account (a member, or the group's commons) has a hash chain of the
//! payments out of it: sequence numbers from 1, each naming the previous
//! payment's id. A payment also names the payments it was made against: the
//! newest payment of every other chain the payer's node had seen (`seen`),
//! and the newest limit change it had seen (`limits`). Those citations are
//! the payer's **causal past**, fixed in the signed record, so the verdict
//! on a payment depends on nothing but the payment and what it cites:
//!
//! - the payer's balance in that past, minus the amount, is at or above its
//!   floor (the commons' floor is zero);
//! - the payee's balance in that past, plus the amount, is at or below its
//!   ceiling (ceilings are not exact: two payers who have not seen each other
//!   can together pass one; the account then receives nothing more until it
//!   is back under it, as design §4 says).
//!
//! Whether the payer and the payee may take part is not the ledger's to
//! say: a payment (and a period closing) also cites the group document's
//! heads its author's node held (`group_heads`), and the engine judges
//! the author, and the payee, by the group's roll there (`engine.rs`).
//!
//! A payment that cites something this node does not have yet waits
//! ([`Refusal::Missing`]); every node that has what it cites reaches the
//! same verdict. All valid payments count in balances, so balances sum to
//! zero, and an honest account never goes past its floor: what it cited is
//! a subset of what counts.
//!
//! Two valid payments on one chain with the same sequence number are an
//! equivocation (the same key on two machines, or a cheat). Both are kept
//! and counted (the payees were paid in good faith); the pair is the proof,
//! the account is shown frozen everywhere, and no node signs another
//! payment from it. (A payment's own chain is linear, so its causal past
//! can never hold its own fork: a modified node that keeps spending on one
//! branch is held to its floor on that branch, and flagged.)
//!
//! Sums along a chain use per-payee prefix sums, so checking a payment costs
//! O(cited chains x log n) whatever the history's length; a chain with an
//! equivocation below the cited point is summed by walking it instead.
//!
//! **Periods.** A ledger is cut into periods. When a period holds the
//! charter's number of payments, a member's node signs a [`PeriodClose`]:
//! a cut (the newest payment of every chain it had seen), the balances at
//! that cut and how many payments it covers. Every node recomputes the
//! balances before accepting it. Payments made after it cite it and are
//! filed in the next period, and must have seen at least its cut. Concurrent
//! closings of one period are all valid; each is a checkpoint.
//!
//! Because every view a payment can cite is at least the cut of a recent
//! closing, a node keeps in memory only a [`Base`] (the positions and
//! balances at a cut below every recent closing, computed by this node from
//! payments it verified) and the payments past it: memory and start-up time
//! follow the recent periods, not the whole history. A payment that needs
//! the history below the base (its payer was cut off for several periods)
//! is reported as [`Refusal::Missing`] with [`Ledger::needs_history`] set,
//! and the node reloads that history to judge it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use nestwork_core::{Hash32, MemberId};
use serde::{Deserialize, Serialize};

use crate::error::RuleError;
pub use crate::record::ledger::{Account, CreditLimit, Payment, PeriodClose};

/// Largest amount of one payment, in minor units.
pub const MAX_AMOUNT: u64 = 1_000_000_000_000;
/// Longest memo, in characters.
pub const MAX_MEMO_CHARS: usize = 280;
/// Most chains a payment may cite.
pub const MAX_SEEN: usize = 4_096;
/// Largest absolute credit limit, in minor units.
pub const MAX_LIMIT: i64 = 1_000_000_000_000_000;
/// Most group-document heads a payment or a period closing may cite.
pub const MAX_GROUP_HEADS: usize = 16;

impl fmt::Display for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Account::Commons => f.write_str("commons"),
            Account::Member(m) => write!(f, "{m}"),
        }
    }
}

impl std::str::FromStr for Account {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "commons" {
            return Ok(Account::Commons);
        }
        s.parse::<MemberId>()
            .map(Account::Member)
            .map_err(|_| format!("{s:?} is neither a member id nor \"commons\""))
    }
}

/// What this node keeps of the history below its recent periods: where
/// each chain stood at a cut, and the balances there. Computed by this node
/// from payments it verified, stored with its own data, never sent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Base {
    /// The period of the closings the cut lies under.
    pub period: u64,
    /// Per chain: sequence number and id of its newest payment at the cut.
    pub heads: BTreeMap<Account, (u64, Hash32)>,
    /// Balances at the cut.
    pub balances: BTreeMap<Account, i128>,
    /// Proposals paid out of the commons at or below the cut.
    pub payouts: BTreeSet<Hash32>,
    /// Payments at or below the cut.
    pub payments: u64,
}

/// Why a payment or limit change cannot be accepted now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// It cites records this node does not have yet: wait for them.
    Missing(Vec<Hash32>),
    /// It breaks a rule; it will never be valid.
    Broken(RuleError),
    /// It can only be judged against history below this node's base: wait
    /// while the node reloads it.
    History,
}

impl From<RuleError> for Refusal {
    fn from(e: RuleError) -> Self {
        Refusal::Broken(e)
    }
}

fn broken<T>(msg: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal::Broken(RuleError(msg.into())))
}

/// Decides whether a passed proposal orders a payment out of the commons
/// or a change of limits (the group's governance supplies it). A proposal
/// this node has not seen decided yet is [`Refusal::Missing`]: the record
/// waits, it is not refused.
pub trait PayoutGate {
    /// `Ok` if `proposal` passed and orders paying `amount` to `to`.
    fn authorizes(&self, proposal: &Hash32, to: &Account, amount: u64) -> Result<(), Refusal>;
    /// `Ok` if `proposal` passed and orders the limits of `change`.
    fn authorizes_limits(&self, proposal: &Hash32, change: &CreditLimit) -> Result<(), Refusal> {
        let _ = change;
        broken(format!(
            "no passed proposal {} orders these limits",
            proposal.short()
        ))
    }
}

/// No proposal has passed: the commons cannot be paid out of.
pub struct NoProposals;

impl PayoutGate for NoProposals {
    fn authorizes(&self, proposal: &Hash32, _: &Account, _: u64) -> Result<(), Refusal> {
        broken(format!(
            "no passed proposal {} orders this payout",
            proposal.short()
        ))
    }
}

/// Two signed payments with the same payer and sequence number.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Equivocation {
    /// The account.
    pub account: Account,
    /// The sequence number both claim.
    pub seq: u64,
    /// The two payment ids, sorted.
    pub payments: [Hash32; 2],
}

/// One accepted payment, as the ledger keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The payment id (hash of the signed record).
    pub id: Hash32,
    /// Who signed it.
    pub signer: MemberId,
    /// The payment.
    pub payment: Payment,
    /// Total paid out of `from` along this chain, this payment included.
    out_total: i128,
}

#[derive(Clone, Default)]
struct Chain {
    /// The chain's position in the base: payments at or below it are not
    /// held.
    base: Option<(u64, Hash32)>,
    /// Payment ids by seq - base seq - 1 (more than one where the chain
    /// forks).
    by_seq: Vec<Vec<Hash32>>,
    /// Lowest seq with two payments.
    first_fork: Option<u64>,
    /// Per payee: (seq, running total paid to it along the chain), in the
    /// order accepted. Exact for any seq below `first_fork`.
    to: HashMap<Account, Vec<(u64, i128)>>,
}

#[derive(Clone)]
struct LimitEntry {
    change: CreditLimit,
}

/// Limits in force: the charter's defaults, and the limit changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Lowest balance allowed.
    pub floor: i64,
    /// Highest balance allowed.
    pub ceiling: i64,
}

/// A period closing as this node keeps it.
#[derive(Clone)]
struct Closing {
    close: PeriodClose,
    /// The cut's head per chain.
    cut: HashMap<Account, Hash32>,
}

/// A group's ledger: the base, every accepted payment past it, and what
/// follows from them. Cloned to judge a batch on a copy (a bundle is
/// imported all or nothing).
#[derive(Clone)]
pub struct Ledger {
    unit: String,
    authority: MemberId,
    defaults: Limits,
    period_payments: u64,
    base: Base,
    /// The base's heads by id.
    base_ids: HashMap<Hash32, Account>,
    closings: HashMap<Hash32, Closing>,
    needs_history: bool,
    /// The lowest period a record waiting on history below the base is
    /// filed in, since last read.
    history_for: Option<u64>,
    entries: HashMap<Hash32, Entry>,
    chains: HashMap<Account, Chain>,
    balances: BTreeMap<Account, i128>,
    limit_changes: HashMap<Hash32, LimitEntry>,
    limit_chain: Vec<Vec<Hash32>>,
    period_counts: BTreeMap<u64, u64>,
    /// Accepted payment ids in the order accepted (newest last).
    order: Vec<Hash32>,
}

/// Where a chain stands: an accepted payment, or its position in the base.
#[derive(Clone, Copy)]
struct Pos<'a> {
    id: Hash32,
    account: Account,
    seq: u64,
    /// Paid out along the chain up to here, counted from the base.
    out_total: i128,
    /// The payment, unless this is the base's position.
    entry: Option<&'a Entry>,
}

/// The chain heads a payment or closing was made against: its causal past.
struct View<'a> {
    heads: HashMap<Account, Pos<'a>>,
}

impl Ledger {
    /// The empty ledger a group's genesis sets up: its unit, the founder
    /// as the authority over limits, the charter's default limits and
    /// period size.
    pub fn of_genesis(founder: MemberId, genesis: &crate::GroupGenesis) -> Self {
        let rules = &genesis.charter.rules;
        Ledger::new(
            &genesis.unit,
            founder,
            Limits {
                floor: rules.default_credit_floor,
                ceiling: rules.default_credit_ceiling,
            },
            rules.ledger_period_payments,
        )
    }

    /// An empty ledger in `unit`, with limits set by `authority` on top of
    /// the charter's `defaults`, cut into periods of `period_payments`.
    pub fn new(unit: &str, authority: MemberId, defaults: Limits, period_payments: u32) -> Self {
        Ledger {
            unit: unit.to_string(),
            authority,
            defaults,
            period_payments: u64::from(period_payments.max(1)),
            base: Base::default(),
            base_ids: HashMap::new(),
            closings: HashMap::new(),
            needs_history: false,
            history_for: None,
            entries: HashMap::new(),
            chains: HashMap::new(),
            balances: BTreeMap::new(),
            limit_changes: HashMap::new(),
            limit_chain: Vec::new(),
            period_counts: BTreeMap::new(),
            order: Vec::new(),
        }
    }

    /// The unit amounts are counted in.
    pub fn unit(&self) -> &str {
        &self.unit
    }

    /// Check a payment signed by `signer` against the rules of money,
    /// without changing anything. Who is on the roll is not the ledger's
    /// to say: the engine judges the payer and the payee by the group's
    /// roll at the group heads the payment cites (`engine.rs`).
    pub fn check(
        &self,
        signer: &MemberId,
        p: &Payment,
        gate: &dyn PayoutGate,
    ) -> Result<(), Refusal> {
        check_shape(signer, p)?;
        let missing: Vec<Hash32> = p
            .prev
            .iter()
            .chain(&p.seen)
            .chain(&p.limits)
            .chain(&p.closing)
            .filter(|id| !self.knows(id))
            .copied()
            .collect();
        let base_seq = self
            .chains
            .get(&p.from)
            .and_then(|c| c.base)
            .map_or(0, |(seq, _)| seq);
        if p.seq <= base_seq {
            // A second payment at a position the base already covers: an
            // equivocation only the history below the base can show.
            return Err(Refusal::History);
        }
        if !missing.is_empty() {
            return Err(self.missing(p.period, missing));
        }
        if let Some(l) = &p.limits {
            if !self.limit_changes.contains_key(l) {
                return broken("the cited limit change is not a limit change");
            }
        }
        let closing = self.cited_closing(&p.closing, p.period, "payment")?;

        // The chain link.
        let prev = match &p.prev {
            None => None,
            Some(id) => {
                let Some(pos) = self.pos(id) else {
                    return broken("the previous payment named is not a payment");
                };
                if pos.account != p.from || pos.seq + 1 != p.seq {
                    return broken(format!(
                        "broken chain: the previous payment named is not payment {} of {}",
                        p.seq - 1,
                        p.from
                    ));
                }
                Some(pos)
            }
        };

        // Limits never go back in time along a chain: a payment cites at
        // least the limit change its previous payment cited (otherwise a
        // modified node could cite none and be judged by looser defaults).
        if let Some(before) = prev
            .and_then(|pos| pos.entry)
            .and_then(|e| e.payment.limits)
        {
            let seq_of = |id: &Hash32| self.limit_changes.get(id).map(|e| e.change.seq);
            if p.limits.as_ref().and_then(seq_of) < seq_of(&before) {
                return broken(
                    "the payment cites older credit limits than the payer's previous payment did",
                );
            }
        }

        // The causal past.
        let mut cited: Vec<Pos<'_>> = prev.into_iter().collect();
        for id in &p.seen {
            let Some(pos) = self.pos(id) else {
                return broken("a cited payment is not a payment");
            };
            if pos.account == p.from {
                return broken(
                    "a payment cites its own chain in `seen`; that is what `prev` is for",
                );
            }
            cited.push(pos);
        }
        let view = self.view(cited, closing)?;
        // Commons payouts.
        if p.from == Account::Commons {
            let Some(proposal) = &p.proposal else {
                return broken(
                    "a payment out of the commons must name the passed proposal ordering it",
                );
            };
            gate.authorizes(proposal, &p.to, p.amount)?;
            let mut cursor = prev.and_then(|pos| pos.entry);
            let mut paid = self.base.payouts.contains(proposal);
            while let (false, Some(e)) = (paid, cursor) {
                paid = e.payment.proposal.as_ref() == Some(proposal);
                cursor = e.payment.prev.and_then(|id| self.entries.get(&id));
            }
            if paid {
                return broken(format!(
                    "proposal {} has already been paid out",
                    proposal.short()
                ));
            }
        }

        // Limits, evaluated in the causal past.
        let amount = i128::from(p.amount);
        let payer_after = self.balance_in(&view, &p.from) - amount;
        let payer_floor = self.limits_at(&p.limits, &p.from)?.floor;
        if payer_after < i128::from(payer_floor) {
            let whose = match p.from {
                Account::Commons => "the commons' floor".to_string(),
                Account::Member(_) => "your floor".to_string(),
            };
            return broken(format!(
                "would take {} to {payer_after} {unit}; {whose} is {payer_floor} {unit}",
                self.subject(&p.from, signer),
                unit = self.unit
            ));
        }
        if p.to != Account::Commons {
            let payee_after = self.balance_in(&view, &p.to) + amount;
            let ceiling = self.limits_at(&p.limits, &p.to)?.ceiling;
            if payee_after > i128::from(ceiling) {
                return broken(format!(
                    "would take {} to {payee_after} {unit}; their ceiling is {ceiling} {unit}",
                    p.to,
                    unit = self.unit
                ));
            }
        }
        Ok(())
    }

    /// Whether `id` is a payment, position, limit change or closing this
    /// ledger holds.
    fn knows(&self, id: &Hash32) -> bool {
        self.pos(id).is_some()
            || self.limit_changes.contains_key(id)
            || self.closings.contains_key(id)
    }

    /// Why a record filed in `period` that cites `missing` waits: the
    /// records have not arrived, or (filed at or below the base) they lie
    /// in history this node no longer holds in memory.
    fn missing(&self, period: u64, missing: Vec<Hash32>) -> Refusal {
        if !self.base.heads.is_empty() && period <= self.base.period + 1 {
            Refusal::History
        } else {
            Refusal::Missing(missing)
        }
    }

    /// The closing a record filed in `period` cites, checked for its place.
    fn cited_closing(
        &self,
        closing: &Option<Hash32>,
        period: u64,
        what: &str,
    ) -> Result<Option<&Closing>, Refusal> {
        match (closing, period) {
            (None, 0) => Ok(None),
            (None, n) => broken(format!(
                "a {what} in period {n} must cite a closing of period {}",
                n - 1
            )),
            (Some(id), n) => {
                let Some(c) = self.closings.get(id) else {
                    return broken(format!(
                        "the closing a {what} cites is not a period closing"
                    ));
                };
                if c.close.period + 1 != n {
                    return broken(format!(
                        "a {what} in period {n} cites the closing of period {}",
                        c.close.period
                    ));
                }
                Ok(Some(c))
            }
        }
    }

    /// Where a chain stands at `id`: a payment held, or a base position.
    fn pos(&self, id: &Hash32) -> Option<Pos<'_>> {
        if let Some(e) = self.entries.get(id) {
            return Some(Pos {
                id: *id,
                account: e.payment.from,
                seq: e.payment.seq,
                out_total: e.out_total,
                entry: Some(e),
            });
        }
        let account = self.base_ids.get(id)?;
        let (seq, _) = self.base.heads.get(account)?;
        Some(Pos {
            id: *id,
            account: *account,
            seq: *seq,
            out_total: 0,
            entry: None,
        })
    }

    /// Whether `head` is `ancestor` or comes after it on its chain.
    fn descends(&self, head: &Pos<'_>, ancestor: &Hash32) -> bool {
        let Some(a) = self.pos(ancestor) else {
            return false;
        };
        if a.account != head.account || head.seq < a.seq {
            return false;
        }
        let forked = self
            .chains
            .get(&head.account)
            .and_then(|c| c.first_fork)
            .is_some_and(|f| f <= head.seq);
        if !forked {
            return head.seq > a.seq || head.id == a.id;
        }
        let mut cursor = *head;
        while cursor.seq > a.seq {
            let Some(prev) = cursor
                .entry
                .and_then(|e| e.payment.prev)
                .and_then(|id| self.pos(&id))
            else {
                return false;
            };
            cursor = prev;
        }
        cursor.id == a.id
    }

    /// The causal past made of `cited` chain heads, which must have seen at
    /// least the cut of `over` (the closing it builds on) and, to be judged
    /// here, the base.
    fn view<'a>(
        &'a self,
        cited: Vec<Pos<'a>>,
        over: Option<&Closing>,
    ) -> Result<View<'a>, Refusal> {
        let mut view = View {
            heads: HashMap::new(),
        };
        for pos in cited {
            if view.heads.insert(pos.account, pos).is_some() {
                return broken(format!("two cited payments from {}", pos.account));
            }
        }
        for (account, head) in over.map(|c| &c.cut).into_iter().flatten() {
            if !view
                .heads
                .get(account)
                .is_some_and(|pos| self.descends(pos, head))
            {
                return broken(format!(
                    "it has not seen {account}'s payments up to the closing it cites"
                ));
            }
        }
        for (account, (_, head)) in &self.base.heads {
            if !view
                .heads
                .get(account)
                .is_some_and(|pos| self.descends(pos, head))
            {
                return Err(Refusal::History);
            }
        }
        Ok(view)
    }

    fn subject(&self, account: &Account, signer: &MemberId) -> String {
        match account {
            Account::Member(m) if m == signer => "you".into(),
            other => other.to_string(),
        }
    }

    /// Record a payment that passed [`Ledger::check`].
    pub fn insert(&mut self, id: Hash32, signer: MemberId, payment: Payment) {
        if self.entries.contains_key(&id) {
            return;
        }
        let amount = i128::from(payment.amount);
        let out_total = payment
            .prev
            .and_then(|p| self.entries.get(&p))
            .map_or(0, |e| e.out_total)
            + amount;
        let chain = self.chains.entry(payment.from).or_default();
        let base_seq = chain.base.map_or(0, |(seq, _)| seq);
        if payment.seq <= base_seq {
            // At or below the base: already counted there.
            return;
        }
        let slot = (payment.seq - base_seq - 1) as usize;
        if chain.by_seq.len() <= slot {
            chain.by_seq.resize_with(slot + 1, Vec::new);
        }
        chain.by_seq[slot].push(id);
        chain.by_seq[slot].sort();
        if chain.by_seq[slot].len() > 1 {
            chain.first_fork = Some(chain.first_fork.map_or(payment.seq, |f| f.min(payment.seq)));
        }
        let to = chain.to.entry(payment.to).or_default();
        let before = match payment.prev {
            Some(_) => to.last().map_or(0, |l| l.1),
            None => 0,
        };
        to.push((payment.seq, before + amount));
        *self.balances.entry(payment.from).or_default() -= amount;
        *self.balances.entry(payment.to).or_default() += amount;
        *self.period_counts.entry(payment.period).or_default() += 1;
        self.order.push(id);
        self.entries.insert(
            id,
            Entry {
                id,
                signer,
                payment,
                out_total,
            },
        );
    }

    /// Judge a ledger record from `author` and record it if valid.
    pub fn admit(
        &mut self,
        author: &MemberId,
        id: Hash32,
        body: &crate::RecordBody,
        gate: &dyn PayoutGate,
    ) -> Result<(), Refusal> {
        let verdict = match body {
            crate::RecordBody::Payment(p) => self.check(author, p, gate),
            crate::RecordBody::CreditLimit(c) => self.check_limit(author, c, gate),
            crate::RecordBody::PeriodClose(c) => self.check_close(c),
            other => broken(format!("a {} is not a ledger record", other.kind_name())),
        };
        match (verdict, body) {
            (Ok(()), crate::RecordBody::Payment(p)) => self.insert(id, *author, p.clone()),
            (Ok(()), crate::RecordBody::CreditLimit(c)) => self.insert_limit(id, c.clone()),
            (Ok(()), crate::RecordBody::PeriodClose(c)) => self.insert_close(id, c.clone()),
            (Err(Refusal::History), _) => {
                self.needs_history = true;
                let period = match body {
                    crate::RecordBody::Payment(p) => p.period,
                    crate::RecordBody::PeriodClose(c) => c.period + 1,
                    _ => 0,
                };
                self.history_for = Some(self.history_for.map_or(period, |q| q.min(period)));
                return Err(Refusal::History);
            }
            (other, _) => return other,
        }
        Ok(())
    }

    /// Record payments this node accepted earlier (read back from its own
    /// store), in an order where everything a payment cites comes first.
    pub fn insert_trusted(&mut self, payments: Vec<(Hash32, MemberId, Payment)>) {
        let mut waiting: HashMap<Hash32, Vec<usize>> = HashMap::new();
        let mut blockers: Vec<usize> = vec![0; payments.len()];
        let ids: BTreeSet<Hash32> = payments.iter().map(|(id, _, _)| *id).collect();
        let mut ready = Vec::new();
        for (i, (_, _, p)) in payments.iter().enumerate() {
            for dep in p.prev.iter().chain(&p.seen) {
                if ids.contains(dep) && !self.entries.contains_key(dep) {
                    blockers[i] += 1;
                    waiting.entry(*dep).or_default().push(i);
                }
            }
            if blockers[i] == 0 {
                ready.push(i);
            }
        }
        let mut slots: Vec<Option<(Hash32, MemberId, Payment)>> =
            payments.into_iter().map(Some).collect();
        while let Some(i) = ready.pop() {
            let Some((id, signer, payment)) = slots[i].take() else {
                continue;
            };
            self.insert(id, signer, payment);
            for d in waiting.remove(&id).unwrap_or_default() {
                blockers[d] -= 1;
                if blockers[d] == 0 {
                    ready.push(d);
                }
            }
        }
    }

    /// Check a credit-limit change signed by `signer`.
    pub fn check_limit(
        &self,
        signer: &MemberId,
        c: &CreditLimit,
        gate: &dyn PayoutGate,
    ) -> Result<(), Refusal> {
        match &c.proposal {
            Some(proposal) => gate.authorizes_limits(proposal, c)?,
            None if *signer != self.authority => {
                return broken(format!(
                    "only a passed proposal (or {}, the group's creator) may change credit limits in this group",
                    self.authority
                ))
            }
            None => {}
        }
        if c.floor > 0 || c.floor < -MAX_LIMIT {
            return broken(format!("a floor must lie between -{MAX_LIMIT} and 0"));
        }
        if c.ceiling < 0 || c.ceiling > MAX_LIMIT {
            return broken(format!("a ceiling must lie between 0 and {MAX_LIMIT}"));
        }
        match (&c.prev, c.seq) {
            (None, 1) => Ok(()),
            (Some(prev), seq) if seq > 1 => match self.limit_changes.get(prev) {
                None => Err(Refusal::Missing(vec![*prev])),
                Some(e) if e.change.seq + 1 == seq => Ok(()),
                Some(_) => broken("broken chain: the previous limit change has the wrong number"),
            },
            _ => broken("broken chain: limit change 1 names no previous one, and only it"),
        }
    }

    /// Record a limit change that passed [`Ledger::check_limit`].
    pub fn insert_limit(&mut self, id: Hash32, change: CreditLimit) {
        if self.limit_changes.contains_key(&id) {
            return;
        }
        let slot = (change.seq - 1) as usize;
        if self.limit_chain.len() <= slot {
            self.limit_chain.resize_with(slot + 1, Vec::new);
        }
        self.limit_chain[slot].push(id);
        self.limit_chain[slot].sort();
        self.limit_changes.insert(id, LimitEntry { change });
    }

    /// The limits of `account` after the limit change `at` (the charter's
    /// defaults when `None`).
    fn limits_at(&self, at: &Option<Hash32>, account: &Account) -> Result<Limits, Refusal> {
        if *account == Account::Commons {
            return Ok(Limits {
                floor: 0,
                ceiling: i64::MAX,
            });
        }
        let mut own = None;
        let mut default = None;
        let mut cursor = at.and_then(|id| self.limit_changes.get(&id));
        while let Some(e) = cursor {
            let limits = Limits {
                floor: e.change.floor,
                ceiling: e.change.ceiling,
            };
            match e.change.member {
                Some(m) if Account::Member(m) == *account && own.is_none() => own = Some(limits),
                None if default.is_none() => default = Some(limits),
                _ => {}
            }
            if own.is_some() {
                break;
            }
            cursor = e.change.prev.and_then(|id| self.limit_changes.get(&id));
        }
        Ok(own.or(default).unwrap_or(self.defaults))
    }

    /// The limits in force for `account` as this node knows them.
    pub fn limits_of(&self, account: &Account) -> Limits {
        self.limits_at(&self.limit_head(), account)
            .unwrap_or(self.defaults)
    }

    /// The sequence number of the newest limit change.
    pub fn limit_seq_of_head(&self) -> Option<u64> {
        self.limit_head()
            .and_then(|id| self.limit_changes.get(&id))
            .map(|e| e.change.seq)
    }

    /// Whether a payment out of the commons on `proposal` has been made.
    pub fn paid_out(&self, proposal: &Hash32) -> bool {
        self.base.payouts.contains(proposal)
            || self
                .chains
                .get(&Account::Commons)
                .into_iter()
                .flat_map(|c| c.by_seq.iter().flatten())
                .filter_map(|id| self.entries.get(id))
                .any(|e| e.payment.proposal.as_ref() == Some(proposal))
    }

    /// The newest limit change (lowest id where the chain forks).
    pub fn limit_head(&self) -> Option<Hash32> {
        self.limit_chain.last().and_then(|ids| ids.first()).copied()
    }

    /// Build the next payment out of `from` as this node knows the ledger,
    /// citing `group_heads` (the group document's heads this node holds),
    /// and check it by the same rules a peer will: the node never signs
    /// what others would refuse. `is_member` is the roll this node holds:
    /// the signer and the payee must be on it. If a period is due to
    /// close, the node signs [`Ledger::close_due`] first.
    #[allow(clippy::too_many_arguments)]
    pub fn prepare(
        &self,
        signer: &MemberId,
        from: Account,
        to: Account,
        amount: u64,
        memo: &str,
        proposal: Option<Hash32>,
        made_at_ms: u64,
        group_heads: Vec<Hash32>,
        is_member: &dyn Fn(&MemberId) -> bool,
        gate: &dyn PayoutGate,
    ) -> Result<Payment, RuleError> {
        if !is_member(signer) {
            return Err(RuleError(format!(
                "{signer} is not a member of this group (never admitted, left or removed)"
            )));
        }
        if let Some(e) = self.frozen(&from) {
            return Err(RuleError(format!(
                "account {from} is frozen: it signed two payments with sequence number {} ({} and {}); the group must decide",
                e.seq,
                e.payments[0].short(),
                e.payments[1].short()
            )));
        }
        if let Account::Member(m) = to {
            if !is_member(&m) {
                return Err(RuleError(format!("{m} is not a member of this group")));
            }
        }
        let closing = self.newest_closing();
        let heads = self.heads_over(closing.map(|(_, c)| c));
        let prev = heads.iter().find(|pos| pos.account == from);
        let mut seen: Vec<Hash32> = heads
            .iter()
            .filter(|pos| pos.account != from)
            .map(|pos| pos.id)
            .collect();
        seen.sort();
        seen.truncate(MAX_SEEN);
        let payment = Payment {
            from,
            to,
            amount,
            memo: memo.to_string(),
            seq: prev.map_or(1, |pos| pos.seq + 1),
            prev: prev.map(|pos| pos.id),
            period: closing.map_or(0, |(_, c)| c.close.period + 1),
            closing: closing.map(|(id, _)| *id),
            seen,
            limits: self.limit_head(),
            proposal,
            made_at_ms,
            group_heads,
        };
        match self.check(signer, &payment, gate) {
            Ok(()) => Ok(payment),
            Err(Refusal::Broken(e)) => Err(e),
            Err(Refusal::History) => Err(RuleError(
                "this node is reloading the ledger's history; try again in a moment".into(),
            )),
            Err(Refusal::Missing(ids)) => Err(RuleError(format!(
                "it relies on {} record(s) this node does not have yet",
                ids.len()
            ))),
        }
    }

    /// The newest payment of every chain, as this node knows them; where a
    /// chain forks, the branch that follows the cut of `over`.
    fn heads_over(&self, over: Option<&Closing>) -> Vec<Pos<'_>> {
        self.chains
            .keys()
            .filter_map(|account| {
                let head = self.head_of(account)?;
                match over.and_then(|c| c.cut.get(account)) {
                    Some(cut) if !self.descends(&head, cut) => self.pos(cut),
                    _ => Some(head),
                }
            })
            .collect()
    }

    /// The newest payment on `account`'s chain (the lowest id at the top
    /// sequence number where the chain forks), or its base position.
    fn head_of(&self, account: &Account) -> Option<Pos<'_>> {
        let chain = self.chains.get(account)?;
        match chain.by_seq.last().and_then(|ids| ids.first()) {
            Some(id) => self.pos(id),
            None => chain.base.and_then(|(_, id)| self.pos(&id)),
        }
    }

    /// The closing the next payment builds on: of the highest period, the
    /// lowest id.
    fn newest_closing(&self) -> Option<(&Hash32, &Closing)> {
        self.closings
            .iter()
            .max_by_key(|(id, c)| (c.close.period, std::cmp::Reverse(**id)))
    }

    /// The period closing this node should sign before its next payment,
    /// citing `group_heads` (the group document's heads this node holds):
    /// `Some` once the period the next payment would go to is full.
    pub fn close_due(&self, group_heads: Vec<Hash32>) -> Option<PeriodClose> {
        let newest = self.newest_closing();
        let period = newest.map_or(0, |(_, c)| c.close.period + 1);
        if self.period_counts.get(&period).copied().unwrap_or(0) < self.period_payments {
            return None;
        }
        let heads = self.heads_over(newest.map(|(_, c)| c));
        let mut ids: Vec<Hash32> = heads.iter().map(|pos| pos.id).collect();
        ids.sort();
        let payments = heads.iter().map(|pos| pos.seq).sum();
        let view = View {
            heads: heads.into_iter().map(|pos| (pos.account, pos)).collect(),
        };
        Some(PeriodClose {
            period,
            prev: newest.map(|(id, _)| *id),
            heads: ids,
            balances: self.balances_in(&view).into_iter().collect(),
            payments,
            group_heads,
        })
    }

    /// Check a period closing: its place, its cut, and that its balances
    /// and count are what the payments it covers make them.
    pub fn check_close(&self, c: &PeriodClose) -> Result<(), Refusal> {
        if c.heads.len() > MAX_SEEN + 1 {
            return broken(format!(
                "a closing may cite at most {} chains",
                MAX_SEEN + 1
            ));
        }
        if c.heads.windows(2).any(|w| w[0] >= w[1]) {
            return broken("a closing's heads are not sorted and distinct");
        }
        if c.balances.windows(2).any(|w| w[0].0 >= w[1].0) || c.balances.iter().any(|b| b.1 == 0) {
            return broken("a closing's balances are not sorted, distinct and non-zero");
        }
        let missing: Vec<Hash32> = c
            .prev
            .iter()
            .chain(&c.heads)
            .filter(|id| !self.knows(id))
            .copied()
            .collect();
        if !missing.is_empty() {
            return Err(self.missing(c.period + 1, missing));
        }
        let prev = self.cited_closing(&c.prev, c.period, "closing of a period")?;
        let mut cited = Vec::with_capacity(c.heads.len());
        for id in &c.heads {
            let Some(pos) = self.pos(id) else {
                return broken("a closing's head is not a payment");
            };
            cited.push(pos);
        }
        let payments: u64 = cited.iter().map(|pos| pos.seq).sum();
        let view = self.view(cited, prev)?;
        let balances = self.balances_in(&view);
        let mut theirs: BTreeMap<Account, i128> = c.balances.iter().copied().collect();
        for (account, ours) in &balances {
            let said = theirs.remove(account).unwrap_or(0);
            if said != *ours {
                return broken(format!(
                    "the closing says {account} holds {said} {unit}; the payments it covers make it {ours} {unit}",
                    unit = self.unit
                ));
            }
        }
        if let Some((account, said)) = theirs.into_iter().next() {
            return broken(format!(
                "the closing says {account} holds {said} {unit}; the payments it covers make it 0 {unit}",
                unit = self.unit
            ));
        }
        if payments != c.payments {
            return broken(format!(
                "the closing says it covers {} payments; its cut holds {payments}",
                c.payments
            ));
        }
        Ok(())
    }

    /// Record a closing that passed [`Ledger::check_close`] (or was read
    /// back from this node's store).
    pub fn insert_close(&mut self, id: Hash32, c: PeriodClose) {
        let cut = c
            .heads
            .iter()
            .filter_map(|head| self.pos(head).map(|pos| (pos.account, *head)))
            .collect();
        self.closings.insert(id, Closing { close: c, cut });
    }

    /// Closings held, by period.
    pub fn closings(&self) -> BTreeMap<u64, Vec<Hash32>> {
        let mut by_period: BTreeMap<u64, Vec<Hash32>> = BTreeMap::new();
        for (id, c) in &self.closings {
            by_period.entry(c.close.period).or_default().push(*id);
        }
        by_period
    }

    /// Whether a record could only be judged against history below the
    /// base; cleared by reading it.
    pub fn take_needs_history(&mut self) -> bool {
        self.history_for = None;
        std::mem::take(&mut self.needs_history)
    }

    /// [`Ledger::take_needs_history`], with the lowest period a record
    /// that needs the history is filed in: a base at least two periods
    /// below it judges the record, so only the periods from there on need
    /// to be held in memory again.
    pub fn take_history_for(&mut self) -> Option<u64> {
        let wanted = std::mem::take(&mut self.needs_history);
        let period = self.history_for.take();
        wanted.then(|| period.unwrap_or(0))
    }

    /// The period of the newest closing held.
    pub fn newest_closed(&self) -> Option<u64> {
        self.newest_closing().map(|(_, c)| c.close.period)
    }

    /// The base this ledger counts from.
    pub fn base(&self) -> &Base {
        &self.base
    }

    /// A base under every closing of the period before the newest one (so
    /// every payment that is not late can be judged above it), if that is
    /// higher than the current base. Chains that fork, or that some of
    /// those closings do not cover, stay whole.
    pub fn next_base(&self) -> Option<Base> {
        let newest = self.newest_closing()?.1.close.period;
        self.base_at(newest.checked_sub(1)?)
    }

    /// A base under every closing of `period` (at most the period before
    /// the newest closing), if that is higher than the current base.
    pub fn base_at(&self, period: u64) -> Option<Base> {
        let newest = self.newest_closing()?.1.close.period;
        if period + 1 > newest {
            return None;
        }
        if !self.base.heads.is_empty() && self.base.period >= period {
            return None;
        }
        let closings: Vec<&Closing> = self
            .closings
            .values()
            .filter(|c| c.close.period == period)
            .collect();
        let first = closings.first()?;
        let mut heads: HashMap<Account, Pos<'_>> = HashMap::new();
        'chains: for account in first.cut.keys() {
            if self
                .chains
                .get(account)
                .is_some_and(|c| c.first_fork.is_some())
            {
                continue;
            }
            let mut lowest: Option<Pos<'_>> = None;
            for c in &closings {
                let Some(pos) = c.cut.get(account).and_then(|id| self.pos(id)) else {
                    continue 'chains;
                };
                if lowest.is_none_or(|l| pos.seq < l.seq) {
                    lowest = Some(pos);
                }
            }
            if let Some(pos) = lowest {
                heads.insert(*account, pos);
            }
        }
        if heads.is_empty() {
            return None;
        }
        for (account, (seq, _)) in &self.base.heads {
            if heads.get(account).is_none_or(|pos| pos.seq < *seq) {
                return None;
            }
        }
        let view = View { heads };
        let mut payouts = self.base.payouts.clone();
        let mut cursor = view.heads.get(&Account::Commons).and_then(|pos| pos.entry);
        while let Some(e) = cursor {
            payouts.extend(e.payment.proposal);
            cursor = e.payment.prev.and_then(|id| self.entries.get(&id));
        }
        Some(Base {
            period,
            heads: view
                .heads
                .iter()
                .map(|(account, pos)| (*account, (pos.seq, pos.id)))
                .collect(),
            balances: self.balances_in(&view),
            payouts,
            payments: view.heads.values().map(|pos| pos.seq).sum(),
        })
    }

    /// This ledger counted from `base` (from [`Ledger::next_base`]): the
    /// payments at or below it are dropped from memory.
    pub fn rebased(&self, base: Base) -> Ledger {
        let mut ledger = self.emptied();
        ledger.set_base(base);
        let held = self
            .order
            .iter()
            .filter_map(|id| self.entries.get(id))
            .map(|e| (e.id, e.signer, e.payment.clone()))
            .collect();
        ledger.insert_trusted(held);
        // After the payments: a closing's cut is made of the positions of
        // its heads, and a head past the base is a payment held. Inserted
        // before them, every such head was dropped from the cut: the next
        // base then missed those chains and could not move (the ledger kept
        // every payment since in memory), and a payment citing the closing
        // was not held to having seen its cut on those chains.
        for (id, c) in &self.closings {
            if c.close.period >= ledger.base.period {
                ledger.insert_close(*id, c.close.clone());
            }
        }
        ledger
    }

    /// This ledger with its limits but no payments or closings.
    pub fn emptied(&self) -> Ledger {
        let mut ledger = Ledger::new(&self.unit, self.authority, self.defaults, 1);
        ledger.period_payments = self.period_payments;
        ledger.limit_chain = self.limit_chain.clone();
        ledger.limit_changes = self
            .limit_changes
            .iter()
            .map(|(id, e)| {
                (
                    *id,
                    LimitEntry {
                        change: e.change.clone(),
                    },
                )
            })
            .collect();
        ledger
    }

    /// Count from `base` (on an empty ledger: this node's stored base,
    /// before its payments are read back).
    pub fn set_base(&mut self, base: Base) {
        for (account, (seq, id)) in &base.heads {
            self.chains.entry(*account).or_default().base = Some((*seq, *id));
            self.base_ids.insert(*id, *account);
        }
        self.balances = base.balances.clone();
        self.base = base;
    }

    /// Balance of `account` counting every accepted payment.
    pub fn balance(&self, account: &Account) -> i128 {
        self.balances.get(account).copied().unwrap_or(0)
    }

    /// Every account that has moved, with its balance.
    pub fn balances(&self) -> &BTreeMap<Account, i128> {
        &self.balances
    }

    /// The equivocation that froze `account`, if any (the lowest sequence
    /// number with two payments, and its two lowest ids).
    pub fn frozen(&self, account: &Account) -> Option<Equivocation> {
        let chain = self.chains.get(account)?;
        let seq = chain.first_fork?;
        let base_seq = chain.base.map_or(0, |(seq, _)| seq);
        let ids = &chain.by_seq[(seq - base_seq - 1) as usize];
        Some(Equivocation {
            account: *account,
            seq,
            payments: [ids[0], ids[1]],
        })
    }

    /// Every frozen account with its proof.
    pub fn equivocations(&self) -> Vec<Equivocation> {
        let mut all: Vec<Equivocation> =
            self.chains.keys().filter_map(|a| self.frozen(a)).collect();
        all.sort_by_key(|e| e.account);
        all
    }

    /// An accepted payment.
    pub fn entry(&self, id: &Hash32) -> Option<&Entry> {
        self.entries.get(id)
    }

    /// How many payments are accepted (those below the base included).
    pub fn len(&self) -> usize {
        self.base.payments as usize + self.entries.len()
    }

    /// Whether no payment is accepted yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many payments are held in memory (those past the base).
    pub fn held(&self) -> usize {
        self.entries.len()
    }

    /// How many entries this ledger's indexes hold: payments past the
    /// base with their places in the acceptance order, chain positions and
    /// per-payee prefix sums, base positions and balances, closings and
    /// their cuts, limit changes and per-period counts. What the ledger
    /// costs in memory grows with this number, so it must follow the recent
    /// periods, not the whole history.
    pub fn index_entries(&self) -> usize {
        let chains: usize = self
            .chains
            .values()
            .map(|c| {
                1 + c.by_seq.iter().map(Vec::len).sum::<usize>()
                    + c.to.values().map(Vec::len).sum::<usize>()
            })
            .sum();
        let closings: usize = self
            .closings
            .values()
            .map(|c| 1 + c.cut.len() + c.close.heads.len() + c.close.balances.len())
            .sum();
        self.entries.len()
            + self.order.len()
            + chains
            + closings
            + self.base.heads.len()
            + self.base_ids.len()
            + self.base.balances.len()
            + self.base.payouts.len()
            + self.balances.len()
            + self.limit_changes.len()
            + self.limit_chain.len()
            + self.period_counts.len()
    }

    /// Payments newest first, skipping `skip`, at most `limit`, only those
    /// touching `account` when given.
    pub fn history(&self, account: Option<&Account>, skip: usize, limit: usize) -> Vec<&Entry> {
        self.order
            .iter()
            .rev()
            .filter_map(|id| self.entries.get(id))
            .filter(|e| account.is_none_or(|a| e.payment.from == *a || e.payment.to == *a))
            .skip(skip)
            .take(limit)
            .collect()
    }

    /// The period a payment made now would be filed in, and how many
    /// payments each period holds.
    pub fn periods(&self) -> &BTreeMap<u64, u64> {
        &self.period_counts
    }

    /// Balance of `account` in a causal past.
    fn balance_in(&self, view: &View<'_>, account: &Account) -> i128 {
        let received: i128 = view
            .heads
            .iter()
            .map(|(chain, head)| self.paid_to_along(chain, account, head))
            .sum();
        let paid = view.heads.get(account).map_or(0, |pos| pos.out_total);
        self.base.balances.get(account).copied().unwrap_or(0) + received - paid
    }

    /// Every non-zero balance in a causal past.
    fn balances_in(&self, view: &View<'_>) -> BTreeMap<Account, i128> {
        let mut balances = self.base.balances.clone();
        for (chain_of, head) in &view.heads {
            *balances.entry(*chain_of).or_default() -= head.out_total;
            let Some(chain) = self.chains.get(chain_of) else {
                continue;
            };
            if chain.first_fork.is_none_or(|f| f > head.seq) {
                for (payee, sums) in &chain.to {
                    let n = sums.partition_point(|(s, _)| *s <= head.seq);
                    if n > 0 {
                        *balances.entry(*payee).or_default() += sums[n - 1].1;
                    }
                }
            } else {
                let mut cursor = head.entry;
                while let Some(e) = cursor {
                    *balances.entry(e.payment.to).or_default() += i128::from(e.payment.amount);
                    cursor = e.payment.prev.and_then(|id| self.entries.get(&id));
                }
            }
        }
        balances.retain(|_, b| *b != 0);
        balances
    }

    /// Total paid to `payee` along `chain` after the base, up to and
    /// including `head`.
    fn paid_to_along(&self, chain_of: &Account, payee: &Account, head: &Pos<'_>) -> i128 {
        let Some(chain) = self.chains.get(chain_of) else {
            return 0;
        };
        let seq = head.seq;
        if chain.first_fork.is_none_or(|f| f > seq) {
            let Some(sums) = chain.to.get(payee) else {
                return 0;
            };
            let n = sums.partition_point(|(s, _)| *s <= seq);
            return if n == 0 { 0 } else { sums[n - 1].1 };
        }
        // The chain forks at or below `head`: walk this branch.
        let mut total = 0;
        let mut cursor = head.entry;
        while let Some(e) = cursor {
            if e.payment.to == *payee {
                total += i128::from(e.payment.amount);
            }
            cursor = e.payment.prev.and_then(|id| self.entries.get(&id));
        }
        total
    }
}

/// The rules a payment meets on its own.
fn check_shape(signer: &MemberId, p: &Payment) -> Result<(), Refusal> {
    if p.amount == 0 {
        return broken("the amount must be more than zero");
    }
    if p.amount > MAX_AMOUNT {
        return broken(format!(
            "the amount {} is over the largest allowed, {MAX_AMOUNT}",
            p.amount
        ));
    }
    if p.from == p.to {
        return broken("an account cannot pay itself");
    }
    match p.from {
        Account::Member(m) if m == *signer => {
            if p.proposal.is_some() {
                return broken("only a payment out of the commons names a proposal");
            }
        }
        Account::Member(m) => {
            return broken(format!("{signer} cannot pay out of {m}'s account"));
        }
        Account::Commons => {}
    }
    let chars = p.memo.chars().count();
    if chars > MAX_MEMO_CHARS {
        return broken(format!(
            "the memo is {chars} characters; the limit is {MAX_MEMO_CHARS}"
        ));
    }
    if p.memo.chars().any(char::is_control) {
        return broken("the memo contains control characters");
    }
    match (p.seq, &p.prev) {
        (1, None) => {}
        (s, Some(_)) if s > 1 => {}
        _ => return broken("broken chain: payment 1 names no previous payment, and only it"),
    }
    if p.seen.len() > MAX_SEEN {
        return broken(format!("a payment may cite at most {MAX_SEEN} chains"));
    }
    if p.seen.windows(2).any(|w| w[0] >= w[1]) {
        return broken("cited payments are not sorted and distinct");
    }
    let cited: BTreeSet<&Hash32> = p.seen.iter().collect();
    if p.prev.as_ref().is_some_and(|prev| cited.contains(prev)) {
        return broken("the previous payment is also cited in `seen`");
    }
    Ok(())
}
