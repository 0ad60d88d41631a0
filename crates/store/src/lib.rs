//! Durable storage of documents as the signed changes that make them, on
//! sled in the node's data directory.
//!
//! Only changes the engine has accepted are written here, in the order they
//! were applied (so a document reloads by applying them in key order). Each
//! write is one sled transaction over the `docs` and `changes` trees, so a
//! crash leaves either all of it or none of it; [`Store::flush`] makes it
//! durable, and the node acknowledges nothing before that returns.
//!
//! [`DocStore`] is what the node needs of a store; [`Store`] is the sled
//! one and [`MemoryStore`] its twin in memory, for tests.
//!
//! This crate knows nothing of Automerge or of document kinds: it stores
//! envelopes and small metadata, and hands them back.

use nestwork_core::limits::{MAX_DOC_META_BYTES, MAX_PEER_HEADS_BYTES};
use nestwork_core::{Hash32, SignedChange};
use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

mod memory;
pub use memory::MemoryStore;

/// What went wrong with the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process (most likely another `nestwork run`) holds the store.
    #[error("the store at {0} is in use by another nestwork process")]
    InUse(String),
    /// The disk or sled failed.
    #[error("storage error: {0}")]
    Sled(#[from] sled::Error),
    /// A change over the size limit the store reads back with; nothing of
    /// the write was stored.
    #[error("refused to store change {hash}: {reason}")]
    TooLarge {
        /// The change's hash, in hex.
        hash: String,
        /// The limit it broke.
        reason: String,
    },
    /// The store was written by a newer build, in a format this one does
    /// not read.
    #[error(
        "the store at {dir} is in format {found}, written by a newer Nestwork; this build reads format {FORMAT_VERSION} and older. Run the newer version (nothing was changed)"
    )]
    NewerFormat {
        /// The data directory's store.
        dir: String,
        /// The format it says it is in.
        found: u32,
    },
    /// The store was written by an older build whose records this one no
    /// longer reads (format 1: ledger payments that cite no group heads).
    #[error(
        "the store at {dir} is in format {found}, written by an older Nestwork: {why}. This build reads format {FORMAT_VERSION}; run the older version with this data directory, or start a new one and join your groups again (nothing was changed)"
    )]
    OlderFormat {
        /// The data directory's store.
        dir: String,
        /// The format it says it is in.
        found: u32,
        /// What this build cannot read in it.
        why: String,
    },
    /// The store is being reopened after a failure, or could not be.
    #[error("the store is closed after a disk failure; it reopens with the next write once the disk has space")]
    Closed,
    /// A stored entry does not decode; the store was damaged outside sled.
    #[error("stored {what} under key {key} is damaged: {reason}")]
    Damaged {
        /// What kind of entry.
        what: &'static str,
        /// Its key, in hex.
        key: String,
        /// The decoding error.
        reason: String,
    },
}

/// How long [`Store::open`] waits for a store that was just closed to
/// release its lock.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// sled's page cache. Its default (1 GiB) would let a node holding years
/// of history grow toward a gigabyte; documents are read whole and rarely,
/// so a small cache costs little.
pub const CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// The format of what this build writes. A store records the format it
/// is in; a newer one is refused with a plain message rather than read
/// wrongly, an older one is migrated on open where it can be. Stores from
/// before the format was recorded are format 1.
///
/// Format 2: payments and period closings cite the group document's heads
/// their author held (the roll they are judged by). A format-1 store that
/// holds a ledger period is refused: its payments do not decode in the new
/// shape, and could not be judged if they did. One that holds no ledger
/// period (groups only) is simply marked format 2.
pub const FORMAT_VERSION: u32 = 2;

/// The start of the store kind of a ledger period document (see the node's
/// `ledger::period_kind`).
const LEDGER_KIND_PREFIX: &str = "ledger ";

/// The marks key of the store's format (shorter than any id).
const FORMAT: &[u8] = b"format";

