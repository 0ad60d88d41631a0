//! [`Node`]: the store and the open documents, and the operations members
//! ask for.
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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nestwork_core::signed::MAX_BUNDLE_BYTES;
use nestwork_core::{ChangeBundle, Hash32, MemberId, MemberKey, PeriodChanges, SignedChange};
use nestwork_docs::{
    Admission, ApplyReport, Charter, CharterView, GroupGenesis, GroupKind, GroupView, RecordBody,
    Rejection, SignedDoc, Writer,
};
use nestwork_net::{DocEvent, Replica};
use nestwork_store::{DocMeta, Store, StoreError};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::clock::Clock;
use crate::data_dir::DataDir;
use crate::directory::{Directory, Listing};
use crate::identity;
use crate::ledger::{
    account_view, parse_period_kind, payment_view, period_kind, BalanceView, LedgerView,
    PaymentView,
};
use crate::ledger_marks;
use crate::served::ServedPeriods;
use nestwork_docs::decisions::Decisions;
use nestwork_docs::engine::StoredGraph;
use nestwork_docs::group_ledger::{period_id, Gate, GroupLedger, PaymentOrder};
use nestwork_docs::ledger::{Account, CreditLimit, Equivocation};

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
    /// Changes of a bundle were refused: the whole bundle is, and nothing
    /// was stored.
    #[error("the bundle was refused and nothing was stored: in {what}, {}", summarise(.rejections))]
    BundleRefused {
        /// Which of the bundle's documents held the refused changes.
        what: String,
        /// Each refused change with its reason.
        rejections: Vec<Rejection>,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The identity files.
    #[error(transparent)]
    Identity(#[from] identity::IdentityError),
    /// The change was made and stored but the disk did not confirm it.
    #[error("the change was made but the disk did not confirm it ({0}); it may be lost if the node stops now. A payment repeated with the same request id is not made twice")]
    NotDurable(StoreError),
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

impl From<nestwork_docs::rules::RuleError> for NodeError {
    fn from(e: nestwork_docs::rules::RuleError) -> Self {
        NodeError::Invalid(e.0)
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
    /// The ledger's unit (default "hours").
    #[serde(default)]
    pub unit: Option<String>,
    /// The default credit floor (zero or below; the charter's default if
    /// not given).
    #[serde(default)]
    pub floor: Option<i64>,
    /// The default credit ceiling (zero or above).
    #[serde(default)]
    pub ceiling: Option<i64>,
}

/// What `pay` asks for.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PayRequest {
    /// A member id (or a unique start of one on the roll), or "commons".
    pub to: String,
    /// Minor units.
    pub amount: u64,
    /// Optional memo.
    #[serde(default)]
    pub memo: String,
    /// An id the client picks for this request (1 to
    /// [`MAX_REQUEST_ID_CHARS`] characters): a payment retried with the
    /// same id is made once, and the retry is answered with it.
    #[serde(default)]
    pub request_id: Option<String>,
}

/// Longest client request id.
pub const MAX_REQUEST_ID_CHARS: usize = 64;

/// Where the payment made for a client's request id is noted in the store.
fn request_mark(group: &Hash32, request_id: &str) -> Result<Hash32, NodeError> {
    if request_id.is_empty()
        || request_id.chars().count() > MAX_REQUEST_ID_CHARS
        || request_id.chars().any(char::is_control)
    {
        return Err(NodeError::Invalid(format!(
            "a request id is 1 to {MAX_REQUEST_ID_CHARS} characters, without control characters"
        )));
    }
    Ok(Hash32::of_parts(&[
        b"nestwork/pay-request/v1",
        &group.0,
        request_id.as_bytes(),
    ]))
}

/// What `limit` asks for.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LimitRequest {
    /// A member (id or unique start of one), or none for the group default.
    #[serde(default)]
    pub member: Option<String>,
    /// Lowest balance allowed (zero or below).
    pub floor: i64,
    /// Highest balance allowed (zero or above).
    pub ceiling: i64,
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
    /// Payments accepted, over all groups.
    pub payments: usize,
    /// Of those, payments held in memory (past each ledger's base); the
    /// rest are counted in the base and stay on disk.
    pub payments_in_memory: usize,
    /// Ledger period documents loaded.
    pub periods_loaded: usize,
    /// Ledger period documents kept on disk only.
    pub periods_on_disk: usize,
    /// Frozen accounts (two payments with one sequence number), by group.
    pub equivocations: Vec<(Hash32, Equivocation)>,
    /// Per group: articles overdue for revision and proposals open.
    #[serde(default)]
    pub charters: Vec<CharterStatus>,
    /// Documents found damaged in the store when the node started, and
    /// what was done about them.
    #[serde(default)]
    pub damaged: Vec<Damaged>,
    /// What the node holds in memory.
    #[serde(default)]
    pub memory: MemoryStatus,
}

/// What the node holds in memory, counted by the node itself (beside the
/// resident size the system gives), for `status`: everything here must
/// follow the recent ledger periods, not the whole history.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryStatus {
    /// Resident memory of the node's process, in bytes (Linux; 0 where the
    /// system does not say).
    pub rss_bytes: u64,
    /// Documents loaded: group documents and open ledger periods.
    pub documents_loaded: usize,
    /// Signed changes held by the loaded documents.
    pub changes_loaded: usize,
    /// Records held by the loaded documents.
    pub records_loaded: usize,
    /// Entries of the ledgers' indexes (payments past the base, chain
    /// positions, prefix sums, closings, balances).
    pub ledger_index_entries: usize,
    /// The most the store may cache, in bytes.
    pub store_cache_bytes: u64,
    /// Ledger period documents read back from disk since start-up because
    /// a late record needed the history below the base.
    #[serde(default)]
    pub periods_reread: u64,
}

/// A document whose stored entries were found damaged at start-up.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Damaged {
    /// The document (a group, or a ledger period of one).
    pub doc: Hash32,
    /// The group's name, where what is left shows it.
    pub name: Option<String>,
    /// What was found and done, in plain words.
    pub what: String,
}

/// Resident memory of this process, from `/proc/self/status` (0 where
/// there is none).
pub fn resident_bytes() -> u64 {
    resident_bytes_of("self")
}

/// Resident memory of process `pid` ("self" for this one), from
/// `/proc/PID/status` (0 where there is none).
pub fn resident_bytes_of(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// A group's charter at a glance, for `status`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CharterStatus {
    /// The group.
    pub group: Hash32,
    /// Its name.
    pub name: String,
    /// Articles not revisited within a revision cycle.
    pub overdue: Vec<u32>,
    /// Proposals still open.
    pub open_proposals: usize,
}

/// The outcome of importing a bundle.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImportReport {
    /// The group.
    pub doc: Hash32,
    /// The group's name.
    pub group_name: String,
    /// New changes stored, over the group document and its ledger periods.
    pub applied: usize,
    /// Changes already held.
    pub duplicates: usize,
    /// Ledger period documents the bundle carried.
    #[serde(default)]
    pub periods: usize,
    /// Payments the group's ledger holds after the import.
    #[serde(default)]
    pub payments: usize,
}

/// Most rounds an import makes over a bundle's documents: a change that
/// waits on a record of a later document (a limit change on a proposal
/// that passes in the same bundle, a payment on that limit) is tried again
/// in the next round, as the next sync with a peer would. A bundle
/// exported by a node settles in two or three.
const MAX_IMPORT_ROUNDS: usize = 16;

