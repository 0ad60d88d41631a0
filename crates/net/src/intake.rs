//! What becomes of a gossip message before the event loop acts on it:
//! opened with the group's seal (fresh, or refused as a replay), its
//! changes applied in a batch with the others waiting, each message given
//! a verdict; a panic in validation rejects only its own message; an
//! overloaded queue sheds payments first; a message whose changes wait for
//! others is kept a while and judged again ([`GossipIntake`]). No swarm
//! here: the event loop (`actor.rs`) hands messages in, runs the batches
//! off the loop, and tells gossipsub the verdicts.

use std::collections::{HashMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use libp2p::gossipsub::{MessageAcceptance, MessageId};
use libp2p::PeerId;
use nestwork_core::{encoding, DocId, GroupId, Hash32, SignedChange};
use nestwork_docs::ApplyReport;

use crate::behaviour::MAX_GOSSIP_BYTES;
use crate::topic::{GroupSeals, OpenError};
use crate::{GossipCounts, Replica};

/// How long a gossip message whose changes wait for others is kept to be
/// judged again with the next batches, before it is given up (ignored, and
/// its sender asked by sync). Well inside the message cache (15 heartbeats,
/// 10.5 s), so that once its changes are stored it is still forwarded.
pub(crate) const GOSSIP_WAIT: Duration = Duration::from_secs(4);
/// Most change bytes kept waiting at once (past it, the newest are given
/// up at once). Small beside the queue's bound: what waits is judged again
/// with every batch, and honest gossip waits only briefly.
pub(crate) const MAX_WAITING_GOSSIP_BYTES: usize = 8 * 1024 * 1024;
/// Most change bytes waiting for validation. Gossip arrives while a batch
/// is checked; if checking falls behind by more than this, the oldest
/// waiting messages are shed (see `shed_overload`).
pub(crate) const MAX_QUEUED_GOSSIP_BYTES: usize = 64 * 1024 * 1024;
/// A gossip message waiting for validation: its id, who sent it, the group
/// whose topic carried it, and its changes (all of one document).
pub(crate) type Queued = (MessageId, PeerId, GroupId, Vec<SignedChange>);

/// What became of a validated gossip message's changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Something new was stored: forward it.
    Accepted,
    /// A change is invalid in itself: the forwarder pays.
    Rejected,
    /// Nothing new: every change was here already (most often brought by
    /// a sync first), or forks its device's history.
    Known,
    /// A change waits for changes this node lacks (gossip arrives in any
    /// order: a payment before the one it builds on, a ledger period
    /// before the closing it cites). The message is kept and judged again
    /// with the next batch, for up to [`GOSSIP_WAIT`].
    Waiting,
}

/// [`validate_batch`], which must not take the loop down with it: without
/// an answer the loop would never validate again (`validating` stays set)
/// and its queue would grow without bound. A panic (a bug, or a decoder
/// tripping on hostile bytes) sends the batch through again message by
/// message; the message that panics alone is rejected, the others are
/// judged as usual.
pub(crate) fn validate_guarded(replica: &dyn Replica, batch: &[Queued]) -> Vec<Verdict> {
    let run = |part: &[Queued]| catch_unwind(AssertUnwindSafe(|| validate_batch(replica, part)));
    if let Ok(done) = run(batch) {
        return done;
    }
    tracing::error!(
        messages = batch.len(),
        "validation panicked; validating the batch message by message"
    );
    let mut verdicts = Vec::with_capacity(batch.len());
    for one in batch.chunks(1) {
        match run(one) {
            Ok(v) => verdicts.extend(v),
            Err(_) => {
                let (_, source, group, _) = &one[0];
                tracing::error!(peer = %source, group = %group.short(), "validation panicked on this message; rejected");
                verdicts.push(Verdict::Rejected);
            }
        }
    }
    verdicts
}