/// The marks key of the number of stored changes (shorter than any id, so
/// no document's mark). Kept in the append transaction because counting a
/// sled tree reads all of it.
const CHANGE_COUNT: &[u8] = b"changes";

fn count_of(bytes: &[u8]) -> u64 {
    bytes.try_into().map(u64::from_be_bytes).unwrap_or_default()
}

/// Result with [`StoreError`].
pub type Result<T> = std::result::Result<T, StoreError>;

/// What the store keeps about a document besides its changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocMeta {
    /// Which kind of document it is (`"group"`, later `"ledger"`, ...).
    pub kind: String,
    /// When this node first stored it (ms since the Unix epoch).
    pub first_stored_ms: u64,
}

/// What [`Store::salvage`] found of a document.
#[derive(Debug, Default)]
pub struct Salvaged {
    /// The entries that decode, in the order stored, with their keys.
    pub changes: Vec<(Vec<u8>, SignedChange)>,
    /// The entries that do not, with their keys and why.
    pub damaged: Vec<(Vec<u8>, String)>,
}

/// The node's store. Clones share one handle.
#[derive(Clone)]
pub struct Store {
    /// sled and its trees; `None` for a moment while [`Store::reopen`]
    /// replaces a handle that failed.
    trees: Arc<RwLock<Option<Trees>>>,
    /// Where it lives (`None` for a temporary store).
    dir: Option<PathBuf>,
    /// Writes counted so far, and how many of them a finished flush
    /// covers: a flush with nothing new to write costs no disk sync, and
    /// [`Store::unflushed`] says whether everything written is durable.
    written: Arc<std::sync::atomic::AtomicU64>,
    flushed: Arc<std::sync::atomic::AtomicU64>,
}

/// One open sled database and its trees.
struct Trees {
    db: sled::Db,
    docs: sled::Tree,
    changes: sled::Tree,
    /// Heads each peer had when last synced, by peer || document.
    peers: sled::Tree,
    /// Notes the node keeps about a document while it is unchanged, by
    /// document id (see [`Store::set_mark`]).
    marks: sled::Tree,
    /// Stored entries found damaged, moved out of `changes` (same keys)
    /// so that the document loads without them and peers send them again;
    /// kept for inspection.
    set_aside: sled::Tree,
}

impl Store {
    /// Open (or create) the store in `dir`.
    ///
    /// sled releases its file lock from a background thread a moment after
    /// the last handle is dropped (spacejam/sled#1289), so a store closed
    /// just now (a restart in the same process) may still look held: the
    /// lock is retried for up to [`LOCK_WAIT`] before the store is reported
    /// in use by another process.
    pub fn open(dir: &Path) -> Result<Store> {
        Ok(Store {
            trees: Arc::new(RwLock::new(Some(Trees::open(dir)?))),
            dir: Some(dir.to_path_buf()),
            written: Default::default(),
            flushed: Default::default(),
        })
    }

    /// A store that lives in a temporary directory and vanishes when dropped
    /// (for tests).
    pub fn temporary() -> Result<Store> {
        let db = sled::Config::new().temporary(true).open()?;
        Ok(Store {
            trees: Arc::new(RwLock::new(Some(Trees::of_db(db)?))),
            dir: None,
            written: Default::default(),
            flushed: Default::default(),
        })
    }

    /// Run `f` on the open trees.
    fn with<T>(&self, f: impl FnOnce(&Trees) -> Result<T>) -> Result<T> {
        let trees = self.trees.read().unwrap_or_else(|e| e.into_inner());
        match trees.as_ref() {
            Some(t) => f(t),
            None => Err(StoreError::Closed),
        }
    }

    /// Count a write, once it is in sled (so a flush that starts after
    /// the count covers it).
    fn touch(&self) {
        self.written.fetch_add(1, Ordering::SeqCst);
    }

