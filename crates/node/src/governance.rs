//! Governance as this node carries it out: it turns what members ask for
//! (`propose`, `vote`, `group leave`, `charter edit`) into signed records
//! after checking them against the group's state, shows proposals,
//! charters and treaties, and, on each [`Node::tick`], carries out what
//! passed proposals order that needs someone to sign: the limit changes
//! and commons payouts of this member's own proposals, and the facts that
//! cross from one group to another (a child's delegates into its parent, a
//! treaty party's decisions into the other party) where this member
//! belongs to both (what is due is decided by `nestwork_docs::due`, and
//! written by `tick.rs`). The rules themselves are
//! `nestwork_docs::governance`.

use std::collections::{BTreeMap, BTreeSet};

use nestwork_core::{GroupId, Hash32, MemberId, ProposalId};
use nestwork_docs::engine::Draft;
use nestwork_docs::governance::{
    self, Action, Exit, Governance, Outcome, Proposal, ProposalState, Treaty, TreatyKind,
    TreatyState, TreatyStatus, Vote,
};
use nestwork_docs::ledger::Account;
use nestwork_docs::view::governance_of;
use nestwork_docs::{CharterView, GroupView, RecordBody};

use crate::error::{Lookup, NodeError};
use crate::node::Node;
use crate::state::State;

pub use crate::tick::{spawn_ticker, TICK_AFTER_CHANGE};
pub use crate::views::{
    LeaveView, ProposalView, ProposalsView, ProposeRequest, TreatyView, VoteRequest,
};
use nestwork_docs::due::decisions_due;

fn invalid(msg: impl Into<String>) -> NodeError {
    NodeError::Invalid(msg.into())
}

/// A member among `candidates`: a full id, or a unique start (4+ characters).
fn member_among<'a>(
    candidates: impl Iterator<Item = &'a MemberId>,
    sel: &str,
) -> Result<MemberId, NodeError> {
    let found: BTreeSet<MemberId> = candidates
        .filter(|m| {
            let id = m.to_string();
            id == sel || (sel.len() >= 4 && id.starts_with(sel))
        })
        .copied()
        .collect();
    match found.len() {
        1 => Ok(*found.iter().next().expect("one")),
        0 => Err(invalid(format!("no member matches {sel:?}"))),
        _ => Err(invalid(format!(
            "{sel:?} matches several members; use more of the id"
        ))),
    }
}

impl Node {
    /// The governance of group `group` now.
    fn governance(&self, docs: &State, group: &GroupId) -> Result<Governance, NodeError> {
        docs.groups
            .get(group)
            .and_then(|d| governance_of(d, self.now_ms()))
            .ok_or_else(|| NodeError::not_found(Lookup::Group, group))
    }

    /// A group by selector among those held, or any group by full id.
    fn group_id(&self, docs: &State, sel: &str) -> Result<GroupId, NodeError> {
        match self.resolve(&docs.groups, sel) {
            Ok(id) => Ok(id),
            Err(e) => sel.trim().parse::<GroupId>().map_err(|_| e),
        }
    }

    fn group_name(docs: &State, group: &GroupId) -> Option<String> {
        docs.groups
            .get(group)
            .and_then(GroupView::of)
            .map(|v| v.name)
    }

    /// Put a proposal to group `sel`'s vote. The proposal is checked
    /// against the group as it stands, then frozen.
    pub fn propose(&self, sel: &str, req: &ProposeRequest) -> Result<ProposalView, NodeError> {
        let (group, action) = {
            let docs = self.lock();
            let group = self.resolve(&docs.groups, sel)?;
            let gov = self.governance(&docs, &group)?;
            if !gov.is_member(&self.member()) {
                return Err(invalid("only members on the roll may propose"));
            }
            (group, self.resolve_request(&docs, &gov, req)?)
        };
        let body = RecordBody::Proposal(Proposal {
            action,
            submitted_at_ms: self.now_ms(),
        });
        // A proposal's id is its record's.
        let id = ProposalId::from(self.write_group_record(group, |_| Ok(body))?);
        tracing::info!(group = %group.short(), proposal = %id.short(), kind = req.kind(), "proposal submitted");
        self.proposal_view(&group, &id)
    }

