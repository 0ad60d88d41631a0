//! A group's ledger as a node holds it: the [`Ledger`] state and the period
//! documents that store its payments, and the [`Gate`] through which a
//! group's documents reach the ledger.
//!
//! Payments live in ledger period documents, one Automerge document per
//! period (design §7: applying a change costs in proportion to the
//! document's history, so no document may grow without bound). A period
//! closes once it holds the charter's `ledger_period_payments`; payments
//! that cite it then open the next. Every period with payments is kept
//! open, plus the next one (empty), so that a peer's first payment in a
//! new period finds a document to land in.
//!
//! Pure, like the rest of this crate: the node passes the time in, and
//! keeps what it stores of the ledger (the base, cold periods,
//! checkpoints) itself.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use nestwork_core::{DocId, GroupId, Hash32, MemberId, SignedChange};

use crate::engine::{ledger_period_id, RecordGate, Roll};
use crate::ledger::{Account, Base, CreditLimit, Ledger, PayoutGate, Refusal, MAX_GROUP_HEADS};
use crate::rules::{RuleError, CLOCK_SKEW_MS};
use crate::{ApplyReport, RecordBody, SignedDoc, Writer};

/// A group's ledger and its period documents.
#[derive(Clone)]
pub struct GroupLedger {
    /// The ledger state.
    pub ledger: Ledger,
    /// Period documents by number.
    pub periods: BTreeMap<u64, SignedDoc>,
    /// Periods whose every payment lies at or below the base: not loaded,
    /// with their heads (for sync). Loaded again when a peer asks for one or
    /// sends to it.
    pub cold: BTreeMap<u64, Vec<Hash32>>,
    /// After a late record needed the history below the base: the period
    /// of the earliest such record, and the period whose closing lifts the
    /// hold. Until then the base stays at least two periods below the
    /// record's (so that it and its fellows, delivered by the next syncs,
    /// are judged above it), and for a record in period 0 or 1 there is no
    /// base at all. Only the periods from there on are held in memory
    /// meanwhile, not the whole history.
    pub hold: Option<(u64, u64)>,
    /// While the hold lasts: the checkpoint the late record's history was
    /// counted from. A record that still needs the history below it is
    /// counted from an older one next time (and at the end from period 0).
    pub counted_from: Option<u64>,
    /// The period of the newest checkpoint stored this run
    /// (see `ledger_marks`).
    pub last_checkpoint: Option<u64>,
    /// A period was opened since the node last listed the group for the
    /// network: it must list it, though no change is in it yet (peers push
    /// into it, and this node asks for it).
    opened: bool,
    /// A record needed the history below the base: the node must reload it
    /// (for records filed in this period or later).
    history_wanted: Option<u64>,
    /// The base moved: the node must store it and may unload periods.
    rebased: bool,
    /// Bases the ledger passed through on the way up, one per run of
    /// [`CHECKPOINT_EVERY`] periods it would have skipped (see
    /// [`GroupLedger::settle`]), each with the periods wholly below it:
    /// for the node to keep as checkpoints.
    passed: Vec<(Base, Vec<u64>)>,
}

/// A checkpoint is kept for the first base reached in every run of this
/// many periods: a late record is counted from at most this many periods
/// further down than it needs, and the checkpoints take a quarter of the
/// room a base per period would.
pub const CHECKPOINT_EVERY: u64 = 4;

impl GroupLedger {
    /// The empty ledger of a group document (its genesis must be present),
    /// with the group's limit changes recorded.
    pub fn of_group(doc: &SignedDoc) -> Option<GroupLedger> {
        let (record, genesis) = doc.genesis()?;
        let mut ledger = Ledger::of_genesis(record.author, &genesis);
        let mut limits: Vec<(Hash32, CreditLimit)> = doc
            .records()
            .iter()
            .filter_map(|(id, r)| match RecordBody::decode(&r.body) {
                Ok(RecordBody::CreditLimit(c)) => Some((*id, c)),
                _ => None,
            })
            .collect();
        limits.sort_by_key(|(_, c)| c.seq);
        for (id, c) in limits {
            ledger.insert_limit(id, c);
        }
        Some(GroupLedger {
            ledger,
            periods: BTreeMap::new(),
            cold: BTreeMap::new(),
            hold: None,
            counted_from: None,
            last_checkpoint: None,
            opened: false,
            history_wanted: None,
            rebased: false,
            passed: Vec::new(),
        })
    }