    /// Test hook: overwrite the bytes of the `nth` stored change of `doc`
    /// (in stored order), as damage from outside sled would.
    #[doc(hidden)]
    pub fn damage_entry(&self, doc: &Hash32, nth: usize, bytes: &[u8]) -> Result<()> {
        self.with(|t| {
            if let Some(entry) = t.changes.scan_prefix(doc.0).nth(nth) {
                let (k, _) = entry?;
                t.changes.insert(k, bytes)?;
            }
            Ok(())
        })?;
        self.touch();
        Ok(())
    }

    /// How many entries have been set aside as damaged.
    pub fn set_aside_count(&self) -> usize {
        self.with(|t| Ok(t.set_aside.len())).unwrap_or(0)
    }
}

/// What the node needs of a store: documents as the signed changes that
/// make them, appended atomically and made durable by [`DocStore::flush`];
/// notes that hold while a document is unchanged; the heads each peer had.
/// [`Store`] keeps them in sled on disk; [`MemoryStore`] in memory, for
/// tests that need no disk (`tests/contract.rs` runs both through the same
/// operations and checks that they answer alike).
pub trait DocStore: Send + Sync {
    /// Close this handle and open the store again. After a write fails
    /// (a full disk), sled refuses everything from then on, reads too; a
    /// fresh handle holds exactly what reached the disk before the failure
    /// and writes again once there is space.
    fn reopen(&self) -> Result<()>;

    /// Whether the store is open (not left closed by a failed reopen).
    fn is_open(&self) -> bool;

    /// Append accepted changes of `doc`, registering the document with
    /// `meta` if it is new, in one atomic step. Not durable until
    /// [`DocStore::flush`] returns.
    fn append(&self, doc: Hash32, meta: &DocMeta, changes: &[SignedChange]) -> Result<()> {
        self.append_all(&[(doc, meta, changes)], None)
    }

    /// Append accepted changes of several documents (each registered with
    /// its meta if new) in one atomic step: all of them or, after a crash,
    /// none; with `note` (an id and its value among the marks) kept in the
    /// same step, for a note that must be durable exactly when the changes
    /// are (which request made which change). Not durable until
    /// [`DocStore::flush`] returns. The one append a node's writes go
    /// through.
    fn append_all(
        &self,
        docs_in: &[(Hash32, &DocMeta, &[SignedChange])],
        note: Option<(&Hash32, &[u8])>,
    ) -> Result<()>;

    /// How many writes are not yet known to be on disk.
    fn unflushed(&self) -> u64;

    /// Keep a note about document `doc` (or any other id) that holds only
    /// while the document is unchanged: appending a change to it erases the
    /// note in the same transaction. Durable with the next flush.
    fn set_mark(&self, doc: &Hash32, note: &[u8]) -> Result<()>;

    /// The note kept about `doc`, if it still holds.
    fn mark(&self, doc: &Hash32) -> Result<Option<Vec<u8>>>;

    /// Drop the note about `doc`.
    fn remove_mark(&self, doc: &Hash32) -> Result<()>;

    /// Make everything written so far durable (fsync). Concurrent callers
    /// share the same disk flush; with nothing written since the last one,
    /// nothing is done.
    fn flush(&self) -> Result<()>;

    /// Every stored document with its metadata.
    fn docs(&self) -> Result<Vec<(Hash32, DocMeta)>>;

    /// The changes of `doc` in the order they were stored.
    fn changes(&self, doc: &Hash32) -> Result<Vec<SignedChange>>;

    /// The changes of `doc` in the order they were stored, each with its
    /// key, and apart from them the entries that do not decode (key and
    /// why): what can be saved of a document whose entries were damaged.
    fn salvage(&self, doc: &Hash32) -> Result<Salvaged>;

    /// Move the entries under `keys` (from [`Store::salvage`]) out of the
    /// changes into the set-aside tree, in one atomic step: the document
    /// loads without them from now on. Durable with the next flush.
    fn set_aside(&self, keys: &[Vec<u8>]) -> Result<()>;

