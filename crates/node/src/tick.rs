//! Carrying out what is due: on each [`Node::tick`] the node asks
//! `nestwork_docs::due` what this member must sign now (decisions, what
//! passed proposals order, delegations, treaty facts, distress
//! escalations and answers) and writes it, and writes the seal keys its
//! groups lack; [`spawn_ticker`] runs it on a timer and after changes.

use nestwork_core::{DocId, GroupId, SignalId};
use nestwork_docs::due::{due, Due};
use nestwork_docs::ledger::Account;
use nestwork_docs::RecordBody;

use crate::node::Node;
use crate::seal::keys_due;

impl Node {
    /// Sign the decisions of proposals whose voting is over, carry out what
    /// passed proposals order and this node must sign, and
    /// escalate unanswered distress signals; returns how many records it
    /// wrote. Run on a timer by `nestwork run`. What is due is decided by
    /// `nestwork_docs::due` from the documents and the node's clock; this
    /// only writes it.
    pub fn tick(&self) -> usize {
        let me = self.member();
        let todo = {
            let docs = self.lock();
            let now = self.now_ms();
            let mut held_since =
                |group: &GroupId, signal: &SignalId| self.held_since(group, signal, now);
            due(&docs.groups, &docs.ledgers, &me, now, &mut held_since)
        };
        let mut written = 0;
        for task in todo {
            let done = match task {
                Due::Limit {
                    group,
                    member,
                    floor,
                    ceiling,
                    proposal,
                } => self.write_limit(group, member, floor, ceiling, Some(proposal)),
                Due::Payout {
                    group,
                    to,
                    amount,
                    memo,
                    proposal,
                } => self
                    .make_payment(group, Account::Commons, to, amount, &memo, Some(proposal))
                    .map(|_| ()),
                Due::File { group, body } => {
                    self.write_group_record(group, |_| Ok(*body)).map(|_| ())
                }
            };
            match done {
                Ok(()) => written += 1,
                Err(e) => tracing::warn!(error = %e, "could not carry out a decision"),
            }
        }
        // The group's seal key follows the roll.
        written + self.tend_seal_keys()
    }

    /// Write the key records the groups this node is a member of lack
    /// (see the module's text); returns how many it wrote.
    pub fn tend_seal_keys(&self) -> usize {
        let me = self.member();
        let todo = {
            let mut docs = self.lock();
            let mut memory = self.seal_memory();
            keys_due(&mut docs, &me, self.writer.key(), &mut memory)
        };
        let mut written = 0;
        for (group, records) in todo {
            for record in records {
                let boxes = record.boxes.len();
                match self.write_group_record(group, |_| Ok(RecordBody::SealKey(record))) {
                    Ok(id) => {
                        tracing::info!(group = %group.short(), record = %id.short(), boxes, "seal key written");
                        written += 1;
                    }
                    Err(e) => {
                        tracing::warn!(group = %group.short(), error = %e, "could not write a seal key")
                    }
                }
            }
        }
        written
    }
}

/// Run [`Node::tick`] every `every` while the node lives, and at once when
/// a group document changes (then at most every [`TICK_AFTER_CHANGE`]
/// while changes keep coming), so that a decision is signed as soon as the
/// deciding vote arrives, and a call for help carried on, and an answer
/// carried back to the person who called, within moments rather than at
/// the next beat. The task holds no reference between ticks, so it never
/// keeps a node open.
pub fn spawn_ticker(
    node: &std::sync::Arc<Node>,
    every: std::time::Duration,
) -> tokio::task::JoinHandle<()> {
    use tokio::sync::broadcast::error::{RecvError, TryRecvError};
    let weak = std::sync::Arc::downgrade(node);
    let mut changes = node.subscribe();
    // Whether an event names a group document (payments live in ledger
    // period documents and never need a tick).
    let of_a_group = move |weak: &std::sync::Weak<Node>, doc: &DocId| {
        weak.upgrade().is_some_and(|n| n.holds_group(doc))
    };
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(every);
        loop {
            let by_change = tokio::select! {
                _ = interval.tick() => false,
                received = changes.recv() => match received {
                    Ok(event) if !of_a_group(&weak, &event.doc) => continue,
                    Ok(_) | Err(RecvError::Lagged(_)) => true,
                    Err(RecvError::Closed) => break,
                },
            };
            // Tick now; after a change, while changes keep coming, once
            // more for what arrived in each TICK_AFTER_CHANGE.
            let mut again = true;
            while again {
                let Some(node) = weak.upgrade() else {
                    return;
                };
                let _ = tokio::task::spawn_blocking(move || node.tick()).await;
                if !by_change {
                    break;
                }
                tokio::time::sleep(TICK_AFTER_CHANGE).await;
                again = false;
                loop {
                    match changes.try_recv() {
                        Ok(event) => again |= of_a_group(&weak, &event.doc),
                        Err(TryRecvError::Lagged(_)) => again = true,
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Closed) => return,
                    }
                }
            }
        }
    })
}

/// How long the ticker gathers changes that follow one it ticked for.
pub const TICK_AFTER_CHANGE: std::time::Duration = std::time::Duration::from_millis(50);