/// Why a gossip message goes no further than its seal.
#[derive(Debug, PartialEq)]
pub(crate) enum Refused {
    /// Sealed with a key this node does not hold (for this group).
    Unopened(GroupId),
    /// Opens, but its seal time is out of bounds ([`OpenError::Stale`],
    /// [`OpenError::Ahead`]): a replay of old gossip, or a sender whose
    /// clock is off.
    Untimely(GroupId, OpenError),
    /// Not on a group's topic, does not open, or is not a batch of changes
    /// of one document.
    Invalid(&'static str),
}

impl Refused {
    /// What gossipsub hears.
    ///
    /// - Unopened: ignored, not held against the sender: we cannot judge it
    ///   (a new key's record may still be on its way to us).
    /// - Untimely: ignored, not rejected. A replay then costs the replayer
    ///   no score, but it costs us only a key lookup, one AEAD open and a
    ///   comparison, nothing decoded or applied (gossipsub has already
    ///   checked the envelope's signature, which costs more). A reject
    ///   would penalise by the receiver's clock: an honest member whose
    ///   clock is off by more than `topic::CLOCK_SKEW` would be graylisted
    ///   by the whole group for sending valid changes. The changes
    ///   themselves are not judged here at all (their verdict must not
    ///   depend on a clock): sync brings them and judges them as usual.
    /// - Invalid: rejected, the sender penalised: with the group key it is a
    ///   member's forgery or garbage, without it a stranger's.
    pub(crate) fn acceptance(&self) -> MessageAcceptance {
        match self {
            Refused::Unopened(_) | Refused::Untimely(..) => MessageAcceptance::Ignore,
            Refused::Invalid(_) => MessageAcceptance::Reject,
        }
    }

