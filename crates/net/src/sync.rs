//! The sync session as a state machine with no I/O.
//!
//! A sync session reconciles one document with one peer (the exchange is
//! described in [`crate::protocol`]). What a session remembers, and what
//! it does next given what happened, lives here in [`Sessions`]: a plain
//! value fed [`Input`]s with the time, answering with [`Output`]s for the
//! caller to carry out. It holds no socket, spawns nothing, reads no clock
//! and waits for nothing, so it is tested over a simulated network with
//! loss, reordering and partitions (`tests/sync_sim.rs`) and driven for
//! real by the event loop in [`crate::actor`].
//!
//! The work a session asks for that may wait for the disk (working out a
//! request, applying an answer, answering a peer) is in the free functions
//! [`prepare`], [`apply_answer`] and [`answer`]: the event loop runs them
//! off the loop (in `spawn_blocking`) and feeds what they return back in
//! as an input; the simulator runs them in place.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Debug;
use std::hash::Hash;
use std::time::{Duration, Instant};

use nestwork_core::{encoding, DocId, GroupId, Hash32, MemberId, SignedChange};
use nestwork_docs::ApplyReport;

use crate::protocol::{Request, Response, MAX_HEADS, MAX_REQUEST_BYTES, SYNC_BATCH_BYTES};
use crate::Replica;

/// Most sync rounds in one session before giving up until the next trigger.
pub const MAX_SYNC_ROUNDS: u32 = 8;
/// How many change bytes a node looks out to push in one request (what
/// fits is then cut to the request limit by `fit_request`).
pub const PUSH_BYTES: usize = MAX_REQUEST_BYTES;
/// Most sync sessions this node runs at once with one peer: under half the
/// streams a connection carries (`limits::MAX_SYNC_STREAMS`, both ways
/// together), leaving the peer room for its own.
pub const SYNC_SESSIONS_PER_PEER: usize = 6;

/// The one lookup [`Sessions`] makes itself. It is made on the event loop,
/// so it must answer from memory at once.
pub trait Groups {
    /// The group a document belongs to (a group document belongs to
    /// itself); `None` for a document this node does not hold.
    fn group_of(&self, doc: &DocId) -> Option<GroupId>;
}

/// What a sync needs from the node's replica: the part of [`Replica`] the
/// protocol uses, so that a simulated replica need not be a whole node.
/// As in [`Replica`], the lookups (`group_of`, `docs_of`, `is_member`,
/// `heads`) answer from memory; `changes_since`, `apply_remote` and the
/// peer heads may wait for the disk, and are called only off the loop.
pub trait SyncStore: Groups {
    /// Every document of a group this node holds.
    fn docs_of(&self, group: &GroupId) -> Vec<DocId>;
    /// Whether `member` is on the roll of the group `doc` belongs to.
    fn is_member(&self, doc: &DocId, member: &MemberId) -> bool;
    /// The document's heads (`None` if this node does not hold it).
    fn heads(&self, doc: &DocId) -> Option<Vec<Hash32>>;
    /// Changes not in the history of those of `have` this node knows, in
    /// causal order, up to about `max_bytes`; `true` if more remain.
    fn changes_since(
        &self,
        doc: &DocId,
        have: &[Hash32],
        max_bytes: usize,
    ) -> (Vec<SignedChange>, bool);
    /// Check and apply a peer's changes to a document this node holds;
    /// store what is valid.
    fn apply_remote(&self, doc: DocId, changes: Vec<SignedChange>) -> Result<ApplyReport, String>;
    /// The heads `peer` had when last synced.
    fn peer_heads(&self, peer: &MemberId, doc: &DocId) -> Option<Vec<Hash32>>;
    /// Remember the heads `peer` has.
    fn set_peer_heads(&self, peer: &MemberId, doc: &DocId, heads: &[Hash32]);
    /// Forget the heads `peer` was last known to have: unknown again.
    fn forget_peer_heads(&self, peer: &MemberId, doc: &DocId);
}

impl<R: Replica + ?Sized> Groups for R {
    fn group_of(&self, doc: &DocId) -> Option<GroupId> {
        Replica::group_of(self, doc)
    }
}