    /// The creator edits the charter directly, before anyone else joins.
    pub fn charter_edit(&self, sel: &str, req: &ProposeRequest) -> Result<CharterView, NodeError> {
        let group = {
            let docs = self.lock();
            let group = self.resolve(&docs.groups, sel)?;
            let gov = self.governance(&docs, &group)?;
            if gov.creator != self.member() {
                return Err(invalid(
                    "only the group's creator edits the charter directly; others propose",
                ));
            }
            if docs
                .groups
                .get(&group)
                .is_some_and(|d| d.ever_members().iter().any(|m| *m != gov.creator))
            {
                return Err(invalid(
                    "members have joined: the charter now changes by proposals and votes",
                ));
            }
            let action = self.resolve_request(&docs, &gov, req)?;
            if !action.is_charter_edit() {
                return Err(invalid(
                    "a direct edit changes only the charter's articles and rules; anything else is proposed and voted on",
                ));
            }
            let body = RecordBody::CharterEdit(governance::CharterEdit {
                action,
                at_ms: self.now_ms(),
            });
            drop(docs);
            self.write_group_record(group, |_| Ok(body))?;
            group
        };
        self.charter(&group.to_hex())
    }

    /// Cast (or change) this member's vote on a proposal, given by id or a
    /// unique start of one.
    pub fn vote(&self, proposal_sel: &str, req: &VoteRequest) -> Result<ProposalView, NodeError> {
        let choice = req.choice;
        let me = self.member();
        let now = self.now_ms();
        let (group, proposal, for_group) = {
            let docs = self.lock();
            let (group, gov, p) = self.find_proposal(&docs, proposal_sel)?;
            if p.outcome == Outcome::Deciding {
                return Err(invalid(format!(
                    "voting on proposal {} is over; its decision is being recorded",
                    p.id.short()
                )));
            }
            if !p.is_open() {
                let when = p.decided_at_ms.unwrap_or(p.deadline_ms);
                return Err(invalid(format!(
                    "proposal {} was decided ({:?}) {} ago; votes no longer count",
                    p.id.short(),
                    p.outcome,
                    ago(now, when)
                )));
            }
            if now > p.deadline_ms {
                return Err(invalid(format!(
                    "voting on proposal {} closed at its deadline",
                    p.id.short()
                )));
            }
            let for_group = match req.for_group.as_deref() {
                None => {
                    if !gov.is_member(&me) {
                        return Err(invalid(
                            "you are not on this group's roll, so you cannot vote",
                        ));
                    }
                    None
                }
                Some(sel) => {
                    let child = self.group_id(&docs, sel)?;
                    if !gov.children.contains(&child) {
                        return Err(invalid(format!(
                            "group {} is not in this tier, so no delegate votes for it here",
                            child.short()
                        )));
                    }
                    let delegate = gov.child_delegations.get(&child).is_some_and(|d| {
                        d.delegation.delegates.contains(&me)
                            && d.delegation.from_ms <= now
                            && now < d.delegation.until_ms
                    });
                    if !delegate {
                        return Err(invalid(format!(
                            "you are not a current delegate of group {} here",
                            child.short()
                        )));
                    }
                    Some(child)
                }
            };
            (group, p.id, for_group)
        };
        let body = RecordBody::Vote(Vote {
            proposal,
            choice,
            cast_at_ms: now,
            for_group,
        });
        self.write_group_record(group, |_| Ok(body))?;
        // A vote that settles this member's own proposal is decided at
        // once, as the running node's tick would.
        let due: Vec<governance::Decision> = {
            let docs = self.lock();
            let gov = self.governance(&docs, &group)?;
            decisions_due(&gov, &me, now)
                .filter(|d| d.proposal == proposal)
                .collect()
        };
        for d in due {
            self.write_group_record(group, |_| Ok(RecordBody::Decision(d)))?;
        }
        self.proposal_view(&group, &proposal)
    }

    /// Group `sel`'s proposals: open ones first, then the decided, newest
    /// first.
    pub fn proposals(&self, sel: &str) -> Result<ProposalsView, NodeError> {
        let docs = self.lock();
        let group = self.resolve(&docs.groups, sel)?;
        let gov = self.governance(&docs, &group)?;
        let group_name = Self::group_name(&docs, &group).unwrap_or_default();
        let mut proposals: Vec<ProposalView> = gov
            .proposals
            .iter()
            .map(|p| ProposalView {
                group,
                group_name: group_name.clone(),
                summary: p.proposal.action.describe(),
                state: (**p).clone(),
            })
            .collect();
        proposals.sort_by_key(|p| {
            (
                !p.state.is_open(),
                std::cmp::Reverse(p.state.proposal.submitted_at_ms),
            )
        });
        Ok(ProposalsView {
            group,
            group_name,
            proposals,
            lotteries: gov.lotteries,
            now_ms: gov.now_ms,
        })
    }

