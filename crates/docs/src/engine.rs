//! [`SignedDoc`]: an Automerge document whose every change is signed and
//! checked before it is applied.
//!
//! The check of a change, in order:
//! 1. the envelope: it names this document, it is within the size limits
//!    the store reads back with ([`nestwork_core::limits`]), its signature
//!    verifies (batch verification for the whole batch), its bytes parse as
//!    an Automerge change (a compressed one is inflated under the size
//!    limit first, a decoder panic is caught and becomes a rejection) and hash to the signed hash, and its actor id is the
//!    author's key plus a device tag;
//! 2. causality: its dependencies are in the document or earlier in the batch
//!    (otherwise it waits, reported as missing dependencies, and is neither
//!    applied nor stored);
//! 3. structure, op by op: only the first change of a document may touch the
//!    top level (to create `records` and `free`); in `records`, only puts of
//!    a new key whose value is a valid signed record hashing to that key and
//!    signed by the change's author (a delete or an overwrite is rejected);
//!    anything else must lie under `free`;
//! 4. authority: the author of any change after the first is on the roll
//!    at the change's causal past (its dependencies), so a member who left
//!    or was removed is refused on every node whatever the delivery order
//!    (see `engine/roll.rs`). A ledger period has no roll of its own: each
//!    of its changes carries a payment or a period closing that cites the
//!    group document's heads its author held, and the author (and a
//!    payment's payee) must be on the group's roll there, computed as for
//!    a group change depending on those heads; a change citing heads this
//!    node does not hold yet waits for them;
//! 5. the kind's rules for each new record ([`crate::rules`]).
//!
//! The verdict depends only on the change and its causal past, so every
//! node reaches the same one. Accepted changes are applied with one
//! `apply_changes` call per batch.
//!
//! This file holds the document, its loading and the batch apply
//! ([`SignedDoc::apply_with`]); beside it: `check.rs` (the checks above),
//! `write.rs` (a member's own writes, checked the same way), `read.rs`
//! (what a document says), `roll.rs` (the roll at a causal past),
//! `bytes.rs` (untrusted change bytes), `stored.rs` (what loads after
//! damage), `drafts.rs` (proposal drafts).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use automerge::legacy::{Key, ObjectId, OpType};
use automerge::transaction::{CommitOptions, Transactable};
use automerge::{
    ActorId, Automerge, Change, ChangeHash, ObjId, ObjType, ReadDoc, ScalarValue, ScalarValueRef,
    Value, ValueRef, ROOT,
};
use nestwork_core::limits::{MAX_CHANGE_DATA_BYTES, MAX_CHANGE_OPS};
use nestwork_core::{GroupId, Hash32, MemberId, MemberKey, SignalId, SignedChange, SignedRecord};

mod bytes;
mod check;
mod drafts;
mod read;
mod roll;
mod stored;
mod write;
use bytes::parse_change;
use check::check_claimed_time;
pub use drafts::Draft;
pub use roll::Roll;
pub use stored::{loadable, StoredGraph};

use crate::ledger::Refusal;
use crate::record::governance::{Decision, Vote};
use crate::record::{GroupGenesis, RecordBody};
use crate::rules::{self, RecordContext, RuleError};
use crate::Error;

/// How many refused forks a document keeps as proof (each is at most one
/// change envelope).
pub const MAX_FORK_PROOFS: usize = 64;

/// Top-level key of the insert-only record map.
pub const RECORDS_KEY: &str = "records";
/// Top-level key of the free-form collaborative area.
pub const FREE_KEY: &str = "free";
/// Key of the description text inside `free`.
pub const DESCRIPTION_KEY: &str = "description";

/// A member writing from one device: the key that signs, and the device tag
/// that makes the Automerge actor id unique per device.
#[derive(Clone, Debug)]
pub struct Writer {
    key: MemberKey,
    device: [u8; 8],
}

impl Writer {
    /// A writer for `key` on the device tagged `device`.
    pub fn new(key: MemberKey, device: [u8; 8]) -> Self {
        Writer { key, device }
    }

    /// The member id.
    pub fn id(&self) -> MemberId {
        self.key.id()
    }

    /// The signing key.
    pub fn key(&self) -> &MemberKey {
        &self.key
    }

    /// The Automerge actor id: the 32-byte public key, then the device tag.
    pub fn actor(&self) -> ActorId {
        let mut bytes = self.key.id().0.to_vec();
        bytes.extend_from_slice(&self.device);
        ActorId::from(bytes)
    }
}

/// Why one change was refused.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Rejection {
    /// The change's claimed hash (hex).
    pub change: String,
    /// The change's claimed author.
    pub author: String,
    /// What rule it broke.
    pub reason: String,
}