impl<R: Replica + ?Sized> SyncStore for R {
    fn docs_of(&self, group: &GroupId) -> Vec<DocId> {
        Replica::docs_of(self, group)
    }
    fn is_member(&self, doc: &DocId, member: &MemberId) -> bool {
        Replica::is_member(self, doc, member)
    }
    fn heads(&self, doc: &DocId) -> Option<Vec<Hash32>> {
        Replica::heads(self, doc)
    }
    fn changes_since(
        &self,
        doc: &DocId,
        have: &[Hash32],
        max_bytes: usize,
    ) -> (Vec<SignedChange>, bool) {
        Replica::changes_since(self, doc, have, max_bytes)
    }
    fn apply_remote(&self, doc: DocId, changes: Vec<SignedChange>) -> Result<ApplyReport, String> {
        Replica::apply_remote(self, doc, changes, false)
    }
    fn peer_heads(&self, peer: &MemberId, doc: &DocId) -> Option<Vec<Hash32>> {
        Replica::peer_heads(self, peer, doc)
    }
    fn set_peer_heads(&self, peer: &MemberId, doc: &DocId, heads: &[Hash32]) {
        Replica::set_peer_heads(self, peer, doc, heads)
    }
    fn forget_peer_heads(&self, peer: &MemberId, doc: &DocId) {
        Replica::forget_peer_heads(self, peer, doc)
    }
}

/// Something that happened to the sync sessions of one node.
#[derive(Debug)]
pub enum Input<P> {
    /// A connection with `peer` is up (its first one).
    Connected(P),
    /// The last connection with `peer` closed.
    Disconnected(P),
    /// Sync `doc` with `peer`: a new connection, a change made here, gossip
    /// this node could not judge, anti-entropy, a document an answer
    /// opened, a peer that holds more for us.
    Start {
        /// The peer.
        peer: P,
        /// The document.
        doc: DocId,
    },
    /// The request for a session was worked out by [`prepare`] (`None`:
    /// nothing to ask: no longer a member, or the document is gone).
    Prepared {
        /// The peer.
        peer: P,
        /// The document.
        doc: DocId,
        /// What to send.
        request: Option<Request>,
    },
    /// The peer answered a session's request.
    Answered {
        /// The peer.
        peer: P,
        /// The document.
        doc: DocId,
        /// Its answer.
        response: Response,
    },
    /// A session's request got no answer (the stream failed or timed out,
    /// the connection closed).
    Failed {
        /// The peer.
        peer: P,
        /// The document.
        doc: DocId,
    },
    /// An answer was applied by [`apply_answer`].
    Applied {
        /// The peer.
        peer: P,
        /// The document.
        doc: DocId,
        /// What became of it.
        applied: Applied,
    },
}

/// What the caller is to do for the sync sessions.
#[derive(Debug)]
pub enum Output<P> {
    /// Forget the heads the peer was last known to hold for the document
    /// ([`SyncStore::forget_peer_heads`], off the event loop): a session
    /// with it failed.
    Forget {
        /// The peer.
        peer: P,
        /// The document.
        doc: DocId,
    },
    /// Work out the session's request with [`prepare`], off the event loop,
    /// and feed the result back as [`Input::Prepared`].
    Prepare {
        /// The peer.
        peer: P,
        /// The document.
        doc: DocId,
    },
    /// Send this request to the peer; its answer or failure comes back as
    /// [`Input::Answered`] or [`Input::Failed`].
    Send {
        /// The peer.
        peer: P,
        /// The document.
        doc: DocId,
        /// The request.
        request: Request,
    },
    /// Apply the peer's answer with [`apply_answer`], off the event loop,
    /// and feed the result back as [`Input::Applied`] (and each document it
    /// opened as [`Input::Start`] with the same peer, first).
    Apply {
        /// The peer.
        peer: P,
        /// The document.
        doc: DocId,
        /// The peer's heads, after applying what we pushed.
        heads: Vec<Hash32>,
        /// Changes we lacked.
        changes: Vec<SignedChange>,
        /// The peer holds more for us than fitted.
        more: bool,
    },
    /// A sync of `group` stored something: what waits for it (gossip kept
    /// to be judged again) may go now.
    Stored {
        /// The group.
        group: GroupId,
    },
    /// A session ended (whether or not another begins for the same pair).
    Ended {
        /// The peer.
        peer: P,
        /// The document.
        doc: DocId,
        /// How long it ran.
        took: Duration,
    },
}

/// What became of an answer, as [`apply_answer`] found it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// The peer said it holds more for us.
    pub more: bool,
    /// Its changes were refused (some invalid) or could not be applied:
    /// do not ask it for more this time.
    pub refused: bool,
    /// Something new was stored.
    pub progress: bool,
    /// Some of its changes wait for something this node lacks.
    pub waited: bool,
    /// By its heads, the peer still lacks something of ours.
    pub they_lack: bool,
}