    /// Leave group `sel`, by this member's own signed record. Without
    /// `confirm`, only says what would happen to the balance.
    pub fn leave(&self, sel: &str, confirm: bool) -> Result<LeaveView, NodeError> {
        let me = self.member();
        let (group, view) = {
            let docs = self.lock();
            let group = self.resolve(&docs.groups, sel)?;
            let gov = self.governance(&docs, &group)?;
            if !gov.is_member(&me) {
                return Err(invalid("you are not on this group's roll"));
            }
            let l = docs
                .ledgers
                .get(&group)
                .ok_or_else(|| NodeError::not_found(Lookup::Group, sel))?;
            let balance = l.ledger.balance(&Account::Member(me));
            let unit = l.ledger.unit().to_string();
            let consequence = match balance {
                b if b > 0 && gov.rules.exit_credit_to_commons => {
                    format!(
                        "your balance of {b} {unit} is paid into the group's commons as you leave"
                    )
                }
                b if b > 0 => format!("your balance of {b} {unit} stays on the books, frozen"),
                b if b < 0 => {
                    format!("your balance of {b} {unit} stays on the books as owed to the group")
                }
                _ => "your balance is zero: nothing to settle".to_string(),
            };
            let view = LeaveView {
                group,
                group_name: Self::group_name(&docs, &group).unwrap_or_default(),
                balance,
                unit,
                consequence,
                done: false,
            };
            if confirm && balance > 0 && gov.rules.exit_credit_to_commons {
                drop(docs);
                let amount = u64::try_from(balance).map_err(|_| invalid("balance too large"))?;
                self.make_payment(
                    group,
                    Account::Member(me),
                    Account::Commons,
                    amount,
                    "balance given to the commons on leaving",
                    None,
                )?;
            }
            (group, view)
        };
        if !confirm {
            return Ok(view);
        }
        let body = RecordBody::Exit(Exit {
            member: me,
            at_ms: self.now_ms(),
        });
        self.write_group_record(group, |_| Ok(body))?;
        tracing::info!(group = %group.short(), "left the group");
        Ok(LeaveView { done: true, ..view })
    }

    /// Treaties of group `sel`, or of every group held.
    pub fn treaties(&self, sel: Option<&str>) -> Result<Vec<TreatyView>, NodeError> {
        let docs = self.lock();
        let groups: Vec<GroupId> = match sel {
            Some(s) => vec![self.resolve(&docs.groups, s)?],
            None => docs.groups.keys().copied().collect(),
        };
        let mut out = Vec::new();
        for group in groups {
            let gov = self.governance(&docs, &group)?;
            let group_name = Self::group_name(&docs, &group).unwrap_or_default();
            for t in gov.treaties.values() {
                out.push(TreatyView {
                    group,
                    group_name: group_name.clone(),
                    other_name: Self::group_name(&docs, &t.other),
                    days_left: gov.days_left(t.end_ms()),
                    state: t.clone(),
                });
            }
        }
        Ok(out)
    }

    /// One treaty by id or a unique start of one, as each group held sees it.
    pub fn treaty(&self, sel: &str) -> Result<Vec<TreatyView>, NodeError> {
        let sel = sel.trim().to_ascii_lowercase();
        let found: Vec<TreatyView> = self
            .treaties(None)?
            .into_iter()
            .filter(|t| sel.len() >= 4 && t.state.id.to_hex().starts_with(&sel))
            .collect();
        let ids: BTreeSet<Hash32> = found.iter().map(|t| t.state.id).collect();
        match ids.len() {
            0 => Err(NodeError::not_found(Lookup::Treaty, sel)),
            1 => Ok(found),
            _ => Err(NodeError::ambiguous(
                Lookup::Treaty,
                sel,
                ids.iter().map(Hash32::short).collect(),
            )),
        }
    }