/// Whether change bytes are a document's first change (no dependencies).
pub fn is_first_change(bytes: &[u8]) -> bool {
    parse_change(bytes).is_ok_and(|c| c.deps().is_empty())
}

/// What happened to a batch of incoming changes.
#[derive(Debug, Default)]
pub struct ApplyReport {
    /// Accepted and applied, in causal order: these are the ones to store.
    pub applied: Vec<SignedChange>,
    /// Already present; nothing to do.
    pub duplicates: usize,
    /// Valid so far but waiting for dependencies we do not have.
    pub missing_deps: Vec<SignedChange>,
    /// Refused, each with its reason. Nothing of these was applied.
    pub rejected: Vec<Rejection>,
    /// Those of `rejected` refused only because they fork an actor's
    /// history: their (actor, sequence number) is held with other content
    /// (an author equivocating, or two devices sharing one copied data
    /// directory), or they build on such a change. Each is validly signed,
    /// so whoever forwarded it did nothing wrong; with the change held for
    /// the same pair, it is the author's proof.
    pub forked: Vec<SignedChange>,
}

impl ApplyReport {
    /// Add the outcome of a later batch.
    pub fn merge(&mut self, other: ApplyReport) {
        self.applied.extend(other.applied);
        self.duplicates += other.duplicates;
        self.missing_deps.extend(other.missing_deps);
        self.rejected.extend(other.rejected);
        self.forked.extend(other.forked);
    }
}

/// An object id in the form legacy ops use: (counter, actor).
type OpKey = (u64, ActorId);

/// A signed document and what is derived from its records.
#[derive(Clone)]
pub struct SignedDoc {
    id: Hash32,
    doc: Automerge,
    /// Signature of every change, by change hash, so that changes can be
    /// handed on with their proof.
    signatures: HashMap<ChangeHash, Vec<u8>>,
    records_obj: Option<OpKey>,
    free_obj: Option<OpKey>,
    /// Objects known to lie under `free` (filled as they are checked).
    free_objects: HashSet<OpKey>,
    /// Every record in the document, verified, by id.
    records: BTreeMap<Hash32, SignedRecord>,
    /// The roll at the document's heads (it shrinks when members leave or
    /// are removed).
    members: BTreeSet<MemberId>,
    /// Everyone who was ever admitted (their accounts stay on the books).
    ever: BTreeSet<MemberId>,
    /// Newcomers awaiting an entry vote at the heads.
    awaiting: BTreeSet<MemberId>,
    /// The roll at each change's causal past (group documents only).
    roll: roll::RollIndex,
    /// For a ledger period document: its group and period number.
    ledger: Option<(Hash32, u64)>,
    /// The change held for each (actor, sequence number). Automerge holds
    /// one change per pair and refuses a whole batch that brings a second,
    /// so a second one is found here and refused on its own.
    seqs: HashMap<(ActorId, u64), ChangeHash>,
    /// Changes refused for forking an actor's history: the proof, with the
    /// held change of the same pair, that their author signed two (the
    /// first [`MAX_FORK_PROOFS`] kept).
    forks: Vec<SignedChange>,
    /// Distress signals and answers, indexed for the engine's checks.
    distress: DistressIndex,
    /// The group's seal key records (id, author, body).
    seal_keys: BTreeMap<Hash32, (MemberId, crate::seal::SealKey)>,
    /// The ids of the records of a group document, in the order it took
    /// them: what its kept governance timeline has still to take.
    taken: Vec<Hash32>,
    /// The group's governance timeline, kept from one view to the next.
    timeline: KeptTimeline,
}

/// A governance timeline and how many of the document's `taken` records
/// it has taken. Behind a lock so that a view (which reads the document)
/// can move it on.
#[derive(Default)]
struct KeptTimeline(std::sync::Mutex<Option<(usize, crate::governance::Timeline)>>);

impl Clone for KeptTimeline {
    fn clone(&self) -> Self {
        let kept = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        KeptTimeline(std::sync::Mutex::new(kept.clone()))
    }
}

/// What the engine looks up when it checks distress records.
#[derive(Clone, Default)]
struct DistressIndex {
    /// Each member's signals by sequence number.
    chain: HashMap<(MemberId, u64), SignalId>,
    /// Every signal the group holds (its own and escalated in), with its raiser.
    signals: HashMap<SignalId, MemberId>,
    /// Who has responded to which signal.
    responders: HashSet<(SignalId, MemberId)>,
    /// Each member's newest signal: its number and id.
    heads: HashMap<MemberId, (u64, SignalId)>,
}

