//! Who may write a change: the roll at the change's causal past.
//!
//! A change's causal past is everything its Automerge dependencies reach.
//! Whether its author may write it is decided from the records in that
//! past alone (the group's genesis, admissions, exits, proposals and votes:
//! the *roll records*), evaluated by [`Governance::at`] at the latest time
//! any of them claims. Two nodes holding the same change therefore judge it
//! alike, whatever else they hold and in whatever order it reached them.
//!
//! Cost: each change keeps the id of an interned set of the roll records in
//! its past (a bitset over this replica's numbering of them). A change that
//! carries no roll record and depends on changes with one set shares their
//! set, so the common case costs a hash-map lookup; a roll is computed once
//! per distinct set and cached. Computing one replays only the records
//! that can change the roll (admissions, exits, founder edits, delegations,
//! and proposals that admit or remove members or groups or change the
//! rules, with their votes), each decoded once when first seen: a group's
//! article, money and treaty business does not make it dearer.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use automerge::ChangeHash;
use nestwork_core::{GroupId, Hash32, MemberId, SignedRecord};

use crate::governance::{Action, Governance, Timeline};
use crate::record::RecordBody;

/// The id of an interned set of roll records.
pub(crate) type SetId = u32;

/// The empty set: the past of a document's first change.
pub(crate) const EMPTY: SetId = 0;

/// Sets of roll records per change, and the roll each set gives.
#[derive(Clone)]
pub(crate) struct RollIndex {
    /// The roll records in each applied change's causal past, the change's
    /// own included.
    past: HashMap<ChangeHash, SetId>,
    /// Roll records by this replica's index of them, with their ids and
    /// decoded bodies (each record is hashed and decoded once, not at every
    /// roll it counts in).
    records: Vec<IndexedRecord>,
    index: HashMap<Hash32, usize>,
    /// Interned sets: bitsets over `records`, with no trailing zero words,
    /// so equal sets have equal bits.
    sets: Vec<Arc<Vec<u64>>>,
    /// The latest time claimed by a record of each set (by set id).
    latest: Vec<u64>,
    interned: HashMap<Arc<Vec<u64>>, SetId>,
    /// The roll each set gives, once asked for.
    rolls: HashMap<SetId, Arc<Roll>>,
    /// Decision records by their proposal (indexes into `records`).
    decisions: HashMap<Hash32, Vec<usize>>,
    /// Admissions (indexes into `records`).
    admissions: Vec<usize>,
    /// Founders' edits (indexes into `records`).
    edits: Vec<usize>,
    /// Rolls at heads cited from outside the document (ledger records
    /// cite the group's heads), by the sorted sets of those heads.
    cited: CitedRolls,
    /// The timeline of the last set whose roll was worked out: the next
    /// set, most often the same records and a few more, only adds those.
    kept: Option<KeptRoll>,
}

/// A governance timeline holding the roll records of one set.
#[derive(Clone)]
struct KeptRoll {
    bits: Arc<Vec<u64>>,
    timeline: Timeline,
    /// The latest time the set's records claim.
    now: u64,
}

/// Most rolls at cited heads kept; past it the cache starts again.
const MAX_CITED_ROLLS: usize = 256;

/// The rolls at cited heads, filled through a shared reference: a node
/// judges a ledger record while it reads the group document.
#[derive(Default)]
struct CitedRolls(Mutex<HashMap<Vec<SetId>, Arc<Roll>>>);

impl Clone for CitedRolls {
    fn clone(&self) -> Self {
        let held = self.0.lock().map(|m| m.clone()).unwrap_or_default();
        CitedRolls(Mutex::new(held))
    }
}

impl Default for RollIndex {
    fn default() -> Self {
        let empty = Arc::new(Vec::new());
        RollIndex {
            past: HashMap::new(),
            records: Vec::new(),
            index: HashMap::new(),
            sets: vec![empty.clone()],
            latest: vec![0],
            interned: HashMap::from([(empty, EMPTY)]),
            rolls: HashMap::new(),
            decisions: HashMap::new(),
            admissions: Vec::new(),
            edits: Vec::new(),
            cited: CitedRolls::default(),
            kept: None,
        }
    }
}