    /// Remember the heads `peer` had for `doc`. Not flushed on its own:
    /// losing it in a crash only costs one fuller sync.
    fn set_peer_heads(&self, peer: &[u8; 32], doc: &Hash32, heads: &[Hash32]) -> Result<()>;

    /// Forget the heads `peer` had for `doc`: unknown again.
    fn forget_peer_heads(&self, peer: &[u8; 32], doc: &Hash32) -> Result<()>;

    /// The heads `peer` had for `doc` when last synced.
    fn peer_heads(&self, peer: &[u8; 32], doc: &Hash32) -> Result<Option<Vec<Hash32>>>;

    /// How many changes are stored, over all documents.
    fn change_count(&self) -> usize;

    /// Bytes the store occupies on disk.
    fn size_on_disk(&self) -> u64;
}

impl DocStore for Store {
    fn reopen(&self) -> Result<()> {
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        let mut trees = self.trees.write().unwrap_or_else(|e| e.into_inner());
        // The old handle must be gone before its file lock can be taken
        // again (Trees::open waits for sled to release it).
        drop(trees.take());
        *trees = Some(Trees::open(dir)?);
        // Whatever was written before is on disk or lost: nothing is
        // waiting for a flush.
        self.flushed
            .store(self.written.load(Ordering::SeqCst), Ordering::SeqCst);
        Ok(())
    }

