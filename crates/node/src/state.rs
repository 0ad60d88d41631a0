//! What the node holds in memory ([`State`]: the open group documents,
//! their ledgers and period documents) and how it is read from the store:
//! one loader for a group, used at start-up and when a group is rebuilt
//! from the disk.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use nestwork_core::{DocId, GroupId, Hash32, SignedChange};
use nestwork_docs::decisions::Decisions;
use nestwork_docs::group_ledger::{period_id, Gate, GroupLedger};
use nestwork_docs::{ApplyReport, SignedDoc, Writer};
use nestwork_store::DocStore;

use crate::error::NodeError;
use crate::ledger_marks;
use crate::views::Damaged;

/// What the node holds in memory, under one lock.
#[derive(Default)]
pub(crate) struct State {
    /// Group documents by group id.
    pub(crate) groups: BTreeMap<GroupId, SignedDoc>,
    /// Each group's ledger and period documents, by group id.
    pub(crate) ledgers: BTreeMap<GroupId, GroupLedger>,
    /// Which group each open period document belongs to.
    pub(crate) periods: HashMap<DocId, GroupId>,
    /// Documents found damaged at start-up.
    pub(crate) damaged: Vec<Damaged>,
    /// Groups whose memory may be ahead of the disk: a write to them
    /// failed and the store could not be read back yet. Nothing of them is
    /// served to peers until they are rebuilt from the disk.
    pub(crate) unsaved: BTreeSet<GroupId>,
    /// Period documents read back from the store to count a late record
    /// (since start-up).
    pub(crate) periods_reread: u64,
}

impl State {
    /// Every group the store holds, read at start-up with the one loader
    /// ([`State::load_group`]).
    pub(crate) fn load(store: &dyn DocStore, writer: &Writer) -> Result<State, NodeError> {
        let mut docs = State::default();
        let mut groups = Vec::new();
        let mut periods: BTreeMap<GroupId, Vec<(u64, DocId)>> = BTreeMap::new();
        for (id, meta) in store.docs()? {
            let id = DocId::from(id);
            match parse_period_kind(&meta.kind) {
                Some((group, period)) => periods.entry(group).or_default().push((period, id)),
                // A group document's id is its group's.
                None => groups.push(GroupId::from(id.hash32())),
            }
        }
        let mut held = Vec::new();
        for id in groups {
            let loaded = load_document(
                store,
                id.doc(),
                |changes| SignedDoc::load_trusted(id.hash32(), changes),
                |doc| doc.genesis().is_some(),
                &mut docs.damaged,
            )?;
            held.extend(loaded.map(|doc| (id, doc)));
        }
        for (id, doc) in held {
            let of_group = periods.remove(&id).unwrap_or_default();
            docs.load_group(store, writer, id, doc, of_group, None)?;
        }
        for group in periods.keys() {
            tracing::error!(group = %group.short(), "ledger periods of a group this node does not hold");
        }
        Ok(docs)
    }

    /// The one loader of a group: put its document `doc` in place of what
    /// is held of it, and count its ledger from its stored period
    /// documents `periods` (number and id; see [`load_periods`], and
    /// `late` there).
    pub(crate) fn load_group(
        &mut self,
        store: &dyn DocStore,
        writer: &Writer,
        group: GroupId,
        mut doc: SignedDoc,
        periods: Vec<(u64, DocId)>,
        late: Option<Late>,
    ) -> Result<(), NodeError> {
        doc.set_writer(writer);
        if let Some(l) = self.ledgers.remove(&group) {
            for d in l.periods.values() {
                self.periods.remove(&DocId::from(d.id()));
            }
        }
        self.groups.insert(group, doc);
        if let Some(mut l) = self.groups.get(&group).and_then(GroupLedger::of_group) {
            load_periods(store, writer, group, &mut l, self, periods, late)?;
            self.ledgers.insert(group, l);
        }
        Ok(())
    }

