//! What members see: pure functions from a document to plain data. Two
//! nodes holding the same changes produce identical views.

use nestwork_core::{GroupId, Hash32, MemberId, ProposalId};
use serde::{Deserialize, Serialize};

use crate::engine::SignedDoc;
use crate::governance::{ArticleState, DelegationState, Governance};
use crate::record::{GroupKind, RecordBody, Rules};

/// A group as shown by `group show` and `group list`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupView {
    /// The group id (hash of its genesis record).
    pub id: GroupId,
    /// Its name.
    pub name: String,
    /// Hub, region, ...
    pub kind: GroupKind,
    /// The parent tier, if any.
    pub parent: Option<GroupId>,
    /// Who founded it.
    pub creator: MemberId,
    /// When, by the creator's clock (ms since the Unix epoch).
    pub created_at_ms: u64,
    /// The member roll, sorted.
    pub members: Vec<MemberId>,
    /// The free-form description.
    pub description: String,
    /// The document's heads, sorted.
    pub heads: Vec<Hash32>,
    /// How many changes the document holds.
    pub changes: usize,
}

/// A charter as shown by `charter show`: articles, rules, the roll, the
/// tier, and where the revision cycle stands, at one moment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CharterView {
    /// The group the charter belongs to.
    pub group: GroupId,
    /// The group's name.
    pub group_name: String,
    /// Hub, region, ...
    pub kind: GroupKind,
    /// Articles in force, by number.
    pub articles: Vec<ArticleState>,
    /// Numbers of repealed articles.
    pub repealed: Vec<u32>,
    /// The decision rules.
    pub rules: Rules,
    /// The member roll, sorted.
    pub members: Vec<MemberId>,
    /// Admitted by ticket, waiting for an entry vote.
    pub awaiting_entry: Vec<MemberId>,
    /// Former members and when they left or were removed.
    pub former: Vec<(MemberId, u64)>,
    /// The parent tier.
    pub parent: Option<GroupId>,
    /// Child groups in this tier.
    pub children: Vec<GroupId>,
    /// This group's delegates in its parent, until when, and the proposal.
    pub delegates: Option<(Vec<MemberId>, u64, ProposalId)>,
    /// Child groups' delegates, as filed here.
    pub child_delegations: Vec<DelegationState>,
    /// The revision cycle: its number (from 0) and when it started.
    pub cycle: (u64, u64),
    /// Articles amended or reaffirmed in this cycle.
    pub revisited_this_cycle: usize,
    /// How many the charter asks for each cycle.
    pub revisit_per_cycle: usize,
    /// Articles not revisited within a cycle.
    pub overdue: Vec<u32>,
    /// Proposals still open.
    pub open_proposals: usize,
    /// Whether the creator may still edit the charter directly (nobody else
    /// has joined).
    pub founders_may_edit: bool,
    /// When this view holds.
    pub now_ms: u64,
}

/// The governance of a group document at `now_ms`; `None` until its
/// genesis has arrived.
pub fn governance_of(doc: &SignedDoc, now_ms: u64) -> Option<Governance> {
    doc.governance_at(now_ms)
}

/// The decision record due on `proposal` at `now_ms`: what the votes held
/// in `doc` decided, once voting on it is over and while no decision is
/// held.
pub fn decision_due(doc: &SignedDoc, proposal: &ProposalId, now_ms: u64) -> Option<RecordBody> {
    let decision = governance_of(doc, now_ms)?
        .proposal(proposal)?
        .decision_record(now_ms)?;
    Some(RecordBody::Decision(decision))
}

impl GroupView {
    /// The view of a group document; `None` until its genesis has arrived.
    pub fn of(doc: &SignedDoc) -> Option<GroupView> {
        let (record, genesis) = doc.genesis()?;
        let mut heads = doc.heads();
        heads.sort();
        Some(GroupView {
            id: doc.group(),
            name: genesis.name,
            kind: genesis.kind,
            parent: genesis.parent,
            creator: record.author,
            created_at_ms: genesis.created_at_ms,
            members: doc.members().iter().copied().collect(),
            description: doc.description(),
            heads,
            changes: doc.change_count(),
        })
    }
}

impl CharterView {
    /// The charter of a group document at `now_ms`; `None` until its
    /// genesis has arrived.
    pub fn of(doc: &SignedDoc, now_ms: u64) -> Option<CharterView> {
        let (_, genesis) = doc.genesis()?;
        let g = governance_of(doc, now_ms)?;
        let joined = doc.ever_members().iter().any(|m| *m != g.creator);
        Some(CharterView {
            group: doc.group(),
            group_name: genesis.name,
            kind: genesis.kind,
            overdue: g.overdue(),
            open_proposals: g.proposals.iter().filter(|p| p.is_open()).count(),
            articles: g.articles,
            repealed: g.repealed,
            rules: g.rules,
            members: g.roll.keys().copied().collect(),
            awaiting_entry: g.awaiting_entry.into_iter().collect(),
            former: g.former.into_iter().collect(),
            parent: g.parent,
            children: g.children.into_iter().collect(),
            delegates: g.delegates,
            child_delegations: g.child_delegations.into_values().collect(),
            cycle: g.cycle,
            revisited_this_cycle: g.revisited_this_cycle,
            revisit_per_cycle: g.revisit_per_cycle,
            founders_may_edit: !joined,
            now_ms,
        })
    }
}