impl DistressIndex {
    fn absorb(&mut self, id: Hash32, author: MemberId, body: &RecordBody) {
        match body {
            RecordBody::Signal(s) => {
                // A signal's id is its record's.
                let id = SignalId::from(id);
                self.chain.entry((author, s.seq)).or_insert(id);
                self.signals.insert(id, author);
                let head = self.heads.entry(author).or_insert((s.seq, id));
                if s.seq > head.0 {
                    *head = (s.seq, id);
                }
            }
            RecordBody::Escalation(e) => {
                if let Ok((record, _)) = e.signal() {
                    self.signals
                        .insert(SignalId::from(record.id()), record.author);
                }
            }
            RecordBody::Answer(a) => {
                if matches!(a.kind, crate::distress::AnswerKind::Respond { .. }) {
                    self.responders.insert((a.signal, author));
                }
            }
            RecordBody::CarriedAnswer(c) => {
                if let Ok(k) = c.check() {
                    if matches!(k.answer.kind, crate::distress::AnswerKind::Respond { .. }) {
                        self.responders.insert((k.answer.signal, k.by));
                    }
                }
            }
            _ => {}
        }
    }

    fn extend(&mut self, other: DistressIndex) {
        for (k, v) in other.chain {
            self.chain.entry(k).or_insert(v);
        }
        self.signals.extend(other.signals);
        self.responders.extend(other.responders);
        for (member, (seq, id)) in other.heads {
            let head = self.heads.entry(member).or_insert((seq, id));
            if seq > head.0 {
                *head = (seq, id);
            }
        }
    }
}

/// The records a record may refer to: those in its change's causal past
/// (a change received), or the whole document (a record signed here,
/// whose change depends on every head).
#[derive(Clone, Copy)]
enum Past<'a> {
    Set(&'a roll::RollIndex, roll::SetId),
    Document,
}

/// The id of period `period` of `group`'s ledger.
pub fn ledger_period_id(group: &Hash32, period: u64) -> Hash32 {
    Hash32::of_parts(&[
        b"nestwork/ledger-period/v1",
        &group.0,
        &period.to_be_bytes(),
    ])
}

/// What a batch adds, gathered while checking and merged into the document
/// only once the batch has been applied.
#[derive(Default)]
struct Pending {
    records_obj: Option<OpKey>,
    free_obj: Option<OpKey>,
    free_objects: HashSet<OpKey>,
    records: BTreeMap<Hash32, SignedRecord>,
    /// Roll records the change carries (the batch's total is unused).
    roll_records: Vec<SignedRecord>,
    genesis_seen: bool,
    distress: DistressIndex,
    /// Records the change carries that the gate judges (ledger records, signals).
    gated: Vec<(Hash32, RecordBody)>,
    /// The times the change's new records claim, with their kinds (the
    /// batch's total is unused).
    claims: Vec<(u64, &'static str)>,
    /// In a ledger period: the ledger records the change puts (new or put
    /// again), whose cited group heads judge its author (the batch's total
    /// is unused).
    cited: Vec<RecordBody>,
}

impl Pending {
    /// Note a new record `author` put for what is judged once the change
    /// is checked: the gate (ledger records, signals) and the distress
    /// index (signals, answers, escalations).
    fn note(&mut self, id: Hash32, author: MemberId, body: RecordBody) {
        match body {
            RecordBody::Payment(_) | RecordBody::CreditLimit(_) | RecordBody::PeriodClose(_) => {
                self.gated.push((id, body));
            }
            RecordBody::Signal(_) => {
                self.distress.absorb(id, author, &body);
                self.gated.push((id, body));
            }
            RecordBody::Answer(_) | RecordBody::Escalation(_) | RecordBody::CarriedAnswer(_) => {
                self.distress.absorb(id, author, &body);
            }
            RecordBody::GroupGenesis(_)
            | RecordBody::Admission(_)
            | RecordBody::LegacyAdmission(_)
            | RecordBody::Proposal(_)
            | RecordBody::Vote(_)
            | RecordBody::Decision(_)
            | RecordBody::Exit(_)
            | RecordBody::CharterEdit(_)
            | RecordBody::Delegation(_)
            | RecordBody::Counterpart(_)
            | RecordBody::SealKey(_) => {}
        }
    }