/// A roll record as the index keeps it.
#[derive(Clone)]
struct IndexedRecord {
    id: Hash32,
    author: MemberId,
    /// `None` if it does not decode (the engine accepts only records that
    /// do; such a record counts for nothing).
    body: Option<RecordBody>,
}

/// Who is on the roll, and who was and is no longer.
#[derive(Debug, Default, PartialEq)]
pub struct Roll {
    /// On the roll: may write.
    pub(crate) members: BTreeSet<MemberId>,
    /// Left or removed.
    pub(crate) former: BTreeSet<MemberId>,
    /// Admitted by ticket, awaiting an entry vote: not on the roll, but
    /// they hold the group's founding change.
    pub(crate) awaiting: BTreeSet<MemberId>,
}

impl Roll {
    /// The roll of a group's governance.
    fn of(gov: Governance) -> Roll {
        Roll {
            members: gov.roll.into_keys().collect(),
            former: gov.former.into_keys().collect(),
            awaiting: gov.awaiting_entry,
        }
    }

    /// Whether `member` is on this roll.
    pub fn contains(&self, member: &MemberId) -> bool {
        self.members.contains(member)
    }

    /// Who is on it.
    pub fn members(&self) -> &BTreeSet<MemberId> {
        &self.members
    }
}

/// Whether a record decides who is on the roll.
pub(crate) fn is_roll_record(body: &RecordBody) -> bool {
    matches!(
        body,
        RecordBody::GroupGenesis(_)
            | RecordBody::Admission(_)
            | RecordBody::Exit(_)
            | RecordBody::Proposal(_)
            | RecordBody::Vote(_)
            | RecordBody::Decision(_)
            | RecordBody::CharterEdit(_)
            | RecordBody::Delegation(_)
            | RecordBody::Counterpart(_)
    )
}

/// Whether a passed proposal of this kind can change the roll, or who
/// may vote on a proposal that does (the rules, the child groups' seats).
fn moves_roll(action: &Action) -> bool {
    matches!(
        action,
        Action::AdmitMember { .. }
            | Action::RemoveMember { .. }
            | Action::SetRule { .. }
            | Action::AdmitGroup { .. }
            | Action::RemoveGroup { .. }
    )
}

/// Whether bit `i` is set in `bits`.
fn has_bit(bits: &[u64], i: usize) -> bool {
    bits.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
}

/// The time a record moves the roll's timeline to: the time it claims,
/// or for a delegation and a treaty counterpart, the other group's.
fn replay_time(body: &RecordBody) -> u64 {
    match body {
        RecordBody::Delegation(d) => d.from_ms,
        RecordBody::Counterpart(c) => c.at_ms,
        other => claimed_ms(other).unwrap_or(0),
    }
}

/// The time a record claims, where its time matters to the group's rules
/// (roll records and distress signals). A delegation's and a treaty
/// counterpart's times are the other group's, so they claim none here.
pub(crate) fn claimed_ms(body: &RecordBody) -> Option<u64> {
    Some(match body {
        RecordBody::GroupGenesis(g) => g.created_at_ms,
        RecordBody::Admission(a) => a.admitted_at_ms,
        RecordBody::Exit(e) => e.at_ms,
        RecordBody::Proposal(p) => p.submitted_at_ms,
        RecordBody::Vote(v) => v.cast_at_ms,
        RecordBody::Decision(d) => d.signed_at_ms,
        RecordBody::CharterEdit(e) => e.at_ms,
        RecordBody::Signal(s) => s.raised_at_ms,
        _ => return None,
    })
}

impl RollIndex {
    /// The signer and decoded body of roll record `id`, if indexed.
    pub(crate) fn body(&self, id: &Hash32) -> Option<(MemberId, &RecordBody)> {
        let r = self.records.get(*self.index.get(id)?)?;
        Some((r.author, r.body.as_ref()?))
    }

    /// Whether roll record `id` is in set `set`.
    pub(crate) fn contains(&self, set: SetId, id: &Hash32) -> bool {
        self.index.get(id).is_some_and(|i| self.has(set, *i))
    }

    fn has(&self, set: SetId, i: usize) -> bool {
        has_bit(&self.sets[set as usize], i)
    }

