//! Distress signals as this node carries them: raising and answering them
//! (signed records in the group's document, checked like any change),
//! listing them across every group held, and escalating the unanswered
//! ones on each [`Node::tick`] into the parent tier and, from the group
//! they were raised in, into every group bound to it by an active
//! mutual-aid treaty, wherever this member belongs to both. The rules are
//! `nestwork_docs::distress`.

use std::collections::BTreeMap;

use nestwork_core::{GroupId, Hash32, SignalId};
use nestwork_docs::distress::{
    Answer, AnswerKind, Signal, SignalStatus, SignalView, DEFAULT_EXPIRY_MS, MAX_EXPIRY_MS,
};
use nestwork_docs::distress_due::signals_of;
use nestwork_docs::view::governance_of;
use nestwork_docs::{GroupView, RecordBody};

use crate::error::{Lookup, NodeError};
use crate::node::Node;
use crate::state::State;

pub use crate::views::{AnswerRequest, Answering, RaiseRequest, SignalItem};

/// Open or answered: still asking for help.
fn is_live(v: &SignalView) -> bool {
    matches!(v.status, SignalStatus::Open | SignalStatus::Answered)
}

fn invalid(msg: impl Into<String>) -> NodeError {
    NodeError::Invalid(msg.into())
}

/// Where the time this node first held signal `signal` in `group` is kept
/// (an id no document has, so no change ever erases it).
fn held_mark(group: &GroupId, signal: &SignalId) -> Hash32 {
    Hash32::of_parts(&[
        b"nestwork/signal-held/v1",
        group.as_bytes(),
        signal.as_bytes(),
    ])
}

impl Node {
    /// When this node first held signal `signal` in `group`: noted now
    /// the first time it is asked, in memory and in the store, so that a
    /// restart does not start the count again.
    pub(crate) fn held_since(&self, group: &GroupId, signal: &SignalId, now: u64) -> u64 {
        let mut held = self
            .first_held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(at) = held.get(&(*group, *signal)) {
            return *at;
        }
        let mark = held_mark(group, signal);
        let stored = self
            .store
            .mark(&mark)
            .ok()
            .flatten()
            .and_then(|b| nestwork_core::encoding::decode::<u64>("held since", &b, 16).ok());
        let at = match stored {
            Some(at) => at,
            None => {
                if let Err(e) = self
                    .store
                    .set_mark(&mark, &nestwork_core::encoding::encode(&now))
                {
                    tracing::warn!(error = %e, "could not note when a signal arrived");
                }
                now
            }
        };
        held.insert((*group, *signal), at);
        at
    }