    fn absorb(&mut self, other: Pending) {
        self.records_obj = self.records_obj.take().or(other.records_obj);
        self.free_obj = self.free_obj.take().or(other.free_obj);
        self.free_objects.extend(other.free_objects);
        self.records.extend(other.records);
        self.genesis_seen |= other.genesis_seen;
        self.distress.extend(other.distress);
    }
}

/// Why a change is not accepted now.
enum Hold {
    /// It breaks a rule.
    Reject(String),
    /// It may be valid once something it relies on arrives.
    Wait,
}

/// What a document needs from outside itself: the group's roll at the
/// group heads a ledger record cites (for a ledger period, whose roll is
/// the group's) and the ledger, which judges and records payments and
/// limit changes. A change carries at most one ledger record; the gate
/// sees it only after every other check passed, so a record it accepts
/// belongs to a change that will be applied.
pub trait RecordGate {
    /// The group's roll at the group document's `heads` (see
    /// [`SignedDoc::roll_at_heads`]); [`Refusal::Missing`] while a head is
    /// not held here (the record waits for it).
    fn roll_at(&self, heads: &[Hash32]) -> Result<Arc<Roll>, Refusal>;
    /// Judge a ledger record; if it is valid, record it.
    fn admit(&mut self, author: &MemberId, id: Hash32, body: &RecordBody) -> Result<(), Refusal>;
    /// Now, by the node's clock: records that claim a later time wait
    /// (`None`: no clock, as in tests and tools; nothing waits).
    fn now_ms(&self) -> Option<u64> {
        None
    }
}

/// The gate for documents that carry no ledger records and whose roll is
/// their own (tests and tools).
pub struct NoLedger;

impl RecordGate for NoLedger {
    fn roll_at(&self, _: &[Hash32]) -> Result<Arc<Roll>, Refusal> {
        Err(Refusal::Broken(RuleError(
            "this document belongs to no group's ledger, so no group roll judges it".into(),
        )))
    }
    fn admit(&mut self, _: &MemberId, _: Hash32, body: &RecordBody) -> Result<(), Refusal> {
        if let RecordBody::Signal(_) = body {
            return Ok(());
        }
        Err(Refusal::Broken(RuleError(format!(
            "this document keeps no ledger, so a {} has no place in it",
            body.kind_name()
        ))))
    }
}

impl SignedDoc {
    /// An empty document with the given id, waiting for its first change.
    pub fn empty(id: Hash32) -> Self {
        SignedDoc {
            id,
            doc: Automerge::new(),
            signatures: HashMap::new(),
            records_obj: None,
            free_obj: None,
            free_objects: HashSet::new(),
            records: BTreeMap::new(),
            members: BTreeSet::new(),
            ever: BTreeSet::new(),
            awaiting: BTreeSet::new(),
            roll: roll::RollIndex::default(),
            ledger: None,
            seqs: HashMap::new(),
            forks: Vec::new(),
            distress: DistressIndex::default(),
            seal_keys: BTreeMap::new(),
            taken: Vec::new(),
            timeline: KeptTimeline::default(),
        }
    }

    /// Period `period` of `group`'s ledger, opened. Its first change is the
    /// same bytes on every node (a fixed actor derived from the document
    /// id, time zero, creating the records and free parts), so no one
    /// authors it, no one can open it differently, and it is never sent.
    pub fn ledger_period(group: Hash32, period: u64) -> Result<SignedDoc, Error> {
        let id = ledger_period_id(&group, period);
        let mut actor = id.0.to_vec();
        actor.extend_from_slice(&[0; 8]);
        let mut doc = Automerge::new().with_actor(ActorId::from(actor));
        doc.transact_with(
            |_| CommitOptions::default().with_time(0),
            |tx| -> Result<(), automerge::AutomergeError> {
                tx.put_object(ROOT, RECORDS_KEY, ObjType::Map)?;
                tx.put_object(ROOT, FREE_KEY, ObjType::Map)?;
                Ok(())
            },
        )
        .map_err(|f| f.error)?;
        let opening = doc
            .get_last_local_change()
            .ok_or_else(|| Error::Malformed(id.to_hex(), "the opening change is empty".into()))?;
        let mut period_doc = SignedDoc::empty(id);
        period_doc.signatures.insert(opening.hash(), Vec::new());
        period_doc.note_seq(&opening);
        period_doc.doc = doc;
        period_doc.ledger = Some((group, period));
        period_doc.rebuild_derived()?;
        Ok(period_doc)
    }

    /// Found a new group: sign its genesis record and make the first change
    /// of its document. The change goes through the same checks as any
    /// change received from a peer.
    pub fn create_group(
        writer: &Writer,
        genesis: GroupGenesis,
        now_ms: u64,
    ) -> Result<(SignedDoc, SignedChange), Error> {
        let body = RecordBody::GroupGenesis(genesis);
        rules::check_record(
            &body,
            &RecordContext {
                group: GroupId::from(Hash32([0; 32])),
                author: writer.id(),
                in_genesis_change: true,
                ledger_period: None,
            },
        )?;
        let record = SignedRecord::sign(writer.key(), body.encode());
        let id = record.id();

        let mut doc = Automerge::new().with_actor(writer.actor());
        doc.transact_with(
            |_| CommitOptions::default().with_time(now_ms as i64),
            |tx| -> Result<(), automerge::AutomergeError> {
                let records = tx.put_object(ROOT, RECORDS_KEY, ObjType::Map)?;
                let free = tx.put_object(ROOT, FREE_KEY, ObjType::Map)?;
                tx.put(&records, id.to_hex(), ScalarValue::Bytes(record.encode()))?;
                tx.put_object(&free, DESCRIPTION_KEY, ObjType::Text)?;
                Ok(())
            },
        )
        .map_err(|f| f.error)?;
        let change = doc
            .get_last_local_change()
            .ok_or_else(|| Error::Malformed(id.to_hex(), "the genesis change is empty".into()))?;
        let signed = sign_change(writer, id, change);

        let mut group = SignedDoc::empty(id);
        let report = group.apply(vec![signed.clone()]);
        if let Some(r) = report.rejected.first() {
            return Err(Error::Malformed(id.to_hex(), r.reason.clone()));
        }
        group.doc.set_actor(writer.actor());
        Ok((group, signed))
    }

