//! A busy ledger made in memory, fast, for the cost test and the ledger
//! benchmark: real keys, real signed payments and changes, real period
//! documents, no network and no disk.
//!
//! An **author** state makes payments (each member pays in turn, to a
//! member picked by a seeded generator, a few units, so no limit is hit)
//! and a **replica** state receives them the way a node receives them from
//! the network: verified and applied by `SignedDoc::apply_with` through the
//! ledger's gate.

use std::collections::{BTreeMap, HashMap};

use nestwork_core::{GroupId, Hash32, MemberId, SignedChange};
use nestwork_docs::group_ledger::{period_id, GroupLedger, PaymentOrder};
use nestwork_docs::ledger::{Account, NoProposals};
use nestwork_docs::{
    Admission, ApplyReport, Charter, GroupGenesis, GroupKind, RecordBody, Rules, SignedDoc, Writer,
};

use crate::key;

/// One side: the group document, its ledger and period documents.
#[derive(Clone)]
pub struct LedgerState {
    /// The group document.
    pub group: SignedDoc,
    /// The ledger and periods.
    pub ledger: GroupLedger,
    /// Keep every period loaded, so that a late payment can be judged
    /// against the history (a node reads it back from disk; here nothing
    /// is on disk).
    pub keeps_history: bool,
}

impl LedgerState {
    /// The state of a node holding `group` and no payment yet.
    pub fn of(group: SignedDoc) -> LedgerState {
        let ledger = GroupLedger::of_group(&group).expect("genesis");
        LedgerState {
            group,
            ledger,
            keeps_history: false,
        }
    }

    /// Apply changes of period `period` as a node applies a batch from
    /// the network.
    pub fn apply(&mut self, period: u64, changes: Vec<SignedChange>) -> ApplyReport {
        let id = self.group.id();
        self.ledger
            .periods
            .entry(period)
            .or_insert_with(|| SignedDoc::ledger_period(id, period).expect("period"));
        let report = self
            .ledger
            .apply_to(
                &period_id(&GroupId::from(id), period),
                &self.group,
                changes,
                &NoProposals,
            )
            .expect("open period");
        if self.ledger.history_needed() {
            self.ledger.reload();
        }
        self.ledger.take_rebased();
        self.ledger.take_passed();
        self.unload_old_periods();
        report
    }

    /// Drop the period documents wholly below the base, as a node unloads
    /// them (a node keeps them on disk; here they are simply gone).
    fn unload_old_periods(&mut self) {
        if self.keeps_history {
            return;
        }
        for period in self.ledger.coolable() {
            self.ledger.cool(period);
        }
    }
}

/// Sign a payment from `writer` to `to` as a node does: after the closing
/// of a full period when one is due, citing the heads of `group_doc` (the
/// group's document as the payer's node holds it). Returns the period and
/// the changes.
pub fn sign_payment(
    ledger: &mut GroupLedger,
    group: Hash32,
    writer: &Writer,
    group_doc: &SignedDoc,
    to: MemberId,
    amount: u64,
    memo: &str,
) -> (u64, Vec<SignedChange>) {
    let order = PaymentOrder {
        from: Account::Member(writer.id()),
        to: Account::Member(to),
        amount,
        memo,
        proposal: None,
        made_at_ms: 1,
    };
    let now = nestwork_node::Clock::default().now_ms();
    let signed = ledger
        .sign_payment(
            GroupId::from(group),
            writer,
            group_doc,
            order,
            &mut HashMap::new(),
            &NoProposals,
            now,
        )
        .expect("sign");
    let (_, period, payment) = signed.payment.expect("a payment within the rules");
    let mut changes: Vec<SignedChange> = signed.closing.into_iter().map(|(_, c)| c).collect();
    changes.push(payment);
    (period, changes)
}

/// A group with `members` members and a ledger cut into periods of
/// `period_payments`.
pub struct LedgerSim {
    writers: Vec<Writer>,
    /// Where payments are made.
    pub author: LedgerState,
    /// Where they are received.
    pub replica: LedgerState,
    next_payer: usize,
    /// Members who pay, in turn: the first `payers` (all by default); the
    /// others only receive.
    pub payers: usize,
    rng: u64,
}