/// What the node holds in memory, under one lock.
#[derive(Default)]
pub(crate) struct State {
    /// Group documents by group id.
    pub(crate) groups: BTreeMap<Hash32, SignedDoc>,
    /// Each group's ledger and period documents, by group id.
    pub(crate) ledgers: BTreeMap<Hash32, GroupLedger>,
    /// Which group each open period document belongs to.
    pub(crate) periods: HashMap<Hash32, Hash32>,
    /// Documents found damaged at start-up.
    pub(crate) damaged: Vec<Damaged>,
    /// Groups whose memory may be ahead of the disk: a write to them
    /// failed and the store could not be read back yet. Nothing of them is
    /// served to peers until they are rebuilt from the disk.
    pub(crate) unsaved: BTreeSet<Hash32>,
    /// Period documents read back from the store to count a late record
    /// (since start-up).
    pub(crate) periods_reread: u64,
}

impl State {
    /// Create the ledger of a group whose genesis is known, if missing.
    pub(crate) fn ensure_ledger(&mut self, group: Hash32, writer: &Writer) {
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
    fn candidate_of(&self, group: Hash32) -> State {
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

    /// The group a document belongs to.
    fn group_of(&self, doc: &Hash32) -> Option<Hash32> {
        if self.groups.contains_key(doc) {
            Some(*doc)
        } else {
            self.periods.get(doc).copied()
        }
    }

    /// A document by id: a group document or a period document.
    fn doc(&self, doc: &Hash32) -> Option<&SignedDoc> {
        if let Some(d) = self.groups.get(doc) {
            return Some(d);
        }
        let group = self.periods.get(doc)?;
        self.ledgers
            .get(group)?
            .periods
            .values()
            .find(|d| d.id() == *doc)
    }

    /// The heads of an unloaded (cold) period document.
    fn cold_heads(&self, doc: &Hash32) -> Option<Vec<Hash32>> {
        self.cold_period(doc).map(|(_, _, heads)| heads)
    }

    /// Whether `doc`'s group has changes not yet on disk (nothing of it is
    /// served until they are).
    fn holds_unsaved(&self, doc: &Hash32) -> bool {
        self.group_of(doc)
            .is_some_and(|g| self.unsaved.contains(&g))
    }

    /// A ledger period kept on disk only: its group, number and heads.
    fn cold_period(&self, doc: &Hash32) -> Option<(Hash32, u64, Vec<Hash32>)> {
        let group = self.periods.get(doc)?;
        let l = self.ledgers.get(group)?;
        l.cold
            .iter()
            .find(|(p, _)| period_id(group, **p) == *doc)
            .map(|(p, heads)| (*group, *p, heads.clone()))
    }

    /// The store kind of a document.
    fn kind_of(&self, doc: &Hash32) -> Option<String> {
        if self.groups.contains_key(doc) {
            return Some("group".to_string());
        }
        let group = self.periods.get(doc)?;
        let (_, period) = self.doc(doc)?.ledger_period_of()?;
        Some(period_kind(group, period))
    }

    /// Apply changes to a group or period document with its ledger's gate;
    /// proposals are judged as of `now_ms`.
    fn apply(
        &mut self,
        doc: Hash32,
        changes: Vec<SignedChange>,
        now_ms: u64,
    ) -> Option<ApplyReport> {
        let group = self.group_of(&doc)?;
        if doc == group {
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

/// The running node's state.
pub struct Node {
    dir: DataDir,
    pub(crate) writer: Writer,
    pub(crate) store: Store,
    docs: Mutex<State>,
    events: broadcast::Sender<DocEvent>,
    started: Instant,
    load_time: Duration,
    pub(crate) clock: Clock,
    seal: Mutex<crate::seal::SealMemory>,
    /// When this node first held each open distress signal, by (group,
    /// signal), as far as it has noted them (`distress.rs`, `held_since`).
    pub(crate) first_held: Mutex<BTreeMap<(Hash32, Hash32), u64>>,
    /// What the network looks up on its loop, without this node's lock.
    pub(crate) directory: Directory,
    /// Cold ledger periods read back to answer peers' syncs.
    served: ServedPeriods,
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
fn load_document(
    store: &Store,
    id: Hash32,
    load: impl Fn(Vec<SignedChange>) -> Result<SignedDoc, nestwork_docs::Error>,
    usable: impl Fn(&SignedDoc) -> bool,
    damaged: &mut Vec<Damaged>,
) -> Result<Option<SignedDoc>, NodeError> {
    let first_error = match store.changes(&id).map(&load) {
        Ok(Ok(doc)) if usable(&doc) => return Ok(Some(doc)),
        Ok(Ok(_)) => "its founding change is missing".to_string(),
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    };
    let salvaged = store.salvage(&id)?;
    let (keys, changes): (Vec<Vec<u8>>, Vec<SignedChange>) = salvaged.changes.into_iter().unzip();
    let (kept, dropped) = nestwork_docs::engine::loadable(changes);
    let mut aside: Vec<Vec<u8>> = salvaged.damaged.into_iter().map(|(k, _)| k).collect();
    let undecodable = aside.len();
    aside.extend(dropped.iter().map(|&i| keys[i].clone()));
    let doc = load(kept).ok().filter(|d| usable(d));
    if doc.is_none() {
        aside = keys;
        aside.extend(store.salvage(&id)?.damaged.into_iter().map(|(k, _)| k));
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

impl Node {
    /// Open the node in `dir` as `key`: open the store (refused if another
    /// process has it) and load every document.
    pub fn open(dir: &DataDir, key: MemberKey) -> Result<Node, NodeError> {
        Node::open_with_clock(dir, key, Clock::default())
    }

    /// [`Node::open`] with a clock of the caller's (tests move it).
    pub fn open_with_clock(dir: &DataDir, key: MemberKey, clock: Clock) -> Result<Node, NodeError> {
        let started = Instant::now();
        let device = identity::device_tag(dir)?;
        let writer = Writer::new(key, device);
        let store = Store::open(&dir.store_dir())?;
        let mut docs = State::default();
        let stored = store.docs()?;
        let mut period_docs = Vec::new();
        for (id, meta) in stored {
            if let Some((group, period)) = parse_period_kind(&meta.kind) {
                period_docs.push((group, period, id));
                continue;
            }
            let loaded = load_document(
                &store,
                id,
                |changes| SignedDoc::load_trusted(id, changes),
                |doc| doc.genesis().is_some(),
                &mut docs.damaged,
            )?;
            if let Some(mut doc) = loaded {
                doc.set_writer(&writer);
                docs.groups.insert(id, doc);
            }
        }
        let groups: Vec<Hash32> = docs.groups.keys().copied().collect();
        let mut by_group: BTreeMap<Hash32, Vec<(u64, Hash32)>> = BTreeMap::new();
        for (group, period, id) in period_docs {
            by_group.entry(group).or_default().push((period, id));
        }
        for (group, periods) in by_group {
            let Some(mut l) = docs.groups.get(&group).and_then(GroupLedger::of_group) else {
                tracing::error!(group = %group.short(), "ledger periods of a group this node does not hold");
                continue;
            };
            load_periods(&store, &writer, group, &mut l, &mut docs, periods, None)?;
            docs.ledgers.insert(group, l);
        }
        for group in &groups {
            if !docs.ledgers.contains_key(group) {
                if let Some(l) = docs.groups.get(group).and_then(GroupLedger::of_group) {
                    docs.ledgers.insert(*group, l);
                }
            }
        }
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

    /// Node health.
    pub fn status(&self) -> Status {
        let docs = self.lock();
        Status {
            member: self.member().to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            data_dir: self.dir.root().display().to_string(),
            groups: docs.groups.len(),
            changes: self.store.change_count(),
            store_bytes: self.store.size_on_disk(),
            uptime_secs: self.started.elapsed().as_secs(),
            load_ms: self.load_time.as_millis() as u64,
            payments: docs.ledgers.values().map(|l| l.ledger.len()).sum(),
            payments_in_memory: docs.ledgers.values().map(|l| l.ledger.held()).sum(),
            periods_loaded: docs.ledgers.values().map(|l| l.periods.len()).sum(),
            periods_on_disk: docs.ledgers.values().map(|l| l.cold.len()).sum(),
            equivocations: docs
                .ledgers
                .iter()
                .flat_map(|(g, l)| l.ledger.equivocations().into_iter().map(|e| (*g, e)))
                .collect(),
            charters: docs
                .groups
                .values()
                .filter_map(|d| CharterView::of(d, self.now_ms()))
                .map(|c| CharterStatus {
                    group: c.group,
                    name: c.group_name,
                    overdue: c.overdue,
                    open_proposals: c.open_proposals,
                })
                .collect(),
            damaged: docs.damaged.clone(),
            memory: Node::memory_of(&docs),
        }
    }

    /// What the node holds in memory.
    pub fn memory(&self) -> MemoryStatus {
        Node::memory_of(&self.lock())
    }

    fn memory_of(docs: &State) -> MemoryStatus {
        let loaded: Vec<&SignedDoc> = docs
            .groups
            .values()
            .chain(docs.ledgers.values().flat_map(|l| l.periods.values()))
            .collect();
        MemoryStatus {
            rss_bytes: resident_bytes(),
            documents_loaded: loaded.len(),
            changes_loaded: loaded.iter().map(|d| d.change_count()).sum(),
            records_loaded: loaded.iter().map(|d| d.records().len()).sum(),
            ledger_index_entries: docs
                .ledgers
                .values()
                .map(|l| l.ledger.index_entries())
                .sum(),
            store_cache_bytes: nestwork_store::CACHE_BYTES,
            periods_reread: docs.periods_reread,
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
            Some(sel) => Some(self.resolve(&self.lock().groups, sel)?),
        };
        let genesis = GroupGenesis {
            name: req.name,
            kind,
            parent,
            unit: req.unit.clone().unwrap_or_else(|| "hours".to_string()),
            created_at_ms: self.now_ms(),
            nonce: rand::random(),
            charter: {
                let mut charter = Charter::default();
                if let Some(floor) = req.floor {
                    charter.rules.default_credit_floor = floor;
                }
                if let Some(ceiling) = req.ceiling {
                    charter.rules.default_credit_ceiling = ceiling;
                }
                charter
            },
        };
        let (mut doc, first) = SignedDoc::create_group(&self.writer, genesis, self.now_ms())?;
        let mut changes = vec![first];
        if let Some(text) = req.description.as_deref() {
            changes.extend(doc.set_description(&self.writer, text, now_ms())?);
        }
        let id = doc.id();
        let view = GroupView::of(&doc)
            .ok_or_else(|| NodeError::Invalid("new group has no genesis".into()))?;
        {
            let mut docs = self.lock_for_write()?;
            let stored = match self.store.append(id, &group_meta(), &changes) {
                Ok(()) => self.store.flush().map_err(NodeError::NotDurable),
                Err(e) => Err(e.into()),
            };
            if let Err(e) = stored {
                // Nothing of the new group is in memory yet; the store
                // needs a fresh handle after a failed write.
                self.recover_from_store(&mut docs, &id);
                return Err(e);
            }
            docs.groups.insert(id, doc);
            docs.ensure_ledger(id, &self.writer);
        }
        self.store.flush()?;
        self.announce(id, changes, true);
        tracing::info!(group = %id.short(), name = %view.name, "group created");
        Ok(view)
    }

    /// Every group, sorted by name.
    pub fn groups(&self) -> Vec<GroupView> {
        let mut views: Vec<GroupView> = self
            .lock()
            .groups
            .values()
            .filter_map(GroupView::of)
            .collect();
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
            CharterView::of(doc, self.now_ms()).ok_or_else(|| NodeError::NotFound(sel.to_string()))
        })
    }

    /// Replace a group's description.
    pub fn describe(&self, sel: &str, text: &str) -> Result<GroupView, NodeError> {
        let id = self.resolve(&self.lock().groups, sel)?;
        self.write_group_change(id, |doc, w, now| doc.set_description(w, text, now))?;
        self.group(&id.to_hex())
    }

    /// Make a change to the free area of group `group`'s document with
    /// `edit` (given the document, this node's writer and now); durable and
    /// announced before it returns.
    pub(crate) fn write_group_change(
        &self,
        group: Hash32,
        edit: impl FnOnce(
            &mut SignedDoc,
            &Writer,
            u64,
        ) -> Result<Option<SignedChange>, nestwork_docs::Error>,
    ) -> Result<(), NodeError> {
        let change = {
            let mut docs = self.lock_for_write()?;
            let doc = docs
                .groups
                .get_mut(&group)
                .ok_or_else(|| NodeError::NotFound(group.to_hex()))?;
            let change = edit(doc, &self.writer, self.now_ms())?;
            if let Some(c) = &change {
                self.persist(&mut docs, group, std::slice::from_ref(c))?;
            }
            change
        };
        if let Some(c) = change {
            self.store.flush()?;
            self.announce(group, vec![c], true);
        }
        Ok(())
    }

    /// Every change of a group with its signature: the group document and
    /// every ledger period document (those kept on disk only are read from
    /// the store), so that a bundle carries the whole group.
    pub fn export(&self, sel: &str) -> Result<ChangeBundle, NodeError> {
        let bundle = {
            let docs = self.lock();
            let group = self.resolve(&docs.groups, sel)?;
            let doc = docs
                .groups
                .get(&group)
                .ok_or_else(|| NodeError::NotFound(sel.to_string()))?;
            let mut bundle = ChangeBundle::of_group(group, doc.changes_since(&[]));
            if let Some(l) = docs.ledgers.get(&group) {
                let numbers: BTreeSet<u64> =
                    l.periods.keys().chain(l.cold.keys()).copied().collect();
                for period in numbers {
                    let id = period_id(&group, period);
                    let changes = match l.periods.get(&period) {
                        Some(d) => d.changes_since(&[]),
                        None => self.store.changes(&id)?,
                    };
                    if !changes.is_empty() {
                        bundle.periods.push(PeriodChanges {
                            period,
                            doc: id,
                            changes,
                        });
                    }
                }
            }
            bundle
        };
        let size = bundle.encoded_len();
        if size > MAX_BUNDLE_BYTES {
            return Err(NodeError::Invalid(format!(
                "this group's bundle would be {size} bytes, over the {MAX_BUNDLE_BYTES}-byte limit of a bundle; a new member can get it by syncing with a peer instead"
            )));
        }
        Ok(bundle)
    }

    /// Import a bundle all or nothing, through the path a peer's changes
    /// take: the group document first (its genesis, roll and limits), then
    /// the ledger periods in order, every payment judged by the ledger's
    /// gate as in a sync. It is judged on a copy of the group's state; if
    /// any change is refused, or depends on something neither the bundle
    /// nor this node has, nothing is stored and nothing changes. What is
    /// already held is skipped, and what is new merges with it.
    pub fn import(&self, bundle: ChangeBundle) -> Result<ImportReport, NodeError> {
        let group = bundle.doc;
        let mut numbers = BTreeSet::new();
        for p in &bundle.periods {
            if p.doc != period_id(&group, p.period) {
                return Err(NodeError::Invalid(format!(
                    "the bundle was refused and nothing was stored: its document {} is not ledger period {} of group {}",
                    p.doc.short(),
                    p.period,
                    group.short()
                )));
            }
            if !numbers.insert(p.period) {
                return Err(NodeError::Invalid(format!(
                    "the bundle was refused and nothing was stored: it lists ledger period {} twice",
                    p.period
                )));
            }
        }
        let period_count = bundle.periods.len();
        let mut periods = bundle.periods;
        periods.sort_by_key(|p| p.period);
        // (document, what it is, changes still to apply), the group first.
        let mut queue: Vec<(Hash32, Option<u64>, Vec<SignedChange>)> =
            std::iter::once((group, None, bundle.changes))
                .chain(
                    periods
                        .into_iter()
                        .map(|p| (p.doc, Some(p.period), p.changes)),
                )
                .collect();
        let now = self.now_ms();
        let (report, stored) = {
            let mut docs = self.lock_for_write()?;
            let mut cand = docs.candidate_of(group);
            let mut applied: Vec<Vec<SignedChange>> = vec![Vec::new(); queue.len()];
            let mut duplicates = 0;
            let mut reloaded = false;
            for _ in 0..MAX_IMPORT_ROUNDS {
                let mut progress = false;
                for (i, (doc, period, changes)) in queue.iter_mut().enumerate() {
                    if changes.is_empty() {
                        continue;
                    }
                    let what = match period {
                        None => "the group document".to_string(),
                        Some(p) => format!("ledger period {p}"),
                    };
                    let r = if period.is_none() {
                        self.import_group_changes(&mut cand, group, std::mem::take(changes), now)?
                    } else {
                        if cand.group_of(doc).is_none() {
                            // Not open yet: the periods before it open it.
                            continue;
                        }
                        self.warm(&mut cand, doc)?;
                        cand.apply(*doc, std::mem::take(changes), now)
                            .ok_or_else(|| NodeError::Invalid(format!("{what} cannot be opened")))?
                    };
                    if !r.rejected.is_empty() {
                        return Err(NodeError::BundleRefused {
                            what,
                            rejections: r.rejected,
                        });
                    }
                    duplicates += r.duplicates;
                    progress |= !r.applied.is_empty();
                    applied[i].extend(r.applied);
                    *changes = r.missing_deps;
                    cand.ensure_ledger(group, &self.writer);
                    if cand
                        .ledgers
                        .get(&group)
                        .is_some_and(GroupLedger::history_needed)
                    {
                        // A late payment needs the history below the base:
                        // count it again from every period, as the node
                        // does for a peer's, and try the waiting ones again.
                        self.warm_all(&mut cand, group)?;
                        if let Some(l) = cand.ledgers.get_mut(&group) {
                            l.reload();
                        }
                        progress |= !reloaded;
                        reloaded = true;
                    }
                }
                if cand
                    .groups
                    .get(&group)
                    .is_none_or(|d| d.genesis().is_none())
                {
                    return Err(NodeError::Invalid(
                        "the bundle was refused and nothing was stored: it does not hold the group's founding change (its genesis)".into(),
                    ));
                }
                if !progress || queue.iter().all(|(_, _, c)| c.is_empty()) {
                    break;
                }
            }
            if let Some((_, period, waiting)) = queue.iter().find(|(_, _, c)| !c.is_empty()) {
                let total: usize = queue.iter().map(|(_, _, c)| c.len()).sum();
                let first = waiting.first().map(|c| c.hash.short()).unwrap_or_default();
                let what = match period {
                    None => "the group document".to_string(),
                    Some(p) => format!("ledger period {p}"),
                };
                return Err(NodeError::Invalid(format!(
                    "the bundle was refused and nothing was stored: {total} of its changes (the first, {first}, in {what}) depend on changes or records that are neither in the bundle nor on this node"
                )));
            }
            let name = cand
                .groups
                .get(&group)
                .and_then(GroupView::of)
                .map(|v| v.name)
                .unwrap_or_default();
            let writes: Vec<(Hash32, DocMeta, Vec<SignedChange>)> = queue
                .iter()
                .zip(applied)
                .filter(|(_, changes)| !changes.is_empty())
                .map(|((doc, period, _), changes)| {
                    let kind = match period {
                        None => "group".to_string(),
                        Some(p) => period_kind(&group, *p),
                    };
                    let meta = DocMeta {
                        kind,
                        first_stored_ms: now_ms(),
                    };
                    (*doc, meta, changes)
                })
                .collect();
            if !writes.is_empty() {
                if reloaded {
                    // The stored base, the marks of the periods cooled
                    // under it and the checkpoints were counted without
                    // the late payments: dropped, as the node's own reload
                    // does, so that the next start counts the ledger again.
                    let periods = cand.ledgers.get(&group).map_or(Vec::new(), |l| {
                        l.periods.keys().chain(l.cold.keys()).copied().collect()
                    });
                    ledger_marks::forget_counts(&self.store, &group, periods)?;
                }
                let batch: Vec<(Hash32, &DocMeta, &[SignedChange])> = writes
                    .iter()
                    .map(|(doc, meta, changes)| (*doc, meta, changes.as_slice()))
                    .collect();
                if let Err(e) = self.store.append_many(&batch) {
                    self.recover_from_store(&mut docs, &group);
                    return Err(e.into());
                }
                if let Err(e) = self.store.flush() {
                    self.recover_from_store(&mut docs, &group);
                    return Err(NodeError::NotDurable(e));
                }
                // Durable: the checked copy becomes the group's state.
                if let Some(mut doc) = cand.groups.remove(&group) {
                    doc.set_writer(&self.writer);
                    docs.groups.insert(group, doc);
                }
                if let Some(l) = cand.ledgers.remove(&group) {
                    docs.ledgers.insert(group, l);
                }
                docs.periods.extend(cand.periods);
                self.tend_ledger(&mut docs, group)?;
                docs.ensure_ledger(group, &self.writer);
            }
            let payments = docs.ledgers.get(&group).map_or(0, |l| l.ledger.len());
            let stored: Vec<(Hash32, Vec<SignedChange>)> = writes
                .into_iter()
                .map(|(doc, _, changes)| (doc, changes))
                .collect();
            (
                ImportReport {
                    doc: group,
                    group_name: name,
                    applied: stored.iter().map(|(_, c)| c.len()).sum(),
                    duplicates,
                    periods: period_count,
                    payments,
                },
                stored,
            )
        };
        self.store.flush()?;
        // Imported changes are news to the group's other members too.
        for (doc, changes) in stored {
            self.announce(doc, changes, true);
        }
        Ok(report)
    }

    /// Apply a bundle's changes to the group document in `cand`, as
    /// [`Node::apply_remote`] does: for a group new here, its genesis
    /// first, so that its ledger exists to judge limit changes among the
    /// rest.
    fn import_group_changes(
        &self,
        cand: &mut State,
        group: Hash32,
        changes: Vec<SignedChange>,
        now: u64,
    ) -> Result<ApplyReport, NodeError> {
        if cand.groups.contains_key(&group) {
            return cand
                .apply(group, changes, now)
                .ok_or_else(|| NodeError::NotFound(group.to_hex()));
        }
        cand.groups.insert(group, SignedDoc::empty(group));
        let (first, rest): (Vec<_>, Vec<_>) = changes
            .into_iter()
            .partition(|c| nestwork_docs::engine::is_first_change(&c.change));
        let mut report = cand.apply(group, first, now).unwrap_or_default();
        if cand
            .groups
            .get(&group)
            .is_none_or(|d| d.genesis().is_none())
        {
            cand.groups.remove(&group);
            // Whatever builds on the missing genesis waits; the caller
            // refuses the bundle.
            report.missing_deps.extend(rest);
            return Ok(report);
        }
        if let Some(d) = cand.groups.get_mut(&group) {
            d.set_writer(&self.writer);
        }
        cand.ensure_ledger(group, &self.writer);
        let more = cand.apply(group, rest, now).unwrap_or_default();
        report.merge(more);
        Ok(report)
    }

    /// Load every unloaded (cold) period of `group` in `docs` back from
    /// the store.
    fn warm_all(&self, docs: &mut State, group: Hash32) -> Result<(), NodeError> {
        let cold: Vec<u64> = docs
            .ledgers
            .get(&group)
            .map(|l| l.cold.keys().copied().collect())
            .unwrap_or_default();
        for period in cold {
            self.warm(docs, &period_id(&group, period))?;
        }
        Ok(())
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
            let mut docs = self.lock_for_write()?;
            let known = docs.group_of(&doc).is_some();
            if !known && !joining {
                return Err(NodeError::NotFound(doc.to_hex()));
            }
            if known && !joining && self.left_roll(&docs, &doc) {
                // Off the roll: what members write after is not for this
                // node (others refuse it too; this is the honest side).
                return Err(NodeError::Invalid(
                    "this member is no longer on the group's roll".into(),
                ));
            }
            let report = if known {
                self.warm(&mut docs, &doc)?;
                docs.apply(doc, changes, self.now_ms())
                    .ok_or_else(|| NodeError::NotFound(doc.to_hex()))?
            } else {
                // A group joined: its genesis first, so that its ledger
                // exists to judge limit changes among the rest.
                docs.groups.insert(doc, SignedDoc::empty(doc));
                let (first, rest): (Vec<_>, Vec<_>) = changes
                    .into_iter()
                    .partition(|c| nestwork_docs::engine::is_first_change(&c.change));
                let mut report = docs.apply(doc, first, self.now_ms()).unwrap_or_default();
                let genesis_known = docs.groups.get(&doc).is_some_and(|d| d.genesis().is_some());
                if !genesis_known {
                    docs.groups.remove(&doc);
                    return Ok(report);
                }
                if let Some(d) = docs.groups.get_mut(&doc) {
                    d.set_writer(&self.writer);
                }
                docs.ensure_ledger(doc, &self.writer);
                let more = docs.apply(doc, rest, self.now_ms()).unwrap_or_default();
                report.merge(more);
                report
            };
            if !report.applied.is_empty() {
                self.persist(&mut docs, doc, &report.applied)?;
            }
            if let Some(group) = docs.group_of(&doc) {
                self.tend_ledger(&mut docs, group)?;
                docs.ensure_ledger(group, &self.writer);
            }
            report
        };
        if !report.applied.is_empty() {
            self.store.flush()?;
            self.announce(doc, report.applied.clone(), false);
        }
        Ok(report)
    }

    /// Whether this member was on the roll of `doc`'s group and is no
    /// longer (left or removed). A newcomer awaiting an entry vote was
    /// never on it, so others' pushes still reach them once voted in.
    fn left_roll(&self, docs: &State, doc: &Hash32) -> bool {
        let me = self.member();
        docs.group_of(doc)
            .and_then(|g| docs.groups.get(&g))
            .is_some_and(|g| g.ever_members().contains(&me) && !g.members().contains(&me))
    }

    /// Admit `member` to group `doc` on the strength of invite `ticket`,
    /// which this member signed (`ticket_signature`; every node checks it).
    /// Admitting someone already on the roll is a no-op; a ticket admits one
    /// member only.
    pub fn admit(
        &self,
        doc: &Hash32,
        member: MemberId,
        ticket: Hash32,
        ticket_signature: Vec<u8>,
    ) -> Result<(), NodeError> {
        let change = {
            let mut docs = self.lock_for_write()?;
            let group = docs
                .groups
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
                ticket_signature,
                admitted_at_ms: self.now_ms(),
                // The engine fills in the founders' edits it follows.
                founders_edits: Vec::new(),
            });
            let (_, change) = group.add_record(
                &self.writer,
                body,
                &mut nestwork_docs::NoLedger,
                self.now_ms(),
            )?;
            self.persist(&mut docs, *doc, std::slice::from_ref(&change))?;
            change
        };
        self.store.flush()?;
        tracing::info!(group = %doc.short(), %member, "member admitted");
        self.announce(*doc, vec![change], true);
        Ok(())
    }

    /// Pay `req.amount` from this member's account in group `sel`. The
    /// payment cites what this node has seen and is checked by the rules
    /// every peer applies before it is signed; it is durable before this
    /// returns.
    pub fn pay(&self, sel: &str, req: &PayRequest) -> Result<PaymentView, NodeError> {
        let me = self.member();
        let (group, to) = self.with_doc(sel, |doc| {
            let to = account_of(doc.ever_members(), &req.to)?;
            // Someone who left (or was removed) neither pays nor is paid.
            // (The roll alone, not the whole governance: this runs for
            // every payment.)
            let roll = doc.roll_at(self.now_ms());
            if !roll.contains(&me) {
                return Err(NodeError::Invalid(
                    "you are not on this group's roll (you left or were removed), so you cannot pay".into(),
                ));
            }
            if let Account::Member(m) = to {
                if !roll.contains(&m) {
                    return Err(NodeError::Invalid(format!(
                        "{m} is no longer on this group's roll"
                    )));
                }
            }
            Ok((doc.id(), to))
        })?;
        let request = req
            .request_id
            .as_deref()
            .map(|r| request_mark(&group, r))
            .transpose()?;
        self.make_payment_for(
            group,
            Account::Member(me),
            to,
            req.amount,
            &req.memo,
            None,
            request,
        )
    }

    /// Sign a payment out of `from` (this member's account, or the commons
    /// on a passed proposal), closing a full period first.
    pub(crate) fn make_payment(
        &self,
        group: Hash32,
        from: Account,
        to: Account,
        amount: u64,
        memo: &str,
        proposal: Option<Hash32>,
    ) -> Result<PaymentView, NodeError> {
        self.make_payment_for(group, from, to, amount, memo, proposal, None)
    }

    /// [`Node::make_payment`] for a client's request noted at `request`
    /// (see [`request_mark`]): made once, whatever the retries.
    #[allow(clippy::too_many_arguments)]
    fn make_payment_for(
        &self,
        group: Hash32,
        from: Account,
        to: Account,
        amount: u64,
        memo: &str,
        proposal: Option<Hash32>,
        request: Option<Hash32>,
    ) -> Result<PaymentView, NodeError> {
        let now = self.now_ms();
        let (doc_id, changes, view) = {
            let mut docs = self.lock_for_write()?;
            if let Some(mark) = &request {
                if let Some(made) = self.store.mark(mark)? {
                    return repeated_payment(&docs, group, &made, amount, &to);
                }
            }
            let me = self.member();
            let state = &mut *docs;
            let group_doc = state
                .groups
                .get(&group)
                .ok_or_else(|| NodeError::NotFound(group.to_hex()))?;
            if !group_doc.members().contains(&me) {
                // Others would refuse it: off the roll at the heads cited.
                return Err(NodeError::Invalid(format!(
                    "{me} is not a member of this group (never admitted, left or removed): \
                     nobody would accept a payment from it"
                )));
            }
            let decisions = Decisions::of(Some(group_doc), now);
            let l = state
                .ledgers
                .get_mut(&group)
                .ok_or_else(|| NodeError::NotFound(group.to_hex()))?;
            let order = PaymentOrder {
                from,
                to,
                amount,
                memo,
                proposal,
                made_at_ms: now,
            };
            let signed = l.sign_payment(
                group,
                &self.writer,
                group_doc,
                order,
                &mut state.periods,
                &decisions,
                now,
            )?;
            let mut changes: Vec<SignedChange> = Vec::new();
            let closing = signed.closing.map(|(close_period, close)| {
                changes.push(close.clone());
                (close_period, close)
            });
            let (id, period, change) = match signed.payment {
                Ok(made) => made,
                Err(e) => {
                    // A closing made on the way stays: it is valid on its own.
                    if let Some((close_period, close)) = closing {
                        let doc_id = period_id(&group, close_period);
                        self.persist(&mut docs, doc_id, std::slice::from_ref(&close))?;
                        drop(docs);
                        self.store.flush()?;
                        self.announce(doc_id, vec![close], true);
                    }
                    return Err(e.into());
                }
            };
            changes.push(change);
            let doc_id = period_id(&group, period);
            let note = request.as_ref().map(|mark| (mark, &id.0[..]));
            self.persist_noting(&mut docs, doc_id, &changes, note)?;
            self.tend_ledger(&mut docs, group)?;
            docs.ensure_ledger(group, &self.writer);
            let l = docs
                .ledgers
                .get(&group)
                .ok_or_else(|| NodeError::NotFound(group.to_hex()))?;
            let entry = l
                .ledger
                .entry(&id)
                .ok_or_else(|| NodeError::Invalid("the payment went missing".into()))?;
            (
                doc_id,
                changes,
                payment_view(&l.ledger, entry.id, entry.signer, &entry.payment),
            )
        };
        self.store.flush()?;
        tracing::info!(payment = %view.id.short(), to = %view.to, amount = view.amount, "payment made");
        self.announce(doc_id, changes, true);
        Ok(view)
    }

    /// Set credit limits in group `sel` directly (its creator only; the
    /// group changes them by `set-limits` proposals).
    pub fn set_limit(&self, sel: &str, req: &LimitRequest) -> Result<BalanceView, NodeError> {
        let (group, member) = {
            let docs = self.lock();
            let group = self.resolve(&docs.groups, sel)?;
            let doc = docs
                .groups
                .get(&group)
                .ok_or_else(|| NodeError::NotFound(sel.to_string()))?;
            let member = match &req.member {
                None => None,
                Some(m) => match account_of(doc.members(), m)? {
                    Account::Member(m) => Some(m),
                    Account::Commons => {
                        return Err(NodeError::Invalid(
                            "the commons' limits are fixed: it cannot go below zero".into(),
                        ))
                    }
                },
            };
            (group, member)
        };
        self.write_limit(group, member, req.floor, req.ceiling, None)?;
        self.balance(&group.to_hex(), req.member.as_deref())
    }

    /// Sign the next change of credit limits into `group`'s limit chain,
    /// directly (the creator) or on a passed proposal.
    pub(crate) fn write_limit(
        &self,
        group: Hash32,
        member: Option<MemberId>,
        floor: i64,
        ceiling: i64,
        proposal: Option<Hash32>,
    ) -> Result<(), NodeError> {
        let now = self.now_ms();
        let change = {
            let mut docs = self.lock_for_write()?;
            let state = &mut *docs;
            let decisions = Decisions::of(state.groups.get(&group), now).resolved();
            let doc = state
                .groups
                .get_mut(&group)
                .ok_or_else(|| NodeError::NotFound(group.to_hex()))?;
            let l = state
                .ledgers
                .get_mut(&group)
                .ok_or_else(|| NodeError::NotFound(group.to_hex()))?;
            let head = l.ledger.limit_head();
            let seq = head
                .and_then(|_| l.ledger.limit_seq_of_head())
                .map_or(1, |s| s + 1);
            let body = RecordBody::CreditLimit(CreditLimit {
                member,
                floor,
                ceiling,
                seq,
                prev: head,
                proposal,
            });
            let mut gate = Gate {
                ledger: Some(&mut l.ledger),
                group: None,
                decisions: &decisions,
                now_ms: now,
            };
            let (_, change) = doc.add_record(&self.writer, body, &mut gate, now)?;
            self.persist(&mut docs, group, std::slice::from_ref(&change))?;
            change
        };
        self.store.flush()?;
        self.announce(group, vec![change], true);
        Ok(())
    }

    /// Group `sel`'s id, document and ledger.
    pub(crate) fn group_and_ledger<'a>(
        &self,
        docs: &'a State,
        sel: &str,
    ) -> Result<(Hash32, &'a SignedDoc, &'a GroupLedger), NodeError> {
        let group = self.resolve(&docs.groups, sel)?;
        let not_found = || NodeError::NotFound(sel.to_string());
        let doc = docs.groups.get(&group).ok_or_else(not_found)?;
        let l = docs.ledgers.get(&group).ok_or_else(not_found)?;
        Ok((group, doc, l))
    }

    /// Balances in group `sel`: one account, or every member's and the
    /// commons'.
    pub fn balance(&self, sel: &str, account: Option<&str>) -> Result<BalanceView, NodeError> {
        let docs = self.lock();
        let (group, doc, l) = self.group_and_ledger(&docs, sel)?;
        let accounts: Vec<Account> = match account {
            Some(a) => vec![account_of(doc.ever_members(), a)?],
            None => {
                let mut all: Vec<Account> = doc
                    .ever_members()
                    .iter()
                    .map(|m| Account::Member(*m))
                    .collect();
                all.push(Account::Commons);
                all
            }
        };
        Ok(BalanceView {
            group,
            group_name: GroupView::of(doc).map(|v| v.name).unwrap_or_default(),
            unit: l.ledger.unit().to_string(),
            accounts: accounts
                .iter()
                .map(|a| account_view(&l.ledger, a))
                .collect(),
            total: l.ledger.balances().values().sum(),
            payments: l.ledger.len(),
            equivocations: l.ledger.equivocations(),
        })
    }

    /// A page of group `sel`'s payments, newest first; only those touching
    /// `account` when given. The recent periods are in memory; a page that
    /// reaches further back reads the older periods from the store.
    pub fn ledger(
        &self,
        sel: &str,
        account: Option<&str>,
        skip: usize,
        limit: usize,
    ) -> Result<LedgerView, NodeError> {
        let docs = self.lock();
        let (group, doc, l) = self.group_and_ledger(&docs, sel)?;
        let account = account
            .map(|a| account_of(doc.ever_members(), a))
            .transpose()?;
        let limit = limit.min(1_000);
        let touches =
            |p: &nestwork_docs::ledger::Payment| account.is_none_or(|a| p.from == a || p.to == a);
        let mut payments: Vec<PaymentView> = l
            .ledger
            .history(account.as_ref(), skip, limit)
            .into_iter()
            .map(|e| payment_view(&l.ledger, e.id, e.signer, &e.payment))
            .collect();
        if payments.len() < limit && l.ledger.len() > l.ledger.held() {
            let in_memory = l.ledger.history(account.as_ref(), 0, usize::MAX).len();
            let mut older_skip = skip.saturating_sub(in_memory);
            let mut numbers: Vec<u64> = l.periods.keys().chain(l.cold.keys()).copied().collect();
            numbers.sort_unstable_by(|a, b| b.cmp(a));
            numbers.dedup();
            for period in numbers {
                if payments.len() == limit {
                    break;
                }
                let loaded;
                let period_doc = match l.periods.get(&period) {
                    Some(d) => d,
                    None => {
                        let id = period_id(&group, period);
                        loaded =
                            SignedDoc::load_ledger_period(group, period, self.store.changes(&id)?)?;
                        &loaded
                    }
                };
                // Payments past the base are listed from memory above.
                let mut older: Vec<(Hash32, MemberId, nestwork_docs::ledger::Payment)> = period_doc
                    .records()
                    .iter()
                    .filter(|(id, _)| l.ledger.entry(id).is_none())
                    .filter_map(|(id, r)| match RecordBody::decode(&r.body) {
                        Ok(RecordBody::Payment(p)) if touches(&p) => Some((*id, r.author, p)),
                        _ => None,
                    })
                    .collect();
                older.sort_by(|a, b| b.2.made_at_ms.cmp(&a.2.made_at_ms).then(b.0.cmp(&a.0)));
                for (id, signer, p) in older {
                    if older_skip > 0 {
                        older_skip -= 1;
                        continue;
                    }
                    payments.push(payment_view(&l.ledger, id, signer, &p));
                    if payments.len() == limit {
                        break;
                    }
                }
            }
        }
        Ok(LedgerView {
            group,
            group_name: GroupView::of(doc).map(|v| v.name).unwrap_or_default(),
            unit: l.ledger.unit().to_string(),
            payments,
            total: l.ledger.len(),
            listed: l.ledger.len(),
            periods: l.ledger.periods().iter().map(|(k, v)| (*k, *v)).collect(),
            equivocations: l.ledger.equivocations(),
        })
    }

    /// Whether `doc` is a group document this node holds (not a ledger
    /// period).
    pub fn holds_group(&self, doc: &Hash32) -> bool {
        self.lock().groups.contains_key(doc)
    }

    /// Events about documents: every stored change, local or received.
    pub fn subscribe(&self) -> broadcast::Receiver<DocEvent> {
        self.events.subscribe()
    }

    /// Tell the network about changes now durable: list them in the
    /// directory first (so the network, which looks there, sees them when
    /// the event reaches it), then send the event.
    pub(crate) fn announce(&self, doc: Hash32, changes: Vec<SignedChange>, local: bool) {
        if changes.is_empty() {
            return;
        }
        let seal_with = {
            let mut docs = self.lock();
            self.note_durable(&mut docs, &doc);
            // A change made here to the group document is sealed with the
            // key current at its causal past: whoever was on the roll then
            // may read it (a removal reaches the member removed).
            match changes.last() {
                Some(last) if local && docs.groups.contains_key(&doc) => self
                    .keyring_in(&mut docs, &doc, Some(&last.hash))
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
    fn note_durable(&self, docs: &mut State, doc: &Hash32) {
        let Some(group) = docs.group_of(doc) else {
            return;
        };
        if group != *doc {
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
    fn relist(&self, docs: &mut State, group: Hash32) {
        if let Some(l) = docs.ledgers.get_mut(&group) {
            l.listed();
        }
        match self.listing(docs, group) {
            Some(listing) => self.directory.list(group, listing),
            None => self.directory.forget(&group),
        }
    }

    /// What the directory lists for `group`, from the node's state.
    fn listing(&self, docs: &mut State, group: Hash32) -> Option<Listing> {
        let keyring = self.keyring_in(docs, &group, None);
        let doc = docs.groups.get(&group)?;
        let (genesis, _) = doc.genesis()?;
        let mut listed = vec![(group, doc.heads())];
        if let Some(l) = docs.ledgers.get(&group) {
            let loaded = l.periods.iter().map(|(p, d)| (*p, d.id(), d.heads()));
            let cold = l
                .cold
                .iter()
                .map(|(p, heads)| (*p, period_id(&group, *p), heads.clone()));
            let mut periods: Vec<(u64, Hash32, Vec<Hash32>)> = loaded.chain(cold).collect();
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

    /// Append to the store and flush, under the lock (see the module's
    /// comment); on failure to append reload the document from the store so
    /// that memory does not run ahead of the disk.
    pub(crate) fn persist(
        &self,
        docs: &mut MutexGuard<'_, State>,
        id: Hash32,
        changes: &[SignedChange],
    ) -> Result<(), NodeError> {
        self.persist_noting(docs, id, changes, None)
    }

    /// [`Node::persist`], keeping `note` in the store in the same step.
    fn persist_noting(
        &self,
        docs: &mut MutexGuard<'_, State>,
        id: Hash32,
        changes: &[SignedChange],
        note: Option<(&Hash32, &[u8])>,
    ) -> Result<(), NodeError> {
        let meta = DocMeta {
            kind: docs.kind_of(&id).unwrap_or_else(|| "group".to_string()),
            first_stored_ms: now_ms(),
        };
        if let Err(e) = self.store.append_noting(id, &meta, changes, note) {
            tracing::error!(doc = %id.short(), error = %e, "store append failed; reloading");
            self.recover_from_store(docs, &id);
            return Err(e.into());
        }
        if let Err(e) = self.store.flush() {
            tracing::error!(doc = %id.short(), error = %e, "store flush failed; reloading");
            self.recover_from_store(docs, &id);
            return Err(NodeError::NotDurable(e));
        }
        Ok(())
    }

    /// After a write to the store failed (a full disk): memory must not run
    /// ahead of the disk, so open the store afresh (sled refuses everything
    /// after a failed write, reads too) and rebuild the group of `doc` from
    /// what reached the disk. Should either fail, the group stays as it was
    /// in memory and the next write tries again: the node keeps answering,
    /// and writes resume once there is space.
    fn recover_from_store(&self, docs: &mut State, doc: &Hash32) {
        let Some(group) = docs.group_of(doc) else {
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
    pub(crate) fn lock_for_write(&self) -> Result<MutexGuard<'_, State>, NodeError> {
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
    pub(crate) fn tend_ledger(&self, docs: &mut State, group: Hash32) -> Result<(), NodeError> {
        let Some(l) = docs.ledgers.get_mut(&group) else {
            return Ok(());
        };
        if let Some(period) = l.take_history_for() {
            ledger_marks::forget_base(&self.store, &group)?;
            return self.reload_group(docs, group, Some(period));
        }
        if l.take_rebased() {
            ledger_marks::store_rebase(&self.store, &group, l)?;
        }
        Ok(())
    }

    /// Load a period document that was unloaded (cold) back from the store.
    fn warm(&self, docs: &mut State, doc: &Hash32) -> Result<(), NodeError> {
        let Some((group, period, _)) = docs.cold_period(doc) else {
            return Ok(());
        };
        let mut loaded = SignedDoc::load_ledger_period(group, period, self.store.changes(doc)?)?;
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
    fn served_period(&self, doc: &Hash32, mut heads: Vec<Hash32>) -> Option<Arc<StoredGraph>> {
        heads.sort_unstable();
        if let Some(graph) = self.served.get(doc, &heads) {
            return Some(graph);
        }
        let graph = match self.store.changes(doc).map(StoredGraph::of) {
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

    /// Rebuild one group's document and ledger from the store. `late`:
    /// a late record filed in that period needs the history below the
    /// base, so the ledger is counted again from the first period, read
    /// one period at a time (see [`load_periods`]); otherwise it counts
    /// from its stored base as at start-up.
    fn reload_group(
        &self,
        docs: &mut State,
        group: Hash32,
        late: Option<u64>,
    ) -> Result<(), NodeError> {
        // The group document is read before anything is replaced: a read
        // that fails leaves memory as it was.
        tracing::info!(group = %group.short(), ?late, "reloading a group's documents from the store");
        let mut doc = SignedDoc::load_trusted(group, self.store.changes(&group)?)?;
        doc.set_writer(&self.writer);
        let periods: Vec<(u64, Hash32)> = self
            .store
            .docs()?
            .into_iter()
            .filter_map(|(id, meta)| match parse_period_kind(&meta.kind) {
                Some((g, period)) if g == group => Some((period, id)),
                _ => None,
            })
            .collect();
        let old = docs.ledgers.get(&group);
        let newest = old.and_then(|l| l.ledger.newest_closed());
        let counted_from = old.and_then(|l| l.counted_from);
        if let Some(l) = docs.ledgers.remove(&group) {
            for d in l.periods.values() {
                docs.periods.remove(&d.id());
            }
        }
        docs.groups.insert(group, doc);
        if let Some(mut l) = docs.groups.get(&group).and_then(GroupLedger::of_group) {
            let late = late.map(|period| Late {
                period,
                newest,
                counted_from,
            });
            load_periods(
                &self.store,
                &self.writer,
                group,
                &mut l,
                docs,
                periods,
                late,
            )?;
            docs.ledgers.insert(group, l);
            docs.ensure_ledger(group, &self.writer);
        }
        self.relist(docs, group);
        Ok(())
    }

    pub(crate) fn with_doc<T>(
        &self,
        sel: &str,
        f: impl FnOnce(&SignedDoc) -> Result<T, NodeError>,
    ) -> Result<T, NodeError> {
        let docs = self.lock();
        let id = self.resolve(&docs.groups, sel)?;
        docs.groups
            .get(&id)
            .ok_or_else(|| NodeError::NotFound(sel.to_string()))
            .and_then(f)
    }

    /// A group by full id, unique id prefix (4+ hex characters) or exact name.
    pub(crate) fn resolve(
        &self,
        docs: &BTreeMap<Hash32, SignedDoc>,
        sel: &str,
    ) -> Result<Hash32, NodeError> {
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

    /// What the node remembers of seal keys (taken after the state's lock,
    /// never before).
    pub(crate) fn seal_memory(&self) -> MutexGuard<'_, crate::seal::SealMemory> {
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

// The lookups (`groups` to `heads`, and `keyring`) run on the network's
// event loop: they read the directory and never take the node's lock.
impl Replica for Node {
    fn groups(&self) -> Vec<(Hash32, Vec<u8>)> {
        self.directory.groups()
    }

    fn group_of(&self, doc: &Hash32) -> Option<Hash32> {
        self.directory.group_of(doc)
    }

    fn docs_of(&self, group: &Hash32) -> Vec<Hash32> {
        self.directory.docs_of(group)
    }

    fn genesis(&self, doc: &Hash32) -> Option<Vec<u8>> {
        self.directory.genesis(doc)
    }

    fn is_member(&self, doc: &Hash32, member: &MemberId) -> bool {
        self.directory.is_member(doc, member)
    }

    fn heads(&self, doc: &Hash32) -> Option<Vec<Hash32>> {
        self.directory.heads(doc)
    }

    fn changes_since(
        &self,
        doc: &Hash32,
        have: &[Hash32],
        max_bytes: usize,
    ) -> (Vec<SignedChange>, bool) {
        let all = 'all: {
            let mut docs = self.lock();
            if docs.holds_unsaved(doc) {
                return (Vec::new(), false);
            }
            if let Some((_, _, heads)) = docs.cold_period(doc) {
                if heads == have {
                    return (Vec::new(), false);
                }
                drop(docs);
                if let Some(graph) = self.served_period(doc, heads) {
                    break 'all graph.changes_since(have);
                }
                // Changed meanwhile, or unreadable: load it as a write
                // would, under the lock again (so asked again).
                docs = self.lock();
                if docs.holds_unsaved(doc) {
                    return (Vec::new(), false);
                }
                if let Err(e) = self.warm(&mut docs, doc) {
                    tracing::error!(doc = %doc.short(), error = %e, "cannot load a ledger period");
                }
            }
            docs.doc(doc)
                .map(|d| d.changes_since(have))
                .unwrap_or_default()
        };
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

    fn admit(
        &self,
        doc: &Hash32,
        member: MemberId,
        ticket: Hash32,
        ticket_signature: Vec<u8>,
    ) -> Result<(), String> {
        Node::admit(self, doc, member, ticket, ticket_signature).map_err(|e| e.to_string())
    }

    fn peer_heads(&self, peer: &MemberId, doc: &Hash32) -> Option<Vec<Hash32>> {
        self.store.peer_heads(&peer.0, doc).ok().flatten()
    }

    fn set_peer_heads(&self, peer: &MemberId, doc: &Hash32, heads: &[Hash32]) {
        if let Err(e) = self.store.set_peer_heads(&peer.0, doc, heads) {
            tracing::warn!(error = %e, "cannot record a peer's heads");
        }
    }

    fn forget_peer_heads(&self, peer: &MemberId, doc: &Hash32) {
        if let Err(e) = self.store.forget_peer_heads(&peer.0, doc) {
            tracing::warn!(error = %e, "cannot forget a peer's heads");
        }
    }

    fn keyring(&self, group: &Hash32) -> Option<nestwork_docs::seal::Keyring> {
        self.directory.keyring(group)
    }

    fn subscribe(&self) -> broadcast::Receiver<DocEvent> {
        Node::subscribe(self)
    }
}

/// An account named on the command line: "commons", a member id, or a
/// unique start (4+ characters) of the id of a member on the roll.
fn account_of(
    members: &std::collections::BTreeSet<MemberId>,
    sel: &str,
) -> Result<Account, NodeError> {
    let sel = sel.trim();
    if let Ok(a) = sel.parse::<Account>() {
        return match a {
            Account::Member(m) if !members.contains(&m) => Err(NodeError::Invalid(format!(
                "{m} is not a member of this group"
            ))),
            a => Ok(a),
        };
    }
    let found: Vec<&MemberId> = if sel.len() >= 4 {
        members
            .iter()
            .filter(|m| m.to_string().starts_with(sel))
            .collect()
    } else {
        Vec::new()
    };
    match found.as_slice() {
        [one] => Ok(Account::Member(**one)),
        [] => Err(NodeError::Invalid(format!(
            "no member of this group matches {sel:?}; `nestwork group show` lists them"
        ))),
        _ => Err(NodeError::Invalid(format!(
            "{sel:?} matches several members; use more of the id"
        ))),
    }
}

/// The answer to a payment request made before: the payment noted for it,
/// if it is the same payment.
fn repeated_payment(
    docs: &State,
    group: Hash32,
    made: &[u8],
    amount: u64,
    to: &Account,
) -> Result<PaymentView, NodeError> {
    let id = <[u8; 32]>::try_from(made)
        .map(Hash32)
        .map_err(|_| NodeError::Invalid("the note of this request is damaged".into()))?;
    let l = docs
        .ledgers
        .get(&group)
        .ok_or_else(|| NodeError::NotFound(group.to_hex()))?;
    match l.ledger.entry(&id) {
        Some(e) if e.payment.amount == amount && e.payment.to == *to => {
            Ok(payment_view(&l.ledger, e.id, e.signer, &e.payment))
        }
        Some(_) => Err(NodeError::Invalid(
            "this request id was already used for a different payment".into(),
        )),
        None => Err(NodeError::Invalid(format!(
            "this request was already carried out as payment {}",
            id.short()
        ))),
    }
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
    store: &Store,
    writer: &Writer,
    group: Hash32,
    l: &mut GroupLedger,
    state: &mut State,
    mut periods: Vec<(u64, Hash32)>,
    late: Option<Late>,
) -> Result<(), NodeError> {
    let State {
        periods: index,
        damaged,
        periods_reread,
        ..
    } = state;
    periods.sort_unstable();
    let mut load = |period: u64, id: &Hash32| -> Result<Option<SignedDoc>, NodeError> {
        let loaded = load_document(
            store,
            *id,
            |changes| SignedDoc::load_ledger_period(group, period, changes),
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
        // A base under the closings of period 0 or 1 could cut the late
        // record (see `GroupLedger::settle`): counted from nothing.
        Some(late) => match late
            .period
            .checked_sub(2)
            .and_then(|top| match late.counted_from {
                Some(last) => last.checked_sub(1).map(|below| top.min(below)),
                None => Some(top),
            }) {
            Some(top) => ledger_marks::checkpoint_at_or_below(store, &group, top)?,
            None => None,
        },
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
pub(crate) mod tests {
    use super::*;

    fn node_in(dir: &std::path::Path, seed: u8) -> Node {
        Node::open(&DataDir::new(dir), MemberKey::from_secret([seed; 32])).expect("open")
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
        let node = node_in(tmp.path(), 1);
        create(&node, "Same").expect("one");
        create(&node, "Same").expect("two");
        assert!(matches!(node.group("Same"), Err(NodeError::Ambiguous(..))));
        assert!(matches!(node.group("Nope"), Err(NodeError::NotFound(_))));
    }
}