    /// What [`Node::held_since`] has noted for `signal` in `group`, if
    /// anything, without noting it.
    fn held_noted(&self, group: &GroupId, signal: &SignalId) -> Option<u64> {
        self.first_held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&(*group, *signal))
            .copied()
    }

    /// Raise a signal in group `sel`. Only members on the roll may; the
    /// rate limit and every other rule are checked as a peer would.
    pub fn distress_raise(&self, sel: &str, req: &RaiseRequest) -> Result<SignalView, NodeError> {
        let me = self.member();
        let (category, severity) = (req.category, req.severity);
        let life = match req.expires_secs {
            None => DEFAULT_EXPIRY_MS,
            Some(0) => return Err(invalid("a signal must last longer than zero")),
            Some(s) => s.saturating_mul(1000),
        };
        if life > MAX_EXPIRY_MS {
            return Err(invalid("a signal lasts at most 7 days"));
        }
        let now = self.now_ms();
        let (group, body) = self.with_doc(sel, |doc| {
            // The next link of this member's chain of signals; the rate
            // limit and the shape are checked first, as cheaply as they can
            // be, so a flood costs its sender little.
            let last = doc.signal_head(&me);
            let body = RecordBody::Signal(Signal {
                group: doc.group(),
                category,
                severity,
                text: req.text.clone(),
                location: req.location.clone().filter(|l| !l.trim().is_empty()),
                raised_at_ms: now,
                expires_at_ms: now.saturating_add(life),
                seq: last.map_or(1, |(seq, _)| seq + 1),
                prev: last.map(|(_, id)| id),
            });
            doc.precheck(&me, &body)?;
            let gov =
                governance_of(doc, now).ok_or_else(|| NodeError::not_found(Lookup::Group, sel))?;
            if !gov.is_member(&me) {
                return Err(invalid(
                    "only members on the roll may raise a signal in this group",
                ));
            }
            Ok((doc.group(), body))
        })?;
        // A signal's id is its record's.
        let id = SignalId::from(self.write_group_record(group, |_| Ok(body))?);
        tracing::warn!(group = %group.short(), signal = %id.short(), category = req.category.as_str(), severity = req.severity.as_str(), "distress signal raised");
        self.signal(&id)
    }

    /// Answer a signal (by id or a unique start of one) in the groups where
    /// this node holds it and this member is on the roll.
    pub fn distress_answer(&self, sel: &str, req: &AnswerRequest) -> Result<SignalView, NodeError> {
        let kind = match req.kind {
            Answering::Ack => AnswerKind::Ack,
            Answering::Respond => AnswerKind::Respond {
                eta_secs: req.eta_secs,
            },
            Answering::Resolve => AnswerKind::Resolve,
        };
        let me = self.member();
        let now = self.now_ms();
        let (signal, group) = {
            let docs = self.lock();
            let found = self.find_signal(&docs, sel)?;
            if found.status == SignalStatus::Resolved {
                return Err(invalid("this signal has been resolved already"));
            }
            if kind == AnswerKind::Resolve
                && found.raiser != me
                && !found
                    .answers
                    .iter()
                    .any(|a| a.by == me && matches!(a.answer, AnswerKind::Respond { .. }))
            {
                return Err(invalid(
                    "only the raiser or someone who responded may resolve a signal",
                ));
            }
            // Answer where this member may write: the group it is seen in.
            let group = self
                .groups_holding(&docs, &found.id)
                .into_iter()
                .find(|g| self.on_roll(&docs, g))
                .ok_or_else(|| {
                    invalid("you are not on the roll of a group that holds this signal")
                })?;
            (found.id, group)
        };
        self.write_group_record(group, |_| {
            Ok(RecordBody::Answer(Answer {
                signal,
                kind: kind.clone(),
                text: req.text.clone(),
                at_ms: now,
            }))
        })?;
        self.signal(&signal)
    }

    /// Signals of group `group` (all groups when `None`): the live ones,
    /// or with `all` the resolved and expired too. One entry per signal,
    /// with its answers from every group this node holds it in.
    pub fn distress_list(
        &self,
        group: Option<&str>,
        all: bool,
    ) -> Result<Vec<SignalItem>, NodeError> {
        let docs = self.lock();
        let groups: Vec<GroupId> = match group {
            Some(sel) => vec![self.resolve(&docs.groups, sel)?],
            None => docs.groups.keys().copied().collect(),
        };
        let mut items: Vec<SignalItem> = self
            .merged_signals(&docs, &groups)
            .into_values()
            .filter(|v| all || is_live(v))
            .map(|view| SignalItem {
                origin_name: docs
                    .groups
                    .get(&view.origin)
                    .and_then(GroupView::of)
                    .map(|g| g.name),
                held_since_ms: self.held_noted(&view.seen_in, &view.id),
                view,
            })
            .collect();
        // Live first, then the most severe, then the newest.
        items.sort_by(|a, b| {
            is_live(&b.view)
                .cmp(&is_live(&a.view))
                .then(b.view.signal.severity.cmp(&a.view.signal.severity))
                .then(b.view.signal.raised_at_ms.cmp(&a.view.signal.raised_at_ms))
        });
        Ok(items)
    }

    /// One signal by full id.
    fn signal(&self, id: &SignalId) -> Result<SignalView, NodeError> {
        let docs = self.lock();
        let groups: Vec<GroupId> = docs.groups.keys().copied().collect();
        self.merged_signals(&docs, &groups)
            .remove(id)
            .ok_or_else(|| invalid("the signal went missing"))
    }

    /// Signals of `groups`, one per id: the view from its own group when
    /// held, with the answers given anywhere.
    fn merged_signals(&self, docs: &State, groups: &[GroupId]) -> BTreeMap<SignalId, SignalView> {
        let now = self.now_ms();
        let mut merged: BTreeMap<SignalId, SignalView> = BTreeMap::new();
        for g in groups {
            let Some(doc) = docs.groups.get(g) else {
                continue;
            };
            let Some(gov) = governance_of(doc, now) else {
                continue;
            };
            for v in signals_of(doc, &gov, now) {
                match merged.get_mut(&v.id) {
                    None => {
                        merged.insert(v.id, v);
                    }
                    Some(m) => {
                        for a in v.answers {
                            if !m.answers.iter().any(|x| x.id == a.id) {
                                m.answers.push(a);
                            }
                        }
                        if v.path.len() > m.path.len() {
                            m.path = v.path;
                        }
                        m.answers.sort_by_key(|a| (a.at_ms, a.id));
                        if m.status == SignalStatus::Open && !m.answers.is_empty() {
                            m.status = SignalStatus::Answered;
                        }
                        if m.answers.iter().any(|a| a.answer == AnswerKind::Resolve) {
                            m.status = SignalStatus::Resolved;
                        }
                    }
                }
            }
        }
        merged
    }

    fn find_signal(&self, docs: &State, sel: &str) -> Result<SignalView, NodeError> {
        let sel = sel.trim().to_ascii_lowercase();
        if sel.len() < 4 {
            return Err(invalid("give at least 4 characters of the signal id"));
        }
        let groups: Vec<GroupId> = docs.groups.keys().copied().collect();
        let found: Vec<SignalView> = self
            .merged_signals(docs, &groups)
            .into_values()
            .filter(|v| v.id.to_hex().starts_with(&sel))
            .collect();
        match found.len() {
            1 => Ok(found.into_iter().next().expect("one")),
            0 => Err(NodeError::not_found(Lookup::Signal, sel)),
            _ => Err(NodeError::ambiguous(
                Lookup::Signal,
                sel,
                found.iter().map(|v| v.id.short()).collect(),
            )),
        }
    }

    fn groups_holding(&self, docs: &State, signal: &SignalId) -> Vec<GroupId> {
        let now = self.now_ms();
        docs.groups
            .iter()
            .filter(|(_, doc)| {
                governance_of(doc, now)
                    .is_some_and(|gov| signals_of(doc, &gov, now).iter().any(|v| v.id == *signal))
            })
            .map(|(g, _)| *g)
            .collect()
    }

    fn on_roll(&self, docs: &State, group: &GroupId) -> bool {
        docs.groups
            .get(group)
            .and_then(|d| governance_of(d, self.now_ms()))
            .is_some_and(|g| g.is_member(&self.member()))
    }
}