    /// Make sure periods up to one past the newest with payments are open,
    /// and list them in `index` (period document id to group).
    pub fn open_periods(
        &mut self,
        group: GroupId,
        writer: &Writer,
        index: &mut HashMap<DocId, GroupId>,
    ) {
        let newest = self
            .ledger
            .periods()
            .keys()
            .next_back()
            .copied()
            .unwrap_or(0);
        for period in 0..=newest + 1 {
            if self.periods.contains_key(&period) || self.cold.contains_key(&period) {
                continue;
            }
            match SignedDoc::ledger_period(group.hash32(), period) {
                Ok(mut doc) => {
                    doc.set_writer(writer);
                    index.insert(DocId::from(doc.id()), group);
                    self.periods.insert(period, doc);
                    self.opened = true;
                }
                Err(e) => {
                    tracing::error!(group = %group.short(), period, error = %e, "cannot open ledger period")
                }
            }
        }
    }

    /// Sign `body` into period `period` (opened if need be) at `now_ms`,
    /// judged by the ledger and by the roll of `group_doc` (the group's
    /// document) at the group heads it cites on the way; the ledger settles
    /// after it.
    #[allow(clippy::too_many_arguments)]
    pub fn add_record(
        &mut self,
        group: GroupId,
        writer: &Writer,
        group_doc: &SignedDoc,
        period: u64,
        body: RecordBody,
        index: &mut HashMap<DocId, GroupId>,
        decisions: &dyn PayoutGate,
        now_ms: u64,
    ) -> Result<(Hash32, SignedChange), crate::Error> {
        self.open_periods(group, writer, index);
        let Some(doc) = self.periods.get_mut(&period) else {
            return Err(crate::Error::Rule(crate::rules::RuleError(format!(
                "ledger period {period} is not open"
            ))));
        };
        let mut gate = Gate {
            ledger: Some(&mut self.ledger),
            group: Some(group_doc),
            decisions,
            // Period documents hold no signals, the only records judged
            // by the clock.
            now_ms: 0,
        };
        let made = doc.add_record(writer, body, &mut gate, now_ms)?;
        self.settle();
        Ok(made)
    }

    /// Apply changes from elsewhere to the period document `doc`, judged
    /// by the ledger and by the roll of `group_doc` (the group's document)
    /// at the group heads each record cites; the ledger settles after them.
    /// `None` if the period is not open here.
    pub fn apply_to(
        &mut self,
        doc: &DocId,
        group_doc: &SignedDoc,
        changes: Vec<SignedChange>,
        decisions: &dyn PayoutGate,
    ) -> Option<ApplyReport> {
        let target = self.periods.values_mut().find(|d| d.id() == doc.hash32())?;
        let mut gate = Gate {
            ledger: Some(&mut self.ledger),
            group: Some(group_doc),
            decisions,
            // Period documents hold no signals, the only records judged
            // by the clock.
            now_ms: 0,
        };
        let report = target.apply_with(changes, &mut gate);
        self.settle();
        Some(report)
    }

    /// The period document with id `doc`.
    pub fn period_doc_mut(&mut self, doc: &DocId) -> Option<&mut SignedDoc> {
        self.periods.values_mut().find(|d| d.id() == doc.hash32())
    }

    /// Record the payments and closings of loaded period documents
    /// (trusted: this node checked them before storing them), then move the
    /// base up as far as it may go.
    pub fn absorb_loaded(&mut self) {
        let docs: Vec<&SignedDoc> = self.periods.values().collect();
        absorb(&mut self.ledger, &docs);
        self.settle();
    }

