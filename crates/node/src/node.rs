//! [`Node`]: the store and the open documents, and the operations members
//! ask for.
//!
//! Every operation that writes follows the same path: change the document
//! in memory (the engine checks it), append the accepted changes to the
//! store in one atomic step, and flush the store to disk before returning.
//! If the append fails, the document is reloaded from the store, so memory
//! never holds what the disk does not. The flush happens outside the lock,
//! so concurrent writers share one disk flush. Only after the flush is the
//! change announced (to the network, which publishes local changes), so
//! nothing is forwarded that is not durable.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nestwork_core::{ChangeBundle, Hash32, MemberId, MemberKey, SignedChange};
use nestwork_docs::{
    Admission, ApplyReport, Charter, CharterView, GroupGenesis, GroupKind, GroupView, RecordBody,
    Rejection, SignedDoc, Writer,
};
use nestwork_net::{DocEvent, Replica};
use nestwork_store::{DocMeta, Store, StoreError};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::data_dir::DataDir;
use crate::identity;

/// Why a request to the node failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// No group matches what was asked.
    #[error("no group matches {0:?}; `nestwork group list` shows your groups")]
    NotFound(String),
    /// Several groups match.
    #[error("{0:?} matches several groups ({1}); use more of the group id")]
    Ambiguous(String, String),
    /// The request breaks a rule.
    #[error("{0}")]
    Invalid(String),
    /// Changes from a bundle or a peer were refused; nothing was stored.
    #[error("refused: {}", summarise(.0))]
    Rejected(Vec<Rejection>),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The identity files.
    #[error(transparent)]
    Identity(#[from] identity::IdentityError),
}

fn summarise(rejections: &[Rejection]) -> String {
    let first = rejections
        .first()
        .map(|r| {
            format!(
                "change {} by {}: {}",
                &r.change[..12.min(r.change.len())],
                r.author,
                r.reason
            )
        })
        .unwrap_or_default();
    match rejections.len() {
        0 | 1 => first,
        n => format!("{first} (and {} more)", n - 1),
    }
}

impl From<nestwork_docs::Error> for NodeError {
    fn from(e: nestwork_docs::Error) -> Self {
        NodeError::Invalid(e.to_string())
    }
}

/// What `group create` asks for.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CreateGroup {
    /// The name.
    pub name: String,
    /// hub, region or federation (default hub).
    #[serde(default)]
    pub kind: Option<String>,
    /// The parent group (id, id prefix or name of a group this node has).
    #[serde(default)]
    pub parent: Option<String>,
    /// An optional first description.
    #[serde(default)]
    pub description: Option<String>,
}

/// Node health, for `nestwork status`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Status {
    /// This node's member id.
    pub member: String,
    /// The software version.
    pub version: String,
    /// The data directory.
    pub data_dir: String,
    /// Groups held.
    pub groups: usize,
    /// Changes stored, over all documents.
    pub changes: usize,
    /// Store size on disk.
    pub store_bytes: u64,
    /// Seconds since the node started.
    pub uptime_secs: u64,
    /// How long opening the store and loading documents took.
    pub load_ms: u64,
}

/// The outcome of importing a bundle.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImportReport {
    /// The document.
    pub doc: Hash32,
    /// The group's name.
    pub group_name: String,
    /// New changes stored.
    pub applied: usize,
    /// Changes already held.
    pub duplicates: usize,
}

/// The running node's state.
pub struct Node {
    dir: DataDir,
    writer: Writer,
    store: Store,
    docs: Mutex<BTreeMap<Hash32, SignedDoc>>,
    events: broadcast::Sender<DocEvent>,
    started: Instant,
    load_time: Duration,
}

impl Node {
    /// Open the node in `dir` as `key`: open the store (refused if another
    /// process has it) and load every document.
    pub fn open(dir: &DataDir, key: MemberKey) -> Result<Node, NodeError> {
        let started = Instant::now();
        let device = identity::device_tag(dir)?;
        let writer = Writer::new(key, device);
        let store = Store::open(&dir.store_dir())?;
        let mut docs = BTreeMap::new();
        for (id, meta) in store.docs()? {
            let changes = store.changes(&id)?;
            match SignedDoc::load_trusted(id, changes) {
                Ok(mut doc) => {
                    doc.set_writer(&writer);
                    docs.insert(id, doc);
                }
                // A damaged document must not keep the node from starting;
                // its changes stay on disk for inspection.
                Err(e) => {
                    tracing::error!(doc = %id, kind = %meta.kind, error = %e, "cannot load document")
                }
            }
        }
        let load_time = started.elapsed();
        tracing::info!(
            documents = docs.len(),
            changes = store.change_count(),
            ms = load_time.as_millis() as u64,
            "store loaded"
        );
        Ok(Node {
            dir: dir.clone(),
            writer,
            store,
            docs: Mutex::new(docs),
            events: broadcast::channel(1024).0,
            started,
            load_time,
        })
    }