    /// The ids of the decision records on `proposal` indexed here (some
    /// may belong to changes that were refused; callers check where each
    /// one is held).
    pub(crate) fn decisions_on<'a>(
        &'a self,
        proposal: &Hash32,
    ) -> impl Iterator<Item = (usize, &'a Hash32)> + 'a {
        self.decisions
            .get(proposal)
            .into_iter()
            .flatten()
            .map(|i| (*i, &self.records[*i].id))
    }

    /// The ids of the admissions indexed here (as for `decisions_on`).
    pub(crate) fn admissions(&self) -> impl Iterator<Item = &Hash32> + '_ {
        self.admissions.iter().map(|i| &self.records[*i].id)
    }

    /// The founders' edits indexed here, in id order, that `keep` keeps
    /// (as for `decisions_on`: callers say which count).
    pub(crate) fn founders_edits(&self, keep: impl Fn(usize, &Hash32) -> bool) -> Vec<Hash32> {
        let mut ids: Vec<Hash32> = self
            .edits
            .iter()
            .map(|i| (*i, self.records[*i].id))
            .filter(|(i, id)| keep(*i, id))
            .map(|(_, id)| id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// The founders' edits in set `set`, in id order.
    pub(crate) fn founders_edits_in(&self, set: SetId) -> Vec<Hash32> {
        self.founders_edits(|i, _| self.has(set, i))
    }

    /// Whether set `set` holds an admission.
    pub(crate) fn admitted_in(&self, set: SetId) -> bool {
        self.admissions.iter().any(|i| self.has(set, *i))
    }

    /// Whether set `set` holds a decision on `proposal`.
    pub(crate) fn decided_in(&self, set: SetId, proposal: &Hash32) -> bool {
        self.decisions_on(proposal).any(|(i, _)| self.has(set, i))
    }

    /// The set of a change already applied.
    pub(crate) fn past_of(&self, hash: &ChangeHash) -> Option<SetId> {
        self.past.get(hash).copied()
    }

    /// Record the set of an applied change.
    pub(crate) fn set_past(&mut self, hash: ChangeHash, set: SetId) {
        self.past.insert(hash, set);
    }

    /// The union of the sets of `deps`, looked up here or in `batch`
    /// (changes accepted earlier in the same batch). `None` if a dependency
    /// is unknown to both.
    pub(crate) fn union_of_deps(
        &mut self,
        deps: &[ChangeHash],
        batch: &HashMap<ChangeHash, SetId>,
    ) -> Option<SetId> {
        let mut ids: Vec<SetId> = Vec::with_capacity(deps.len());
        for d in deps {
            ids.push(self.past.get(d).or_else(|| batch.get(d)).copied()?);
        }
        ids.sort_unstable();
        ids.dedup();
        match ids.as_slice() {
            [] => Some(EMPTY),
            [one] => Some(*one),
            _ => {
                let latest = ids.iter().map(|i| self.latest[*i as usize]).max();
                let bits = self.union_bits(ids);
                Some(self.intern(bits, latest.unwrap_or(0)))
            }
        }
    }

    /// The bits of the union of sets `ids`.
    fn union_bits(&self, ids: impl IntoIterator<Item = SetId>) -> Vec<u64> {
        let mut bits: Vec<u64> = Vec::new();
        for id in ids {
            let set = &self.sets[id as usize];
            if bits.len() < set.len() {
                bits.resize(set.len(), 0);
            }
            for (w, s) in bits.iter_mut().zip(set.iter()) {
                *w |= s;
            }
        }
        bits
    }

    /// `base` with `own` (roll records a change carries) added.
    pub(crate) fn with_records(&mut self, base: SetId, own: &[SignedRecord]) -> SetId {
        if own.is_empty() {
            return base;
        }
        let mut bits = self.sets[base as usize].as_ref().clone();
        let mut latest = self.latest[base as usize];
        for record in own {
            let id = record.id();
            let i = match self.index.get(&id) {
                Some(i) => *i,
                None => {
                    let body = RecordBody::decode(&record.body).ok();
                    let i = self.records.len();
                    match &body {
                        Some(RecordBody::Decision(d)) => self
                            .decisions
                            .entry(d.proposal.hash32())
                            .or_default()
                            .push(i),
                        Some(RecordBody::Admission(_)) => self.admissions.push(i),
                        Some(RecordBody::CharterEdit(_)) => self.edits.push(i),
                        _ => {}
                    }
                    self.records.push(IndexedRecord {
                        id,
                        author: record.author,
                        body,
                    });
                    self.index.insert(id, i);
                    i
                }
            };
            if let Some(body) = &self.records[i].body {
                latest = latest.max(claimed_ms(body).unwrap_or(0));
            }
            if bits.len() <= i / 64 {
                bits.resize(i / 64 + 1, 0);
            }
            bits[i / 64] |= 1 << (i % 64);
        }
        self.intern(bits, latest)
    }

    /// The latest time a record in set `set` claims.
    pub(crate) fn latest_ms(&self, set: SetId) -> u64 {
        self.latest[set as usize]
    }

    fn intern(&mut self, mut bits: Vec<u64>, latest: u64) -> SetId {
        while bits.last() == Some(&0) {
            bits.pop();
        }
        if let Some(id) = self.interned.get(&bits) {
            return *id;
        }
        let bits = Arc::new(bits);
        let id = self.sets.len() as SetId;
        self.sets.push(bits.clone());
        self.latest.push(latest);
        self.interned.insert(bits, id);
        id
    }

    /// The roll given by the records of `set`, for group `group`: the
    /// governance timeline replayed up to the latest time those records
    /// claim (what the author of a change built on them had seen happen).
    pub(crate) fn roll(&mut self, group: &Hash32, set: SetId) -> Arc<Roll> {
        if let Some(roll) = self.rolls.get(&set) {
            return roll.clone();
        }
        let roll = Arc::new(self.roll_kept(group, set));
        self.rolls.insert(set, roll.clone());
        roll
    }

    /// The roll of `set` from the kept timeline: the records of `set` it
    /// does not hold yet are added to it, if it holds no record outside
    /// `set` (else it starts again from this set's records). What it gives
    /// is what `replay` gives (a timeline shows what a replay from the
    /// start shows, whatever order its records came in).
    fn roll_kept(&mut self, group: &Hash32, set: SetId) -> Roll {
        let bits = self.sets[set as usize].clone();
        let within = |kept: &KeptRoll| {
            kept.bits.len() <= bits.len()
                && kept.bits.iter().zip(bits.iter()).all(|(k, b)| k & !b == 0)
        };
        let mut kept = match self.kept.take() {
            Some(kept) if within(&kept) => kept,
            _ => {
                let Some(timeline) = self.genesis_in(group, &bits) else {
                    return Roll::default();
                };
                KeptRoll {
                    bits: Arc::default(),
                    timeline,
                    now: 0,
                }
            }
        };
        for (id, author, body) in self.records_in(&bits, &kept.bits) {
            kept.now = kept.now.max(replay_time(body));
            if self.moves_roll_in(body, &bits) {
                kept.timeline.add(*id, *author, body);
            }
        }
        kept.bits = bits;
        let gov = kept.timeline.at(kept.now);
        self.kept = Some(kept);
        let roll = Roll::of(gov);
        // Every debug build (so every test) checks it against the replay.
        debug_assert_eq!(roll, self.replay(group, &self.sets[set as usize], None));
        roll
    }

    /// An empty timeline of `group`, if its genesis is in `bits`.
    fn genesis_in(&self, group: &Hash32, bits: &[u64]) -> Option<Timeline> {
        let i = *self.index.get(group)?;
        if !has_bit(bits, i) {
            return None;
        }
        let r = &self.records[i];
        let RecordBody::GroupGenesis(g) = r.body.as_ref()? else {
            return None;
        };
        Some(Timeline::new(
            GroupId::from(*group),
            r.author,
            g.created_at_ms,
            &g.charter,
            g.parent,
        ))
    }

    /// Whether `body`, in a set with `bits`, is replayed for the roll: not
    /// a proposal that cannot change the roll, nor a vote or decision on
    /// one in the set, nor a treaty counterpart. Proposals about articles,
    /// money, treaties, lotteries and the parent tier (most of a group's
    /// business), and the votes on them, decide nothing about the roll.
    fn moves_roll_in(&self, body: &RecordBody, bits: &[u64]) -> bool {
        let idle = |proposal: &Hash32| {
            self.index.get(proposal).is_some_and(|i| {
                has_bit(bits, *i)
                    && matches!(&self.records[*i].body,
                        Some(RecordBody::Proposal(p)) if !moves_roll(&p.action))
            })
        };
        match body {
            RecordBody::Proposal(p) => moves_roll(&p.action),
            RecordBody::Vote(v) => !idle(&v.proposal.hash32()),
            RecordBody::Decision(d) => !idle(&d.proposal.hash32()),
            RecordBody::Counterpart(_) => false,
            _ => true,
        }
    }

    /// The roll at `heads` cited from outside the document (the group
    /// heads a ledger record cites): the roll a change of this document
    /// depending on exactly those heads is judged by (see `roll`), the same
    /// on every node that holds them. `Err` lists the heads not held here.
    pub(crate) fn roll_of_cited(
        &self,
        group: &Hash32,
        heads: &[ChangeHash],
    ) -> Result<Arc<Roll>, Vec<ChangeHash>> {
        let mut ids: Vec<SetId> = Vec::with_capacity(heads.len());
        let mut missing = Vec::new();
        for head in heads {
            match self.past.get(head) {
                Some(set) => ids.push(*set),
                None => missing.push(*head),
            }
        }
        if !missing.is_empty() {
            return Err(missing);
        }
        ids.sort_unstable();
        ids.dedup();
        // Most often the set is one a change here was judged by.
        let set = match ids.as_slice() {
            [one] => Some(*one),
            _ => self
                .interned
                .get(&self.union_bits(ids.iter().copied()))
                .copied(),
        };
        if let Some(roll) = set.and_then(|set| self.rolls.get(&set)) {
            return Ok(roll.clone());
        }
        let mut cited = self.cited.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(roll) = cited.get(&ids) {
            return Ok(roll.clone());
        }
        let bits = match set {
            Some(set) => self.sets[set as usize].as_ref().clone(),
            None => self.union_bits(ids.iter().copied()),
        };
        let roll = Arc::new(self.replay(group, &bits, None));
        if cited.len() >= MAX_CITED_ROLLS {
            cited.clear();
        }
        cited.insert(ids, roll.clone());
        Ok(roll)
    }

    /// The roll given by the records in the past of the changes `heads` at
    /// `now_ms` (not cached): a proposal on the roll decided by its
    /// deadline counts once that has passed, with no record after it.
    /// `None` if a head is unknown here.
    pub(crate) fn roll_at(
        &self,
        group: &Hash32,
        heads: &[ChangeHash],
        now_ms: u64,
    ) -> Option<Roll> {
        let ids = heads
            .iter()
            .map(|head| self.past.get(head).copied())
            .collect::<Option<Vec<SetId>>>()?;
        Some(self.replay(group, &self.union_bits(ids), Some(now_ms)))
    }

    /// The timeline of the records in `bits` that can change the roll,
    /// replayed up to `now_ms`, or to the latest time they claim.
    fn replay(&self, group: &Hash32, bits: &[u64], now_ms: Option<u64>) -> Roll {
        let Some(mut timeline) = self.genesis_in(group, bits) else {
            return Roll::default();
        };
        let mut now = 0;
        for (id, author, body) in self.records_in(bits, &[]) {
            // The claimed time counts every record, replayed or not.
            now = now.max(replay_time(body));
            if self.moves_roll_in(body, bits) {
                timeline.add(*id, *author, body);
            }
        }
        Roll::of(timeline.from_start(now_ms.unwrap_or(now)))
    }

    /// The decoded records in `bits` and not in `except`.
    fn records_in<'a>(
        &'a self,
        bits: &'a [u64],
        except: &'a [u64],
    ) -> impl Iterator<Item = (&'a Hash32, &'a MemberId, &'a RecordBody)> + 'a {
        bits.iter().enumerate().flat_map(move |(w, word)| {
            let new = word & !except.get(w).copied().unwrap_or(0);
            (0..64)
                .filter(move |b| new & (1 << b) != 0)
                .filter_map(move |b| match self.records.get(w * 64 + b) {
                    Some(IndexedRecord {
                        id,
                        author,
                        body: Some(body),
                    }) => Some((id, author, body)),
                    _ => None,
                })
        })
    }
}
