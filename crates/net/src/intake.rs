//! What becomes of a gossip message before the event loop acts on it:
//! opened with the group's seal (fresh, or refused as a replay), its
//! changes applied in a batch with the others waiting, each message given
//! a verdict; a panic in validation rejects only its own message; an
//! overloaded queue sheds payments first. No swarm here: the event loop
//! (`actor.rs`) hands messages in and acts on the verdicts.

use std::collections::{HashMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{SystemTime, UNIX_EPOCH};

use libp2p::gossipsub::{MessageAcceptance, MessageId};
use libp2p::PeerId;
use nestwork_core::{encoding, DocId, GroupId, Hash32, SignedChange};
use nestwork_docs::ApplyReport;

use crate::behaviour::MAX_GOSSIP_BYTES;
use crate::topic::{GroupSeals, OpenError};
use crate::{GossipCounts, Replica};

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
}
