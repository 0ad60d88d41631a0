//! [`Node`]: the store, the open documents ([`State`]) under one lock, and
//! the one path every write takes ([`Node::commit`]). What members ask for
//! is carried out in the files beside this one (`groups`, `ledger`,
//! `governance`, `distress`, `bundle`, `status`, `tick`); `replica` is the
//! node as the network sees it.
//!
//! Every operation that writes follows the same path: change the document
//! in memory (the engine checks it), append the accepted changes to the
//! store in one atomic step, and flush the store to disk before returning.
//! If the append fails, the document is reloaded from the store, so memory
//! never holds what the disk does not. The flush happens under the lock, as
//! part of the append: the lock is what keeps `changes_since` (a peer's
//! sync) from reading the document, so nothing is served, announced or
//! answered before it is durable. Otherwise a crash after a peer took a
//! change would make this node reuse its sequence numbers, and its own
//! account would be frozen as a double spend.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nestwork_core::{DocId, GroupId, Hash32, MemberId, MemberKey, SignalId, SignedChange};
use nestwork_docs::engine::StoredGraph;
use nestwork_docs::group_ledger::period_id;
use nestwork_docs::seal::Keyring;
use nestwork_docs::{GroupView, SignedDoc, Writer};
use nestwork_net::DocEvent;
use nestwork_store::{DocMeta, DocStore, Store};
use tokio::sync::broadcast;

use crate::clock::Clock;
use crate::data_dir::DataDir;
use crate::directory::{Directory, Listing};
use crate::identity;
use crate::ledger_marks;
use crate::seal::SealMemory;
use crate::served::ServedPeriods;
use crate::state::{parse_period_kind, Late, State};

use crate::error::Lookup;
pub use crate::error::NodeError;
pub use crate::views::{
    CharterStatus, CreateGroup, Damaged, ImportReport, LimitRequest, MemoryStatus, PayRequest,
    Status, MAX_REQUEST_ID_CHARS,
};

/// Changes a write made to one document, stored and then announced by
/// [`Node::commit`].
pub(crate) struct Write {
    /// The document.
    pub(crate) doc: DocId,
    /// The changes, in the order they were made.
    pub(crate) changes: Vec<SignedChange>,
    /// The store kind of a document the state does not hold yet (a new
    /// group, or a period of an imported one); otherwise the state says.
    pub(crate) kind: Option<String>,
}

impl Write {
    /// `changes` to `doc`, a document the state holds.
    pub(crate) fn to(doc: DocId, changes: Vec<SignedChange>) -> Write {
        Write {
            doc,
            changes,
            kind: None,
        }
    }
}

/// What a write staged under the lock, for [`Node::commit`] to make
/// durable and announce.
pub(crate) struct Staged<S> {
    /// The changes, by document, in the order they are stored and
    /// announced (none: nothing to store).
    pub(crate) writes: Vec<Write>,
    /// An id and value kept in the store in the same atomic step as the
    /// changes (which client request made which payment).
    pub(crate) note: Option<(Hash32, Vec<u8>)>,
    /// Whether the changes were made here (a peer's are announced as
    /// received).
    pub(crate) local: bool,
    /// What the write hands on to its second step.
    pub(crate) value: S,
}

impl<S> Staged<S> {
    /// `writes` made here, handing on `value`.
    pub(crate) fn local(value: S, writes: Vec<Write>) -> Staged<S> {
        Staged {
            writes,
            note: None,
            local: true,
            value,
        }
    }
}

/// The running node's state.
pub struct Node {
    pub(crate) dir: DataDir,
    pub(crate) writer: Writer,
    pub(crate) store: Arc<dyn DocStore>,
    docs: Mutex<State>,
    events: broadcast::Sender<DocEvent>,
    pub(crate) started: Instant,
    pub(crate) load_time: Duration,
    pub(crate) clock: Clock,
    seal: Mutex<SealMemory>,
    /// When this node first held each open distress signal, by (group,
    /// signal), as far as it has noted them (`distress.rs`, `held_since`).
    pub(crate) first_held: Mutex<BTreeMap<(GroupId, SignalId), u64>>,
    /// What the network looks up on its loop, without this node's lock.
    pub(crate) directory: Directory,
    /// Cold ledger periods read back to answer peers' syncs.
    served: ServedPeriods,
}