    /// After records reached the ledger: note if a late record needs what
    /// lies below the base (the node then reloads it with
    /// [`GroupLedger::reload`]), otherwise move the base up when a period
    /// has closed, dropping what lies below it from memory.
    pub fn settle(&mut self) {
        if let Some(period) = self.ledger.take_history_for() {
            self.history_wanted = Some(self.history_wanted.map_or(period, |p| p.min(period)));
            return;
        }
        let Some(newest) = self.ledger.newest_closed() else {
            return;
        };
        let Some(mut target) = newest.checked_sub(1) else {
            return;
        };
        match self.hold {
            Some((_, until)) if newest >= until => {
                self.hold = None;
                self.counted_from = None;
            }
            Some((late, _)) => match late.checked_sub(2) {
                Some(cap) => target = target.min(cap),
                // A base under the closings of period 0 would cut a record
                // of period 0 (or a closing of period 0, filed in period 1)
                // that saw less than they did: judged again, it would need
                // the history again, at every sync, for good.
                None => return,
            },
            None => {}
        }
        if let Some(base) = self.ledger.base_at(target) {
            self.pass_runs_below(base.period);
            self.ledger = self.ledger.rebased(base);
            self.rebased = true;
        }
    }

    /// Before the base jumps to `target`: move it through the first period
    /// of every run of [`CHECKPOINT_EVERY`] in between, and note each base
    /// (see `passed`). A base held down while late records came, then
    /// lifted at once, left no checkpoint between the old base and the new
    /// one, and the next late record was counted from the old one, further
    /// down each time (a node in a soak read back nearly all its history
    /// for a record a few periods late).
    fn pass_runs_below(&mut self, target: u64) {
        let from = self.ledger.base().period;
        let mut run = (from / CHECKPOINT_EVERY + 1) * CHECKPOINT_EVERY;
        while run < target {
            if let Some(base) = self.ledger.base_at(run) {
                self.ledger = self.ledger.rebased(base);
                let mut cold: Vec<u64> = self.cold.keys().copied().collect();
                cold.extend(self.coolable());
                cold.sort_unstable();
                self.passed.push((self.ledger.base().clone(), cold));
            }
            run += CHECKPOINT_EVERY;
        }
    }

    /// The bases passed on the way up since last asked (cleared).
    pub fn take_passed(&mut self) -> Vec<(Base, Vec<u64>)> {
        std::mem::take(&mut self.passed)
    }

    /// Whether a record needed the history below the base (cleared by
    /// [`GroupLedger::reload`] or [`GroupLedger::take_history_for`]).
    pub fn history_needed(&self) -> bool {
        self.history_wanted.is_some()
    }

    /// The lowest period a record that needed the history below the base
    /// is filed in (cleared).
    pub fn take_history_for(&mut self) -> Option<u64> {
        self.history_wanted.take()
    }

    /// Hold the base for records filed in `period` (see
    /// [`GroupLedger::hold`]), the newest closing held being `newest`.
    pub fn hold_for(&mut self, period: u64, newest: Option<u64>) {
        let until = newest.map_or(0, |n| n + 3);
        self.hold = match self.hold {
            Some((p, u)) => Some((p.min(period), u.max(until))),
            None => Some((period, until)),
        };
    }

    /// Whether a period was opened since the group was last listed.
    pub fn opened_since_listed(&self) -> bool {
        self.opened
    }

    /// The group is listed with every open period.
    pub fn listed(&mut self) {
        self.opened = false;
    }

    /// Whether the base moved (cleared).
    pub fn take_rebased(&mut self) -> bool {
        std::mem::take(&mut self.rebased)
    }

