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

mod drafts;
mod roll;
pub use drafts::Draft;
pub use roll::Roll;

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

/// Whether a record's claimed time (with its kind) is bounded as the
/// rules ask: not more than [`CLOCK_SKEW_MS`] before `latest`, the latest time claimed in its
/// causal past (`Err(Some(why))`), and not ahead of `now_ms` by more than
/// the skew (`Err(None)`: it waits).
fn check_claimed_time(
    (claimed, kind): (u64, &str),
    latest: u64,
    now_ms: Option<u64>,
) -> Result<(), Option<String>> {
    if claimed < latest.saturating_sub(rules::CLOCK_SKEW_MS) {
        return Err(Some(format!(
            "a {kind} claims a time {} s before the latest record it builds on; a clock may be off \
             by at most {} s (backdated, or its author's clock is wrong)",
            (latest - claimed) / 1000,
            rules::CLOCK_SKEW_MS / 1000
        )));
    }
    if now_ms.is_some_and(|now| claimed > now.saturating_add(rules::CLOCK_SKEW_MS)) {
        return Err(None);
    }
    Ok(())
}

/// The id of period `period` of `group`'s ledger.
pub fn ledger_period_id(group: &Hash32, period: u64) -> Hash32 {
    Hash32::of_parts(&[
        b"nestwork/ledger-period/v1",
        &group.0,
        &period.to_be_bytes(),
    ])
}