    fn find_proposal(
        &self,
        docs: &State,
        sel: &str,
    ) -> Result<(GroupId, Governance, ProposalState), NodeError> {
        let sel = sel.trim().to_ascii_lowercase();
        if sel.len() < 4 {
            return Err(invalid("give at least 4 characters of the proposal id"));
        }
        let mut found = Vec::new();
        for group in docs.groups.keys() {
            let gov = self.governance(docs, group)?;
            if let Some(p) = gov
                .proposals
                .iter()
                .find(|p| p.id.to_hex().starts_with(&sel))
                .map(|p| (**p).clone())
            {
                found.push((*group, gov, p));
            }
        }
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err(NodeError::not_found(Lookup::Proposal, sel)),
            _ => Err(NodeError::ambiguous(
                Lookup::Proposal,
                sel,
                found.iter().map(|(_, _, p)| p.id.short()).collect(),
            )),
        }
    }

    fn proposal_view(&self, group: &GroupId, id: &ProposalId) -> Result<ProposalView, NodeError> {
        let docs = self.lock();
        let gov = self.governance(&docs, group)?;
        let p = gov
            .proposal(id)
            .ok_or_else(|| invalid("the proposal went missing"))?;
        Ok(ProposalView {
            group: *group,
            group_name: Self::group_name(&docs, group).unwrap_or_default(),
            summary: p.proposal.action.describe(),
            state: p.clone(),
        })
    }

    /// Resolve what a member asks for against the group as it stands:
    /// members, groups and treaties named by selectors, articles that
    /// exist, what the commons holds. Refusals speak of the group.
    fn resolve_request(
        &self,
        docs: &State,
        gov: &Governance,
        req: &ProposeRequest,
    ) -> Result<Action, NodeError> {
        let action = match req {
            ProposeRequest::AddArticle { title, text } => Action::AddArticle {
                title: title.clone().unwrap_or_else(|| first_words(text)),
                text: text.clone(),
            },
            ProposeRequest::AmendArticle { article, text } => Action::AmendArticle {
                article: article_in(gov, *article)?,
                text: text.clone(),
            },
            ProposeRequest::RepealArticle { article } => Action::RepealArticle {
                article: article_in(gov, *article)?,
            },
            ProposeRequest::ReaffirmArticle { article } => Action::ReaffirmArticle {
                article: article_in(gov, *article)?,
            },
            ProposeRequest::SetRule { rule, value } => {
                governance::set_rule(&gov.rules, rule, value)?;
                Action::SetRule {
                    rule: rule.clone(),
                    value: value.clone(),
                }
            }
            ProposeRequest::AdmitMember { member } => Action::AdmitMember {
                member: entering(gov, member)?,
            },
            ProposeRequest::RemoveMember { member } => Action::RemoveMember {
                member: on_roll(gov, member)?,
            },
            ProposeRequest::SetLimits {
                member,
                floor,
                ceiling,
            } => Action::SetLimits {
                member: member.as_deref().map(|m| on_roll(gov, m)).transpose()?,
                floor: *floor,
                ceiling: *ceiling,
            },
            ProposeRequest::Payout {
                member,
                amount,
                memo,
            } => payout(docs, gov, member, *amount, memo)?,
            ProposeRequest::JoinParent { group } => Action::JoinParent {
                parent: self.group_id(docs, group)?,
            },
            ProposeRequest::LeaveParent => {
                if gov.parent.is_none() {
                    return Err(invalid("this group has no parent tier"));
                }
                Action::LeaveParent
            }
            ProposeRequest::AdmitGroup { group } => Action::AdmitGroup {
                group: self.group_id(docs, group)?,
            },
            ProposeRequest::RemoveGroup { group } => {
                let group = self.group_id(docs, group)?;
                if !gov.children.contains(&group) {
                    return Err(invalid("that group is not in this tier"));
                }
                Action::RemoveGroup { group }
            }
            ProposeRequest::SetDelegates { members } => delegates(gov, members)?,
            ProposeRequest::RatifyTreaty { treaty } => Action::RatifyTreaty {
                treaty: self.known_treaty(docs, treaty)?,
            },
            ProposeRequest::NewTreaty {
                group,
                treaty_kind,
                duration_secs,
                terms,
            } => self.new_treaty(docs, gov, group, *treaty_kind, *duration_secs, terms)?,
            ProposeRequest::RenewTreaty {
                treaty,
                duration_secs,
            } => renewal(treaty_in(gov, treaty)?, *duration_secs)?,
            ProposeRequest::EndTreaty { treaty } => {
                let t = treaty_in(gov, treaty)?;
                if t.status == TreatyStatus::Ended {
                    return Err(invalid("that treaty has ended already"));
                }
                Action::EndTreaty { treaty: t.id }
            }
            ProposeRequest::Lottery { role, count } => Action::Lottery {
                role: role.clone(),
                count: *count,
            },
        };
        governance::check_action(&action, &gov.group)?;
        Ok(action)
    }

    /// A new treaty with group `other`, from now for `duration_secs`.
    fn new_treaty(
        &self,
        docs: &State,
        gov: &Governance,
        other: &str,
        kind: TreatyKind,
        duration_secs: u64,
        terms: &str,
    ) -> Result<Action, NodeError> {
        let start = self.now_ms();
        let mut parties = [gov.group, self.group_id(docs, other)?];
        parties.sort();
        Ok(Action::RatifyTreaty {
            treaty: Treaty {
                parties,
                kind,
                terms: terms.to_string(),
                start_ms: start,
                end_ms: start.saturating_add(duration_secs.saturating_mul(1000)),
            },
        })
    }

    /// A treaty by id (or a unique start) from any group held: ratified
    /// or proposed there, or carried over from its other party.
    fn known_treaty(&self, docs: &State, sel: &str) -> Result<Treaty, NodeError> {
        let sel = sel.to_ascii_lowercase();
        let mut found: BTreeMap<Hash32, Treaty> = BTreeMap::new();
        let now = self.now_ms();
        for doc in docs.groups.values() {
            if let Some(gov) = governance_of(doc, now) {
                for t in gov.treaties.values() {
                    found.insert(t.id, t.treaty.clone());
                }
                for p in &gov.proposals {
                    if let Action::RatifyTreaty { treaty } = &p.proposal.action {
                        found.insert(treaty.id(), treaty.clone());
                    }
                }
            }
        }
        let matching: Vec<Treaty> = found
            .into_iter()
            .filter(|(id, _)| sel.len() >= 4 && id.to_hex().starts_with(&sel))
            .map(|(_, t)| t)
            .collect();
        match matching.len() {
            1 => Ok(matching.into_iter().next().expect("one")),
            0 => Err(invalid(format!(
                "no treaty {sel:?} is known here, in any group this node holds"
            ))),
            _ => Err(invalid(format!("{sel:?} matches several treaties"))),
        }
    }
}