    /// Rebuild a document from changes this node stored itself, in the
    /// order it stored them. They were checked before they were stored, so
    /// only their envelopes are parsed here; this keeps start-up fast.
    pub fn load_trusted(id: Hash32, stored: Vec<SignedChange>) -> Result<SignedDoc, Error> {
        SignedDoc::empty(id).load_onto(stored)
    }

    /// Rebuild period `period` of `group`'s ledger from stored changes, as
    /// [`SignedDoc::load_trusted`] does.
    pub fn load_ledger_period(
        group: Hash32,
        period: u64,
        stored: Vec<SignedChange>,
    ) -> Result<SignedDoc, Error> {
        SignedDoc::ledger_period(group, period)?.load_onto(stored)
    }

    fn load_onto(self, stored: Vec<SignedChange>) -> Result<SignedDoc, Error> {
        let id = self.id;
        let mut doc = self;
        let mut changes = Vec::with_capacity(stored.len());
        let mut shapes = Vec::with_capacity(stored.len());
        for s in &stored {
            let change = parse_change(&s.change).map_err(|e| {
                Error::Malformed(id.to_hex(), format!("stored change {}: {e}", s.hash))
            })?;
            doc.signatures.insert(change.hash(), s.signature.clone());
            shapes.push(ChangeShape {
                hash: change.hash(),
                deps: change.deps().to_vec(),
                actor: change.actor_id().clone(),
                ops: change.start_op().get()..change.max_op() + 1,
            });
            doc.note_seq(&change);
            changes.push(change);
        }
        doc.doc.apply_changes(changes)?;
        doc.rebuild_derived()?;
        doc.rebuild_roll(shapes)?;
        Ok(doc)
    }

    /// Recompute the roll records in each stored change's causal past. A
    /// record's change is found from the id of the op that put it, so no
    /// change's operations are decoded.
    fn rebuild_roll(&mut self, shapes: Vec<ChangeShape>) -> Result<(), Error> {
        if self.ledger.is_some() {
            return Ok(());
        }
        let records = self.records_exid()?;
        let mut by_actor: HashMap<ActorId, Vec<(std::ops::Range<u64>, ChangeHash)>> =
            HashMap::new();
        for shape in &shapes {
            by_actor
                .entry(shape.actor.clone())
                .or_default()
                .push((shape.ops.clone(), shape.hash));
        }
        for v in by_actor.values_mut() {
            v.sort_by_key(|(ops, _)| ops.start);
        }
        let change_of = |op: &ObjId| match op {
            ObjId::Id(counter, actor, _) => by_actor.get(actor).and_then(|v| {
                let i = v.partition_point(|(ops, _)| ops.end <= *counter);
                v.get(i)
                    .filter(|(ops, _)| ops.contains(counter))
                    .map(|(_, hash)| *hash)
            }),
            ObjId::Root => None,
        };
        let mut own: HashMap<ChangeHash, Vec<SignedRecord>> = HashMap::new();
        for (id, record) in &self.records {
            let Ok(body) = RecordBody::decode(&record.body) else {
                continue;
            };
            if !roll::is_roll_record(&body) {
                continue;
            }
            // Every put of the record (two devices may put the same one).
            for (_, op) in self.doc.get_all(&records, id.to_hex())? {
                if let Some(hash) = change_of(&op) {
                    own.entry(hash).or_default().push(record.clone());
                }
            }
        }
        // Stored changes come in causal order; a change whose dependencies
        // are not done yet is tried again after the others.
        let mut todo = shapes;
        loop {
            let before = todo.len();
            let mut later = Vec::new();
            for shape in todo {
                match self.roll.union_of_deps(&shape.deps, &HashMap::new()) {
                    Some(base) => {
                        let mine = own.get(&shape.hash).map(Vec::as_slice).unwrap_or(&[]);
                        let set = self.roll.with_records(base, mine);
                        self.roll.set_past(shape.hash, set);
                    }
                    None => later.push(shape),
                }
            }
            if later.is_empty() {
                break;
            }
            if later.len() == before {
                return Err(Error::Malformed(
                    self.id.to_hex(),
                    "stored changes depend on changes that are not stored".into(),
                ));
            }
            todo = later;
        }
        self.refresh_roll();
        Ok(())
    }