    /// This node's member id.
    pub fn member(&self) -> MemberId {
        self.writer.id()
    }

    /// Node health.
    pub fn status(&self) -> Status {
        Status {
            member: self.member().to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            data_dir: self.dir.root().display().to_string(),
            groups: self.lock().len(),
            changes: self.store.change_count(),
            store_bytes: self.store.size_on_disk(),
            uptime_secs: self.started.elapsed().as_secs(),
            load_ms: self.load_time.as_millis() as u64,
        }
    }

    /// Found a group with the default charter.
    pub fn create_group(&self, req: CreateGroup) -> Result<GroupView, NodeError> {
        let kind = match req.kind.as_deref() {
            None => GroupKind::Hub,
            Some(k) => k.parse().map_err(NodeError::Invalid)?,
        };
        let parent = match req.parent.as_deref() {
            None => None,
            Some(sel) => Some(self.resolve(&self.lock(), sel)?),
        };
        let genesis = GroupGenesis {
            name: req.name,
            kind,
            parent,
            created_at_ms: now_ms(),
            nonce: rand::random(),
            charter: Charter::default(),
        };
        let (mut doc, first) = SignedDoc::create_group(&self.writer, genesis, now_ms())?;
        let mut changes = vec![first];
        if let Some(text) = req.description.as_deref() {
            changes.extend(doc.set_description(&self.writer, text, now_ms())?);
        }
        let id = doc.id();
        let view = GroupView::of(&doc)
            .ok_or_else(|| NodeError::Invalid("new group has no genesis".into()))?;
        {
            let mut docs = self.lock();
            self.store.append(id, &group_meta(), &changes)?;
            docs.insert(id, doc);
        }
        self.store.flush()?;
        self.announce(id, changes, true);
        tracing::info!(group = %id.short(), name = %view.name, "group created");
        Ok(view)
    }

    /// Every group, sorted by name.
    pub fn groups(&self) -> Vec<GroupView> {
        let mut views: Vec<GroupView> = self.lock().values().filter_map(GroupView::of).collect();
        views.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        views
    }

    /// One group.
    pub fn group(&self, sel: &str) -> Result<GroupView, NodeError> {
        self.with_doc(sel, |doc| {
            GroupView::of(doc).ok_or_else(|| NodeError::NotFound(sel.to_string()))
        })
    }

    /// A group's charter.
    pub fn charter(&self, sel: &str) -> Result<CharterView, NodeError> {
        self.with_doc(sel, |doc| {
            CharterView::of(doc).ok_or_else(|| NodeError::NotFound(sel.to_string()))
        })
    }

    /// Replace a group's description.
    pub fn describe(&self, sel: &str, text: &str) -> Result<GroupView, NodeError> {
        let (id, view, change) = {
            let mut docs = self.lock();
            let id = self.resolve(&docs, sel)?;
            let doc = docs
                .get_mut(&id)
                .ok_or_else(|| NodeError::NotFound(sel.to_string()))?;
            let change = doc.set_description(&self.writer, text, now_ms())?;
            if let Some(c) = &change {
                self.persist(&mut docs, id, std::slice::from_ref(c))?;
            }
            (id, docs.get(&id).and_then(GroupView::of), change)
        };
        self.store.flush()?;
        self.announce(id, change.into_iter().collect(), true);
        view.ok_or_else(|| NodeError::NotFound(sel.to_string()))
    }

    /// Every change of a group with its signature.
    pub fn export(&self, sel: &str) -> Result<ChangeBundle, NodeError> {
        self.with_doc(sel, |doc| {
            Ok(ChangeBundle {
                doc: doc.id(),
                changes: doc.changes_since(&[]),
            })
        })
    }

    /// Import a bundle all or nothing: every change is verified as if it
    /// came from a peer, and if any is refused (or depends on a change
    /// neither the bundle nor this node has) nothing is stored.
    pub fn import(&self, bundle: ChangeBundle) -> Result<ImportReport, NodeError> {
        let report = {
            let mut docs = self.lock();
            let mut candidate = match docs.get(&bundle.doc) {
                Some(doc) => doc.clone(),
                None => SignedDoc::empty(bundle.doc),
            };
            let report = candidate.apply(bundle.changes);
            if !report.rejected.is_empty() {
                return Err(NodeError::Rejected(report.rejected));
            }
            if !report.missing_deps.is_empty() {
                return Err(NodeError::Invalid(format!(
                    "{} changes depend on changes that are neither in the bundle nor on this node",
                    report.missing_deps.len()
                )));
            }
            let name = GroupView::of(&candidate).map(|v| v.name).ok_or_else(|| {
                NodeError::Invalid("the bundle does not contain the group's genesis".into())
            })?;
            if !report.applied.is_empty() {
                self.store
                    .append(bundle.doc, &group_meta(), &report.applied)?;
            }
            candidate.set_writer(&self.writer);
            docs.insert(bundle.doc, candidate);
            (
                ImportReport {
                    doc: bundle.doc,
                    group_name: name,
                    applied: report.applied.len(),
                    duplicates: report.duplicates,
                },
                report.applied,
            )
        };
        self.store.flush()?;
        // Imported changes are news to the group's other members too.
        self.announce(report.0.doc, report.1, true);
        Ok(report.0)
    }

