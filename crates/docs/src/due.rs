//! What a member's node must sign now, from the groups it holds and the
//! time (passed in): the decisions of proposals whose voting is over, what
//! this member's passed proposals order (limit changes, commons payouts),
//! the facts that cross from one group to another where this member
//! belongs to both (a child's delegates into its parent, a treaty party's
//! decisions into the other party), and the distress records due (see
//! [`crate::distress_due`]). The node carries them out (`Node::tick`);
//! deciding what is due reads no clock, store or network, so it can be
//! tested alone.

use std::collections::BTreeMap;

use nestwork_core::{GroupId, MemberId, ProposalId, SignalId};

use crate::distress_due::due_distress_records;
use crate::governance::{
    self, Action, Counterpart, Delegation, Governance, Outcome, ProposalState, TreatyAct,
};
use crate::group_ledger::GroupLedger;
use crate::ledger::Account;
use crate::proof::DecisionProof;
use crate::view::governance_of;
use crate::{RecordBody, SignedDoc};

/// A record this member's node must sign now.
#[derive(Clone, Debug)]
pub enum Due {
    /// The limit change a passed proposal of this member's orders.
    Limit {
        /// The group.
        group: GroupId,
        /// The member whose limits change (the group default when `None`).
        member: Option<MemberId>,
        /// The new floor.
        floor: i64,
        /// The new ceiling.
        ceiling: i64,
        /// The proposal that orders it.
        proposal: ProposalId,
    },
    /// The commons payout a passed proposal of this member's orders.
    Payout {
        /// The group.
        group: GroupId,
        /// Paid to.
        to: Account,
        /// Minor units.
        amount: u64,
        /// The memo.
        memo: String,
        /// The proposal that orders it.
        proposal: ProposalId,
    },
    /// A record to file into group `group`'s document.
    File {
        /// The group.
        group: GroupId,
        /// The record.
        body: Box<RecordBody>,
    },
}

/// Everything member `me` must sign at `now_ms`, given the group documents
/// and ledgers held. `held_since(group, signal)` says when this node first
/// held a signal (its escalation time counts from then).
pub fn due(
    groups: &BTreeMap<GroupId, SignedDoc>,
    ledgers: &BTreeMap<GroupId, GroupLedger>,
    me: &MemberId,
    now_ms: u64,
    held_since: &mut dyn FnMut(&GroupId, &SignalId) -> u64,
) -> Vec<Due> {
    // Each group's governance, once.
    let govs: BTreeMap<GroupId, Governance> = groups
        .iter()
        .filter_map(|(g, d)| governance_of(d, now_ms).map(|gov| (*g, gov)))
        .collect();
    let mut todo = Vec::new();
    for (group, gov) in &govs {
        let Some(doc) = groups.get(group) else {
            continue;
        };
        todo.extend(decisions_due(gov, me, now_ms).map(|d| Due::File {
            group: *group,
            body: Box::new(RecordBody::Decision(d)),
        }));
        todo.extend(orders_due(*group, gov, doc, ledgers.get(group), me));
        let belongs = |g: &GroupId| govs.get(g).is_some_and(|g| g.is_member(me));
        todo.extend(delegation_due(*group, gov, doc, groups, me, &belongs));
        todo.extend(counterparts_due(*group, gov, doc, groups, me, &belongs));
    }
    // Unanswered distress signals climb the tiers and cross treaties;
    // answers come back to where help was asked.
    todo.extend(
        due_distress_records(groups, &govs, me, now_ms, held_since)
            .into_iter()
            .map(|(group, body)| Due::File {
                group,
                body: Box::new(body),
            }),
    );
    todo
}

/// The decisions this member's node signs now: once voting is over by its
/// clock, the proposer's node signs at once; any other member's after
/// [`governance::DECISION_GRACE_MS`], in case the proposer's node is away.
pub fn decisions_due<'g>(
    gov: &'g Governance,
    me: &'g MemberId,
    now: u64,
) -> impl Iterator<Item = governance::Decision> + 'g {
    gov.proposals.iter().filter_map(move |p| {
        let decision = p.decision_record(now)?;
        let grace = if p.proposer == *me {
            0
        } else {
            governance::DECISION_GRACE_MS
        };
        let due = decision.decided_at_ms.saturating_add(grace) <= now;
        (due && gov.is_member(me)).then_some(decision)
    })
}