impl Node {
    /// Open the node in `dir` as `key`: open the store (refused if another
    /// process has it) and load every document.
    pub fn open(dir: &DataDir, key: MemberKey) -> Result<Node, NodeError> {
        Node::open_with_clock(dir, key, Clock::default())
    }

    /// [`Node::open`] with a clock of the caller's (tests move it).
    pub fn open_with_clock(dir: &DataDir, key: MemberKey, clock: Clock) -> Result<Node, NodeError> {
        let store = Store::open(&dir.store_dir())?;
        Node::open_on(dir, key, clock, Arc::new(store))
    }

    /// A node on `store` (the sled store in `dir`, or a
    /// `nestwork_store::MemoryStore` in tests that need no disk for
    /// documents); `dir` holds the rest (the device tag).
    pub fn open_on(
        dir: &DataDir,
        key: MemberKey,
        clock: Clock,
        store: Arc<dyn DocStore>,
    ) -> Result<Node, NodeError> {
        let started = Instant::now();
        let device = identity::device_tag(dir)?;
        let writer = Writer::new(key, device);
        let docs = State::load(&*store, &writer)?;
        let groups: Vec<GroupId> = docs.groups.keys().copied().collect();
        let mut node = Node {
            dir: dir.clone(),
            writer,
            store,
            docs: Mutex::new(docs),
            events: broadcast::channel(1024).0,
            started,
            load_time: Duration::ZERO,
            clock,
            seal: Mutex::default(),
            first_held: Mutex::default(),
            directory: Directory::default(),
            served: ServedPeriods::default(),
        };
        {
            let mut docs = node.lock();
            for group in groups {
                node.tend_ledger(&mut docs, group)?;
                docs.ensure_ledger(group, &node.writer);
                node.relist(&mut docs, group);
            }
            node.store.flush()?;
            tracing::info!(
                documents = docs.groups.len() + docs.periods.len(),
                changes = node.store.change_count(),
                ms = started.elapsed().as_millis() as u64,
                "store loaded"
            );
        }
        node.load_time = started.elapsed();
        Ok(node)
    }

    /// This node's member id.
    pub fn member(&self) -> MemberId {
        self.writer.id()
    }

    /// The node's clock.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Now, by the node's clock.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Whether `doc` is a group document this node holds (not a ledger
    /// period).
    pub fn holds_group(&self, doc: &DocId) -> bool {
        self.lock().group_by_doc(doc).is_some()
    }

    /// Events about documents: every stored change, local or received.
    pub fn subscribe(&self) -> broadcast::Receiver<DocEvent> {
        self.events.subscribe()
    }

    /// Tell the network about changes now durable: list them in the
    /// directory first (so the network, which looks there, sees them when
    /// the event reaches it), then send the event.
    fn announce(&self, doc: DocId, changes: Vec<SignedChange>, local: bool) {
        if changes.is_empty() {
            return;
        }
        let seal_with = {
            let mut docs = self.lock();
            self.note_durable(&mut docs, &doc);
            // A change made here to the group document is sealed with the
            // key current at its causal past: whoever was on the roll then
            // may read it (a removal reaches the member removed).
            let group = docs.group_by_doc(&doc);
            match (changes.last(), group) {
                (Some(last), Some(group)) if local => self
                    .keyring_in(&mut docs, &group, Some(&last.hash))
                    .and_then(|ring| ring.current),
                _ => None,
            }
        };
        // No receiver (no network running) is fine.
        let _ = self.events.send(DocEvent {
            doc,
            changes,
            local,
            seal_with,
        });
    }

    /// Update the directory for a document whose changes are durable: its
    /// heads, or, for a group document or a document new to the directory
    /// (a new ledger period), the whole group (roll, keys, documents).
    fn note_durable(&self, docs: &mut State, doc: &DocId) {
        let Some(group) = docs.group_of(doc) else {
            return;
        };
        if group.doc() != *doc {
            let heads = docs
                .doc(doc)
                .map(SignedDoc::heads)
                .or_else(|| docs.cold_heads(doc));
            // A change that fills one period opens the next, empty: until
            // it is listed a peer's sync into it is refused as unknown and
            // this node never asks for it (after a missed gossip message,
            // for good: the nodes never agreed again).
            let opened = docs
                .ledgers
                .get(&group)
                .is_some_and(|l| l.opened_since_listed());
            if let Some(heads) = heads {
                if !opened && self.directory.set_heads(doc, heads) {
                    return;
                }
            }
        }
        self.relist(docs, group);
    }