    /// Count it in the status's gossip verdicts.
    pub(crate) fn count(&self, counts: &mut GossipCounts) {
        match self {
            Refused::Unopened(_) => {
                counts.ignored += 1;
                counts.unopened += 1;
            }
            Refused::Untimely(..) => {
                counts.ignored += 1;
                counts.untimely += 1;
            }
            Refused::Invalid(_) => counts.rejected += 1,
        }
    }
}

/// Open a gossip message that arrived on a topic with `seals` (`None`: a
/// topic we do not follow) at `now_ms`, and decode its changes. Nothing is
/// decoded unless the seal opens and its time is within bounds.
pub(crate) fn open_gossip(
    seals: Option<&GroupSeals>,
    data: &[u8],
    now_ms: u64,
) -> Result<(GroupId, Vec<SignedChange>), Refused> {
    let seals = seals.ok_or(Refused::Invalid("message on a topic we do not follow"))?;
    let group = seals.group();
    let plain = seals.open(data, now_ms).map_err(|e| match e {
        OpenError::UnknownKey => Refused::Unopened(group),
        OpenError::Stale { .. } | OpenError::Ahead { .. } => Refused::Untimely(group, e),
        OpenError::DoesNotOpen => Refused::Invalid("payload does not open with the group key"),
    })?;
    let changes: Vec<SignedChange> = encoding::decode("gossip payload", &plain, MAX_GOSSIP_BYTES)
        .map_err(|_| Refused::Invalid("malformed payload"))?;
    if changes.is_empty() || changes.iter().any(|c| c.doc != changes[0].doc) {
        return Err(Refused::Invalid("payload is empty or mixes documents"));
    }
    Ok((group, changes))
}

/// Apply a batch of gossip messages as one batch per document and judge
/// each message by what became of its changes; also the peers to sync with
/// (their messages had missing dependencies).
///
/// A message is rejected (its forwarder penalised) only for a change that
/// is invalid in itself. A change refused for forking its device's history
/// is validly signed and valid where it was first accepted, so its message
/// is ignored, not rejected; and honest changes batched with it apply.
pub(crate) fn validate_batch(replica: &dyn Replica, batch: &[Queued]) -> Vec<Verdict> {
    // One batch per document; a document must belong to the group whose
    // topic carried it.
    let mut by_doc: HashMap<DocId, Vec<SignedChange>> = HashMap::new();
    let mut rejected: HashSet<Hash32> = HashSet::new();
    let mut missing: HashSet<Hash32> = HashSet::new();
    for (_, _, group, changes) in batch {
        let doc = DocId::from(changes[0].doc);
        match replica.group_of(&doc) {
            Some(g) if g == *group => by_doc
                .entry(doc)
                .or_default()
                .extend(changes.iter().cloned()),
            Some(_) => rejected.extend(changes.iter().map(|c| c.hash)),
            // A ledger period this node has not opened yet: it waits.
            None => missing.extend(changes.iter().map(|c| c.hash)),
        }
    }
    // Group documents first (an admission before the new member's
    // payments); what waits on another document of the batch (a period on
    // the closing of the one before) is tried once more after it. Not the
    // group's whole listing: it grows with every period, and this runs
    // for every batch.
    let mut docs: Vec<(DocId, Vec<SignedChange>)> = by_doc.into_iter().collect();
    docs.sort_by_key(|(doc, _)| !replica.is_group_doc(doc));
    let mut applied: HashSet<Hash32> = HashSet::new();
    // Apply each document's changes: whether any were stored, and what
    // waits, by document.
    let mut apply = |docs: Vec<(DocId, Vec<SignedChange>)>| {
        let mut stored = false;
        let mut waiting = Vec::new();
        for (doc, changes) in docs {
            if let Some(report) = apply_gossip(replica, doc, changes, &mut rejected) {
                stored |= !report.applied.is_empty();
                applied.extend(report.applied.iter().map(|c| c.hash));
                if !report.missing_deps.is_empty() {
                    waiting.push((doc, report.missing_deps));
                }
            }
        }
        (stored, waiting)
    };
    let (stored, mut waiting) = apply(docs);
    if stored && !waiting.is_empty() {
        waiting = apply(waiting).1;
    }
    missing.extend(waiting.iter().flat_map(|(_, c)| c.iter().map(|c| c.hash)));
    batch
        .iter()
        .map(|(_, _, _, changes)| {
            if changes.iter().any(|c| rejected.contains(&c.hash)) {
                Verdict::Rejected
            } else if changes.iter().any(|c| missing.contains(&c.hash)) {
                Verdict::Waiting
            } else if changes.iter().any(|c| applied.contains(&c.hash)) {
                Verdict::Accepted
            } else {
                Verdict::Known
            }
        })
        .collect()
}

/// Apply gossiped changes to `doc`, adding those rejected as invalid in
/// themselves to `rejected` (a change refused for forking its device's
/// history is validly signed, and valid where it was first accepted: not
/// counted against its forwarder).
pub(crate) fn apply_gossip(
    replica: &dyn Replica,
    doc: DocId,
    changes: Vec<SignedChange>,
    rejected: &mut HashSet<Hash32>,
) -> Option<ApplyReport> {
    match replica.apply_remote(doc, changes, false) {
        Ok(report) => {
            let forked: HashSet<Hash32> = report.forked.iter().map(|c| c.hash).collect();
            for r in &report.rejected {
                tracing::warn!(doc = %doc.short(), change = %r.change, author = %r.author, reason = %r.reason, "gossiped change rejected");
                match r.change.parse() {
                    Ok(h) if !forked.contains(&h) => {
                        rejected.insert(h);
                    }
                    _ => {}
                }
            }
            Some(report)
        }
        Err(e) => {
            tracing::warn!(doc = %doc.short(), error = %e, "cannot apply gossiped changes");
            None
        }
    }
}

/// The overload policy: while more than `max_bytes` of changes wait for
/// validation, shed the oldest waiting message of a ledger period (a
/// payment) first; only when none is left, the oldest of a group document
/// (governance and distress signals, which live there, go last). A shed
/// message is ignored, not rejected: nobody is penalised, it is not
/// forwarded, and its changes come by sync later.
pub(crate) fn shed_overload(queue: &mut Vec<Queued>, max_bytes: usize) -> Vec<(MessageId, PeerId)> {
    let mut total: usize = queue.iter().map(queued_bytes).sum();
    let mut shed = Vec::new();
    while total > max_bytes {
        let is_period = |q: &Queued| q.3[0].doc != q.2.hash32();
        let Some(at) = queue
            .iter()
            .position(is_period)
            .or((!queue.is_empty()).then_some(0))
        else {
            break;
        };
        let message = queue.remove(at);
        total -= queued_bytes(&message);
        shed.push((message.0, message.1));
    }
    shed
}

/// The change bytes of a gossip message waiting for validation.
pub(crate) fn queued_bytes(q: &Queued) -> usize {
    q.3.iter().map(|c| c.change.len()).sum()
}

/// The gossip opened and not yet given its verdict: the queue, the
/// messages kept waiting for changes they build on, whether a batch is
/// being validated, and the counts. Input and output only: the event loop
/// says what arrived and what a batch found, and is told which batch to
/// run, what to report, and what to give up.
#[derive(Default)]
pub(crate) struct GossipIntake {
    queue: Vec<Queued>,
    /// Messages whose changes wait for others (see [`Verdict::Waiting`]),
    /// and since when each has waited.
    waiting: Vec<Queued>,
    waiting_since: HashMap<MessageId, Instant>,
    validating: bool,
    /// What became of the gossip so far.
    pub(crate) counts: GossipCounts,
}

impl GossipIntake {
    /// Queue an opened message. Returns what overload shed from the queue
    /// (see [`shed_overload`]), to be ignored.
    pub(crate) fn queue(&mut self, message: Queued) -> Vec<(MessageId, PeerId)> {
        self.queue.push(message);
        let shed = shed_overload(&mut self.queue, MAX_QUEUED_GOSSIP_BYTES);
        self.counts.shed += shed.len() as u64;
        shed
    }