/// An article's title when none is given: the text's first six words.
fn first_words(text: &str) -> String {
    text.split_whitespace()
        .take(6)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Article `n` of the charter, if it stands.
fn article_in(gov: &Governance, n: u32) -> Result<u32, NodeError> {
    if gov.repealed.contains(&n) {
        return Err(invalid(format!("article {n} was repealed")));
    }
    if !gov.articles.iter().any(|x| x.number == n) {
        return Err(invalid(format!("this group's charter has no article {n}")));
    }
    Ok(n)
}

/// A member on the group's roll.
fn on_roll(gov: &Governance, sel: &str) -> Result<MemberId, NodeError> {
    member_among(gov.roll.keys(), sel)
}

/// Someone waiting to enter the group, or a former member.
fn entering(gov: &Governance, sel: &str) -> Result<MemberId, NodeError> {
    member_among(gov.awaiting_entry.iter().chain(gov.former.keys()), sel).map_err(|_| {
        invalid(format!(
            "{sel:?} is not waiting to enter (they need an invite ticket first) nor a former member"
        ))
    })
}

/// A treaty of this group, by a unique start of its id (4+ characters).
fn treaty_in<'g>(gov: &'g Governance, sel: &str) -> Result<&'g TreatyState, NodeError> {
    let sel = sel.to_ascii_lowercase();
    let found: Vec<&TreatyState> = gov
        .treaties
        .values()
        .filter(|t| sel.len() >= 4 && t.id.to_hex().starts_with(&sel))
        .collect();
    match found.as_slice() {
        [one] => Ok(one),
        [] => Err(invalid(format!("this group has no treaty {sel:?}"))),
        _ => Err(invalid(format!("{sel:?} matches several treaties"))),
    }
}