    /// Set the actor used for local changes made on this device.
    pub fn set_writer(&mut self, writer: &Writer) {
        self.doc.set_actor(writer.actor());
    }

    /// Check a batch of incoming changes to a document that keeps no
    /// ledger records and apply the valid ones in one step.
    pub fn apply(&mut self, incoming: Vec<SignedChange>) -> ApplyReport {
        self.apply_with(incoming, &mut NoLedger)
    }

    /// Check a batch of incoming changes and apply the valid ones in one
    /// step, with `gate` judging ledger records. Invalid changes change
    /// nothing.
    pub fn apply_with(
        &mut self,
        incoming: Vec<SignedChange>,
        gate: &mut dyn RecordGate,
    ) -> ApplyReport {
        let mut report = ApplyReport::default();
        let verdicts = SignedChange::verify_all(&incoming);

        // 1. Envelopes.
        let mut candidates: Vec<(SignedChange, Change)> = Vec::new();
        let mut seen: HashSet<ChangeHash> = HashSet::new();
        for (signed, verdict) in incoming.into_iter().zip(verdicts) {
            match self.check_envelope(&signed, verdict) {
                Err(reason) => report.rejected.push(rejection(&signed, reason)),
                Ok(change) => {
                    let hash = change.hash();
                    if self.has_change(&hash) || !seen.insert(hash) {
                        report.duplicates += 1;
                    } else {
                        candidates.push((signed, change));
                    }
                }
            }
        }
        // A second change for an (actor, seq) pair forks that actor's
        // history. The one held stays; within the batch the lowest hash is
        // kept, whatever order the batch came in.
        let mut lowest: HashMap<(ActorId, u64), ChangeHash> = HashMap::new();
        for (_, change) in &candidates {
            let slot = lowest
                .entry((change.actor_id().clone(), change.seq()))
                .or_insert(change.hash());
            *slot = (*slot).min(change.hash());
        }
        let mut forked: HashSet<ChangeHash> = HashSet::new();
        candidates.retain(|(signed, change)| {
            let pair = (change.actor_id().clone(), change.seq());
            let held = self.seqs.get(&pair).copied();
            if held.is_none() && lowest.get(&pair) == Some(&change.hash()) {
                return true;
            }
            let reason = match held {
                Some(h) => format!(
                    "it forks its device's history: change {} already holds sequence number {}",
                    Hash32(h.0).short(),
                    change.seq()
                ),
                None => format!(
                    "it forks its device's history: another change of this batch has sequence number {}",
                    change.seq()
                ),
            };
            tracing::warn!(doc = %self.id.short(), change = %signed.hash.short(), author = %signed.author, "{reason}");
            report.rejected.push(rejection(signed, reason));
            report.forked.push(signed.clone());
            forked.insert(change.hash());
            false
        });

        // 2-5. Causal order (Kahn's algorithm over the batch), then rules.
        let index: HashMap<ChangeHash, usize> = candidates
            .iter()
            .enumerate()
            .map(|(i, (_, c))| (c.hash(), i))
            .collect();
        let mut waiting_on: Vec<usize> = vec![0; candidates.len()];
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); candidates.len()];
        let mut missing: Vec<bool> = vec![false; candidates.len()];
        let mut on_fork: Vec<usize> = Vec::new();
        for (i, (_, change)) in candidates.iter().enumerate() {
            for dep in change.deps() {
                if let Some(&j) = index.get(dep) {
                    waiting_on[i] += 1;
                    dependents[j].push(i);
                } else if forked.contains(dep) {
                    on_fork.push(i);
                } else if !self.has_change(dep) {
                    tracing::debug!(doc = %self.id.short(), change = %Hash32(change.hash().0).short(), dep = %Hash32(dep.0).short(), "a change waits for a change this node lacks");
                    missing[i] = true;
                }
            }
        }
        let mut ready: Vec<usize> = (0..candidates.len())
            .filter(|&i| waiting_on[i] == 0 && !missing[i])
            .collect();
        let mut pending = Pending::default();
        let mut accepted: Vec<usize> = Vec::new();
        let mut fate: Vec<Fate> = vec![Fate::Waiting; candidates.len()];
        // The roll index is taken out while the batch is checked (it caches
        // as it goes); the sets of accepted changes join it once applied.
        let mut roll_index = std::mem::take(&mut self.roll);
        let mut batch_past: HashMap<ChangeHash, roll::SetId> = HashMap::new();
        for i in on_fork {
            fate[i] = Fate::OnFork;
            mark_dependents_refused(i, &dependents, &mut fate, Fate::OnFork);
        }
        ready.retain(|&i| fate[i] == Fate::Waiting);
        while let Some(i) = ready.pop() {
            let (signed, change) = &candidates[i];
            let checked = self.check_change(
                signed.author,
                change,
                &pending,
                gate,
                &mut roll_index,
                &batch_past,
            );
            match checked {
                Ok((added, set)) => {
                    if let Some(set) = set {
                        batch_past.insert(change.hash(), set);
                    }
                    pending.absorb(added);
                    accepted.push(i);
                    fate[i] = Fate::Accepted;
                    for &d in &dependents[i] {
                        waiting_on[d] -= 1;
                        if waiting_on[d] == 0 && !missing[d] {
                            ready.push(d);
                        }
                    }
                }
                Err(Hold::Wait) => {}
                Err(Hold::Reject(reason)) => {
                    tracing::debug!(doc = %self.id.short(), change = %signed.hash.short(), %reason, "change rejected");
                    report.rejected.push(rejection(signed, reason));
                    fate[i] = Fate::Rejected;
                    mark_dependents_refused(i, &dependents, &mut fate, Fate::DependsOnRejected);
                }
            }
        }
        self.roll = roll_index;
        for (i, (signed, _)) in candidates.iter().enumerate() {
            match fate[i] {
                Fate::Accepted | Fate::Rejected => {}
                Fate::DependsOnRejected => report.rejected.push(rejection(
                    signed,
                    "depends on a rejected change".to_string(),
                )),
                Fate::OnFork => {
                    report.rejected.push(rejection(
                        signed,
                        "builds on a change that forks its device's history".to_string(),
                    ));
                    report.forked.push(signed.clone());
                }
                Fate::Waiting => report.missing_deps.push(signed.clone()),
            }
        }