    /// The next batch to validate, unless one is being validated (its end
    /// starts the next): what is queued, with the messages kept waiting
    /// (judged again now that more came). With `retry`, the waiting
    /// messages are judged again even if nothing new is queued (a sync
    /// stored something they may wait for).
    pub(crate) fn next_batch(&mut self, retry: bool) -> Option<Vec<Queued>> {
        let due = if retry {
            !self.waiting.is_empty()
        } else {
            !self.queue.is_empty()
        };
        if self.validating || !due {
            return None;
        }
        self.validating = true;
        let mut batch = std::mem::take(&mut self.waiting);
        batch.append(&mut self.queue);
        Some(batch)
    }

    /// Whether a batch is being validated.
    pub(crate) fn validating(&self) -> bool {
        self.validating
    }

    /// A batch was judged: the messages that wait are kept, with the time
    /// they started waiting; the others are returned to be reported.
    /// Then the waiting messages past their time are given up (returned
    /// second, to be reported as waiting and their senders asked by
    /// sync), and the next batch may start.
    pub(crate) fn judged(
        &mut self,
        batch: Vec<Queued>,
        verdicts: Vec<Verdict>,
        now: Instant,
    ) -> (Vec<(Queued, Verdict)>, Vec<Queued>) {
        let mut report = Vec::new();
        for (message, verdict) in batch.into_iter().zip(verdicts) {
            if verdict == Verdict::Waiting {
                self.waiting_since.entry(message.0.clone()).or_insert(now);
                self.waiting.push(message);
            } else {
                report.push((message, verdict));
            }
        }
        let given_up = self.expire(now);
        self.validating = false;
        (report, given_up)
    }