/// The limit changes and commons payouts that this member's passed
/// proposals in `group` order and that are not signed yet.
fn orders_due(
    group: GroupId,
    gov: &Governance,
    doc: &SignedDoc,
    ledger: Option<&GroupLedger>,
    me: &MemberId,
) -> Vec<Due> {
    let mut todo = Vec::new();
    for p in passed(gov) {
        match &p.proposal.action {
            Action::SetLimits {
                member,
                floor,
                ceiling,
            } if p.proposer == *me && !limit_written(doc, &p.id) => todo.push(Due::Limit {
                group,
                member: *member,
                floor: *floor,
                ceiling: *ceiling,
                proposal: p.id,
            }),
            Action::Payout { to, amount, memo }
                if p.proposer == *me
                    && ledger.is_some_and(|l| !l.ledger.paid_out(&p.id.hash32())) =>
            {
                todo.push(Due::Payout {
                    group,
                    to: *to,
                    amount: *amount,
                    memo: memo.clone(),
                    proposal: p.id,
                })
            }
            _ => {}
        }
    }
    todo
}

/// A delegate carries the group's delegation into the parent, with the
/// decision that named them.
fn delegation_due(
    group: GroupId,
    gov: &Governance,
    doc: &SignedDoc,
    groups: &BTreeMap<GroupId, SignedDoc>,
    me: &MemberId,
    belongs: &dyn Fn(&GroupId) -> bool,
) -> Option<Due> {
    let (Some((delegates, until, proposal)), Some(parent)) = (&gov.delegates, gov.parent) else {
        return None;
    };
    let filed = groups.get(&parent).is_some_and(|d| {
        has_record(
            d,
            |b| matches!(b, RecordBody::Delegation(x) if x.proposal == *proposal),
        )
    });
    let (proof, from) = (delegates.contains(me) && !filed && belongs(&parent))
        .then(|| gov.proposal(proposal))
        .flatten()
        .and_then(|p| DecisionProof::of(&group, doc.records(), p))?;
    Some(Due::File {
        group: parent,
        body: Box::new(RecordBody::Delegation(Delegation {
            child: group,
            delegates: delegates.clone(),
            proposal: *proposal,
            from_ms: from,
            until_ms: (*until).max(from + 1),
            proof,
        })),
    })
}

/// A member of both parties carries treaty decisions across.
fn counterparts_due(
    group: GroupId,
    gov: &Governance,
    doc: &SignedDoc,
    groups: &BTreeMap<GroupId, SignedDoc>,
    me: &MemberId,
    belongs: &dyn Fn(&GroupId) -> bool,
) -> Vec<Due> {
    let mut todo = Vec::new();
    for p in passed(gov) {
        let (treaty, act) = match &p.proposal.action {
            Action::RatifyTreaty { treaty } => (treaty.id(), TreatyAct::Ratified(treaty.clone())),
            Action::RenewTreaty { treaty, end_ms } => {
                (*treaty, TreatyAct::Renewed { end_ms: *end_ms })
            }
            Action::EndTreaty { treaty } => (*treaty, TreatyAct::Ended),
            _ => continue,
        };
        if p.effect != Some(crate::governance::Effect::InEffect) {
            continue;
        }
        let Some(t) = gov.treaties.get(&treaty) else {
            continue;
        };
        let filed = groups.get(&t.other).is_some_and(|d| {
            has_record(
                d,
                |b| matches!(b, RecordBody::Counterpart(c) if c.proposal == p.id),
            )
        });
        if filed || !belongs(&t.other) || !gov.is_member(me) {
            continue;
        }
        if let Some((proof, at)) = DecisionProof::of(&group, doc.records(), p) {
            todo.push(Due::File {
                group: t.other,
                body: Box::new(RecordBody::Counterpart(Counterpart {
                    treaty,
                    group,
                    proposal: p.id,
                    act,
                    at_ms: at,
                    proof,
                })),
            });
        }
    }
    todo
}

/// The proposals of `gov` that passed.
fn passed(gov: &Governance) -> impl Iterator<Item = &ProposalState> {
    gov.proposals
        .iter()
        .map(|p| &**p)
        .filter(|p| p.outcome == Outcome::Passed)
}

fn has_record(doc: &SignedDoc, pred: impl Fn(&RecordBody) -> bool) -> bool {
    doc.records()
        .values()
        .any(|r| RecordBody::decode(&r.body).is_ok_and(|b| pred(&b)))
}

fn limit_written(doc: &SignedDoc, proposal: &ProposalId) -> bool {
    has_record(
        doc,
        |b| matches!(b, RecordBody::CreditLimit(c) if c.proposal == Some(proposal.hash32())),
    )
}