/// A session in progress with one peer for one document.
#[derive(Debug)]
struct Session {
    /// Another session was asked for meanwhile: run again when it ends.
    again: bool,
    /// The group's `group_stored` count when it began.
    group_stored: u64,
    /// When it began.
    started: Instant,
    /// Which round this is: how many sessions before it with the same
    /// peer and document ran on because their answer said to, without a
    /// new trigger between.
    round: u32,
    /// Not every change the peer lacks fitted our request: it will ask
    /// us for the rest, so its heads lacking ours is no reason to go again.
    cut: bool,
}

/// The sync sessions of one node, with every peer: what runs, what waits
/// its turn, what waits for something the node lacks.
#[derive(Debug)]
pub struct Sessions<P> {
    /// Peers with a connection up.
    connected: HashSet<P>,
    /// Sessions in progress.
    running: HashMap<(P, DocId), Session>,
    /// Per group: how many sync answers stored something since start. A
    /// session that waited compares it with the count when it began: what
    /// it waited for may have been stored while its answer was applied.
    group_stored: HashMap<GroupId, u64>,
    /// Sessions waiting for a free sync stream to the peer.
    waiting: HashMap<P, VecDeque<DocId>>,
    /// Per group: sync sessions (peer, document) whose changes waited for
    /// something this node lacked and were not stored. A group's documents
    /// sync side by side, so a later ledger period can arrive before the
    /// earlier one holding the closing it cites; it is asked for again as
    /// soon as another sync of the group stores something, rather than at
    /// the next anti-entropy round. Only a session that stored something
    /// retries the others, so two that wait on what nobody sends do not
    /// ask each other in turn.
    blocked: HashMap<GroupId, HashSet<(P, DocId)>>,
}

impl<P> Default for Sessions<P> {
    fn default() -> Self {
        Sessions {
            connected: HashSet::new(),
            running: HashMap::new(),
            group_stored: HashMap::new(),
            waiting: HashMap::new(),
            blocked: HashMap::new(),
        }
    }
}

impl<P: Copy + Eq + Hash + Debug> Sessions<P> {
    /// Take in what happened at `now`; say what to do. `groups` answers
    /// which group a document belongs to, from memory.
    pub fn handle(
        &mut self,
        input: Input<P>,
        now: Instant,
        groups: &(impl Groups + ?Sized),
    ) -> Vec<Output<P>> {
        let mut out = Vec::new();
        match input {
            Input::Connected(peer) => {
                self.connected.insert(peer);
            }
            Input::Disconnected(peer) => {
                // Running sessions end by their requests' failures.
                self.connected.remove(&peer);
                self.waiting.remove(&peer);
                for sessions in self.blocked.values_mut() {
                    sessions.retain(|(p, _)| *p != peer);
                }
                self.blocked.retain(|_, sessions| !sessions.is_empty());
            }
            Input::Start { peer, doc } => self.start(peer, doc, 0, now, groups, &mut out),
            Input::Prepared { peer, doc, request } => {
                match request.filter(|_| self.connected.contains(&peer)) {
                    Some(request) => {
                        if let Some(session) = self.running.get_mut(&(peer, doc)) {
                            session.cut = matches!(request, Request::Sync { more: true, .. });
                        }
                        out.push(Output::Send { peer, doc, request });
                    }
                    None => self.end(peer, doc, now, groups, &mut out),
                }
            }
            Input::Answered {
                peer,
                doc,
                response,
            } => match response {
                Response::Sync {
                    heads,
                    changes,
                    more,
                } => out.push(Output::Apply {
                    peer,
                    doc,
                    heads,
                    changes,
                    more,
                }),
                Response::Refused { reason } => {
                    tracing::debug!(?peer, doc = %doc.short(), %reason, "sync refused by peer");
                    self.end(peer, doc, now, groups, &mut out);
                }
                Response::Joined { .. } => {
                    // Ended like a failure: left running, it would never
                    // end (no request of it is pending any more) and would
                    // hold one of the peer's streams for good.
                    tracing::warn!(?peer, doc = %doc.short(), "unexpected answer to a sync request");
                    self.end(peer, doc, now, groups, &mut out);
                }
            },
            Input::Failed { peer, doc } => {
                // The request or its answer was lost. The peer may have
                // noted us as holding its heads when it answered, and we
                // may still hold the heads we knew of it: neither would
                // ask again while nothing new is written. Forgetting ours
                // makes the next anti-entropy round ask.
                if self.running.contains_key(&(peer, doc)) {
                    out.push(Output::Forget { peer, doc });
                }
                self.end(peer, doc, now, groups, &mut out)
            }
            Input::Applied { peer, doc, applied } => {
                self.applied(peer, doc, applied, now, groups, &mut out)
            }
        }
        out
    }