    /// Give up the waiting messages kept longer than [`GOSSIP_WAIT`] (or
    /// past [`MAX_WAITING_GOSSIP_BYTES`]), returning them.
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<Queued> {
        let mut kept = Vec::new();
        let mut kept_bytes = 0;
        let mut given_up = Vec::new();
        for message in std::mem::take(&mut self.waiting) {
            let since = self.waiting_since.get(&message.0).copied().unwrap_or(now);
            let bytes = queued_bytes(&message);
            if now.duration_since(since) < GOSSIP_WAIT
                && kept_bytes + bytes <= MAX_WAITING_GOSSIP_BYTES
            {
                kept_bytes += bytes;
                kept.push(message);
            } else {
                given_up.push(message);
            }
        }
        self.waiting = kept;
        given_up
    }

    /// Count a verdict about to be reported, and what gossipsub is told.
    pub(crate) fn account(&mut self, id: &MessageId, verdict: Verdict) -> MessageAcceptance {
        self.waiting_since.remove(id);
        match verdict {
            Verdict::Accepted => {
                self.counts.accepted += 1;
                MessageAcceptance::Accept
            }
            Verdict::Rejected => {
                self.counts.rejected += 1;
                MessageAcceptance::Reject
            }
            Verdict::Known => {
                self.counts.ignored += 1;
                self.counts.known += 1;
                MessageAcceptance::Ignore
            }
            Verdict::Waiting => {
                self.counts.ignored += 1;
                self.counts.waited += 1;
                MessageAcceptance::Ignore
            }
        }
    }
}

/// The machine's time, for what the transport stamps and checks (sealed
/// gossip's age, a ticket's expiry). Not the node's `Clock`: tests move
/// that one to make governance time pass on some nodes and not others,
/// and gossip between them must still be fresh by the wall.
pub(crate) fn machine_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DocEvent;
    use nestwork_core::{MemberId, MemberKey};
    use nestwork_docs::{ApplyReport, Charter, GroupGenesis, GroupKind, SignedDoc, Writer};
    use std::sync::Mutex;

    /// A replica holding one group document and nothing else; it panics
    /// when asked to apply the change `panic_on` (a stand-in for a bug).
    struct OneDoc {
        doc: Mutex<SignedDoc>,
        panic_on: Option<Hash32>,
    }

    impl Replica for OneDoc {
        fn groups(&self) -> Vec<(GroupId, Vec<u8>)> {
            Vec::new()
        }
        fn group_of(&self, doc: &DocId) -> Option<GroupId> {
            let id = self.doc.lock().expect("lock").id();
            (id == doc.hash32()).then_some(GroupId::from(id))
        }
        fn docs_of(&self, group: &GroupId) -> Vec<DocId> {
            vec![group.doc()]
        }
        fn genesis(&self, _: &GroupId) -> Option<Vec<u8>> {
            None
        }
        fn is_member(&self, _: &DocId, _: &MemberId) -> bool {
            false
        }
        fn heads(&self, _: &DocId) -> Option<Vec<Hash32>> {
            None
        }
        fn changes_since(&self, _: &DocId, _: &[Hash32], _: usize) -> (Vec<SignedChange>, bool) {
            (Vec::new(), false)
        }
        fn apply_remote(
            &self,
            _: DocId,
            changes: Vec<SignedChange>,
            _: bool,
        ) -> Result<ApplyReport, String> {
            if changes.iter().any(|c| Some(c.hash) == self.panic_on) {
                panic!("a bug in validation");
            }
            Ok(self.doc.lock().expect("lock").apply(changes))
        }
        fn admit(&self, _: &GroupId, _: MemberId, _: Hash32, _: Vec<u8>) -> Result<(), String> {
            Err("not here".into())
        }
        fn peer_heads(&self, _: &MemberId, _: &DocId) -> Option<Vec<Hash32>> {
            None
        }
        fn set_peer_heads(&self, _: &MemberId, _: &DocId, _: &[Hash32]) {}
        fn forget_peer_heads(&self, _: &MemberId, _: &DocId) {}
        fn subscribe(&self) -> tokio::sync::broadcast::Receiver<DocEvent> {
            tokio::sync::broadcast::channel(1).1
        }
        fn keyring(&self, _: &GroupId) -> Option<nestwork_docs::seal::Keyring> {
            None
        }
    }