    /// Create the ledger of a group whose genesis is known, if missing.
    pub(crate) fn ensure_ledger(&mut self, group: GroupId, writer: &Writer) {
        if !self.ledgers.contains_key(&group) {
            if let Some(l) = self.groups.get(&group).and_then(GroupLedger::of_group) {
                self.ledgers.insert(group, l);
            }
        }
        if let Some(l) = self.ledgers.get_mut(&group) {
            l.open_periods(group, writer, &mut self.periods);
        }
    }

    /// A copy of group `group`'s part of the state (its document, ledger
    /// and loaded periods, and the index of its periods) to judge a bundle
    /// on before anything is stored or replaced.
    pub(crate) fn candidate_of(&self, group: GroupId) -> State {
        let mut c = State::default();
        if let Some(d) = self.groups.get(&group) {
            c.groups.insert(group, d.clone());
        }
        if let Some(l) = self.ledgers.get(&group) {
            c.ledgers.insert(group, l.clone());
        }
        c.periods = self
            .periods
            .iter()
            .filter(|(_, g)| **g == group)
            .map(|(d, g)| (*d, *g))
            .collect();
        c
    }

    /// The group whose own document `doc` is, if this node holds it (a
    /// group document's id is its group's).
    pub(crate) fn group_by_doc(&self, doc: &DocId) -> Option<GroupId> {
        let group = GroupId::from(doc.hash32());
        self.groups.contains_key(&group).then_some(group)
    }

    /// The group a document belongs to.
    pub(crate) fn group_of(&self, doc: &DocId) -> Option<GroupId> {
        self.group_by_doc(doc)
            .or_else(|| self.periods.get(doc).copied())
    }

    /// A document by id: a group document or a period document.
    pub(crate) fn doc(&self, doc: &DocId) -> Option<&SignedDoc> {
        if let Some(group) = self.group_by_doc(doc) {
            return self.groups.get(&group);
        }
        let group = self.periods.get(doc)?;
        self.ledgers
            .get(group)?
            .periods
            .values()
            .find(|d| d.id() == doc.hash32())
    }

    /// The heads of an unloaded (cold) period document.
    pub(crate) fn cold_heads(&self, doc: &DocId) -> Option<Vec<Hash32>> {
        self.cold_period(doc).map(|(_, _, heads)| heads)
    }

    /// Whether `doc`'s group has changes not yet on disk (nothing of it is
    /// served until they are).
    pub(crate) fn holds_unsaved(&self, doc: &DocId) -> bool {
        self.group_of(doc)
            .is_some_and(|g| self.unsaved.contains(&g))
    }

    /// A ledger period kept on disk only: its group, number and heads.
    pub(crate) fn cold_period(&self, doc: &DocId) -> Option<(GroupId, u64, Vec<Hash32>)> {
        let group = self.periods.get(doc)?;
        let l = self.ledgers.get(group)?;
        l.cold
            .iter()
            .find(|(p, _)| period_id(group, **p) == *doc)
            .map(|(p, heads)| (*group, *p, heads.clone()))
    }

    /// The store kind of a document.
    pub(crate) fn kind_of(&self, doc: &DocId) -> Option<String> {
        if self.group_by_doc(doc).is_some() {
            return Some("group".to_string());
        }
        let group = self.periods.get(doc)?;
        let (_, period) = self.doc(doc)?.ledger_period_of()?;
        Some(period_kind(group, period))
    }

    /// Apply changes to a group or period document with its ledger's gate;
    /// proposals are judged as of `now_ms`.
    pub(crate) fn apply(
        &mut self,
        doc: DocId,
        changes: Vec<SignedChange>,
        now_ms: u64,
    ) -> Option<ApplyReport> {
        let group = self.group_of(&doc)?;
        if doc == group.doc() {
            // The group document itself changes: judge proposals on what
            // it held before this batch.
            let decisions = Decisions::of(self.groups.get(&group), now_ms).resolved();
            let ledger = self.ledgers.get_mut(&group);
            let target = self.groups.get_mut(&group)?;
            let mut gate = Gate {
                ledger: ledger.map(|l| &mut l.ledger),
                group: None,
                decisions: &decisions,
                now_ms,
            };
            Some(target.apply_with(changes, &mut gate))
        } else {
            // Each payment and closing cites the group document's heads its
            // author held: it is judged by the group's roll there (payer,
            // payee and signer on it), the same verdict on every node, and
            // waits while this node lacks those heads.
            let group_doc = self.groups.get(&group)?;
            let decisions = Decisions::of(Some(group_doc), now_ms);
            self.ledgers
                .get_mut(&group)?
                .apply_to(&doc, group_doc, changes, &decisions)
        }
    }
}