    /// Check and apply changes from a peer, store the valid ones, and
    /// report what became of each. A document this node does not hold is
    /// refused unless `joining` (a stranger cannot push groups onto us).
    pub fn apply_remote(
        &self,
        doc: Hash32,
        changes: Vec<SignedChange>,
        joining: bool,
    ) -> Result<ApplyReport, NodeError> {
        let report = {
            let mut docs = self.lock();
            let known = docs.contains_key(&doc);
            if !known && !joining {
                return Err(NodeError::NotFound(doc.to_hex()));
            }
            let target = docs.entry(doc).or_insert_with(|| SignedDoc::empty(doc));
            let report = target.apply(changes);
            if !known && target.genesis().is_none() {
                docs.remove(&doc);
            } else if !report.applied.is_empty() {
                if !known {
                    if let Some(d) = docs.get_mut(&doc) {
                        d.set_writer(&self.writer);
                    }
                }
                self.persist(&mut docs, doc, &report.applied)?;
            }
            report
        };
        if !report.applied.is_empty() {
            self.store.flush()?;
            self.announce(doc, report.applied.clone(), false);
        }
        Ok(report)
    }

    /// Admit `member` to group `doc` on the strength of invite `ticket`.
    /// Admitting someone already on the roll is a no-op; a ticket admits one
    /// member only.
    pub fn admit(&self, doc: &Hash32, member: MemberId, ticket: Hash32) -> Result<(), NodeError> {
        let change = {
            let mut docs = self.lock();
            let group = docs
                .get_mut(doc)
                .ok_or_else(|| NodeError::NotFound(doc.to_hex()))?;
            if let Some(used) = group.admission_by_ticket(&ticket) {
                if used.member == member {
                    return Ok(());
                }
                return Err(NodeError::Invalid(
                    "this invite ticket was already used".into(),
                ));
            }
            if group.members().contains(&member) {
                return Ok(());
            }
            let body = RecordBody::Admission(Admission {
                member,
                ticket,
                admitted_at_ms: now_ms(),
            });
            let (_, change) = group.add_record(&self.writer, body, now_ms())?;
            self.persist(&mut docs, *doc, std::slice::from_ref(&change))?;
            change
        };
        self.store.flush()?;
        tracing::info!(group = %doc.short(), %member, "member admitted");
        self.announce(*doc, vec![change], true);
        Ok(())
    }

    /// Events about documents: every stored change, local or received.
    pub fn subscribe(&self) -> broadcast::Receiver<DocEvent> {
        self.events.subscribe()
    }

    fn announce(&self, doc: Hash32, changes: Vec<SignedChange>, local: bool) {
        if !changes.is_empty() {
            // No receiver (no network running) is fine.
            let _ = self.events.send(DocEvent {
                doc,
                changes,
                local,
            });
        }
    }

    /// Append to the store; on failure reload the document from the store so
    /// that memory does not run ahead of the disk.
    fn persist(
        &self,
        docs: &mut MutexGuard<'_, BTreeMap<Hash32, SignedDoc>>,
        id: Hash32,
        changes: &[SignedChange],
    ) -> Result<(), NodeError> {
        if let Err(e) = self.store.append(id, &group_meta(), changes) {
            tracing::error!(doc = %id.short(), error = %e, "store append failed; reloading document");
            let stored = self.store.changes(&id)?;
            match SignedDoc::load_trusted(id, stored) {
                Ok(mut doc) => {
                    doc.set_writer(&self.writer);
                    docs.insert(id, doc);
                }
                Err(_) => {
                    docs.remove(&id);
                }
            }
            return Err(e.into());
        }
        Ok(())
    }

    fn with_doc<T>(
        &self,
        sel: &str,
        f: impl FnOnce(&SignedDoc) -> Result<T, NodeError>,
    ) -> Result<T, NodeError> {
        let docs = self.lock();
        let id = self.resolve(&docs, sel)?;
        docs.get(&id)
            .ok_or_else(|| NodeError::NotFound(sel.to_string()))
            .and_then(f)
    }