    fn writer(device: u8) -> Writer {
        Writer::new(MemberKey::from_secret([1; 32]), [device; 8])
    }

    fn group() -> SignedDoc {
        let genesis = GroupGenesis {
            name: "Riverside".to_string(),
            kind: GroupKind::Hub,
            parent: None,
            unit: "hours".to_string(),
            created_at_ms: 1_700_000_000_000,
            nonce: [1; 16],
            charter: Charter::default(),
        };
        SignedDoc::create_group(&writer(1), genesis, 5)
            .expect("create")
            .0
    }

    /// A description edit made on a copy of `doc` by device `device`.
    fn edit(doc: &SignedDoc, device: u8, text: &str) -> SignedChange {
        doc.clone()
            .set_description(&writer(device), text, 6)
            .expect("describe")
            .expect("a change")
    }

    fn message(n: u8, doc: &SignedDoc, change: SignedChange) -> Queued {
        (
            MessageId::new(&[n]),
            PeerId::random(),
            doc.group(),
            vec![change],
        )
    }

    /// Gossip arrives in any order: a change whose dependency has not come
    /// yet waits (the loop keeps its message and judges it again with the
    /// next batch, where it was ignored and everything fetched by sync: a
    /// soak node took 6,011 of 61,646 messages from gossip), and is taken
    /// once that change comes; a message whose changes are all held
    /// already is known, not accepted again.
    #[test]
    fn a_change_before_the_one_it_builds_on_waits_and_is_taken_when_that_comes() {
        let base = group();
        let mut author = base.clone();
        let first = author
            .set_description(&writer(1), "one", 6)
            .expect("describe")
            .expect("a change");
        let second = author
            .set_description(&writer(1), "two", 7)
            .expect("describe")
            .expect("a change");
        let replica = OneDoc {
            doc: Mutex::new(base.clone()),
            panic_on: None,
        };
        let early = message(2, &base, second);
        assert_eq!(
            validate_batch(&replica, std::slice::from_ref(&early)),
            vec![Verdict::Waiting]
        );
        let batch = vec![early, message(1, &base, first.clone())];
        assert_eq!(
            validate_batch(&replica, &batch),
            vec![Verdict::Accepted, Verdict::Accepted]
        );
        assert_eq!(
            validate_batch(&replica, &[message(3, &base, first)]),
            vec![Verdict::Known]
        );
        let doc = replica.doc.lock().expect("lock");
        assert_eq!(doc.description(), "two");
    }

    /// Finding 3: a change whose (actor, seq) is held with other content
    /// made the whole batch fail, rejecting honest messages batched with it.
    #[test]
    fn finding3_a_forked_change_is_ignored_and_honest_messages_batched_with_it_are_accepted() {
        let base = group();
        let held = edit(&base, 1, "one");
        let fork = edit(&base, 1, "two");
        let honest = edit(&base, 2, "three");
        let mut doc = base.clone();
        assert_eq!(doc.apply(vec![held]).applied.len(), 1);
        let replica = OneDoc {
            doc: Mutex::new(doc),
            panic_on: None,
        };
        let batch = vec![message(1, &base, fork.clone()), message(2, &base, honest)];
        assert_eq!(
            validate_batch(&replica, &batch),
            vec![Verdict::Known, Verdict::Accepted]
        );
        let doc = replica.doc.lock().expect("lock");
        assert_eq!(doc.forks(), &[fork][..], "the fork is kept as proof");
    }