    /// Whether no session runs or waits (for tests: a quiet network).
    pub fn is_idle(&self) -> bool {
        self.running.is_empty() && self.waiting.is_empty()
    }

    /// How many sessions run with `peer` now.
    pub fn running_with(&self, peer: &P) -> usize {
        self.running.keys().filter(|(p, _)| p == peer).count()
    }

    /// Start a session with `peer` for `doc` as round `round`, unless one
    /// is running (then it runs again when that one ends).
    fn start(
        &mut self,
        peer: P,
        doc: DocId,
        round: u32,
        now: Instant,
        groups: &(impl Groups + ?Sized),
        out: &mut Vec<Output<P>>,
    ) {
        if let Some(session) = self.running.get_mut(&(peer, doc)) {
            session.again = true;
            return;
        }
        // A connection carries a bounded number of sync streams (both
        // ways together): a node in many groups, or a group with many
        // ledger periods, that starts a session per document at once
        // after reconnecting would see most of them refused. The rest
        // wait their turn.
        if self.running_with(&peer) >= SYNC_SESSIONS_PER_PEER {
            let waiting = self.waiting.entry(peer).or_default();
            if !waiting.contains(&doc) {
                waiting.push_back(doc);
            }
            return;
        }
        if !self.connected.contains(&peer) {
            return;
        }
        let group_stored = groups
            .group_of(&doc)
            .and_then(|g| self.group_stored.get(&g).copied())
            .unwrap_or(0);
        self.running.insert(
            (peer, doc),
            Session {
                again: false,
                group_stored,
                started: now,
                round,
                cut: false,
            },
        );
        // What to send is worked out off the loop (it may load a ledger
        // period from disk).
        out.push(Output::Prepare { peer, doc });
    }

    /// A session ends without an answer to apply: give its stream to the
    /// next waiting one.
    fn end(
        &mut self,
        peer: P,
        doc: DocId,
        now: Instant,
        groups: &(impl Groups + ?Sized),
        out: &mut Vec<Output<P>>,
    ) {
        if let Some(session) = self.running.remove(&(peer, doc)) {
            out.push(Output::Ended {
                peer,
                doc,
                took: now.saturating_duration_since(session.started),
            });
        }
        self.start_waiting(peer, now, groups, out);
    }

    /// An answer was applied: go again if it says so (or a trigger came
    /// meanwhile), retry the group's sessions that waited if this one
    /// stored something, and note this one as waiting if it did.
    fn applied(
        &mut self,
        peer: P,
        doc: DocId,
        applied: Applied,
        now: Instant,
        groups: &(impl Groups + ?Sized),
        out: &mut Vec<Output<P>>,
    ) {
        let session = self.running.remove(&(peer, doc));
        let round = session.as_ref().map_or(0, |s| s.round);
        let cut = session.as_ref().is_some_and(|s| s.cut);
        // Do they still lack something of ours? (If our push was cut
        // short, they are asking us for the rest.) Invalid changes from
        // them: ask no more this time.
        let again = ((applied.more && !applied.refused) || (!cut && applied.they_lack))
            && round + 1 < MAX_SYNC_ROUNDS;
        let mut run_again = again || session.as_ref().is_some_and(|s| s.again);
        if let Some(s) = &session {
            out.push(Output::Ended {
                peer,
                doc,
                took: now.saturating_duration_since(s.started),
            });
        }
        if let Some(group) = groups.group_of(&doc) {
            let stored = self.group_stored.entry(group).or_default();
            let stored_meanwhile = session.is_some_and(|s| s.group_stored < *stored);
            if applied.progress {
                *stored += 1;
                out.push(Output::Stored { group });
                for (p, d) in self.blocked.remove(&group).unwrap_or_default() {
                    if (p, d) != (peer, doc) {
                        self.start(p, d, 0, now, groups, out);
                    }
                }
            }
            if applied.waited && stored_meanwhile {
                run_again = true;
            } else if applied.waited {
                self.blocked.entry(group).or_default().insert((peer, doc));
            }
        }
        if run_again {
            // Rounds count on only while answers alone call for more: a
            // peer that never takes what we push (it waits for something
            // nobody can send) costs MAX_SYNC_ROUNDS round trips per
            // trigger, not one after another for good. (Before, every
            // re-run began at round 0 again, and the bound never held.)
            let round = if again { round + 1 } else { 0 };
            self.start(peer, doc, round, now, groups, out);
        }
        self.start_waiting(peer, now, groups, out);
    }