/// The record id and bytes an op on the record map puts: nothing else
/// (a delete, a list op, another value) is ever allowed there.
fn record_put(op: &automerge::legacy::Op) -> Result<(Hash32, &[u8]), String> {
    let key = match &op.key {
        Key::Map(k) => k.to_string(),
        Key::Seq(_) => return Err("malformed op on the record map".into()),
    };
    let bytes = match &op.action {
        OpType::Delete => return Err(format!("the change deletes signed record {key}")),
        OpType::Put(ScalarValue::Bytes(b)) if !op.insert => b,
        _ => {
            return Err(format!(
                "the change writes something other than a signed record at {key}"
            ))
        }
    };
    let id: Hash32 = key
        .parse()
        .map_err(|_| format!("record key {key:?} is not a record id"))?;
    Ok((id, bytes))
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

    /// For a ledger period document: its group and period number.
    pub fn ledger_period_of(&self) -> Option<(Hash32, u64)> {
        self.ledger
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

    /// Add a signed record as a local change. The record is checked by the
    /// same rules a peer would apply. An admission is completed first with
    /// the founders' edits it follows (all those held).
    pub fn add_record(
        &mut self,
        writer: &Writer,
        body: RecordBody,
        gate: &mut dyn RecordGate,
        now_ms: u64,
    ) -> Result<(Hash32, SignedChange), Error> {
        let body = match body {
            RecordBody::Admission(a) => RecordBody::Admission(crate::record::Admission {
                founders_edits: self.held_founders_edits(),
                ..a
            }),
            other => other,
        };
        if self.ledger.is_none() && !self.members.contains(&writer.id()) {
            return Err(RuleError(format!("{} is not a member of this group", writer.id())).into());
        }
        rules::check_record(
            &body,
            &RecordContext {
                group: self.group(),
                author: writer.id(),
                in_genesis_change: false,
                ledger_period: self.ledger.map(|(_, period)| period),
            },
        )?;
        if self.ledger.is_some() {
            // Judged as peers will: by the group's roll at the heads cited.
            self.check_cited_roll(&writer.id(), &body, gate)
                .map_err(|hold| match hold {
                    Hold::Reject(why) => RuleError(why),
                    Hold::Wait => RuleError("it cites group heads this node does not hold".into()),
                })?;
        }
        self.check_references(
            &body,
            None,
            &writer.id(),
            &Pending::default(),
            &Pending::default(),
            Past::Document,
        )
        .map_err(RuleError)?;
        // Peers bound the time it claims by what it builds on: every head
        // here.
        let claim = roll::claimed_ms(&body).filter(|_| self.ledger.is_none());
        if let Some(claimed) = claim {
            let heads = self.doc.get_heads();
            if let Some(base) = self.roll.union_of_deps(&heads, &HashMap::new()) {
                check_claimed_time((claimed, body.kind_name()), self.roll.latest_ms(base), None)
                    .map_err(|why| {
                        RuleError(format!(
                            "{}; check this computer's clock",
                            why.unwrap_or_default()
                        ))
                    })?;
            }
        }
        let record = SignedRecord::sign(writer.key(), body.encode());
        let id = record.id();
        let is_roll_record = roll::is_roll_record(&body);
        if body.needs_gate() {
            gate.admit(&writer.id(), id, &body).map_err(|r| match r {
                Refusal::Broken(e) => Error::Rule(e),
                Refusal::Missing(ids) => Error::Rule(RuleError(format!(
                    "it relies on {} record(s) this node does not have",
                    ids.len()
                ))),
                Refusal::History => Error::Rule(RuleError(
                    "it relies on history this node is reloading; try again in a moment".into(),
                )),
            })?;
        }
        let signed = self.put_record(writer, &record, now_ms)?;
        if is_roll_record && self.ledger.is_none() {
            let hash = ChangeHash(signed.hash.0);
            if let Some(base) = self.roll.past_of(&hash) {
                let set = self.roll.with_records(base, std::slice::from_ref(&record));
                self.roll.set_past(hash, set);
            }
        }
        self.absorb_record(record);
        self.refresh_roll();
        Ok((id, signed))
    }

    /// Test hook: sign and add `body` as `writer` with none of the local
    /// checks, as a modified node would. It gives no power over anyone
    /// else: every receiving node checks every rule itself, which is what
    /// the tests of hostile members use this to show.
    #[doc(hidden)]
    pub fn sign_record_anyway(
        &mut self,
        writer: &Writer,
        body: RecordBody,
        now_ms: u64,
    ) -> Result<(Hash32, SignedChange), Error> {
        let record = SignedRecord::sign(writer.key(), body.encode());
        let id = record.id();
        let signed = self.put_record(writer, &record, now_ms)?;
        self.hold_record(record);
        Ok((id, signed))
    }

    /// Sign a change that puts `record` into the records map under its id.
    fn put_record(
        &mut self,
        writer: &Writer,
        record: &SignedRecord,
        now_ms: u64,
    ) -> Result<SignedChange, Error> {
        let records = self.records_exid()?;
        self.local_change(writer, now_ms, |tx| {
            tx.put(
                &records,
                record.id().to_hex(),
                ScalarValue::Bytes(record.encode()),
            )
        })?
        .ok_or_else(|| Error::Malformed(self.id.to_hex(), "adding a record made no change".into()))
    }

    /// Test hook: edit the description as `writer` with no membership
    /// check (see [`SignedDoc::sign_record_anyway`]).
    #[doc(hidden)]
    pub fn set_description_anyway(
        &mut self,
        writer: &Writer,
        text: &str,
        now_ms: u64,
    ) -> Result<Option<SignedChange>, Error> {
        let description = self.description_exid()?;
        self.local_change(writer, now_ms, |tx| tx.update_text(&description, text))
    }

    /// Replace the group's free-form description (an Automerge text, so
    /// concurrent edits by several members merge). `None` when the text is
    /// already what was asked for.
    pub fn set_description(
        &mut self,
        writer: &Writer,
        text: &str,
        now_ms: u64,
    ) -> Result<Option<SignedChange>, Error> {
        if !self.members.contains(&writer.id()) {
            return Err(RuleError(format!("{} is not a member of this group", writer.id())).into());
        }
        rules::check_description(text)?;
        let description = self.description_exid()?;
        self.local_change(writer, now_ms, |tx| tx.update_text(&description, text))
    }

    fn local_change(
        &mut self,
        writer: &Writer,
        now_ms: u64,
        f: impl FnOnce(
            &mut automerge::transaction::Transaction<'_>,
        ) -> Result<(), automerge::AutomergeError>,
    ) -> Result<Option<SignedChange>, Error> {
        self.doc.set_actor(writer.actor());
        let done = self
            .doc
            .transact_with(|_| CommitOptions::default().with_time(now_ms as i64), f)
            .map_err(|f| f.error)?;
        let Some(hash) = done.hash else {
            return Ok(None);
        };
        let change = self.doc.get_change_by_hash(&hash).ok_or_else(|| {
            Error::Malformed(self.id.to_hex(), "a new change went missing".into())
        })?;
        if self.ledger.is_none() {
            // Its own roll records, if any, are added by the caller.
            let set = self
                .roll
                .union_of_deps(change.deps(), &HashMap::new())
                .unwrap_or(roll::EMPTY);
            self.roll.set_past(hash, set);
        }
        self.note_seq(&change);
        let signed = sign_change(writer, self.id, change);
        self.signatures.insert(hash, signed.signature.clone());
        Ok(Some(signed))
    }

    /// The document id.
    pub fn id(&self) -> Hash32 {
        self.id
    }

    /// The current heads.
    pub fn heads(&self) -> Vec<Hash32> {
        self.doc
            .get_heads()
            .into_iter()
            .map(|h| Hash32(h.0))
            .collect()
    }

    /// How many changes the document holds.
    pub fn change_count(&self) -> usize {
        self.signatures.len()
    }

    /// Every change the document has that is not in the history of `have`,
    /// with its signature, in causal order. Hashes in `have` that this
    /// document does not hold are ignored (the other side is ahead there).
    pub fn changes_since(&self, have: &[Hash32]) -> Vec<SignedChange> {
        let have: Vec<ChangeHash> = have
            .iter()
            .map(|h| ChangeHash(h.0))
            .filter(|h| self.has_change(h))
            .collect();
        self.doc
            .get_changes(&have)
            .into_iter()
            .filter(|change| {
                self.signatures
                    .get(&change.hash())
                    .is_some_and(|s| !s.is_empty())
            })
            .map(|mut change| {
                let hash = change.hash();
                SignedChange {
                    author: author_of(change.actor_id()).unwrap_or(MemberId([0; 32])),
                    doc: self.id,
                    hash: Hash32(hash.0),
                    change: change.bytes().into_owned(),
                    signature: self.signatures.get(&hash).cloned().unwrap_or_default(),
                }
            })
            .collect()
    }

    /// The verified records, by id.
    pub fn records(&self) -> &BTreeMap<Hash32, SignedRecord> {
        &self.records
    }

    /// The records that decide the roll and the group's decisions (see
    /// `engine/roll.rs`), decoded, in id order: what governance replays,
    /// without decoding every record again each time.
    pub fn roll_records(&self) -> impl Iterator<Item = (Hash32, MemberId, &RecordBody)> + '_ {
        self.records
            .keys()
            .filter_map(|id| self.roll.body(id).map(|(author, body)| (*id, author, body)))
    }

    /// The group's governance at `now_ms`, from the records held (as
    /// [`Governance::at`] would replay them); `None` until its genesis has
    /// arrived. The timeline is kept from one call to the next, so a call
    /// replays only the group's recent business (see
    /// `governance/timeline.rs`).
    pub fn governance_at(&self, now_ms: u64) -> Option<crate::governance::Governance> {
        let mut kept = self
            .timeline
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if kept.is_none() {
            let (record, genesis) = self.genesis()?;
            let timeline = crate::governance::Timeline::new(
                GroupId::from(self.id),
                record.author,
                genesis.created_at_ms,
                &genesis.charter,
                genesis.parent,
            );
            *kept = Some((0, timeline));
        }
        let (seen, timeline) = kept.as_mut()?;
        // The records that decide governance are those the roll index
        // decoded (`roll_records`).
        for id in &self.taken[*seen..] {
            if let Some((author, body)) = self.roll.body(id) {
                timeline.add(*id, author, body);
            }
        }
        *seen = self.taken.len();
        Some(timeline.at(now_ms))
    }

    /// The roll at the document's heads: who may write now.
    pub fn members(&self) -> &BTreeSet<MemberId> {
        &self.members
    }

    /// Who was on the roll just before `change` (at its dependencies):
    /// who may read it; and who else held the founding change there (left,
    /// removed, or awaiting an entry vote). `None` for a ledger period or
    /// a change this document does not hold.
    pub fn roll_before(
        &mut self,
        change: &Hash32,
    ) -> Option<(BTreeSet<MemberId>, BTreeSet<MemberId>)> {
        if self.ledger.is_some() {
            return None;
        }
        let deps = self
            .doc
            .get_change_by_hash(&ChangeHash(change.0))?
            .deps()
            .to_vec();
        let set = self.roll.union_of_deps(&deps, &HashMap::new())?;
        let roll = self.roll.roll(&self.id, set);
        let outside = roll.former.union(&roll.awaiting).copied().collect();
        Some((roll.members.clone(), outside))
    }

    /// The roll at this group document's `heads` (the heads a ledger
    /// record cites): who was on it there, as a change of this document
    /// depending on exactly those heads is judged. `Err` lists the heads
    /// this document does not hold (yet). A ledger period has no roll of
    /// its own: nobody is on it.
    pub fn roll_at_heads(&self, heads: &[Hash32]) -> Result<Arc<Roll>, Vec<Hash32>> {
        if self.ledger.is_some() {
            return Ok(Arc::new(Roll::default()));
        }
        let heads: Vec<ChangeHash> = heads.iter().map(|h| ChangeHash(h.0)).collect();
        self.roll
            .roll_of_cited(&self.id, &heads)
            .map_err(|missing| missing.into_iter().map(|h| Hash32(h.0)).collect())
    }

    /// Those ever on the roll who are not on it now (left, removed).
    pub fn former_members(&self) -> BTreeSet<MemberId> {
        self.ever.difference(&self.members).copied().collect()
    }

    /// Everyone who holds the group's founding change and is not on the
    /// roll at the heads: former members, and newcomers awaiting an entry
    /// vote.
    pub fn outside_members(&self) -> BTreeSet<MemberId> {
        let mut outside = self.former_members();
        outside.extend(self.awaiting.iter().copied());
        outside
    }

    /// The group's seal key records: id, author, body.
    pub fn seal_key_records(
        &self,
    ) -> impl Iterator<Item = (&Hash32, &MemberId, &crate::seal::SealKey)> {
        self.seal_keys.iter().map(|(id, (a, k))| (id, a, k))
    }

    /// Everyone ever on the roll, former members included (whose accounts
    /// stay on the books).
    pub fn ever_members(&self) -> &BTreeSet<MemberId> {
        &self.ever
    }

    /// The group's genesis, if this is a group document.
    pub fn genesis(&self) -> Option<(&SignedRecord, GroupGenesis)> {
        let record = self.records.get(&self.id)?;
        match RecordBody::decode(&record.body).ok()? {
            RecordBody::GroupGenesis(g) => Some((record, g)),
            _ => None,
        }
    }

    /// The free-form description text.
    pub fn description(&self) -> String {
        self.description_exid()
            .ok()
            .and_then(|d| self.doc.text(&d).ok())
            .unwrap_or_default()
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

    /// Changes refused for forking their device's history, kept as proof
    /// against their author (see [`ApplyReport::forked`]).
    pub fn forks(&self) -> &[SignedChange] {
        &self.forks
    }

    fn check_envelope(
        &self,
        signed: &SignedChange,
        verdict: nestwork_core::Result<()>,
    ) -> Result<Change, String> {
        if signed.doc != self.id {
            return Err(format!(
                "the change belongs to document {}, not {}",
                signed.doc.short(),
                self.id.short()
            ));
        }
        // Size first: nothing larger than the store reads back is looked at.
        signed.check_size().map_err(|e| e.to_string())?;
        verdict.map_err(|e| e.to_string())?;
        let change = parse_change(&signed.change)?;
        if change.hash().0 != signed.hash.0 {
            return Err(
                "the change's bytes do not match its signed hash (corrupted or tampered)".into(),
            );
        }
        match author_of(change.actor_id()) {
            Some(a) if a == signed.author => Ok(change),
            _ => Err(format!(
                "the change's actor id does not belong to its signer {}",
                signed.author
            )),
        }
    }

    /// Check one change against the document, what the batch has added so
    /// far (`batch`, and the roll sets of its accepted changes in
    /// `batch_past`), and the gate. Returns what the change adds and, in a
    /// group document, the roll records in its causal past.
    fn check_change(
        &self,
        author: MemberId,
        change: &Change,
        batch: &Pending,
        gate: &mut dyn RecordGate,
        roll_index: &mut roll::RollIndex,
        batch_past: &HashMap<ChangeHash, roll::SetId>,
    ) -> Result<(Pending, Option<roll::SetId>), Hold> {
        let mut pending = Pending::default();
        let is_first = change.deps().is_empty();
        if is_first && (!self.doc.get_heads().is_empty() || batch.genesis_seen) {
            return Err(Hold::Reject(
                "a second first change: the document already has its genesis".into(),
            ));
        }
        let mut past = None;
        if self.ledger.is_none() {
            // Membership at the change's causal past: the same verdict on
            // every node, whatever else it holds.
            let base = roll_index
                .union_of_deps(change.deps(), batch_past)
                .ok_or_else(|| {
                    Hold::Reject("the engine lost track of a dependency's roll (a bug)".into())
                })?;
            if !is_first && !roll_index.roll(&self.id, base).members.contains(&author) {
                return Err(Hold::Reject(format!(
                    "{author} is not a member of this group at the change's causal past \
                     (never admitted, awaiting an entry vote, left or removed)"
                )));
            }
            past = Some(base);
        }
        let refer = match past {
            Some(base) => Past::Set(roll_index, base),
            None => Past::Document,
        };
        self.check_ops(author, change, is_first, batch, &mut pending, refer)
            .map_err(Hold::Reject)?;
        if self.ledger.is_some() {
            // A ledger period's roll is the group's, at the group heads its
            // record cites.
            if pending.cited.is_empty() {
                return Err(Hold::Reject(
                    "a change to a ledger period must carry a payment or a period closing: \
                     nothing else is written there, and only they name the group roll \
                     their author is judged by"
                        .into(),
                ));
            }
            for body in &pending.cited {
                self.check_cited_roll(&author, body, gate)?;
            }
        }
        if let Some(base) = past {
            let latest = roll_index.latest_ms(base);
            for claim in &pending.claims {
                match check_claimed_time(*claim, latest, gate.now_ms()) {
                    Ok(()) => {}
                    Err(None) => {
                        tracing::debug!(doc = %self.id.short(), kind = claim.1, "a record waits: it claims a time still to come by this node's clock");
                        return Err(Hold::Wait);
                    }
                    Err(Some(why)) => return Err(Hold::Reject(why)),
                }
            }
        }
        match pending.gated.len() {
            0 => {}
            1 => {
                let (id, body) = &pending.gated[0];
                gate.admit(&author, *id, body).map_err(|r| match r {
                    Refusal::Missing(missing) => {
                        tracing::debug!(doc = %self.id.short(), record = %id.short(), kind = body.kind_name(), missing = ?missing.iter().map(|m| m.short()).collect::<Vec<_>>(), "a record waits for records this node lacks");
                        Hold::Wait
                    }
                    Refusal::History => {
                        tracing::debug!(doc = %self.id.short(), record = %id.short(), kind = body.kind_name(), "a record waits for the ledger history below the base");
                        Hold::Wait
                    }
                    Refusal::Broken(e) => Hold::Reject(e.0),
                })?;
            }
            _ => {
                return Err(Hold::Reject(
                    "a change may carry at most one ledger record".into(),
                ))
            }
        }
        let past = past.map(|base| roll_index.with_records(base, &pending.roll_records));
        Ok((pending, past))
    }

    fn check_ops(
        &self,
        author: MemberId,
        change: &Change,
        is_first: bool,
        batch: &Pending,
        pending: &mut Pending,
        past: Past<'_>,
    ) -> Result<(), String> {
        let expanded = catch_unwind(AssertUnwindSafe(|| change.decode()))
            .map_err(|_| "the change's operations cannot be decoded".to_string())?;
        let start = change.start_op().get();
        let actor = change.actor_id().clone();
        for (i, op) in expanded.operations.iter().enumerate() {
            let op_key: OpKey = (start + i as u64, actor.clone());
            match &op.obj {
                ObjectId::Root => {
                    if !is_first {
                        return Err("the change rewrites the document's top level".into());
                    }
                    let is_map =
                        matches!(op.action, OpType::Make(ObjType::Map)) && op.pred.is_empty();
                    match &op.key {
                        Key::Map(k)
                            if is_map && k == RECORDS_KEY && pending.records_obj.is_none() =>
                        {
                            pending.records_obj = Some(op_key)
                        }
                        Key::Map(k) if is_map && k == FREE_KEY && pending.free_obj.is_none() => {
                            pending.free_obj = Some(op_key)
                        }
                        _ => {
                            return Err(
                                "the first change may only create the records and free parts"
                                    .into(),
                            )
                        }
                    }
                }
                ObjectId::Id(o) => {
                    let obj: OpKey = (o.counter(), o.actor().clone());
                    let records = self
                        .records_obj
                        .as_ref()
                        .or(batch.records_obj.as_ref())
                        .or(pending.records_obj.as_ref());
                    if records == Some(&obj) {
                        self.check_record_op(author, is_first, op, batch, pending, past)?;
                    } else if self.is_free_object(&obj, batch) || self.is_free_object(&obj, pending)
                    {
                        if matches!(op.action, OpType::Make(_)) {
                            pending.free_objects.insert(op_key);
                        }
                    } else {
                        return Err("the change writes outside the records and free parts".into());
                    }
                }
            }
        }
        if is_first && !pending.genesis_seen {
            return Err("the first change does not carry this group's genesis record".into());
        }
        Ok(())
    }

    /// A put on the record map: a new signed record by the change's
    /// author, valid by its kind's rules at the change's causal past, or
    /// one already held put again with the same bytes.
    fn check_record_op(
        &self,
        author: MemberId,
        is_first: bool,
        op: &automerge::legacy::Op,
        batch: &Pending,
        pending: &mut Pending,
        past: Past<'_>,
    ) -> Result<(), String> {
        let (id, bytes) = record_put(op)?;
        if let Some(existing) = self
            .records
            .get(&id)
            .or(batch.records.get(&id))
            .or(pending.records.get(&id))
        {
            // The same record put concurrently by two devices is harmless
            // (identical values); anything else is an overwrite.
            if !op.pred.is_empty() || existing.encode() != *bytes {
                return Err(format!(
                    "the change overwrites signed record {}",
                    id.short()
                ));
            }
            // Put again on another branch, it is judged against this
            // change's causal past as if it were new: otherwise the verdict
            // would depend on whether the receiver already held it (a
            // record valid where it was first put, replayed on a branch
            // where it claims a time too early, or names what is not there).
            if existing.author != author {
                return Err(format!(
                    "record signed by {} was put in by {author}",
                    existing.author
                ));
            }
            let body = RecordBody::decode(&existing.body).map_err(|e| e.to_string())?;
            let existing = existing.clone();
            return self.check_in_past(&id, &existing, &body, batch, pending, past);
        }
        if !op.pred.is_empty() {
            return Err(format!(
                "the change overwrites signed record {}",
                id.short()
            ));
        }
        let record = SignedRecord::decode_verified(bytes).map_err(|e| e.to_string())?;
        if record.id() != id {
            return Err(format!(
                "record stored under {} is not the record with that id",
                id.short()
            ));
        }
        if record.author != author {
            return Err(format!(
                "record signed by {} was put in by {author}",
                record.author
            ));
        }
        let body = RecordBody::decode(&record.body).map_err(|e| e.to_string())?;
        rules::check_record(
            &body,
            &RecordContext {
                group: self.group(),
                author,
                in_genesis_change: is_first,
                ledger_period: self.ledger.map(|(_, period)| period),
            },
        )
        .map_err(|e| e.0)?;
        self.check_in_past(&id, &record, &body, batch, pending, past)?;
        match body {
            RecordBody::GroupGenesis(_) => {
                if id != self.id {
                    return Err(format!(
                        "the genesis record of group {} in document {}",
                        id.short(),
                        self.id.short()
                    ));
                }
                pending.genesis_seen = true;
            }
            _ => pending.note(id, author, body),
        }
        pending.records.insert(id, record);
        Ok(())
    }

    /// `member`'s newest distress signal here: its number and id.
    pub fn signal_head(&self, member: &MemberId) -> Option<(u64, SignalId)> {
        self.distress.heads.get(member).copied()
    }

    /// Check a record `author` would add now by every rule a peer applies
    /// that needs no gate, without signing or changing anything (a cheap
    /// refusal before any other work).
    pub fn precheck(&self, author: &MemberId, body: &RecordBody) -> Result<(), RuleError> {
        rules::check_record(
            body,
            &RecordContext {
                group: self.group(),
                author: *author,
                in_genesis_change: false,
                ledger_period: self.ledger.map(|(_, period)| period),
            },
        )?;
        self.check_references(
            body,
            None,
            author,
            &Pending::default(),
            &Pending::default(),
            Past::Document,
        )
        .map_err(RuleError)
    }

    /// The founders' edits this document holds, in id order.
    fn held_founders_edits(&self) -> Vec<Hash32> {
        self.roll
            .founders_edits(|_, id| self.records.contains_key(id))
    }

    /// The group this document belongs to: for a group's own document,
    /// the group it founds (its id is the group's); for a ledger period,
    /// the group whose ledger it is.
    pub fn group(&self) -> GroupId {
        GroupId::from(self.ledger.map_or(self.id, |(group, _)| group))
    }

    /// Rules that look at the records a governance record names: a vote's
    /// proposal must be in the document (the voter saw it, so it is in the
    /// vote's causal past), and only the creator edits the charter
    /// directly. `id` is the record's own id once it is signed.
    fn check_references(
        &self,
        body: &RecordBody,
        id: Option<&Hash32>,
        author: &MemberId,
        batch: &Pending,
        pending: &Pending,
        past: Past<'_>,
    ) -> Result<(), String> {
        let refs = Refs {
            doc: self,
            batch,
            pending,
            past,
        };
        match body {
            RecordBody::Vote(v) => refs.check_vote(v),
            RecordBody::Decision(d) => refs.check_decision(d),
            RecordBody::Admission(a) => {
                // The charter the newcomer joins: the founders' edits in
                // the admission's causal past, exactly.
                let before = refs.founders_edits();
                if a.founders_edits != before {
                    return Err(format!(
                        "the admission lists {} founders' edit(s), but its causal past holds {}",
                        a.founders_edits.len(),
                        before.len()
                    ));
                }
                Ok(())
            }
            RecordBody::CharterEdit(_) => refs.check_charter_edit(author),
            RecordBody::Signal(s) => refs.check_signal(s, id, author),
            RecordBody::Answer(a) => self.check_answer(a, author, batch, pending),
            // A carried answer is judged as its answerer's own answer would
            // be here: a signal this group holds, a resolve only by the
            // raiser or someone whose response is held.
            RecordBody::CarriedAnswer(c) => {
                let k = c.check().map_err(|e| e.0)?;
                self.check_answer(&k.answer, &k.by, batch, pending)
            }
            _ => Ok(()),
        }
    }

    /// What a record a change puts is judged by against the change's
    /// causal past, whether or not this document already holds it: the
    /// records it names, and the time it claims (noted for the check
    /// against what it builds on); a roll record joins the change's set.
    fn check_in_past(
        &self,
        id: &Hash32,
        record: &SignedRecord,
        body: &RecordBody,
        batch: &Pending,
        pending: &mut Pending,
        past: Past<'_>,
    ) -> Result<(), String> {
        self.check_references(body, Some(id), &record.author, batch, pending, past)?;
        if let Some(claimed) = roll::claimed_ms(body) {
            pending.claims.push((claimed, body.kind_name()));
        }
        if self.ledger.is_some() && body.group_heads().is_some() {
            pending.cited.push(body.clone());
        }
        if roll::is_roll_record(body) {
            pending.roll_records.push(record.clone());
        }
        Ok(())
    }

    /// A ledger record's author, and a payment's payee, must be on the
    /// group's roll at the group heads it cites: the same verdict on every
    /// node that holds those heads, whatever order anything arrived in. A
    /// record citing heads not held here waits for them.
    fn check_cited_roll(
        &self,
        author: &MemberId,
        body: &RecordBody,
        gate: &dyn RecordGate,
    ) -> Result<(), Hold> {
        let Some(heads) = body.group_heads() else {
            return Err(Hold::Reject(format!(
                "a {} has no place in a ledger period",
                body.kind_name()
            )));
        };
        let roll = match gate.roll_at(heads) {
            Ok(roll) => roll,
            Err(Refusal::Missing(missing)) => {
                tracing::debug!(doc = %self.id.short(), kind = body.kind_name(), missing = ?missing.iter().map(|m| m.short()).collect::<Vec<_>>(), "a ledger record waits for the group changes it cites");
                return Err(Hold::Wait);
            }
            Err(Refusal::History) => return Err(Hold::Wait),
            Err(Refusal::Broken(e)) => return Err(Hold::Reject(e.0)),
        };
        let kind = body.kind_name();
        if !roll.contains(author) {
            return Err(Hold::Reject(format!(
                "{author} is not on the group's roll at the group heads their {kind} cites \
                 (never admitted, awaiting an entry vote, left or removed there)"
            )));
        }
        if let RecordBody::Payment(p) = body {
            if let crate::ledger::Account::Member(payee) = &p.to {
                if !roll.contains(payee) {
                    return Err(Hold::Reject(format!(
                        "the payee {payee} is not on the group's roll at the group heads the \
                         payment cites (never admitted, awaiting an entry vote, left or removed there)"
                    )));
                }
            }
        }
        Ok(())
    }

    fn check_answer(
        &self,
        a: &crate::distress::Answer,
        author: &MemberId,
        batch: &Pending,
        pending: &Pending,
    ) -> Result<(), String> {
        let raiser = [&self.distress, &batch.distress, &pending.distress]
            .iter()
            .find_map(|d| d.signals.get(&a.signal).copied());
        let Some(raiser) = raiser else {
            return Err(format!(
                "an answer to {}, which is not a signal this group holds",
                a.signal.short()
            ));
        };
        let responded = [&self.distress, &batch.distress, &pending.distress]
            .iter()
            .any(|d| d.responders.contains(&(a.signal, *author)));
        if a.kind == crate::distress::AnswerKind::Resolve && raiser != *author && !responded {
            return Err("only the raiser or someone who responded may resolve a signal".into());
        }
        Ok(())
    }

    fn is_free_object(&self, obj: &OpKey, pending: &Pending) -> bool {
        if self.free_obj.as_ref().or(pending.free_obj.as_ref()) == Some(obj)
            || pending.free_objects.contains(obj)
            || self.free_objects.contains(obj)
        {
            return true;
        }
        let (Some(free), Ok(exid)) = (self.free_exid(), self.exid_of(obj)) else {
            return false;
        };
        match self.doc.parents(&exid) {
            Ok(mut parents) => parents.any(|p| p.obj == free),
            Err(_) => false,
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

    /// Recompute the roll at the heads (a ledger period has none of its own).
    /// Who is on the roll at `now_ms`, by this document's records: the
    /// group's view of its roll at that moment, replaying only the records
    /// that can change it. Empty for a ledger period.
    pub fn roll_at(&self, now_ms: u64) -> BTreeSet<MemberId> {
        if self.ledger.is_some() {
            return BTreeSet::new();
        }
        self.roll
            .roll_at(&self.id, &self.doc.get_heads(), now_ms)
            .map(|roll| roll.members)
            .unwrap_or_default()
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

    /// The admission made with invite ticket `ticket`, if any.
    pub fn admission_by_ticket(&self, ticket: &Hash32) -> Option<crate::record::Admission> {
        self.records
            .values()
            .find_map(|r| match RecordBody::decode(&r.body) {
                Ok(RecordBody::Admission(a)) if a.ticket == *ticket => Some(a),
                _ => None,
            })
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

/// What a record being checked may refer to: the records of the document,
/// of the batch and of its change so far, as far as the record's causal
/// past reaches (a record refers only to what its author had).
struct Refs<'a> {
    doc: &'a SignedDoc,
    batch: &'a Pending,
    pending: &'a Pending,
    past: Past<'a>,
}

impl Refs<'_> {
    /// Record `id`, wherever it is held (in the causal past or not).
    fn find(&self, id: &Hash32) -> Option<&SignedRecord> {
        self.doc
            .records
            .get(id)
            .or(self.batch.records.get(id))
            .or(self.pending.records.get(id))
    }

    fn in_past(&self, id: &Hash32) -> bool {
        match self.past {
            Past::Set(index, set) => index.contains(set, id),
            Past::Document => self.doc.records.contains_key(id),
        }
    }

    /// Whether a decision on `proposal` is in the causal past.
    fn decided(&self, proposal: &Hash32) -> bool {
        match self.past {
            Past::Set(index, set) => index.decided_in(set, proposal),
            Past::Document => self
                .doc
                .roll
                .decisions_on(proposal)
                .any(|(_, id)| self.doc.records.contains_key(id)),
        }
    }

    /// The record `id` in the causal past, decoded, if it is there.
    fn body_in_past(&self, id: &Hash32) -> Option<RecordBody> {
        if !self.in_past(id) {
            return None;
        }
        self.find(id).and_then(|r| RecordBody::decode(&r.body).ok())
    }

    fn proposal_in_past(&self, id: &Hash32) -> bool {
        matches!(self.body_in_past(id), Some(RecordBody::Proposal(_)))
    }

    /// The founders' edits in the causal past, in id order.
    fn founders_edits(&self) -> Vec<Hash32> {
        match self.past {
            Past::Set(index, set) => index.founders_edits_in(set),
            Past::Document => self.doc.held_founders_edits(),
        }
    }

    /// Whether anyone had been admitted in the causal past.
    fn admitted(&self) -> bool {
        match self.past {
            Past::Set(index, set) => index.admitted_in(set),
            Past::Document => self
                .doc
                .roll
                .admissions()
                .any(|id| self.doc.records.contains_key(id)),
        }
    }

    /// A vote is for a proposal its voter saw, not yet decided.
    fn check_vote(&self, v: &Vote) -> Result<(), String> {
        if !self.proposal_in_past(&v.proposal.hash32()) {
            return Err(format!(
                "a vote for {}, which is not a proposal of this group in the vote's causal past",
                v.proposal.short()
            ));
        }
        if self.decided(&v.proposal.hash32()) {
            return Err(format!(
                "a vote for {} cast after its decision: it can count for nothing",
                v.proposal.short()
            ));
        }
        Ok(())
    }

    /// A decision names a proposal and votes on it, all in its causal past.
    fn check_decision(&self, d: &Decision) -> Result<(), String> {
        if !self.proposal_in_past(&d.proposal.hash32()) {
            return Err(format!(
                "a decision on {}, which is not a proposal of this group in its causal past",
                d.proposal.short()
            ));
        }
        for id in &d.counted {
            let on_it = matches!(
                self.body_in_past(id),
                Some(RecordBody::Vote(v)) if v.proposal == d.proposal
            );
            if !on_it {
                return Err(format!(
                    "a decision counts {}, which is not a vote on its proposal in its causal past",
                    id.short()
                ));
            }
        }
        Ok(())
    }

    /// Only the creator edits the charter directly, a few times, and only
    /// before anyone else has joined.
    fn check_charter_edit(&self, author: &MemberId) -> Result<(), String> {
        match self.find(&self.doc.id) {
            Some(genesis) if genesis.author == *author => {}
            _ => return Err("only the group's creator edits the charter directly".into()),
        }
        if self.founders_edits().len() >= rules::MAX_FOUNDERS_EDITS {
            return Err(format!(
                "the founder has made {} direct edits; the charter changes by proposals from here",
                rules::MAX_FOUNDERS_EDITS
            ));
        }
        // Whatever time it claims, an edit made once the founder had
        // admitted someone is too late.
        if self.admitted() {
            return Err(
                "members had joined when this edit was made: the charter changes by proposals now"
                    .into(),
            );
        }
        Ok(())
    }

    /// A signal continues its raiser's chain, within the group's rate.
    fn check_signal(
        &self,
        s: &crate::distress::Signal,
        id: Option<&Hash32>,
        author: &MemberId,
    ) -> Result<(), String> {
        let per_hour = self
            .doc
            .genesis()
            .map_or(10, |(_, g)| g.charter.rules.distress_per_hour);
        // Another signal with this number (this one put again on another
        // branch is no fork).
        let taken = [
            &self.doc.distress,
            &self.batch.distress,
            &self.pending.distress,
        ]
        .iter()
        .any(|d| {
            d.chain
                .get(&(*author, s.seq))
                .is_some_and(|held| Some(&held.hash32()) != id)
        });
        let lookup = |id: &SignalId| match self
            .find(&id.hash32())
            .map(|r| (r.author, RecordBody::decode(&r.body)))
        {
            Some((who, Ok(RecordBody::Signal(s)))) => Some((who, s)),
            _ => None,
        };
        crate::distress::check_chain(author, s, per_hour, taken, &lookup).map_err(|e| e.0)
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

/// Of a document's stored changes, in stored order (which is causal), the
/// ones that can still load after damage: each whose bytes parse into the
/// change its envelope names and whose dependencies are all among those
/// kept before it. Returns those, and the positions of the rest (a damaged
/// change and everything built on it), which peers can send again.
pub fn loadable(stored: Vec<SignedChange>) -> (Vec<SignedChange>, Vec<usize>) {
    let mut have: HashSet<ChangeHash> = HashSet::new();
    let (mut kept, mut dropped) = (Vec::new(), Vec::new());
    for (i, s) in stored.into_iter().enumerate() {
        match parse_change(&s.change) {
            Ok(c) if c.hash().0 == s.hash.0 && c.deps().iter().all(|d| have.contains(d)) => {
                have.insert(c.hash());
                kept.push(s);
            }
            _ => dropped.push(i),
        }
    }
    (kept, dropped)
}

/// A document's stored changes with the hashes each depends on, enough to
/// answer a peer's sync without loading the document into Automerge.
#[derive(Debug)]
pub struct StoredGraph {
    changes: Vec<(SignedChange, Vec<Hash32>)>,
}

impl StoredGraph {
    /// Of changes in stored (causal) order, read each one's dependencies.
    pub fn of(stored: Vec<SignedChange>) -> Result<StoredGraph, Error> {
        let mut changes = Vec::with_capacity(stored.len());
        for s in stored {
            let change = parse_change(&s.change).map_err(|e| {
                Error::Malformed(s.doc.to_hex(), format!("stored change {}: {e}", s.hash))
            })?;
            let deps = change.deps().iter().map(|d| Hash32(d.0)).collect();
            changes.push((s, deps));
        }
        Ok(StoredGraph { changes })
    }

    /// The heads: the changes no other one depends on, sorted as
    /// [`SignedDoc::heads`] gives them.
    pub fn heads(&self) -> Vec<Hash32> {
        let depended: HashSet<Hash32> = self
            .changes
            .iter()
            .flat_map(|(_, deps)| deps.iter().copied())
            .collect();
        let mut heads: Vec<Hash32> = self
            .changes
            .iter()
            .map(|(c, _)| c.hash)
            .filter(|h| !depended.contains(h))
            .collect();
        heads.sort_unstable();
        heads
    }

    /// The changes not in the causal past of `have`, in stored order:
    /// what [`SignedDoc::changes_since`] answers (heads this document does
    /// not hold are left out of the reckoning, as there).
    pub fn changes_since(&self, have: &[Hash32]) -> Vec<SignedChange> {
        let at: HashMap<Hash32, usize> = self
            .changes
            .iter()
            .enumerate()
            .map(|(i, (c, _))| (c.hash, i))
            .collect();
        let mut known = vec![false; self.changes.len()];
        let mut todo: Vec<usize> = have.iter().filter_map(|h| at.get(h).copied()).collect();
        while let Some(i) = todo.pop() {
            if std::mem::replace(&mut known[i], true) {
                continue;
            }
            todo.extend(self.changes[i].1.iter().filter_map(|d| at.get(d).copied()));
        }
        self.changes
            .iter()
            .zip(known)
            // A period's fixed opening is never sent (it has no signature).
            .filter(|((c, _), known)| !known && !c.signature.is_empty())
            .map(|((c, _), _)| c.clone())
            .collect()
    }
}

/// Parse untrusted change bytes; a panic inside the decoder is a rejection.
fn parse_change(bytes: &[u8]) -> Result<Change, String> {
    check_chunk(bytes)?;
    let change = match catch_unwind(|| Change::from_bytes(bytes.to_vec())) {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Err(format!("corrupted change: {e}")),
        Err(_) => return Err("corrupted change: the decoder failed".into()),
    };
    // Run-length encoding lets a few bytes stand for many operations, and
    // every one is expanded when the change is checked and applied.
    if change.len() > MAX_CHANGE_OPS {
        return Err(format!(
            "the change carries {} operations, over the limit of {MAX_CHANGE_OPS}",
            change.len()
        ));
    }
    // Automerge keeps a change as its own re-encoding of it: bytes that
    // parse but are not that encoding would be stored under a hash no
    // change has, and serving the document later panics inside Automerge
    // (a fuzz finding). Only Automerge's own encoding is taken.
    let canonical = catch_unwind(|| Change::from(change.decode()).hash());
    if canonical.ok() != Some(change.hash()) {
        return Err("corrupted change: not in Automerge's own encoding".into());
    }
    // The chunk's checksum is the start of its hash. Automerge does not
    // check it on a compressed change (it hashes what inflates), so those
    // four bytes could be changed in transit and the change still taken
    // and stored as received: refused here, as any other altered byte is.
    if bytes.get(4..8) != Some(&change.hash().0[..4]) {
        return Err("corrupted change: its checksum does not match its contents".into());
    }
    Ok(change)
}

/// The start of every Automerge chunk.
const CHUNK_MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
/// Chunk types (after the magic and a 4-byte checksum).
const CHUNK_CHANGE: u8 = 1;
const CHUNK_COMPRESSED_CHANGE: u8 = 2;

/// Bound what Automerge would inflate before it is asked to. Automerge
/// inflates a compressed change chunk whole, with no limit (a megabyte of
/// deflate is a gigabyte of zeros), and a document or bundle chunk inflates
/// its columns, so: only change chunks are let through, and a compressed
/// one must inflate to at most [`MAX_CHANGE_DATA_BYTES`], counted while
/// inflating into nothing. Automerge then inflates it again, now known to
/// be small.
fn check_chunk(bytes: &[u8]) -> Result<(), String> {
    if bytes.len() > MAX_CHANGE_DATA_BYTES {
        return Err(format!(
            "the change is {} bytes, over the limit of {MAX_CHANGE_DATA_BYTES}",
            bytes.len()
        ));
    }
    let (magic, rest) = bytes
        .split_at_checked(4)
        .ok_or("corrupted change: truncated")?;
    if magic != CHUNK_MAGIC {
        return Err("corrupted change: not an Automerge chunk".into());
    }
    let (kind, rest) = match rest.get(4..).and_then(<[u8]>::split_first) {
        Some((kind, rest)) => (*kind, rest),
        None => return Err("corrupted change: truncated".into()),
    };
    match kind {
        CHUNK_CHANGE => Ok(()),
        CHUNK_COMPRESSED_CHANGE => {
            let (len, rest) = read_uleb(rest).ok_or("corrupted change: bad chunk length")?;
            let data = usize::try_from(len)
                .ok()
                .and_then(|len| rest.get(..len))
                .ok_or("corrupted change: truncated")?;
            let limit = MAX_CHANGE_DATA_BYTES as u64;
            let mut inflater =
                std::io::Read::take(flate2::bufread::DeflateDecoder::new(data), limit + 1);
            let inflated = std::io::copy(&mut inflater, &mut std::io::sink())
                .map_err(|_| "corrupted change: it does not inflate".to_string())?;
            if inflated > limit {
                return Err(format!(
                    "the compressed change inflates past the limit of {MAX_CHANGE_DATA_BYTES} bytes"
                ));
            }
            Ok(())
        }
        other => Err(format!(
            "corrupted change: a chunk of type {other} where a change belongs"
        )),
    }
}

/// An unsigned LEB128 number (at most 10 bytes) and what follows it.
fn read_uleb(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut value: u64 = 0;
    for (i, byte) in bytes.iter().enumerate().take(10) {
        let part = u64::from(byte & 0x7f);
        value |= part
            .checked_shl(7 * i as u32)
            .filter(|v| v >> (7 * i as u32) == part)?;
        if byte & 0x80 == 0 {
            return Some((value, &bytes[i + 1..]));
        }
    }
    None
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
