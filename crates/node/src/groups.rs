//! Group documents as members change them: found a group, describe it,
//! admit a member, sign a record into it, and take a peer's changes.

use nestwork_core::{DocId, GroupId, Hash32, MemberId, SignedChange};
use nestwork_docs::decisions::Decisions;
use nestwork_docs::group_ledger::Gate;
use nestwork_docs::{
    Admission, ApplyReport, Charter, CharterView, GroupGenesis, GroupKind, GroupView, RecordBody,
    SignedDoc, Writer,
};

use crate::error::{Lookup, NodeError};
use crate::node::{Node, Staged, Write};
use crate::state::State;
use crate::views::CreateGroup;

impl Node {
    /// Found a group with the default charter.
    pub fn create_group(&self, req: CreateGroup) -> Result<GroupView, NodeError> {
        let kind = req.kind.unwrap_or(GroupKind::Hub);
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
            changes.extend(doc.set_description(&self.writer, text, self.now_ms())?);
        }
        // A group's id is its genesis record's, and so its document's.
        let id = doc.group();
        let view = GroupView::of(&doc)
            .ok_or_else(|| NodeError::Invalid("new group has no genesis".into()))?;
        // Stored before the state holds it: if the store fails, nothing of
        // the new group is in memory.
        let write = Write {
            doc: id.doc(),
            changes,
            kind: None,
        };
        self.commit(
            |_| Ok(Staged::local(doc, vec![write])),
            |docs, doc| {
                docs.groups.insert(id, doc);
                docs.ensure_ledger(id, &self.writer);
                Ok(())
            },
        )?;
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
            GroupView::of(doc).ok_or_else(|| NodeError::not_found(Lookup::Group, sel))
        })
    }

    /// A group's charter.
    pub fn charter(&self, sel: &str) -> Result<CharterView, NodeError> {
        self.with_doc(sel, |doc| {
            CharterView::of(doc, self.now_ms())
                .ok_or_else(|| NodeError::not_found(Lookup::Group, sel))
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
        group: GroupId,
        edit: impl FnOnce(
            &mut SignedDoc,
            &Writer,
            u64,
        ) -> Result<Option<SignedChange>, nestwork_docs::Error>,
    ) -> Result<(), NodeError> {
        self.commit(
            |docs| {
                let doc = docs
                    .groups
                    .get_mut(&group)
                    .ok_or_else(|| NodeError::not_found(Lookup::Group, group))?;
                let change = edit(doc, &self.writer, self.now_ms())?;
                Ok(Staged::local(
                    (),
                    vec![Write::to(group.doc(), change.into_iter().collect())],
                ))
            },
            |_, ()| Ok(()),
        )
    }

    /// Sign the record `make` builds (from the state, under the lock) into
    /// group `group`'s document; durable and announced before it returns.
    pub(crate) fn write_group_record(
        &self,
        group: GroupId,
        make: impl FnOnce(&State) -> Result<RecordBody, NodeError>,
    ) -> Result<Hash32, NodeError> {
        let now = self.now_ms();
        self.commit(
            |state| {
                let body = make(state)?;
                // Only a limit change asks which proposals passed.
                let decisions = match body {
                    RecordBody::CreditLimit(_) => Decisions::of(state.groups.get(&group), now),
                    _ => Decisions::of(None, now),
                }
                .resolved();
                let doc = state
                    .groups
                    .get_mut(&group)
                    .ok_or_else(|| NodeError::not_found(Lookup::Group, group))?;
                let mut gate = Gate {
                    ledger: state.ledgers.get_mut(&group).map(|l| &mut l.ledger),
                    group: None,
                    decisions: &decisions,
                    now_ms: now,
                };
                let (id, change) = doc.add_record(&self.writer, body, &mut gate, now)?;
                Ok(Staged::local(
                    id,
                    vec![Write::to(group.doc(), vec![change])],
                ))
            },
            |_, id| Ok(id),
        )
    }

    /// Check and apply changes from a peer, store the valid ones, and
    /// report what became of each. A document this node does not hold is
    /// refused unless `joining` (a stranger cannot push groups onto us).
    pub fn apply_remote(
        &self,
        doc: DocId,
        changes: Vec<SignedChange>,
        joining: bool,
    ) -> Result<ApplyReport, NodeError> {
        self.commit(
            |docs| {
                let report = self.take_remote(docs, doc, changes, joining)?;
                Ok(Staged {
                    writes: vec![Write::to(doc, report.applied.clone())],
                    note: None,
                    local: false,
                    value: report,
                })
            },
            |docs, report| {
                if let Some(group) = docs.group_of(&doc) {
                    self.tend_ledger(docs, group)?;
                    docs.ensure_ledger(group, &self.writer);
                }
                Ok(report)
            },
        )
    }

    /// Check and apply a peer's `changes` to `doc` in the state (see
    /// [`Node::apply_remote`]).
    fn take_remote(
        &self,
        docs: &mut State,
        doc: DocId,
        changes: Vec<SignedChange>,
        joining: bool,
    ) -> Result<ApplyReport, NodeError> {
        let known = docs.group_of(&doc).is_some();
        if !known && !joining {
            return Err(NodeError::not_found(Lookup::Group, doc));
        }
        if known && !joining && self.left_roll(docs, &doc) {
            // Off the roll: what members write after is not for this
            // node (others refuse it too; this is the honest side).
            return Err(NodeError::Invalid(
                "this member is no longer on the group's roll".into(),
            ));
        }
        if known {
            self.warm(docs, &doc)?;
            return docs
                .apply(doc, changes, self.now_ms())
                .ok_or_else(|| NodeError::not_found(Lookup::Group, doc));
        }
        // A group joined: its genesis first, so that its ledger exists to
        // judge limit changes among the rest. Its document's id is the
        // group's.
        let group = GroupId::from(doc.hash32());
        docs.groups.insert(group, SignedDoc::empty(doc.hash32()));
        let (first, rest): (Vec<_>, Vec<_>) = changes
            .into_iter()
            .partition(|c| nestwork_docs::engine::is_first_change(&c.change));
        let mut report = docs.apply(doc, first, self.now_ms()).unwrap_or_default();
        let genesis_known = (docs.groups.get(&group)).is_some_and(|d| d.genesis().is_some());
        if !genesis_known {
            docs.groups.remove(&group);
            return Ok(report);
        }
        if let Some(d) = docs.groups.get_mut(&group) {
            d.set_writer(&self.writer);
        }
        docs.ensure_ledger(group, &self.writer);
        let more = docs.apply(doc, rest, self.now_ms()).unwrap_or_default();
        report.merge(more);
        Ok(report)
    }

    /// Whether this member was on the roll of `doc`'s group and is no
    /// longer (left or removed). A newcomer awaiting an entry vote was
    /// never on it, so others' pushes still reach them once voted in.
    fn left_roll(&self, docs: &State, doc: &DocId) -> bool {
        let me = self.member();
        docs.group_of(doc)
            .and_then(|g| docs.groups.get(&g))
            .is_some_and(|g| g.ever_members().contains(&me) && !g.members().contains(&me))
    }

    /// Admit `member` to group `group` on the strength of invite `ticket`,
    /// which this member signed (`ticket_signature`; every node checks it).
    /// Admitting someone already on the roll is a no-op; a ticket admits one
    /// member only.
    pub fn admit(
        &self,
        group: &GroupId,
        member: MemberId,
        ticket: Hash32,
        ticket_signature: Vec<u8>,
    ) -> Result<(), NodeError> {
        let admitted = self.commit(
            |docs| {
                let doc = docs
                    .groups
                    .get_mut(group)
                    .ok_or_else(|| NodeError::not_found(Lookup::Group, group))?;
                if let Some(used) = doc.admission_by_ticket(&ticket) {
                    if used.member == member {
                        return Ok(Staged::local(false, Vec::new()));
                    }
                    return Err(NodeError::Invalid(
                        "this invite ticket was already used".into(),
                    ));
                }
                if doc.members().contains(&member) {
                    return Ok(Staged::local(false, Vec::new()));
                }
                let body = RecordBody::Admission(Admission {
                    member,
                    ticket,
                    ticket_signature,
                    admitted_at_ms: self.now_ms(),
                    // The engine fills in the founders' edits it follows.
                    founders_edits: Vec::new(),
                });
                let (_, change) = doc.add_record(
                    &self.writer,
                    body,
                    &mut nestwork_docs::NoLedger,
                    self.now_ms(),
                )?;
                Ok(Staged::local(
                    true,
                    vec![Write::to(group.doc(), vec![change])],
                ))
            },
            |_, admitted| Ok(admitted),
        )?;
        if admitted {
            tracing::info!(group = %group.short(), %member, "member admitted");
        }
        Ok(())
    }
}