        if accepted.is_empty() {
            self.keep_fork_proofs(&report.forked);
            return report;
        }
        let changes: Vec<Change> = accepted.iter().map(|&i| candidates[i].1.clone()).collect();
        // Automerge 0.12 can panic while applying a change it parsed (the
        // fuzzer found a member's change that fails an assertion in its
        // batch apply), and may leave the document half-changed when it
        // does: apply to the document as it was, kept aside, and put it
        // back if Automerge fails.
        let before = self.doc.clone();
        let applied = catch_unwind(AssertUnwindSafe(|| self.doc.apply_changes(changes)));
        let failure = match applied {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some("the decoder failed on it".to_string()),
        };
        if let Some(e) = failure {
            self.doc = before;
            // Every change was parsed and ordered above, so this is a bug
            // in Automerge or the engine; refuse the whole batch rather
            // than half-apply.
            for &i in &accepted {
                report.rejected.push(rejection(
                    &candidates[i].0,
                    format!("document engine refused it: {e}"),
                ));
            }
            return report;
        }
        for (hash, set) in batch_past {
            self.roll.set_past(hash, set);
        }
        self.merge(pending);
        for &i in &accepted {
            let (signed, change) = &candidates[i];
            self.signatures
                .insert(change.hash(), signed.signature.clone());
            self.note_seq(change);
            report.applied.push(signed.clone());
        }
        self.keep_fork_proofs(&report.forked);
        report
    }

    fn has_change(&self, hash: &ChangeHash) -> bool {
        self.signatures.contains_key(hash)
    }

    /// Remember which change holds its (actor, sequence number).
    fn note_seq(&mut self, change: &Change) {
        self.seqs
            .insert((change.actor_id().clone(), change.seq()), change.hash());
    }

    fn keep_fork_proofs(&mut self, forked: &[SignedChange]) {
        for fork in forked {
            if self.forks.len() < MAX_FORK_PROOFS && !self.forks.contains(fork) {
                self.forks.push(fork.clone());
            }
        }
    }

    fn exid_of(&self, obj: &OpKey) -> Result<ObjId, automerge::AutomergeError> {
        self.doc
            .import_obj(&format!("{}@{}", obj.0, obj.1.to_hex_string()))
    }

    fn free_exid(&self) -> Option<ObjId> {
        self.free_obj.as_ref().and_then(|o| self.exid_of(o).ok())
    }

    fn records_exid(&self) -> Result<ObjId, Error> {
        self.records_obj
            .as_ref()
            .and_then(|o| self.exid_of(o).ok())
            .ok_or_else(|| Error::Malformed(self.id.to_hex(), "no record map".into()))
    }

    fn description_exid(&self) -> Result<ObjId, Error> {
        let free = self
            .free_exid()
            .ok_or_else(|| Error::Malformed(self.id.to_hex(), "no free area".into()))?;
        match self.doc.get(&free, DESCRIPTION_KEY)? {
            Some((Value::Object(ObjType::Text), id)) => Ok(id),
            _ => Err(Error::Malformed(
                self.id.to_hex(),
                "no description text".into(),
            )),
        }
    }

    fn merge(&mut self, pending: Pending) {
        if pending.records_obj.is_some() {
            self.records_obj = pending.records_obj;
        }
        if pending.free_obj.is_some() {
            self.free_obj = pending.free_obj;
        }
        self.free_objects.extend(pending.free_objects);
        for record in pending.records.into_values() {
            self.absorb_record(record);
        }
        self.refresh_roll();
    }

    fn refresh_roll(&mut self) {
        if self.ledger.is_some() {
            return;
        }
        let heads = self.doc.get_heads();
        if let Some(set) = self.roll.union_of_deps(&heads, &HashMap::new()) {
            let roll = self.roll.roll(&self.id, set);
            self.members = roll.members.clone();
            self.awaiting = roll.awaiting.clone();
            self.ever
                .extend(roll.members.iter().chain(&roll.former).copied());
        }
    }

    /// Update what is derived from records with one more record.
    fn absorb_record(&mut self, record: SignedRecord) {
        if let Ok(body) = RecordBody::decode(&record.body) {
            self.distress.absorb(record.id(), record.author, &body);
            if let RecordBody::SealKey(k) = body {
                self.seal_keys.insert(record.id(), (record.author, k));
            }
        }
        self.hold_record(record);
    }

    /// Hold `record` in the records map (a group document notes it for its
    /// governance timeline).
    fn hold_record(&mut self, record: SignedRecord) {
        let id = record.id();
        if self.records.insert(id, record).is_none() && self.ledger.is_none() {
            self.taken.push(id);
        }
    }

    /// Recompute object ids, records and members from the document itself,
    /// for a document made of changes this node checked.
    fn rebuild_derived(&mut self) -> Result<(), Error> {
        let malformed = |why: &str| Error::Malformed(self.id.to_hex(), why.to_string());
        let records = match self.doc.get(ROOT, RECORDS_KEY)? {
            Some((Value::Object(ObjType::Map), id)) => id,
            _ => return Err(malformed("no record map")),
        };
        let free = match self.doc.get(ROOT, FREE_KEY)? {
            Some((Value::Object(ObjType::Map), id)) => id,
            _ => return Err(malformed("no free area")),
        };
        self.records_obj = Some(op_key_of(&records).ok_or_else(|| malformed("bad record map id"))?);
        self.free_obj = Some(op_key_of(&free).ok_or_else(|| malformed("bad free area id"))?);
        let mut found = Vec::new();
        for item in self.doc.map_range(&records, ..) {
            if let ValueRef::Scalar(ScalarValueRef::Bytes(b)) = &item.value {
                // Only ever run on changes this node checked before it
                // stored them (or the fixed opening of a period): their
                // bytes are what was checked (Automerge checksums every
                // change), so the signatures are not checked again. This
                // was half the cost of reading a ledger period back.
                let record =
                    SignedRecord::decode_stored(b).map_err(|e| malformed(&e.to_string()))?;
                found.push(record);
            }
        }
        for record in found {
            self.absorb_record(record);
        }
        Ok(())
    }
}