    /// Finding 5 (overload): when validation falls behind, payments are
    /// shed before the group document, oldest first, down to the bound.
    #[test]
    fn finding5_overload_sheds_payments_first_and_the_group_document_last() {
        let base = group();
        let change = edit(&base, 1, "one");
        let size = change.change.len();
        let period = |n: u8| {
            let mut c = change.clone();
            c.doc = Hash32::of(b"a ledger period");
            message(n, &base, c)
        };
        let mut queue = vec![
            message(1, &base, change.clone()),
            period(2),
            message(3, &base, change.clone()),
            period(4),
        ];
        assert!(shed_overload(&mut queue, 4 * size).is_empty());
        let shed = shed_overload(&mut queue, 2 * size);
        let ids = |q: &[Queued]| q.iter().map(|m| m.0.clone()).collect::<Vec<_>>();
        assert_eq!(
            shed.into_iter().map(|(id, _)| id).collect::<Vec<_>>(),
            vec![MessageId::new(&[2]), MessageId::new(&[4])],
            "the payments went first, oldest first"
        );
        assert_eq!(
            ids(&queue),
            vec![MessageId::new(&[1]), MessageId::new(&[3])]
        );
        let shed = shed_overload(&mut queue, size);
        assert_eq!(
            shed[0].0,
            MessageId::new(&[1]),
            "then the oldest of the group"
        );
        assert_eq!(ids(&queue), vec![MessageId::new(&[3])]);
    }

    /// Finding 5: a panic in validation used to unwind out of the blocking
    /// task, so the loop never heard back and never validated again.
    #[test]
    fn finding5_a_panic_in_validation_rejects_its_message_and_the_others_are_judged() {
        let base = group();
        let bad = edit(&base, 1, "one");
        let honest = edit(&base, 2, "two");
        let replica = OneDoc {
            doc: Mutex::new(base.clone()),
            panic_on: Some(bad.hash),
        };
        let batch = vec![message(1, &base, bad), message(2, &base, honest)];
        assert_eq!(
            validate_guarded(&replica, &batch),
            vec![Verdict::Rejected, Verdict::Accepted]
        );
    }