#[cfg(test)]
mod tests {
    use nestwork_core::{GroupId, Hash32, MemberKey, SignalId};

    use crate::{DataDir, Node};

    /// The escalation time counts from when this node first held a
    /// signal; a restart must not start it again (nor a crash: the time is
    /// in the store, not only in memory).
    #[test]
    fn when_a_signal_was_first_held_survives_a_restart() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = DataDir::new(tmp.path());
        let (group, signal) = (
            GroupId::from(Hash32([1; 32])),
            SignalId::from(Hash32([2; 32])),
        );
        let first = {
            let node = Node::open(&dir, MemberKey::from_secret([1; 32])).expect("open");
            let now = node.now_ms();
            assert_eq!(node.held_noted(&group, &signal), None);
            assert_eq!(node.held_since(&group, &signal, now), now);
            assert_eq!(node.held_since(&group, &signal, now + 60_000), now);
            node.store.flush().expect("flush");
            now
        };
        let node = Node::open(&dir, MemberKey::from_secret([1; 32])).expect("reopen");
        assert_eq!(node.held_since(&group, &signal, first + 600_000), first);
        assert_eq!(node.held_noted(&group, &signal), Some(first));
        // Held in another group: counted there from its own moment.
        let region = GroupId::from(Hash32([3; 32]));
        assert_eq!(node.held_since(&region, &signal, first + 5), first + 5);
    }
}