    /// Count every loaded period again from nothing (all periods must be
    /// loaded), and keep the base below the newest closing for a while.
    pub fn reload(&mut self) {
        let newest = self.ledger.newest_closed();
        let period = self.history_wanted.take().unwrap_or(0);
        tracing::info!(
            base = self.ledger.base().period,
            period,
            "a late ledger record needs older history: reloading it"
        );
        self.ledger = self.ledger.emptied();
        self.hold_for(period, newest);
        self.absorb_loaded();
    }

    /// Record the payments and closings of loaded period `period` alone
    /// (trusted), then move the base up as far as it may go: reading the
    /// periods back one at a time, in order, holds only the periods past
    /// the base in memory, whatever the length of the history.
    pub fn absorb_period(&mut self, period: u64) {
        if let Some(doc) = self.periods.get(&period) {
            absorb(&mut self.ledger, &[doc]);
        }
        self.settle();
    }

    /// Loaded periods whose every payment lies at or below the base.
    pub fn coolable(&self) -> Vec<u64> {
        let base = self.ledger.base();
        if base.heads.is_empty() {
            return Vec::new();
        }
        let held = self.ledger.periods();
        self.periods
            .keys()
            .filter(|p| **p <= base.period && !held.contains_key(p))
            .copied()
            .collect()
    }

    /// Unload period `period`, keeping its heads; returns them.
    pub fn cool(&mut self, period: u64) -> Option<Vec<Hash32>> {
        let doc = self.periods.remove(&period)?;
        let heads = doc.heads();
        self.cold.insert(period, heads.clone());
        Some(heads)
    }

    /// Load period `period` again (read back from the store).
    pub fn warm(&mut self, period: u64, doc: SignedDoc) {
        self.cold.remove(&period);
        absorb(&mut self.ledger, &[&doc]);
        self.periods.insert(period, doc);
    }
}

/// Record the payments and closings of `docs` in `ledger` (trusted).
/// Closings older than the base are of no use to it and are skipped.
pub fn absorb(ledger: &mut Ledger, docs: &[&SignedDoc]) {
    let mut payments = Vec::new();
    let mut closings = Vec::new();
    for doc in docs {
        for (id, record) in doc.records() {
            match RecordBody::decode(&record.body) {
                Ok(RecordBody::Payment(p)) => payments.push((*id, record.author, p)),
                Ok(RecordBody::PeriodClose(c)) => closings.push((*id, c)),
                _ => {}
            }
        }
    }
    ledger.insert_trusted(payments);
    let base = ledger.base().period;
    let rebased = !ledger.base().heads.is_empty();
    for (id, c) in closings {
        if !rebased || c.period >= base {
            ledger.insert_close(id, c);
        }
    }
}

/// The group document heads a ledger record written now cites: those
/// `group_doc` holds, at most [`MAX_GROUP_HEADS`] of them (a group
/// document with more concurrent heads than that is rare: the next change
/// of any member merges them; the node's own check then judges the record
/// by the roll at the heads kept).
pub fn group_heads_to_cite(group_doc: &SignedDoc) -> Vec<Hash32> {
    let mut heads = group_doc.heads();
    heads.sort_unstable();
    heads.truncate(MAX_GROUP_HEADS);
    heads
}

/// The gate through which a group's documents reach its ledger.
pub struct Gate<'a> {
    /// The ledger, when the group's genesis is known.
    pub ledger: Option<&'a mut Ledger>,
    /// The group's document, whose roll at the group heads a ledger record
    /// cites judges it (`None` while the group document itself changes:
    /// it holds no ledger period's records).
    pub group: Option<&'a SignedDoc>,
    /// Which proposals have passed (commons payouts, limit changes).
    pub decisions: &'a dyn PayoutGate,
    /// Now, by the node's clock: a signal that claims a later time (beyond
    /// a few minutes of clock skew) waits until then.
    pub now_ms: u64,
}