    fn is_open(&self) -> bool {
        self.trees
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    fn append_all(
        &self,
        docs_in: &[(Hash32, &DocMeta, &[SignedChange])],
        note: Option<(&Hash32, &[u8])>,
    ) -> Result<()> {
        check_sizes(docs_in)?;
        let encoded: Vec<(Hash32, Vec<u8>, Vec<Vec<u8>>)> = docs_in
            .iter()
            .map(|(doc, meta, changes)| {
                (
                    *doc,
                    nestwork_core::encoding::encode(*meta),
                    changes.iter().map(SignedChange::encode).collect(),
                )
            })
            .collect();
        let total: u64 = encoded.iter().map(|(_, _, c)| c.len() as u64).sum();
        self.with(|t| {
            (&t.docs, &t.changes, &t.marks)
                .transaction(|(docs, stored, marks)| {
                    let count = marks.get(CHANGE_COUNT)?.map_or(0, |v| count_of(&v));
                    marks.insert(CHANGE_COUNT, &(count + total).to_be_bytes())?;
                    for (doc, meta_bytes, changes) in &encoded {
                        marks.remove(&doc.0)?;
                        if docs.get(doc.0)?.is_none() {
                            docs.insert(&doc.0, meta_bytes.as_slice())?;
                        }
                        for bytes in changes {
                            let seq = stored.generate_id()?;
                            stored.insert(change_key(doc, seq).as_slice(), bytes.as_slice())?;
                        }
                    }
                    if let Some((id, value)) = note {
                        marks.insert(&id.0, value)?;
                    }
                    Ok::<(), ConflictableTransactionError<()>>(())
                })
                .map_err(transaction_error)
        })?;
        self.touch();
        Ok(())
    }

    fn unflushed(&self) -> u64 {
        let written = self.written.load(Ordering::SeqCst);
        written.saturating_sub(self.flushed.load(Ordering::SeqCst))
    }

    fn set_mark(&self, doc: &Hash32, note: &[u8]) -> Result<()> {
        self.with(|t| Ok(t.marks.insert(doc.0, note)?))?;
        self.touch();
        Ok(())
    }

    fn mark(&self, doc: &Hash32) -> Result<Option<Vec<u8>>> {
        self.with(|t| Ok(t.marks.get(doc.0)?.map(|v| v.to_vec())))
    }

    fn remove_mark(&self, doc: &Hash32) -> Result<()> {
        self.with(|t| Ok(t.marks.remove(doc.0)?))?;
        self.touch();
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        let target = self.written.load(Ordering::SeqCst);
        if self.flushed.load(Ordering::SeqCst) >= target {
            return Ok(());
        }
        self.with(|t| Ok(t.db.flush()?))?;
        // Writes counted after `target` may have missed this flush.
        self.flushed.fetch_max(target, Ordering::SeqCst);
        Ok(())
    }

    fn docs(&self) -> Result<Vec<(Hash32, DocMeta)>> {
        self.with(|t| {
            t.docs
                .iter()
                .map(|entry| {
                    let (k, v) = entry?;
                    let id = hash_from_key(&k, "document")?;
                    let meta = nestwork_core::encoding::decode(
                        "document metadata",
                        &v,
                        MAX_DOC_META_BYTES,
                    )
                    .map_err(|e| StoreError::Damaged {
                        what: "document metadata",
                        key: id.to_hex(),
                        reason: e.to_string(),
                    })?;
                    Ok((id, meta))
                })
                .collect()
        })
    }

    fn changes(&self, doc: &Hash32) -> Result<Vec<SignedChange>> {
        self.with(|t| {
            t.changes
                .scan_prefix(doc.0)
                .map(|entry| {
                    let (k, v) = entry?;
                    SignedChange::decode(&v).map_err(|e| StoreError::Damaged {
                        what: "change",
                        key: hex::encode(&k),
                        reason: e.to_string(),
                    })
                })
                .collect()
        })
    }

    fn salvage(&self, doc: &Hash32) -> Result<Salvaged> {
        self.with(|t| {
            let mut salvaged = Salvaged::default();
            for entry in t.changes.scan_prefix(doc.0) {
                let (k, v) = entry?;
                match SignedChange::decode(&v) {
                    Ok(c) => salvaged.changes.push((k.to_vec(), c)),
                    Err(e) => salvaged.damaged.push((k.to_vec(), e.to_string())),
                }
            }
            Ok(salvaged)
        })
    }

    fn set_aside(&self, keys: &[Vec<u8>]) -> Result<()> {
        self.with(|t| {
            (&t.changes, &t.set_aside, &t.marks)
                .transaction(|(changes, aside, marks)| {
                    let mut moved = 0u64;
                    for k in keys {
                        if let Some(v) = changes.remove(k.as_slice())? {
                            aside.insert(k.as_slice(), v)?;
                            moved += 1;
                        }
                    }
                    let count = marks.get(CHANGE_COUNT)?.map_or(0, |v| count_of(&v));
                    marks.insert(CHANGE_COUNT, &count.saturating_sub(moved).to_be_bytes())?;
                    Ok::<(), ConflictableTransactionError<()>>(())
                })
                .map_err(transaction_error)
        })?;
        self.touch();
        Ok(())
    }

    fn set_peer_heads(&self, peer: &[u8; 32], doc: &Hash32, heads: &[Hash32]) -> Result<()> {
        let key = [&peer[..], &doc.0[..]].concat();
        let value = nestwork_core::encoding::encode(&heads.to_vec());
        self.with(|t| Ok(t.peers.insert(key, value)?))?;
        Ok(())
    }

    fn forget_peer_heads(&self, peer: &[u8; 32], doc: &Hash32) -> Result<()> {
        let key = [&peer[..], &doc.0[..]].concat();
        self.with(|t| Ok(t.peers.remove(key)?))?;
        Ok(())
    }

    fn peer_heads(&self, peer: &[u8; 32], doc: &Hash32) -> Result<Option<Vec<Hash32>>> {
        let key = [&peer[..], &doc.0[..]].concat();
        self.with(|t| {
            Ok(t.peers.get(key)?.and_then(|v| {
                nestwork_core::encoding::decode("peer heads", &v, MAX_PEER_HEADS_BYTES).ok()
            }))
        })
    }

    fn change_count(&self) -> usize {
        self.with(|t| Ok(t.marks.get(CHANGE_COUNT)?))
            .ok()
            .flatten()
            .map_or(0, |v| count_of(&v) as usize)
    }

    fn size_on_disk(&self) -> u64 {
        self.with(|t| Ok(t.db.size_on_disk()?)).unwrap_or(0)
    }
}

impl Trees {
    /// Open the store in `dir`, waiting a moment for a lock that was just
    /// released.
    ///
    /// sled releases its file lock from a background thread a moment after
    /// the last handle is dropped (spacejam/sled#1289), so a store closed
    /// just now (a restart in the same process) may still look held: the
    /// lock is retried for up to [`LOCK_WAIT`] before the store is reported
    /// in use by another process.
    fn open(dir: &Path) -> Result<Trees> {
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        loop {
            match Trees::try_open(dir) {
                Err(StoreError::InUse(_)) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                result => return result,
            }
        }
    }