/// Load document `id` from the store with `load`. One whose stored
/// entries do not all decode, or that does not load, must not keep the node
/// from starting: what still loads is kept (every entry that decodes into
/// the change it names and builds only on kept ones, see
/// [`nestwork_docs::engine::loadable`]), the rest is set aside in the
/// store (kept for inspection, out of the document), and the document is
/// noted in `damaged` for `status`. Peers send the missing changes again at
/// the next sync. `None` when nothing usable is left (`usable` says what
/// is: a group document needs its founding change).
pub(crate) fn load_document(
    store: &dyn DocStore,
    id: DocId,
    load: impl Fn(Vec<SignedChange>) -> Result<SignedDoc, nestwork_docs::Error>,
    usable: impl Fn(&SignedDoc) -> bool,
    damaged: &mut Vec<Damaged>,
) -> Result<Option<SignedDoc>, NodeError> {
    let first_error = match store.changes(&id.hash32()).map(&load) {
        Ok(Ok(doc)) if usable(&doc) => return Ok(Some(doc)),
        Ok(Ok(_)) => "its founding change is missing".to_string(),
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    };
    let salvaged = store.salvage(&id.hash32())?;
    let (keys, changes): (Vec<Vec<u8>>, Vec<SignedChange>) = salvaged.changes.into_iter().unzip();
    let (kept, dropped) = nestwork_docs::engine::loadable(changes);
    let mut aside: Vec<Vec<u8>> = salvaged.damaged.into_iter().map(|(k, _)| k).collect();
    let undecodable = aside.len();
    aside.extend(dropped.iter().map(|&i| keys[i].clone()));
    let doc = load(kept).ok().filter(|d| usable(d));
    if doc.is_none() {
        aside = keys;
        aside.extend(
            store
                .salvage(&id.hash32())?
                .damaged
                .into_iter()
                .map(|(k, _)| k),
        );
    }
    store.set_aside(&aside)?;
    store.flush()?;
    let name = doc.as_ref().and_then(|d| d.genesis()).map(|(_, g)| g.name);
    let what = match &doc {
        Some(_) => format!(
            "{} stored entries set aside ({undecodable} damaged, {} built on them); the rest loaded, and peers send the missing changes again ({first_error})",
            aside.len(),
            aside.len() - undecodable
        ),
        None => format!(
            "cannot be loaded ({first_error}); its {} stored entries were set aside. Import a bundle of the group, or join it again with a new invite",
            aside.len()
        ),
    };
    tracing::error!(doc = %id, %what, "damaged document in the store");
    damaged.push(Damaged {
        doc: id,
        name,
        what,
    });
    Ok(doc)
}

/// A late record that needs the history below a group's base: the period
/// it is filed in, the newest closing held when it came, and, if the hold
/// it set is still on, the checkpoint its history was counted from last.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Late {
    pub(crate) period: u64,
    pub(crate) newest: Option<u64>,
    pub(crate) counted_from: Option<u64>,
}