/// A payout the commons can afford, to a member on the roll.
fn payout(
    docs: &State,
    gov: &Governance,
    member: &str,
    amount: u64,
    memo: &str,
) -> Result<Action, NodeError> {
    let to = Account::Member(on_roll(gov, member)?);
    let held = docs
        .ledgers
        .get(&gov.group)
        .map_or(0, |l| l.ledger.balance(&Account::Commons));
    if i128::from(amount) > held {
        return Err(invalid(format!(
            "the commons holds {held}; it cannot pay out {amount}"
        )));
    }
    Ok(Action::Payout {
        to,
        amount,
        memo: memo.to_string(),
    })
}

/// Delegates to the parent tier, from the roll.
fn delegates(gov: &Governance, members: &[String]) -> Result<Action, NodeError> {
    if gov.parent.is_none() {
        return Err(invalid(
            "this group has no parent tier to send delegates to (it must join one first)",
        ));
    }
    if members.is_empty() {
        return Err(invalid("name at least one delegate"));
    }
    let delegates = members
        .iter()
        .map(|m| on_roll(gov, m))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Action::SetDelegates { delegates })
}

/// A treaty renewed for `duration_secs` past its end, while it holds.
fn renewal(t: &TreatyState, duration_secs: u64) -> Result<Action, NodeError> {
    let over = match t.status {
        TreatyStatus::Ended => "ended",
        TreatyStatus::Expired => "expired",
        _ => {
            return Ok(Action::RenewTreaty {
                treaty: t.id,
                end_ms: t
                    .end_ms()
                    .saturating_add(duration_secs.saturating_mul(1000)),
            })
        }
    };
    Err(invalid(format!(
        "treaty {} has {over}; it cannot be renewed (ratify a new one)",
        t.id.short()
    )))
}

fn ago(now: u64, then: u64) -> String {
    humantime::format_duration(std::time::Duration::from_secs(
        now.saturating_sub(then) / 1000,
    ))
    .to_string()
}

impl Node {
    /// Start a draft proposal in group `sel`: its text (an article's, a
    /// new treaty's terms) is what members edit together; the rest is
    /// fixed.
    pub fn draft_new(&self, sel: &str, req: &ProposeRequest) -> Result<Draft, NodeError> {
        let (kind, fixed, text) = req.draft_words().ok_or_else(|| {
            invalid("drafts are for texts: a new or amended article, or a new treaty's terms")
        })?;
        let group = {
            let docs = self.lock();
            let group = self.resolve(&docs.groups, sel)?;
            let gov = self.governance(&docs, &group)?;
            // The finished proposal must make sense; check it now.
            self.resolve_request(&docs, &gov, req)?;
            group
        };
        let id = hex::encode(rand::random::<[u8; 6]>());
        self.write_group_change(group, |doc, w, now| {
            doc.create_draft(w, &id, kind, &fixed, &text, now)
        })?;
        self.draft(&group, &id)
    }

    /// Replace a draft's text; concurrent edits by others merge.
    pub fn draft_edit(&self, sel: &str, id: &str, text: &str) -> Result<Draft, NodeError> {
        let group = self.resolve(&self.lock().groups, sel)?;
        self.write_group_change(group, |doc, w, now| doc.edit_draft(w, id, text, now))?;
        self.draft(&group, id)
    }

    /// Group `sel`'s drafts.
    pub fn drafts(&self, sel: &str) -> Result<Vec<Draft>, NodeError> {
        self.with_doc(sel, |doc| Ok(doc.drafts()))
    }

    /// Submit a draft: its text as it stands becomes a frozen proposal.
    pub fn draft_submit(&self, sel: &str, id: &str) -> Result<ProposalView, NodeError> {
        let group = self.resolve(&self.lock().groups, sel)?;
        let draft = self.draft(&group, id)?;
        if let Some(p) = &draft.submitted {
            return Err(invalid(format!(
                "this draft was submitted already as proposal {p}"
            )));
        }
        let view = self.propose(&group.to_hex(), &draft.request()?)?;
        let proposal = view.state.id.to_hex();
        self.write_group_change(group, |doc, w, now| {
            doc.mark_draft_submitted(w, id, &proposal, now)
        })?;
        Ok(view)
    }

    fn draft(&self, group: &GroupId, id: &str) -> Result<Draft, NodeError> {
        self.with_doc(&group.to_hex(), |doc| {
            doc.drafts()
                .into_iter()
                .find(|d| d.id == id)
                .ok_or_else(|| invalid(format!("no draft {id:?} in this group")))
        })
    }
}