    fn try_open(dir: &Path) -> Result<Trees> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(CACHE_BYTES)
            .open()
            .map_err(|e| match e {
                sled::Error::Io(io)
                    if io.kind() == std::io::ErrorKind::WouldBlock
                        || io.to_string().contains("lock") =>
                {
                    StoreError::InUse(dir.display().to_string())
                }
                other => StoreError::Sled(other),
            })?;
        Trees::of_db(db).map_err(|e| match e {
            StoreError::NewerFormat { found, .. } => StoreError::NewerFormat {
                dir: dir.display().to_string(),
                found,
            },
            StoreError::OlderFormat { found, why, .. } => StoreError::OlderFormat {
                dir: dir.display().to_string(),
                found,
                why,
            },
            other => other,
        })
    }

    fn of_db(db: sled::Db) -> Result<Trees> {
        // The format first, before anything is read or written.
        let marks = db.open_tree("marks")?;
        let found =
            match marks.get(FORMAT)? {
                None => 1,
                Some(v) => v.as_ref().try_into().map(u32::from_be_bytes).map_err(|_| {
                    StoreError::Damaged {
                        what: "store format",
                        key: hex::encode(FORMAT),
                        reason: format!("{} bytes, expected 4", v.len()),
                    }
                })?,
            };
        if found > FORMAT_VERSION {
            return Err(StoreError::NewerFormat {
                dir: "this data directory".into(),
                found,
            });
        }
        // Older formats are migrated here (format 1 is the first).
        if found < 2 {
            let docs = db.open_tree("docs")?;
            for entry in docs.iter() {
                let (_, v) = entry?;
                let kind = nestwork_core::encoding::decode::<DocMeta>(
                    "document metadata",
                    &v,
                    MAX_DOC_META_BYTES,
                )
                .map(|m| m.kind)
                .unwrap_or_default();
                if kind.starts_with(LEDGER_KIND_PREFIX) {
                    return Err(StoreError::OlderFormat {
                        dir: "this data directory".into(),
                        found,
                        why: "it holds ledger payments that do not cite the group's roll, \
                              which this build can neither read nor judge"
                            .into(),
                    });
                }
            }
        }
        if found != FORMAT_VERSION || marks.get(FORMAT)?.is_none() {
            marks.insert(FORMAT, &FORMAT_VERSION.to_be_bytes())?;
        }
        let trees = Trees {
            docs: db.open_tree("docs")?,
            changes: db.open_tree("changes")?,
            peers: db.open_tree("peers")?,
            marks,
            set_aside: db.open_tree("set_aside")?,
            db,
        };
        if trees.marks.get(CHANGE_COUNT)?.is_none() {
            // A store from before the count was kept: count once (sled's
            // `len` reads the whole tree).
            let count = trees.changes.len() as u64;
            trees.marks.insert(CHANGE_COUNT, &count.to_be_bytes())?;
        }
        Ok(trees)
    }
}

/// A failed sled transaction as a store error (ours never abort).
fn transaction_error(e: TransactionError<()>) -> StoreError {
    match e {
        TransactionError::Storage(e) => StoreError::Sled(e),
        TransactionError::Abort(()) => {
            StoreError::Sled(sled::Error::ReportableBug("aborted".into()))
        }
    }
}