    /// Start the sessions waiting for a free stream to `peer`.
    fn start_waiting(
        &mut self,
        peer: P,
        now: Instant,
        groups: &(impl Groups + ?Sized),
        out: &mut Vec<Output<P>>,
    ) {
        while self.running_with(&peer) < SYNC_SESSIONS_PER_PEER {
            let Some(doc) = self.waiting.get_mut(&peer).and_then(|q| q.pop_front()) else {
                self.waiting.remove(&peer);
                return;
            };
            self.start(peer, doc, 0, now, groups, out);
        }
    }
}

/// The request that starts a sync session of `doc` with `member`, if they
/// are a member and we hold it: our heads, and along with them what they
/// lack by what we last saw of them, as much as fits a request (if we have
/// never synced, nothing: their answer will tell us).
pub fn prepare(
    store: &(impl SyncStore + ?Sized),
    member: &MemberId,
    doc: DocId,
) -> Option<Request> {
    let heads = store.heads(&doc)?;
    if !store.is_member(&doc, member) {
        return None;
    }
    let lacking = match store.peer_heads(member, &doc) {
        Some(theirs) => store.changes_since(&doc, &theirs, PUSH_BYTES),
        None => (Vec::new(), false),
    };
    let (changes, more) = fit_request(lacking, heads.len());
    Some(Request::Sync {
        doc,
        heads,
        changes,
        more,
    })
}

/// What a request pushes: the changes that fit with `heads` heads beside
/// them, and whether any were left out (or more were held back already).
fn fit_request(lacking: (Vec<SignedChange>, bool), heads: usize) -> (Vec<SignedChange>, bool) {
    let (mut changes, mut more) = lacking;
    // Heads cost 32 bytes and a prefix each; the envelope's own fields
    // well under the slack.
    let mut room = MAX_REQUEST_BYTES.saturating_sub(heads * 34 + 512);
    let fits = changes
        .iter()
        .take_while(|c| {
            let size = encoding::encode(*c).len();
            let fits = size <= room;
            room = room.saturating_sub(size);
            fits
        })
        .count();
    if fits < changes.len() {
        changes.truncate(fits);
        more = true;
    }
    (changes, more)
}

/// Apply a peer's answer for `doc`: store what is valid, remember the
/// peer's heads, and see whether it still lacks something of ours. Also
/// the documents of the group this opened (see [`apply_opening`]).
pub fn apply_answer(
    store: &(impl SyncStore + ?Sized),
    member: &MemberId,
    doc: DocId,
    heads: &[Hash32],
    changes: Vec<SignedChange>,
    more: bool,
) -> (Applied, Vec<DocId>) {
    let mut applied = Applied {
        more,
        ..Applied::default()
    };
    let mut opened = Vec::new();
    if !changes.is_empty() {
        let (report, opening) = apply_opening(store, doc, changes);
        opened = opening;
        match report {
            Ok(report) if !report.rejected.is_empty() => {
                tracing::warn!(peer = %member, rejected = report.rejected.len(), "peer sent invalid changes in sync");
                applied.refused = true;
            }
            Ok(report) => {
                applied.progress = !report.applied.is_empty();
                applied.waited = !report.missing_deps.is_empty();
            }
            Err(e) => {
                tracing::warn!(peer = %member, error = %e, "sync answer not applied");
                applied.refused = true;
            }
        }
    }
    store.set_peer_heads(member, &doc, heads);
    let (theirs_missing, _) = store.changes_since(&doc, heads, 1);
    applied.they_lack = !theirs_missing.is_empty();
    (applied, opened)
}

/// Whether to take up a sync request from `member` for `doc` with `heads`
/// heads. Made on the event loop, from memory.
pub fn accepts(
    store: &(impl SyncStore + ?Sized),
    member: &MemberId,
    doc: &DocId,
    heads: usize,
) -> bool {
    store.is_member(doc, member) && heads <= MAX_HEADS
}