/// What the roll index needs to know of a stored change.
struct ChangeShape {
    hash: ChangeHash,
    deps: Vec<ChangeHash>,
    actor: ActorId,
    /// The counters of its ops.
    ops: std::ops::Range<u64>,
}

/// What became of one change of a batch.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fate {
    Waiting,
    Accepted,
    Rejected,
    DependsOnRejected,
    /// It builds on a change refused for forking its device's history.
    OnFork,
}

fn mark_dependents_refused(i: usize, dependents: &[Vec<usize>], fate: &mut [Fate], why: Fate) {
    let mut stack = dependents[i].clone();
    while let Some(d) = stack.pop() {
        if fate[d] == Fate::Waiting {
            fate[d] = why;
            stack.extend(dependents[d].iter().copied());
        }
    }
}

fn rejection(signed: &SignedChange, reason: String) -> Rejection {
    Rejection {
        change: signed.hash.to_hex(),
        author: signed.author.to_string(),
        reason,
    }
}

fn sign_change(writer: &Writer, doc: Hash32, mut change: Change) -> SignedChange {
    let hash = Hash32(change.hash().0);
    SignedChange::sign(writer.key(), doc, hash, change.bytes().into_owned())
}

/// The member whose key begins an actor id of 32 + 8 bytes.
fn author_of(actor: &ActorId) -> Option<MemberId> {
    let bytes = actor.to_bytes();
    if bytes.len() != 40 {
        return None;
    }
    Some(MemberId(bytes[..32].try_into().ok()?))
}

fn op_key_of(id: &ObjId) -> Option<OpKey> {
    match id {
        ObjId::Root => None,
        ObjId::Id(counter, actor, _) => Some((*counter, actor.clone())),
    }
}