    /// List `group` in the directory afresh from the node's state (or drop
    /// it from the directory if this node no longer holds it).
    fn relist(&self, docs: &mut State, group: GroupId) {
        if let Some(l) = docs.ledgers.get_mut(&group) {
            l.listed();
        }
        match self.listing(docs, group) {
            Some(listing) => self.directory.list(group, listing),
            None => self.directory.forget(&group),
        }
    }

    /// What the directory lists for `group`, from the node's state.
    fn listing(&self, docs: &mut State, group: GroupId) -> Option<Listing> {
        let keyring = self.keyring_in(docs, &group, None);
        let doc = docs.groups.get(&group)?;
        let (genesis, _) = doc.genesis()?;
        let mut listed = vec![(group.doc(), doc.heads())];
        if let Some(l) = docs.ledgers.get(&group) {
            let loaded = (l.periods.iter()).map(|(p, d)| (*p, DocId::from(d.id()), d.heads()));
            let cold = l
                .cold
                .iter()
                .map(|(p, heads)| (*p, period_id(&group, *p), heads.clone()));
            let mut periods: Vec<(u64, DocId, Vec<Hash32>)> = loaded.chain(cold).collect();
            periods.sort_by_key(|(p, _, _)| *p);
            listed.extend(periods.into_iter().map(|(_, id, heads)| (id, heads)));
        }
        Some(Listing {
            genesis: genesis.encode(),
            members: doc.members().clone(),
            docs: listed,
            keyring,
        })
    }

    /// The one path every write takes. Under the write lock, `stage`
    /// changes the state and says what it changed; those changes are
    /// appended to the store in one atomic step and flushed, still under
    /// the lock (see the module's comment: nothing serves, announces or
    /// answers them before they are durable); then `settle` finishes under
    /// the lock with what `stage` handed on (the state as stored: a ledger
    /// tended, a checked copy swapped in, a view made). Once the lock is
    /// released the changes are announced. If the store fails, the group
    /// is rebuilt from what reached the disk and the write fails.
    pub(crate) fn commit<S, T>(
        &self,
        stage: impl FnOnce(&mut State) -> Result<Staged<S>, NodeError>,
        settle: impl FnOnce(&mut State, S) -> Result<T, NodeError>,
    ) -> Result<T, NodeError> {
        let (value, writes, local) = {
            let mut docs = self.lock_for_write()?;
            let staged = stage(&mut docs)?;
            let writes: Vec<Write> = staged
                .writes
                .into_iter()
                .filter(|w| !w.changes.is_empty())
                .collect();
            if !writes.is_empty() {
                self.persist(&mut docs, &writes, staged.note.as_ref())?;
            }
            (settle(&mut docs, staged.value)?, writes, staged.local)
        };
        // Durable already: `persist` flushed under the lock.
        for w in writes {
            self.announce(w.doc, w.changes, local);
        }
        Ok(value)
    }

    /// Append `writes` (with `note`) to the store in one atomic step and
    /// flush, under the lock; on failure rebuild their group from the
    /// store so that memory does not run ahead of the disk.
    fn persist(
        &self,
        docs: &mut State,
        writes: &[Write],
        note: Option<&(Hash32, Vec<u8>)>,
    ) -> Result<(), NodeError> {
        let Some(first) = writes.first() else {
            return Ok(());
        };
        let now = self.now_ms();
        let metas: Vec<DocMeta> = writes
            .iter()
            .map(|w| DocMeta {
                kind: w
                    .kind
                    .clone()
                    .or_else(|| docs.kind_of(&w.doc))
                    .unwrap_or_else(|| "group".to_string()),
                first_stored_ms: now,
            })
            .collect();
        let batch: Vec<(Hash32, &DocMeta, &[SignedChange])> = writes
            .iter()
            .zip(&metas)
            .map(|(w, meta)| (w.doc.hash32(), meta, w.changes.as_slice()))
            .collect();
        // The group to rebuild: a period new to the state names it in its
        // kind; a new group document is its own group's.
        let group = docs
            .group_of(&first.doc)
            .or_else(|| {
                first
                    .kind
                    .as_deref()
                    .and_then(parse_period_kind)
                    .map(|(g, _)| g)
            })
            .unwrap_or_else(|| GroupId::from(first.doc.hash32()));
        let note = note.map(|(id, value)| (id, value.as_slice()));
        if let Err(e) = self.store.append_all(&batch, note) {
            tracing::error!(doc = %first.doc.short(), error = %e, "store append failed; reloading");
            self.recover_from_store(docs, &group);
            return Err(e.into());
        }
        if let Err(e) = self.store.flush() {
            tracing::error!(doc = %first.doc.short(), error = %e, "store flush failed; reloading");
            self.recover_from_store(docs, &group);
            return Err(NodeError::NotDurable(e));
        }
        Ok(())
    }