/// The answer to a sync request, worked out by [`answer`].
#[derive(Debug)]
pub struct Answer {
    /// Documents of the group the pushed changes opened: sync them with
    /// the asker (before answering, as the event loop always did).
    pub opened: Vec<DocId>,
    /// What to answer.
    pub response: Response,
    /// The asker holds more for us than fitted its request: ask it, after
    /// answering.
    pub pull: bool,
}

/// Answer a sync request `member` sent for `doc` (one [`accepts`] took):
/// apply what it pushed, and send back our heads and every change it lacks
/// (up to a size bound). A stranger is refused before this by
/// [`accepts`] and [`refused`]: it learns nothing, not even whether we
/// hold the group.
pub fn answer(
    store: &(impl SyncStore + ?Sized),
    member: &MemberId,
    doc: DocId,
    heads: &[Hash32],
    changes: Vec<SignedChange>,
    more: bool,
) -> Answer {
    let mut opened = Vec::new();
    if !changes.is_empty() {
        let (applied, opening) = apply_opening(store, doc, changes);
        if let Err(e) = applied {
            tracing::warn!(peer = %member, error = %e, "pushed changes not applied");
        }
        opened = opening;
    }
    let (changes, ours_more) = store.changes_since(&doc, heads, SYNC_BATCH_BYTES);
    let ours = store.heads(&doc).unwrap_or_default();
    // They will have ours once they apply this answer. (If it is lost,
    // their session fails and they forget what they knew of us, so their
    // next anti-entropy round asks again.)
    if !ours_more {
        store.set_peer_heads(member, &doc, &ours);
    }
    Answer {
        opened,
        response: Response::Sync {
            heads: ours,
            changes,
            more: ours_more,
        },
        pull: more,
    }
}

/// A refusal, with its reason.
pub fn refused(reason: &str) -> Response {
    Response::Refused {
        reason: reason.to_string(),
    }
}