/// Refuse a write with a change over the size limit, before anything of it
/// is kept: whatever is written must read back (`changes` decodes with the
/// same limit), or the node could not start again. Every store checks this.
fn check_sizes(docs_in: &[(Hash32, &DocMeta, &[SignedChange])]) -> Result<()> {
    for c in docs_in.iter().flat_map(|(_, _, changes)| changes.iter()) {
        c.check_size().map_err(|e| StoreError::TooLarge {
            hash: c.hash.to_hex(),
            reason: e.to_string(),
        })?;
    }
    Ok(())
}

fn change_key(doc: &Hash32, seq: u64) -> [u8; 40] {
    let mut key = [0u8; 40];
    key[..32].copy_from_slice(&doc.0);
    key[32..].copy_from_slice(&seq.to_be_bytes());
    key
}

fn hash_from_key(key: &[u8], what: &'static str) -> Result<Hash32> {
    let bytes: [u8; 32] = key.try_into().map_err(|_| StoreError::Damaged {
        what,
        key: hex::encode(key),
        reason: "key is not 32 bytes".into(),
    })?;
    Ok(Hash32(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nestwork_core::MemberKey;

    fn change(n: u8) -> SignedChange {
        let key = MemberKey::from_secret([1; 32]);
        SignedChange::sign(&key, Hash32::of(b"doc"), Hash32::of(&[n]), vec![n; 8])
    }

    fn meta() -> DocMeta {
        DocMeta {
            kind: "group".into(),
            first_stored_ms: 1,
        }
    }

    #[test]
    fn a_store_in_a_newer_format_is_refused_with_a_plain_message() {
        let dir = tempfile::tempdir().expect("tempdir");
        let doc = Hash32::of(b"doc");
        {
            let store = Store::open(dir.path()).expect("open");
            store.append(doc, &meta(), &[change(1)]).expect("append");
            store
                .with(|t| {
                    Ok(t.marks
                        .insert(FORMAT, &(FORMAT_VERSION + 1).to_be_bytes())?)
                })
                .expect("format");
            store.flush().expect("flush");
        }
        let err = Store::open(dir.path()).err().expect("refused");
        let text = err.to_string();
        assert!(
            text.contains(&format!("is in format {}", FORMAT_VERSION + 1))
                && text.contains("newer Nestwork")
                && text.contains(&dir.path().display().to_string()),
            "{text}"
        );
    }

    #[test]
    fn a_format_1_store_with_a_ledger_period_is_refused_and_one_without_is_migrated() {
        let with = tempfile::tempdir().expect("tempdir");
        let without = tempfile::tempdir().expect("tempdir");
        for (dir, kind) in [
            (&with, format!("ledger {} 0", "ab".repeat(32))),
            (&without, "group".to_string()),
        ] {
            let store = Store::open(dir.path()).expect("open");
            let meta = DocMeta {
                kind,
                first_stored_ms: 1,
            };
            store
                .append(Hash32::of(b"doc"), &meta, &[change(1)])
                .expect("append");
            store
                .with(|t| Ok(t.marks.insert(FORMAT, &1u32.to_be_bytes())?))
                .expect("format");
            store.flush().expect("flush");
        }
        let err = Store::open(with.path()).err().expect("refused");
        let text = err.to_string();
        assert!(
            text.contains("is in format 1, written by an older Nestwork")
                && text.contains("do not cite the group's roll")
                && text.contains("nothing was changed")
                && text.contains(&with.path().display().to_string()),
            "{text}"
        );
        // Refused without a change: still format 1, and refused again.
        assert!(Store::open(with.path()).is_err());
        let store = Store::open(without.path()).expect("migrated");
        let format = store.with(|t| Ok(t.marks.get(FORMAT)?)).expect("read");
        assert_eq!(
            format.as_deref(),
            Some(&FORMAT_VERSION.to_be_bytes()[..]),
            "marked format {FORMAT_VERSION}"
        );
    }

    #[test]
    fn a_damaged_entry_is_set_aside_and_the_rest_loads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let doc = Hash32::of(b"doc");
        let store = Store::open(dir.path()).expect("open");
        store
            .append(doc, &meta(), &[change(1), change(2), change(3)])
            .expect("append");
        store.damage_entry(&doc, 1, b"garbage").expect("damage");
        assert!(matches!(
            store.changes(&doc),
            Err(StoreError::Damaged { what: "change", .. })
        ));
        let salvaged = store.salvage(&doc).expect("salvage");
        assert_eq!(salvaged.changes.len(), 2);
        assert_eq!(salvaged.damaged.len(), 1);
        let keys: Vec<Vec<u8>> = salvaged.damaged.iter().map(|(k, _)| k.clone()).collect();
        store.set_aside(&keys).expect("set aside");
        let left = store.changes(&doc).expect("loads");
        assert_eq!(
            left.iter().map(|c| c.hash).collect::<Vec<_>>(),
            vec![change(1).hash, change(3).hash]
        );
        assert_eq!(store.change_count(), 2);
        assert_eq!(store.set_aside_count(), 1);
    }

    #[test]
    fn changes_come_back_in_order_after_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let doc = Hash32::of(b"doc");
        {
            let store = Store::open(dir.path()).expect("open");
            store
                .append(doc, &meta(), &[change(1), change(2)])
                .expect("append");
            store.append(doc, &meta(), &[change(3)]).expect("append");
            store.flush().expect("flush");
        }
        let store = Store::open(dir.path()).expect("reopen");
        assert_eq!(store.docs().expect("docs"), vec![(doc, meta())]);
        assert_eq!(
            store.changes(&doc).expect("changes"),
            vec![change(1), change(2), change(3)]
        );
        assert!(store
            .changes(&Hash32::of(b"other"))
            .expect("changes")
            .is_empty());
    }

    #[test]
    fn a_mark_holds_until_its_document_changes() {
        let store = Store::temporary().expect("store");
        let doc = Hash32::of(b"doc");
        let other = Hash32::of(b"other");
        store.append(doc, &meta(), &[change(1)]).expect("append");
        store.set_mark(&doc, b"cold").expect("mark");
        store.set_mark(&other, b"base").expect("mark");
        assert_eq!(store.mark(&doc).expect("mark"), Some(b"cold".to_vec()));
        store.append(doc, &meta(), &[change(2)]).expect("append");
        assert_eq!(store.mark(&doc).expect("mark"), None);
        assert_eq!(store.change_count(), 2);
        assert_eq!(store.mark(&other).expect("mark"), Some(b"base".to_vec()));
    }

    #[test]
    fn a_change_over_the_size_limit_is_refused_and_nothing_of_the_write_is_stored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let doc = Hash32::of(b"doc");
        {
            let store = Store::open(dir.path()).expect("open");
            let key = MemberKey::from_secret([1; 32]);
            let big = SignedChange::sign(
                &key,
                doc,
                Hash32::of(b"big"),
                vec![0; nestwork_core::limits::MAX_CHANGE_BYTES],
            );
            match store.append(doc, &meta(), &[change(1), big]) {
                Err(StoreError::TooLarge { .. }) => {}
                other => panic!("expected TooLarge, got {other:?}"),
            }
            store.flush().expect("flush");
        }
        let store = Store::open(dir.path()).expect("reopen");
        assert!(store.docs().expect("docs").is_empty());
        assert!(store.changes(&doc).expect("changes").is_empty());
        assert_eq!(store.change_count(), 0);
    }

    #[test]
    fn a_second_open_of_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _first = Store::open(dir.path()).expect("open");
        match Store::open(dir.path()) {
            Err(StoreError::InUse(_)) => {}
            Err(other) => panic!("expected InUse, got {other}"),
            Ok(_) => panic!("second open succeeded"),
        }
    }
}