    /// After a write to the store failed (a full disk): memory must not run
    /// ahead of the disk, so open the store afresh (sled refuses everything
    /// after a failed write, reads too) and rebuild `group` from
    /// what reached the disk. Should either fail, the group stays as it was
    /// in memory and the next write tries again: the node keeps answering,
    /// and writes resume once there is space.
    fn recover_from_store(&self, docs: &mut State, group: &GroupId) {
        let Some(group) = docs.groups.contains_key(group).then_some(*group) else {
            let _ = self.store.reopen();
            return;
        };
        let reloaded = self
            .store
            .reopen()
            .map_err(NodeError::from)
            .and_then(|()| self.reload_group(docs, group, None));
        if let Err(e) = reloaded {
            tracing::error!(group = %group.short(), error = %e, "cannot rebuild the group from the store yet; it is not served to peers, and writes wait, until it is");
            docs.unsaved.insert(group);
        }
    }

    /// The node's state, for a write: once a write failed, the store is
    /// opened afresh and the groups it left ahead of the disk rebuilt
    /// first, and while that cannot be done (the disk is still full) the
    /// write is refused with the reason before anything changes.
    fn lock_for_write(&self) -> Result<MutexGuard<'_, State>, NodeError> {
        let mut docs = self.lock();
        if !self.store.is_open() {
            self.store.reopen()?;
        }
        while let Some(group) = docs.unsaved.first().copied() {
            self.reload_group(&mut docs, group, None)?;
            docs.unsaved.remove(&group);
        }
        Ok(docs)
    }

    /// After records reached a group's ledger: reload the history below its
    /// base if a late record needs it; when the base moved, store it and
    /// unload the periods that lie wholly below it.
    pub(crate) fn tend_ledger(&self, docs: &mut State, group: GroupId) -> Result<(), NodeError> {
        let Some(l) = docs.ledgers.get_mut(&group) else {
            return Ok(());
        };
        if let Some(period) = l.take_history_for() {
            ledger_marks::forget_base(&*self.store, &group)?;
            return self.reload_group(docs, group, Some(period));
        }
        if l.take_rebased() {
            ledger_marks::store_rebase(&*self.store, &group, l)?;
        }
        Ok(())
    }

    /// Load a period document that was unloaded (cold) back from the store.
    pub(crate) fn warm(&self, docs: &mut State, doc: &DocId) -> Result<(), NodeError> {
        let Some((group, period, _)) = docs.cold_period(doc) else {
            return Ok(());
        };
        let stored = self.store.changes(&doc.hash32())?;
        let mut loaded = SignedDoc::load_ledger_period(group.hash32(), period, stored)?;
        loaded.set_writer(&self.writer);
        if let Some(l) = docs.ledgers.get_mut(&group) {
            l.warm(period, loaded);
        }
        Ok(())
    }

    /// Cold period `doc` as stored, if its stored changes end at `heads`
    /// (a change stored since, or being stored, does not: then `None`).
    /// Read without the node's lock and kept for the next peer that asks
    /// (see [`crate::served`]).
    pub(crate) fn served_period(
        &self,
        doc: &DocId,
        mut heads: Vec<Hash32>,
    ) -> Option<Arc<StoredGraph>> {
        heads.sort_unstable();
        if let Some(graph) = self.served.get(doc, &heads) {
            return Some(graph);
        }
        let graph = match self.store.changes(&doc.hash32()).map(StoredGraph::of) {
            Ok(Ok(graph)) => graph,
            Ok(Err(e)) => {
                tracing::warn!(doc = %doc.short(), error = %e, "a stored ledger period does not read back");
                return None;
            }
            Err(e) => {
                tracing::warn!(doc = %doc.short(), error = %e, "cannot read a ledger period");
                return None;
            }
        };
        if graph.heads() != heads {
            return None;
        }
        let graph = Arc::new(graph);
        self.served.keep(*doc, heads, graph.clone());
        Some(graph)
    }

    /// Rebuild one group's document and ledger from the store with the
    /// loader of start-up ([`State::load_group`]). `late`: a late record
    /// filed in that period needs the history below the base, so the
    /// ledger is counted again from a checkpoint below it (see
    /// `load_periods`); otherwise it counts from its stored base.
    fn reload_group(
        &self,
        docs: &mut State,
        group: GroupId,
        late: Option<u64>,
    ) -> Result<(), NodeError> {
        // The group document is read before anything is replaced: a read
        // that fails leaves memory as it was.
        tracing::info!(group = %group.short(), ?late, "reloading a group's documents from the store");
        let stored = self.store.changes(&group.hash32())?;
        let doc = SignedDoc::load_trusted(group.hash32(), stored)?;
        let periods: Vec<(u64, DocId)> = self
            .store
            .docs()?
            .into_iter()
            .filter_map(|(id, meta)| match parse_period_kind(&meta.kind) {
                Some((g, period)) if g == group => Some((period, DocId::from(id))),
                _ => None,
            })
            .collect();
        let old = docs.ledgers.get(&group);
        let late = late.map(|period| Late {
            period,
            newest: old.and_then(|l| l.ledger.newest_closed()),
            counted_from: old.and_then(|l| l.counted_from),
        });
        docs.load_group(&*self.store, &self.writer, group, doc, periods, late)?;
        docs.ensure_ledger(group, &self.writer);
        self.relist(docs, group);
        Ok(())
    }

    pub(crate) fn with_doc<T>(
        &self,
        sel: &str,
        f: impl FnOnce(&SignedDoc) -> Result<T, NodeError>,
    ) -> Result<T, NodeError> {
        let docs = self.lock();
        let (_, doc) = self.resolve_doc(&docs.groups, sel)?;
        f(doc)
    }

    /// A group as [`Node::resolve`] finds it, with its document.
    pub(crate) fn resolve_doc<'a>(
        &self,
        docs: &'a BTreeMap<GroupId, SignedDoc>,
        sel: &str,
    ) -> Result<(GroupId, &'a SignedDoc), NodeError> {
        let id = self.resolve(docs, sel)?;
        let doc = docs
            .get(&id)
            .ok_or_else(|| NodeError::not_found(Lookup::Group, sel))?;
        Ok((id, doc))
    }

    /// A group by full id, unique id prefix (4+ hex characters) or exact name.
    pub(crate) fn resolve(
        &self,
        docs: &BTreeMap<GroupId, SignedDoc>,
        sel: &str,
    ) -> Result<GroupId, NodeError> {
        let sel_trim = sel.trim();
        if let Ok(id) = sel_trim.parse::<GroupId>() {
            return docs
                .contains_key(&id)
                .then_some(id)
                .ok_or_else(|| NodeError::not_found(Lookup::Group, sel));
        }
        let lower = sel_trim.to_ascii_lowercase();
        let by_prefix: Vec<GroupId> =
            if lower.len() >= 4 && lower.chars().all(|c| c.is_ascii_hexdigit()) {
                docs.keys()
                    .filter(|id| id.to_hex().starts_with(&lower))
                    .copied()
                    .collect()
            } else {
                Vec::new()
            };
        let matches = if by_prefix.is_empty() {
            docs.values()
                .filter_map(GroupView::of)
                .filter(|v| v.name == sel_trim)
                .map(|v| v.id)
                .collect()
        } else {
            by_prefix
        };
        match matches.as_slice() {
            [] => Err(NodeError::not_found(Lookup::Group, sel)),
            [one] => Ok(*one),
            many => Err(NodeError::ambiguous(
                Lookup::Group,
                sel,
                many.iter().map(GroupId::short).collect(),
            )),
        }
    }

    /// The keyring of `group` (see [`crate::seal::keyring_in`]).
    pub(crate) fn keyring_in(
        &self,
        docs: &mut State,
        group: &GroupId,
        before: Option<&Hash32>,
    ) -> Option<Keyring> {
        crate::seal::keyring_in(
            docs,
            group,
            before,
            self.writer.key(),
            &mut self.seal_memory(),
        )
    }

    /// What the node remembers of seal keys (taken after the state's lock,
    /// never before).
    pub(crate) fn seal_memory(&self) -> MutexGuard<'_, SealMemory> {
        self.seal.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a document half-changed
        // (the engine only swaps in fully checked state), so keep serving.
        self.docs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Flush the store (on shutdown).
    pub fn close(&self) -> Result<(), NodeError> {
        self.store.flush()?;
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn node_in(dir: &std::path::Path, seed: u8) -> Node {
        Node::open(&DataDir::new(dir), MemberKey::from_secret([seed; 32])).expect("open")
    }

    /// A node whose documents live in memory (`dir` keeps its device tag):
    /// for tests that do not restart it.
    fn node_in_memory(dir: &std::path::Path, seed: u8) -> Node {
        let store = Arc::new(nestwork_store::MemoryStore::new());
        let key = MemberKey::from_secret([seed; 32]);
        Node::open_on(&DataDir::new(dir), key, Clock::default(), store).expect("open")
    }

    pub(crate) fn create(node: &Node, name: &str) -> Result<GroupView, NodeError> {
        node.create_group(CreateGroup {
            name: name.into(),
            kind: None,
            parent: None,
            description: Some("tools and seeds".into()),
            unit: None,
            floor: None,
            ceiling: None,
        })
    }

    #[test]
    fn groups_survive_a_restart() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let view = {
            let node = node_in(tmp.path(), 1);
            let view = create(&node, "Riverside").expect("create");
            node.describe("Riverside", "tools, seeds and soup")
                .expect("describe");
            view
        };
        let node = node_in(tmp.path(), 1);
        let again = node.group(&view.id.to_hex()).expect("group");
        assert_eq!(again.name, "Riverside");
        assert_eq!(again.description, "tools, seeds and soup");
        assert_eq!(node.group(&view.id.short()).expect("by prefix").id, view.id);
    }

    #[test]
    fn a_bad_name_stores_nothing() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let node = node_in_memory(tmp.path(), 1);
        assert!(matches!(create(&node, ""), Err(NodeError::Invalid(_))));
        assert!(matches!(
            create(&node, &"x".repeat(200)),
            Err(NodeError::Invalid(_))
        ));
        assert_eq!(node.status().changes, 0);
        assert!(node.groups().is_empty());
    }

    #[test]
    fn import_is_all_or_nothing() {
        let a = tempfile::tempdir().expect("tempdir");
        let b = tempfile::tempdir().expect("tempdir");
        let alice = node_in_memory(a.path(), 1);
        let bob = node_in_memory(b.path(), 2);
        let view = create(&alice, "Riverside").expect("create");
        let bundle = alice.export("Riverside").expect("export");

        let mut tampered = bundle.clone();
        if let Some(last) = tampered.changes.last_mut() {
            last.signature[3] ^= 1;
        }
        assert!(matches!(
            bob.import(tampered),
            Err(NodeError::BundleRefused { .. })
        ));
        assert!(bob.groups().is_empty());
        assert_eq!(bob.status().changes, 0);

        let report = bob.import(bundle.clone()).expect("import");
        assert_eq!(report.applied, bundle.changes.len());
        assert_eq!(
            bob.group(&view.id.to_hex()).expect("group").members,
            view.members
        );
        assert_eq!(bob.import(bundle).expect("again").applied, 0);
    }

    #[test]
    fn ambiguous_and_unknown_selectors() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let node = node_in_memory(tmp.path(), 1);
        create(&node, "Same").expect("one");
        create(&node, "Same").expect("two");
        assert!(matches!(
            node.group("Same"),
            Err(NodeError::Ambiguous { .. })
        ));
        let nope = node.group("Nope").expect_err("no such group");
        assert!(matches!(nope, NodeError::NotFound { .. }));
        assert_eq!(nope.lookup(), Some(Lookup::Group));
        assert_eq!(nope.to_string(), "no group matches \"Nope\"");
    }
}