    /// A group by full id, unique id prefix (4+ hex characters) or exact name.
    fn resolve(&self, docs: &BTreeMap<Hash32, SignedDoc>, sel: &str) -> Result<Hash32, NodeError> {
        let sel_trim = sel.trim();
        if let Ok(id) = sel_trim.parse::<Hash32>() {
            return docs
                .contains_key(&id)
                .then_some(id)
                .ok_or_else(|| NodeError::NotFound(sel.to_string()));
        }
        let lower = sel_trim.to_ascii_lowercase();
        let by_prefix: Vec<Hash32> =
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
            [] => Err(NodeError::NotFound(sel.to_string())),
            [one] => Ok(*one),
            many => Err(NodeError::Ambiguous(
                sel.to_string(),
                many.iter()
                    .map(Hash32::short)
                    .collect::<Vec<_>>()
                    .join(", "),
            )),
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<Hash32, SignedDoc>> {
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

impl Replica for Node {
    fn groups(&self) -> Vec<(Hash32, Vec<u8>)> {
        self.lock()
            .values()
            .filter_map(|d| d.genesis().map(|(r, _)| (d.id(), r.encode())))
            .collect()
    }

    fn genesis(&self, doc: &Hash32) -> Option<Vec<u8>> {
        self.lock()
            .get(doc)
            .and_then(|d| d.genesis().map(|(r, _)| r.encode()))
    }

    fn is_member(&self, doc: &Hash32, member: &MemberId) -> bool {
        self.lock()
            .get(doc)
            .is_some_and(|d| d.members().contains(member))
    }

    fn heads(&self, doc: &Hash32) -> Option<Vec<Hash32>> {
        self.lock().get(doc).map(SignedDoc::heads)
    }

    fn changes_since(
        &self,
        doc: &Hash32,
        have: &[Hash32],
        max_bytes: usize,
    ) -> (Vec<SignedChange>, bool) {
        let all = self
            .lock()
            .get(doc)
            .map(|d| d.changes_since(have))
            .unwrap_or_default();
        let mut size = 0;
        let mut out = Vec::new();
        for c in all.iter() {
            size += c.change.len() + 128;
            if size > max_bytes && !out.is_empty() {
                return (out, true);
            }
            out.push(c.clone());
        }
        (out, false)
    }

    fn apply_remote(
        &self,
        doc: Hash32,
        changes: Vec<SignedChange>,
        joining: bool,
    ) -> Result<ApplyReport, String> {
        Node::apply_remote(self, doc, changes, joining).map_err(|e| e.to_string())
    }

    fn admit(&self, doc: &Hash32, member: MemberId, ticket: Hash32) -> Result<(), String> {
        Node::admit(self, doc, member, ticket).map_err(|e| e.to_string())
    }

    fn peer_heads(&self, peer: &MemberId, doc: &Hash32) -> Option<Vec<Hash32>> {
        self.store.peer_heads(&peer.0, doc).ok().flatten()
    }

    fn set_peer_heads(&self, peer: &MemberId, doc: &Hash32, heads: &[Hash32]) {
        if let Err(e) = self.store.set_peer_heads(&peer.0, doc, heads) {
            tracing::warn!(error = %e, "cannot record a peer's heads");
        }
    }

    fn subscribe(&self) -> broadcast::Receiver<DocEvent> {
        Node::subscribe(self)
    }
}

fn group_meta() -> DocMeta {
    DocMeta {
        kind: "group".to_string(),
        first_stored_ms: now_ms(),
    }
}

/// Milliseconds since the Unix epoch by this machine's clock.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node_in(dir: &std::path::Path, seed: u8) -> Node {
        Node::open(&DataDir::new(dir), MemberKey::from_secret([seed; 32])).expect("open")
    }

    fn create(node: &Node, name: &str) -> Result<GroupView, NodeError> {
        node.create_group(CreateGroup {
            name: name.into(),
            kind: None,
            parent: None,
            description: Some("tools and seeds".into()),
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
        let node = node_in(tmp.path(), 1);
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
        let alice = node_in(a.path(), 1);
        let bob = node_in(b.path(), 2);
        let view = create(&alice, "Riverside").expect("create");
        let bundle = alice.export("Riverside").expect("export");

        let mut tampered = bundle.clone();
        if let Some(last) = tampered.changes.last_mut() {
            last.signature[3] ^= 1;
        }
        assert!(matches!(bob.import(tampered), Err(NodeError::Rejected(_))));
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
        let node = node_in(tmp.path(), 1);
        create(&node, "Same").expect("one");
        create(&node, "Same").expect("two");
        assert!(matches!(node.group("Same"), Err(NodeError::Ambiguous(..))));
        assert!(matches!(node.group("Nope"), Err(NodeError::NotFound(_))));
    }
}