impl RecordGate for Gate<'_> {
    fn roll_at(&self, heads: &[Hash32]) -> Result<Arc<Roll>, Refusal> {
        match self.group {
            Some(doc) => doc.roll_at_heads(heads).map_err(Refusal::Missing),
            None => Err(Refusal::Missing(Vec::new())),
        }
    }

    fn now_ms(&self) -> Option<u64> {
        Some(self.now_ms)
    }

    fn admit(&mut self, author: &MemberId, id: Hash32, body: &RecordBody) -> Result<(), Refusal> {
        if let RecordBody::Signal(s) = body {
            if s.raised_at_ms > self.now_ms.saturating_add(CLOCK_SKEW_MS) {
                return Err(Refusal::Missing(Vec::new()));
            }
            return Ok(());
        }
        match self.ledger.as_deref_mut() {
            Some(ledger) => ledger.admit(author, id, body, self.decisions),
            None => Err(Refusal::Missing(Vec::new())),
        }
    }
}

/// The id of a period document.
pub fn period_id(group: &GroupId, period: u64) -> DocId {
    DocId::from(ledger_period_id(&group.hash32(), period))
}

/// A payment to sign: from `from` (the signer's own account, or the
/// commons on a passed proposal) to `to`, made at `made_at_ms` by the
/// payer's clock.
#[derive(Clone, Debug)]
pub struct PaymentOrder<'a> {
    /// Paid from.
    pub from: Account,
    /// Paid to.
    pub to: Account,
    /// Minor units.
    pub amount: u64,
    /// The memo.
    pub memo: &'a str,
    /// The passed proposal that orders it (a commons payout).
    pub proposal: Option<Hash32>,
    /// When, by the payer's clock.
    pub made_at_ms: u64,
}

/// What [`GroupLedger::sign_payment`] signed.
#[derive(Debug)]
pub struct SignedPayment {
    /// The closing of a full period signed first, if one was due: its
    /// period document's number and the change.
    pub closing: Option<(u64, SignedChange)>,
    /// The payment (its id, its period document's number and the change),
    /// or why the rules refuse it. A closing made on the way stays valid
    /// on its own either way.
    pub payment: Result<(Hash32, u64, SignedChange), RuleError>,
}

impl GroupLedger {
    /// Sign `order` as `writer`, as every member's node does: a full
    /// period is closed first (this member signs the balances at its cut,
    /// and the payment builds on them); the payment cites the heads of
    /// `group_doc` held here (peers judge payer and payee by the roll
    /// there) and is checked by the rules every peer applies before it is
    /// signed. `Err` if a record could not be signed (the engine refused
    /// it).
    #[allow(clippy::too_many_arguments)]
    pub fn sign_payment(
        &mut self,
        group: GroupId,
        writer: &Writer,
        group_doc: &SignedDoc,
        order: PaymentOrder<'_>,
        index: &mut HashMap<DocId, GroupId>,
        decisions: &dyn PayoutGate,
        now_ms: u64,
    ) -> Result<SignedPayment, crate::Error> {
        let members = group_doc.members();
        let group_heads = group_heads_to_cite(group_doc);
        let mut closing = None;
        if let Some(close) = self.ledger.close_due(group_heads.clone()) {
            let period = close.period + 1;
            let body = RecordBody::PeriodClose(close);
            let (_, change) = self.add_record(
                group, writer, group_doc, period, body, index, decisions, now_ms,
            )?;
            closing = Some((period, change));
        }
        let prepared = self.ledger.prepare(
            &writer.id(),
            order.from,
            order.to,
            order.amount,
            order.memo,
            order.proposal,
            order.made_at_ms,
            group_heads,
            &|m: &MemberId| members.contains(m),
            decisions,
        );
        let payment = match prepared {
            Ok(payment) => {
                let period = payment.period;
                let body = RecordBody::Payment(payment);
                let (id, change) = self.add_record(
                    group, writer, group_doc, period, body, index, decisions, now_ms,
                )?;
                Ok((id, period, change))
            }
            Err(e) => Err(e),
        };
        Ok(SignedPayment { closing, payment })
    }
}