/// Read group `group`'s ledger periods (`periods`: number and document id)
/// back from the store into `l`, listing them in `index`.
///
/// With a stored base (and no `late` record), the ledger counts from it and
/// the periods marked cold (wholly below it, unchanged since) stay on disk.
/// Otherwise it is counted again, reading one period at a time in order:
/// the base moves up as the closings come, and each period that falls
/// wholly below it leaves memory at once, so what is held at any moment
/// follows the recent periods, not the whole history. For a `late` record
/// the count starts at the newest checkpoint at least two periods below
/// it (below the one counted from last time, if that did not do), so it
/// reads the periods from there on, not the whole history; with none, or
/// no base stored, from the first period.
fn load_periods(
    store: &dyn DocStore,
    writer: &Writer,
    group: GroupId,
    l: &mut GroupLedger,
    state: &mut State,
    mut periods: Vec<(u64, DocId)>,
    late: Option<Late>,
) -> Result<(), NodeError> {
    let State {
        periods: index,
        damaged,
        periods_reread,
        ..
    } = state;
    periods.sort_unstable();
    let mut load = |period: u64, id: &DocId| -> Result<Option<SignedDoc>, NodeError> {
        let loaded = load_document(
            store,
            *id,
            |changes| SignedDoc::load_ledger_period(group.hash32(), period, changes),
            |_| true,
            damaged,
        )?;
        Ok(loaded.map(|mut doc| {
            doc.set_writer(writer);
            doc
        }))
    };
    if late.is_none() {
        if let Some(base) = ledger_marks::stored_base(store, &group)? {
            l.ledger.set_base(base);
            for (period, id) in periods {
                index.insert(id, group);
                match ledger_marks::cold_heads(store, &group, period)? {
                    Some(heads) => {
                        l.cold.insert(period, heads);
                    }
                    None => {
                        if let Some(doc) = load(period, &id)? {
                            l.periods.insert(period, doc);
                        }
                    }
                }
            }
            l.absorb_loaded();
            return Ok(());
        }
    }
    let checkpoint = match late {
        Some(late) => checkpoint_for(store, &group, late)?,
        None => None,
    };
    let all: Vec<u64> = periods.iter().map(|(p, _)| *p).collect();
    ledger_marks::forget_checkpoints_above(store, &group, checkpoint.as_ref().map(|c| c.0), all)?;
    let mut cold = BTreeSet::new();
    if let Some((from, c)) = checkpoint {
        tracing::info!(group = %group.short(), from, "counting the ledger again from a checkpoint");
        l.ledger.set_base(c.base);
        l.counted_from = Some(from);
        cold = c.cold.into_iter().collect();
    }
    if let Some(late) = late {
        l.hold_for(late.period, late.newest);
    }
    // Marks of periods cooled under a higher base do not hold under the
    // one counted now: all are dropped before any base is stored (a start
    // after a crash in between must not skip them), and each period is
    // marked again as it cools.
    let mut to_count = Vec::new();
    for (period, id) in periods {
        index.insert(id, group);
        if cold.contains(&period) {
            if let Some(heads) = ledger_marks::cold_heads(store, &group, period)? {
                l.cold.insert(period, heads);
                continue;
            }
        }
        ledger_marks::forget_cold(store, &group, period)?;
        to_count.push((period, id));
    }
    for (period, id) in to_count {
        if let Some(doc) = load(period, &id)? {
            l.periods.insert(period, doc);
            if late.is_some() {
                *periods_reread += 1;
            }
        }
        l.absorb_period(period);
        if l.take_rebased() {
            ledger_marks::store_rebase(store, &group, l)?;
        }
    }
    Ok(())
}

/// The checkpoint to count group `group`'s ledger from for a `late`
/// record: the newest at least two periods below it, and below the one
/// counted from last time if that did not do; none for a record in period
/// 0 or 1 (a base under their closings could cut it, see
/// `GroupLedger::settle`: counted from nothing).
fn checkpoint_for(
    store: &dyn DocStore,
    group: &GroupId,
    late: Late,
) -> Result<Option<(u64, ledger_marks::Checkpoint)>, NodeError> {
    let top = late
        .period
        .checked_sub(2)
        .and_then(|top| match late.counted_from {
            Some(last) => last.checked_sub(1).map(|below| top.min(below)),
            None => Some(top),
        });
    match top {
        Some(top) => ledger_marks::checkpoint_at_or_below(store, group, top),
        None => Ok(None),
    }
}

/// The store's kind string for a period document of `group`.
pub fn period_kind(group: &GroupId, period: u64) -> String {
    format!("ledger {} {period}", group.to_hex())
}

/// The group and period of a stored period document's kind string.
pub fn parse_period_kind(kind: &str) -> Option<(GroupId, u64)> {
    let mut parts = kind.split(' ');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("ledger"), Some(group), Some(period), None) => {
            Some((group.parse().ok()?, period.parse().ok()?))
        }
        _ => None,
    }
}