    /// Issue 15, finding 4: a sealed message recorded and published again
    /// after gossipsub's duplicate cache forgot it was decoded and applied
    /// in full (every change a duplicate) by every node, at no cost to the
    /// sender. Now the loop refuses it by its seal time before decoding:
    /// it is counted, ignored without penalty, and never queued for
    /// validation, so nothing is applied.
    #[test]
    fn finding_4_a_sealed_message_replayed_after_the_duplicate_window_is_counted_and_never_applied()
    {
        let base = group();
        let change = edit(&base, 1, "one");
        let group_id = base.group();
        let seals = GroupSeals::new(group_id, b"genesis");
        let seal = seals.current().expect("the genesis key");
        let now = machine_now_ms();
        let sent = seal.seal(&encoding::encode(&vec![change.clone()]), now);

        // When it is sent: opened and decoded, to be queued and applied.
        let (on, changes) = open_gossip(Some(&seals), &sent, now).expect("fresh gossip");
        assert_eq!(on, group_id);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].hash, change.hash);

        // The same bytes once gossipsub has forgotten them.
        let later = now + crate::topic::DUPLICATE_WINDOW.as_millis() as u64;
        let refused = open_gossip(Some(&seals), &sent, later).expect_err("a replay");
        assert!(
            matches!(refused, Refused::Untimely(g, OpenError::Stale { .. }) if g == group_id),
            "{refused:?}"
        );
        assert_eq!(refused.acceptance(), MessageAcceptance::Ignore);
        let mut counts = GossipCounts::default();
        refused.count(&mut counts);
        assert_eq!(
            (counts.untimely, counts.ignored, counts.rejected),
            (1, 1, 0),
            "counted, not held against the sender"
        );

        // Refused before decoding: an old payload that is not changes at
        // all is refused by its time, a fresh one as malformed.
        let junk = |at| seal.seal(b"not a batch of changes", at);
        assert!(matches!(
            open_gossip(Some(&seals), &junk(now), later),
            Err(Refused::Untimely(..))
        ));
        assert_eq!(
            open_gossip(Some(&seals), &junk(later), later),
            Err(Refused::Invalid("malformed payload"))
        );
        // Sealed ahead of this node's clock: refused the same way.
        assert!(matches!(
            open_gossip(Some(&seals), &sent, now - 10 * 60 * 1000),
            Err(Refused::Untimely(_, OpenError::Ahead { .. }))
        ));
    }

    #[test]
    fn a_waiting_message_is_judged_with_each_batch_and_given_up_after_its_wait() {
        let doc = group();
        let first = message(1, &doc, edit(&doc, 2, "first"));
        let second = message(2, &doc, edit(&doc, 3, "second"));
        let mut intake = GossipIntake::default();
        let t0 = Instant::now();

        assert!(intake.queue(first.clone()).is_empty());
        let batch = intake.next_batch(false).expect("a batch");
        assert_eq!(batch.len(), 1);
        // One batch at a time: what arrives meanwhile waits for its end.
        assert!(intake.queue(second.clone()).is_empty());
        assert!(intake.next_batch(false).is_none());
        assert!(intake.validating());

        let (report, given_up) = intake.judged(batch, vec![Verdict::Waiting], t0);
        assert!(report.is_empty() && given_up.is_empty());
        assert!(!intake.validating());
        // The waiting message goes again with what was queued.
        let batch = intake.next_batch(false).expect("the next batch");
        assert_eq!(
            batch.iter().map(|q| q.0.clone()).collect::<Vec<_>>(),
            vec![first.0.clone(), second.0.clone()]
        );
        let later = t0 + Duration::from_secs(1);
        let (report, given_up) =
            intake.judged(batch, vec![Verdict::Waiting, Verdict::Accepted], later);
        assert_eq!(report.len(), 1);
        assert_eq!(
            (report[0].0 .0.clone(), report[0].1),
            (second.0.clone(), Verdict::Accepted)
        );
        assert!(given_up.is_empty(), "still inside its wait");
        assert_eq!(
            intake.account(&second.0, Verdict::Accepted),
            MessageAcceptance::Accept
        );

        // A sync stored something: the waiting message is judged again
        // though nothing new is queued.
        assert!(intake.next_batch(false).is_none());
        let batch = intake.next_batch(true).expect("a retry");
        let (_, given_up) = intake.judged(batch, vec![Verdict::Waiting], later);
        assert!(given_up.is_empty());

        // Its wait counts from when it first waited, not from each retry.
        assert!(intake
            .expire(t0 + GOSSIP_WAIT - Duration::from_millis(1))
            .is_empty());
        let given_up = intake.expire(t0 + GOSSIP_WAIT);
        assert_eq!(given_up.len(), 1);
        assert_eq!(given_up[0].0, first.0);
        assert_eq!(
            intake.account(&first.0, Verdict::Waiting),
            MessageAcceptance::Ignore
        );
        assert!(intake.next_batch(true).is_none(), "nothing waits any more");
        assert_eq!(
            (
                intake.counts.accepted,
                intake.counts.ignored,
                intake.counts.waited
            ),
            (1, 1, 1)
        );
    }

    #[test]
    fn waiting_messages_past_the_byte_bound_are_given_up_at_once() {
        let doc = group();
        let mut intake = GossipIntake::default();
        let t0 = Instant::now();
        let mut big = edit(&doc, 2, "big");
        big.change = vec![0; MAX_WAITING_GOSSIP_BYTES / 2 + 1];
        let batch: Vec<Queued> = (1..=2).map(|n| message(n, &doc, big.clone())).collect();
        for q in batch {
            assert!(intake.queue(q).is_empty());
        }
        let batch = intake.next_batch(false).expect("a batch");
        let (report, given_up) = intake.judged(batch, vec![Verdict::Waiting, Verdict::Waiting], t0);
        assert!(report.is_empty());
        assert_eq!(given_up.len(), 1, "only one fits the bound");
        assert_eq!(given_up[0].0, MessageId::new(&[2]));
    }
}