impl LedgerSim {
    /// A new group; member 0 (seed 1) founds it and admits the others.
    pub fn new(members: usize, period_payments: u32) -> LedgerSim {
        let writers: Vec<Writer> = (0..members)
            .map(|i| Writer::new(key(i as u8 + 1), [1; 8]))
            .collect();
        let genesis = GroupGenesis {
            name: "Busy ledger".into(),
            kind: GroupKind::Hub,
            parent: None,
            unit: "hours".into(),
            created_at_ms: 1,
            nonce: [7; 16],
            charter: Charter {
                rules: Rules {
                    ledger_period_payments: period_payments,
                    ..Rules::default()
                },
                ..Charter::default()
            },
        };
        let (mut group, _) = SignedDoc::create_group(&writers[0], genesis, 1).expect("group");
        let gid = group.group();
        for (i, w) in writers.iter().enumerate().skip(1) {
            let admission = RecordBody::Admission(Admission::self_issued(
                writers[0].key(),
                &gid,
                w.id(),
                Hash32::of(&[i as u8]),
                1,
            ));
            group
                .add_record(&writers[0], admission, &mut nestwork_docs::NoLedger, 1)
                .expect("admit");
        }
        LedgerSim {
            author: LedgerState::of(group.clone()),
            replica: LedgerState::of(group),
            payers: writers.len(),
            writers,
            next_payer: 0,
            rng: 0x9e37_79b9_7f4a_7c15,
        }
    }

    /// Member `i`'s writer (key and device).
    pub fn writer(&self, i: usize) -> &Writer {
        &self.writers[i]
    }

    /// The member ids.
    pub fn members(&self) -> Vec<MemberId> {
        self.writers.iter().map(Writer::id).collect()
    }

    fn random(&mut self) -> u64 {
        // xorshift64: deterministic, no dependency.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// Make the next payment on the author side, after the closing of a
    /// full period when one is due, as a node does: (period, signed
    /// changes).
    pub fn pay(&mut self) -> (u64, Vec<SignedChange>) {
        let n = self.writers.len();
        let payer = self.next_payer % self.payers.clamp(1, n);
        self.next_payer = (payer + 1) % self.payers.clamp(1, n);
        let payee = (payer + 1 + (self.random() as usize % (n - 1))) % n;
        let amount = 1 + self.random() % 3;
        let writer = self.writers[payer].clone();
        let to = self.writers[payee].id();
        let state = &mut self.author;
        let (period, changes) = sign_payment(
            &mut state.ledger,
            state.group.id(),
            &writer,
            &state.group,
            to,
            amount,
            "",
        );
        state.unload_old_periods();
        (period, changes)
    }

    /// Make `count` payments and deliver them to the replica in batches of
    /// `batch`.
    pub fn grow(&mut self, count: usize, batch: usize) {
        let mut pending: BTreeMap<u64, Vec<SignedChange>> = BTreeMap::new();
        let mut queued = 0;
        for _ in 0..count {
            let (period, changes) = self.pay();
            pending.entry(period).or_default().extend(changes);
            queued += 1;
            if queued >= batch {
                self.deliver(&mut pending);
                queued = 0;
            }
        }
        self.deliver(&mut pending);
    }

    fn deliver(&mut self, pending: &mut BTreeMap<u64, Vec<SignedChange>>) {
        for (period, changes) in std::mem::take(pending) {
            let report = self.replica.apply(period, changes);
            assert!(
                report.rejected.is_empty() && report.missing_deps.is_empty(),
                "history applies cleanly: {:?}",
                report.rejected.first()
            );
        }
    }

    /// Changes made elsewhere (a late member's payment) reach the author
    /// side, so its later closings cover them. It must keep its history
    /// (`author.keeps_history`) to judge a late one: the first apply counts
    /// the history again, the second takes it.
    pub fn author_receives(&mut self, period: u64, changes: Vec<SignedChange>) {
        let state = &mut self.author;
        let first = state.apply(period, changes.clone());
        let report = if first.missing_deps.is_empty() {
            first
        } else {
            state.apply(period, changes)
        };
        assert!(
            report.rejected.is_empty() && report.missing_deps.is_empty(),
            "changes made elsewhere apply: {:?}",
            report.rejected.first()
        );
    }

    /// Payments the replica holds.
    pub fn len(&self) -> usize {
        self.replica.ledger.ledger.len()
    }

    /// Payments the replica holds in memory (past its base).
    pub fn held(&self) -> usize {
        self.replica.ledger.ledger.held()
    }

    /// Whether the replica holds no payment.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