/// Apply a peer's sync changes to `doc`, and list the documents of its
/// group that this opened: a ledger period opens once the one before it
/// holds payments, so a node that is behind learns of each next period
/// only as it catches up with the one before. The caller syncs what opened
/// with the same peer at once, rather than one period per anti-entropy
/// round (15 s each: a node back after a long absence would take minutes
/// to hold what its peers acknowledged).
pub fn apply_opening(
    store: &(impl SyncStore + ?Sized),
    doc: DocId,
    changes: Vec<SignedChange>,
) -> (Result<ApplyReport, String>, Vec<DocId>) {
    let group = store.group_of(&doc);
    let before: HashSet<DocId> = group
        .map(|g| store.docs_of(&g).into_iter().collect())
        .unwrap_or_default();
    let applied = store.apply_remote(doc, changes);
    if let Ok(report) = &applied {
        // A sync sends changes in causal order, so this should not happen;
        // when it does, nothing of these is stored (a lagging node's late
        // ledger records were seen never to arrive: see the crash soak).
        if !report.missing_deps.is_empty() {
            tracing::info!(doc = %doc.short(), waiting = report.missing_deps.len(), "changes from a sync wait for changes or records this node lacks (often an earlier ledger period still on its way), or for its ledger history below the base; asked for again once the group's next sync brings something");
        }
    }
    let opened = match (group, &applied) {
        (Some(g), Ok(report)) if !report.applied.is_empty() => store
            .docs_of(&g)
            .into_iter()
            .filter(|d| !before.contains(d))
            .collect(),
        _ => Vec::new(),
    };
    (applied, opened)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every document belongs to one group.
    struct OneGroup;

    fn group() -> GroupId {
        GroupId::from(Hash32([7; 32]))
    }

    impl Groups for OneGroup {
        fn group_of(&self, _: &DocId) -> Option<GroupId> {
            Some(group())
        }
    }

    fn doc(n: u8) -> DocId {
        DocId::from(Hash32([n; 32]))
    }

    fn request(more: bool) -> Request {
        Request::Sync {
            doc: doc(0),
            heads: Vec::new(),
            changes: Vec::new(),
            more,
        }
    }

    /// Feed one input at `now`.
    fn feed(sessions: &mut Sessions<u8>, input: Input<u8>) -> Vec<Output<u8>> {
        sessions.handle(input, Instant::now(), &OneGroup)
    }

    /// The (peer, document) pairs to prepare among `outputs`.
    fn prepared(outputs: &[Output<u8>]) -> Vec<(u8, DocId)> {
        outputs
            .iter()
            .filter_map(|o| match o {
                Output::Prepare { peer, doc } => Some((*peer, *doc)),
                _ => None,
            })
            .collect()
    }

    /// Start a session with `peer` for `d` and bring it to the point where
    /// its request is out.
    fn sent(sessions: &mut Sessions<u8>, peer: u8, d: DocId, more: bool) {
        let out = feed(sessions, Input::Start { peer, doc: d });
        assert_eq!(prepared(&out), vec![(peer, d)]);
        let out = feed(
            sessions,
            Input::Prepared {
                peer,
                doc: d,
                request: Some(request(more)),
            },
        );
        assert!(matches!(out[..], [Output::Send { .. }]));
    }

    /// Finding 4: a request is read whole before the asker's membership is
    /// known, so it is bounded at 64 KiB; a member's push is cut to fit,
    /// and says so (the other side then pulls the rest).
    #[test]
    fn finding4_a_push_is_cut_to_fit_a_request_and_says_there_is_more() {
        let key = nestwork_core::MemberKey::from_secret([1; 32]);
        // Only the changes' sizes matter here: a small edit, and a change
        // as large as the envelope allows.
        let small = SignedChange::sign(&key, doc(0).hash32(), Hash32::of(b"small"), vec![1; 300]);
        let big = SignedChange::sign(
            &key,
            doc(0).hash32(),
            Hash32::of(b"big"),
            vec![7; MAX_REQUEST_BYTES],
        );
        let request = |changes: Vec<SignedChange>, more| Request::Sync {
            doc: doc(0),
            heads: vec![Hash32::of(b"h"); MAX_HEADS],
            changes,
            more,
        };

        let (fits, more) = fit_request((vec![small.clone(), small.clone()], false), MAX_HEADS);
        assert_eq!((fits.len(), more), (2, false));
        assert!(encoding::encode(&request(fits, more)).len() <= MAX_REQUEST_BYTES);

        let (fits, more) = fit_request((vec![small.clone(), big.clone(), small], false), MAX_HEADS);
        assert_eq!((fits.len(), more), (1, true), "cut before the big one");
        assert!(encoding::encode(&request(fits, more)).len() <= MAX_REQUEST_BYTES);

        let (fits, more) = fit_request((vec![big], false), 0);
        assert_eq!((fits.len(), more), (0, true), "one change over the limit");

        let (fits, more) = fit_request((Vec::new(), true), 0);
        assert_eq!((fits.len(), more), (0, true), "held back already");
    }

    #[test]
    fn nothing_starts_with_a_peer_that_is_not_connected() {
        let mut sessions = Sessions::default();
        assert!(feed(
            &mut sessions,
            Input::Start {
                peer: 1,
                doc: doc(1)
            }
        )
        .is_empty());
        assert!(sessions.is_idle());
    }

    #[test]
    fn a_start_while_a_session_runs_runs_it_again_when_it_ends() {
        let mut sessions = Sessions::default();
        feed(&mut sessions, Input::Connected(1));
        sent(&mut sessions, 1, doc(1), false);
        assert!(feed(
            &mut sessions,
            Input::Start {
                peer: 1,
                doc: doc(1)
            }
        )
        .is_empty());
        let out = feed(
            &mut sessions,
            Input::Applied {
                peer: 1,
                doc: doc(1),
                applied: Applied::default(),
            },
        );
        assert_eq!(prepared(&out), vec![(1, doc(1))], "once more");
    }

    #[test]
    fn an_answer_showing_they_lack_ours_goes_again_unless_our_push_was_cut() {
        for (cut, again) in [(false, true), (true, false)] {
            let mut sessions = Sessions::default();
            feed(&mut sessions, Input::Connected(1));
            sent(&mut sessions, 1, doc(1), cut);
            let applied = Applied {
                they_lack: true,
                ..Applied::default()
            };
            let out = feed(
                &mut sessions,
                Input::Applied {
                    peer: 1,
                    doc: doc(1),
                    applied,
                },
            );
            assert_eq!(!prepared(&out).is_empty(), again, "cut: {cut}");
        }
    }

    /// Every re-run used to begin at round 0, so answers that kept
    /// calling for another round (a peer that never takes what we push)
    /// made sessions follow one another for good.
    #[test]
    fn answers_calling_for_more_run_at_most_max_sync_rounds_sessions() {
        let mut sessions = Sessions::default();
        feed(&mut sessions, Input::Connected(1));
        let lacking = Applied {
            they_lack: true,
            ..Applied::default()
        };
        let mut rounds = 1;
        sent(&mut sessions, 1, doc(1), false);
        loop {
            let out = feed(
                &mut sessions,
                Input::Applied {
                    peer: 1,
                    doc: doc(1),
                    applied: lacking,
                },
            );
            if prepared(&out).is_empty() {
                break;
            }
            rounds += 1;
            assert!(rounds <= MAX_SYNC_ROUNDS, "round {rounds}");
            feed(
                &mut sessions,
                Input::Prepared {
                    peer: 1,
                    doc: doc(1),
                    request: Some(request(false)),
                },
            );
        }
        assert_eq!(rounds, MAX_SYNC_ROUNDS);
        assert!(sessions.is_idle());
        // The next trigger starts counting afresh.
        sent(&mut sessions, 1, doc(1), false);
    }

    #[test]
    fn sessions_past_the_limit_per_peer_wait_their_turn() {
        let mut sessions = Sessions::default();
        feed(&mut sessions, Input::Connected(1));
        for n in 0..SYNC_SESSIONS_PER_PEER as u8 {
            sent(&mut sessions, 1, doc(n), false);
        }
        let last = doc(SYNC_SESSIONS_PER_PEER as u8);
        assert!(feed(&mut sessions, Input::Start { peer: 1, doc: last }).is_empty());
        assert_eq!(sessions.running_with(&1), SYNC_SESSIONS_PER_PEER);
        let out = feed(
            &mut sessions,
            Input::Failed {
                peer: 1,
                doc: doc(0),
            },
        );
        assert_eq!(prepared(&out), vec![(1, last)], "its turn");
    }

    #[test]
    fn a_session_that_waited_is_retried_when_another_of_its_group_stores_something() {
        let mut sessions = Sessions::default();
        feed(&mut sessions, Input::Connected(1));
        feed(&mut sessions, Input::Connected(2));
        sent(&mut sessions, 1, doc(1), false);
        sent(&mut sessions, 2, doc(2), false);
        let waited = Applied {
            waited: true,
            ..Applied::default()
        };
        let out = feed(
            &mut sessions,
            Input::Applied {
                peer: 1,
                doc: doc(1),
                applied: waited,
            },
        );
        assert!(
            prepared(&out).is_empty(),
            "blocked, not asked again at once"
        );
        let progress = Applied {
            progress: true,
            ..Applied::default()
        };
        let out = feed(
            &mut sessions,
            Input::Applied {
                peer: 2,
                doc: doc(2),
                applied: progress,
            },
        );
        assert!(out
            .iter()
            .any(|o| matches!(o, Output::Stored { group: g } if *g == group())));
        assert_eq!(prepared(&out), vec![(1, doc(1))], "retried");
    }

    /// A session whose request got a join's answer (a peer of another
    /// build, or a hostile one) stayed running for good: no request of it
    /// was pending any more, so nothing ended it, and after six of them no
    /// session with that peer ever started again.
    #[test]
    fn a_session_answered_with_something_else_than_a_sync_ends() {
        let mut sessions = Sessions::default();
        feed(&mut sessions, Input::Connected(1));
        sent(&mut sessions, 1, doc(1), false);
        let out = feed(
            &mut sessions,
            Input::Answered {
                peer: 1,
                doc: doc(1),
                response: Response::Joined {
                    changes: Vec::new(),
                },
            },
        );
        assert!(matches!(out[..], [Output::Ended { peer: 1, .. }]));
        assert!(sessions.is_idle());
    }

    #[test]
    fn a_disconnected_peer_loses_its_waiting_and_blocked_sessions() {
        let mut sessions = Sessions::default();
        feed(&mut sessions, Input::Connected(1));
        for n in 0..=SYNC_SESSIONS_PER_PEER as u8 {
            feed(
                &mut sessions,
                Input::Start {
                    peer: 1,
                    doc: doc(n),
                },
            );
        }
        feed(&mut sessions, Input::Disconnected(1));
        for n in 0..SYNC_SESSIONS_PER_PEER as u8 {
            let out = feed(
                &mut sessions,
                Input::Failed {
                    peer: 1,
                    doc: doc(n),
                },
            );
            assert!(prepared(&out).is_empty(), "nothing starts with a peer gone");
        }
        assert!(sessions.is_idle());
    }
}
