//! Governance: proposals and votes, entry and exit, revision cycles, nested
//! tiers with delegates, treaties that lapse unless renewed, lotteries.
//! Pure logic, no I/O; the clock is an argument.
//!
//! **The timeline.** Every governance record carries the time its author's
//! node signed it. The state of a group at a moment is a pure function of
//! its records and that moment ([`Governance::at`]): the records are put on
//! one timeline (admissions, exits, founders' edits, proposals, and the
//! decisions that follow from them), ordered by (time, kind, id), and
//! replayed. Two nodes holding the same records compute the same charter,
//! roll, tallies and outcomes, whatever order the records reached them in.
//!
//! **A proposal** is judged by the rules and the roll in force at its
//! submission (the eligible seats: the members, plus one seat per admitted
//! child group, cast by its delegates). Each seat's last vote counts. It is
//! decided as soon as no seat still to vote can change the outcome (every
//! seat has voted, or enough have), at the latest at its deadline
//! (submission + voting period).
//!
//! **A decision is a signed record.** A vote's time is its author's word,
//! and clocks are wrong, so no node decides a proposal from the votes it
//! happens to hold: once voting is over by its clock, the proposer's node
//! (or any member's, after [`DECISION_GRACE_MS`]) signs a [`Decision`]
//! naming the votes it counted. Every node recounts exactly those votes and
//! ignores a decision that does not match. Until one is held the proposal
//! is [`Outcome::Deciding`] and nothing takes effect; once one is, votes
//! not named in it count for nothing, and the engine refuses a vote that
//! has a decision on its proposal in its causal past. A decision by the
//! proposer, when one is held, is the one in force; another member's
//! counts only if it claims a time [`DECISION_GRACE_MS`] after voting was
//! over and none by the proposer is held. Decisions in force side by side
//! (the proposer's two devices, or fallbacks of two members) are counted
//! together: the votes named by any of them.
//!
//! **Records the engine checks** (the same on every node, from the record
//! alone or the records it names): a proposal's action is well formed; a
//! vote names a proposal of the group; an exit is signed by the member who
//! leaves; a founders' edit is signed by the creator; a delegation is signed
//! by one of the delegates; the engine also refuses any record whose author
//! is off the roll at its causal past (a vote cast after one's own exit).
//! What depends on the timeline (a vote after the deadline, for a group the
//! parent never admitted, an admission by someone off the roll or with a
//! used ticket) is kept, counts for nothing, and is listed with the reason
//! where there is a list.
//!
//! **Across groups** (a child's delegates in its parent, the other party's
//! ratification of a treaty) facts are carried by members of both groups:
//! their node reads the decision in the other group's records and signs a
//! [`Delegation`] or [`Counterpart`] into this one, citing the other
//! group's signed proposal and decision and the admissions of their
//! signers ([`DecisionProof`]). A node that holds only this group checks
//! that proof, so nobody who never was a member of the other group can
//! speak for it (what the proof cannot show is in [`crate::proof`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use nestwork_core::{encoding, GroupId, Hash32, MemberId, ProposalId, SignedRecord};
use serde::{Deserialize, Serialize};

use crate::charter::{check_rules, MAX_ARTICLES, MAX_ARTICLE_TEXT_CHARS, MAX_ARTICLE_TITLE_CHARS};
use crate::error::{broken, RuleError};
use crate::ledger::{Account, MAX_AMOUNT, MAX_LIMIT, MAX_MEMO_CHARS};
use crate::proof::{DecisionProof, MemberProof};
pub use crate::record::governance::{
    Action, CharterEdit, Choice, Counterpart, Decision, Delegation, Exit, Proposal, Treaty,
    TreatyAct, TreatyKind, Vote,
};
use crate::record::{Charter, RecordBody, Rules};

mod timeline;
use timeline::Signed;
pub use timeline::Timeline;

/// Most votes a decision record may name.
pub const MAX_COUNTED_VOTES: usize = 10_000;
/// How long after voting is over other members' nodes wait for the
/// proposer's node to sign the decision before one of them signs it. A
/// decision another member signs counts only if it claims a time at least
/// this long after voting was over; longer than [`crate::rules::CLOCK_SKEW_MS`],
/// so a node holds such a decision back (it claims a time ahead of its
/// clock) until the proposer's, signed at once, has had minutes to arrive.
pub const DECISION_GRACE_MS: u64 = 10 * 60_000;
/// Most delegates a group may name.
pub const MAX_DELEGATES: usize = 32;
/// Longest treaty terms, in characters.
pub const MAX_TERMS_CHARS: usize = 8_000;
/// Longest lottery role name, in characters.
pub const MAX_ROLE_CHARS: usize = 80;
/// Most people a lottery may pick.
pub const MAX_LOTTERY_PICKS: u32 = 100;

const DAY_MS: u64 = 24 * 60 * 60 * 1000;

impl std::str::FromStr for Choice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "yes" => Ok(Choice::Yes),
            "no" => Ok(Choice::No),
            "abstain" => Ok(Choice::Abstain),
            other => Err(format!(
                "unknown vote {other:?}: expected yes, no or abstain"
            )),
        }
    }
}

impl TreatyKind {
    /// The name on the command line and in JSON.
    pub fn as_str(&self) -> &'static str {
        match self {
            TreatyKind::MutualAid => "mutual-aid",
            TreatyKind::Cooperation => "cooperation",
        }
    }
}

impl std::str::FromStr for TreatyKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "mutual-aid" => Ok(TreatyKind::MutualAid),
            "cooperation" => Ok(TreatyKind::Cooperation),
            other => Err(format!(
                "unknown treaty kind {other:?}: expected mutual-aid or cooperation"
            )),
        }
    }
}

impl Treaty {
    /// The treaty's id: the hash of its canonical bytes.
    pub fn id(&self) -> Hash32 {
        Hash32::of_parts(&[b"nestwork/treaty/v1", &encoding::encode(self)])
    }

    /// The party that is not `group`.
    pub fn other(&self, group: &GroupId) -> GroupId {
        if self.parties[0] == *group {
            self.parties[1]
        } else {
            self.parties[0]
        }
    }
}

impl Action {
    /// The kind's name, as on the command line.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Action::AddArticle { .. } => "add-article",
            Action::AmendArticle { .. } => "amend-article",
            Action::RepealArticle { .. } => "repeal-article",
            Action::ReaffirmArticle { .. } => "reaffirm-article",
            Action::SetRule { .. } => "set-rule",
            Action::AdmitMember { .. } => "admit-member",
            Action::RemoveMember { .. } => "remove-member",
            Action::SetLimits { .. } => "set-limits",
            Action::Payout { .. } => "payout",
            Action::JoinParent { .. } => "join-parent",
            Action::LeaveParent => "leave-parent",
            Action::AdmitGroup { .. } => "admit-group",
            Action::RemoveGroup { .. } => "remove-group",
            Action::SetDelegates { .. } => "set-delegates",
            Action::RatifyTreaty { .. } => "ratify-treaty",
            Action::RenewTreaty { .. } => "renew-treaty",
            Action::EndTreaty { .. } => "end-treaty",
            Action::Lottery { .. } => "lottery",
        }
    }

    /// Whether it changes only the charter's text and rules (what the
    /// founders may edit directly before anyone joins).
    pub fn is_charter_edit(&self) -> bool {
        matches!(
            self,
            Action::AddArticle { .. }
                | Action::AmendArticle { .. }
                | Action::RepealArticle { .. }
                | Action::SetRule { .. }
        )
    }

    /// A one-line description for people.
    pub fn describe(&self) -> String {
        match self {
            Action::AddArticle { title, .. } => format!("add article \"{title}\""),
            Action::AmendArticle { article, .. } => format!("amend article {article}"),
            Action::RepealArticle { article } => format!("repeal article {article}"),
            Action::ReaffirmArticle { article } => format!("reaffirm article {article}"),
            Action::SetRule { rule, value } => format!("set rule {rule} to {value}"),
            Action::AdmitMember { member } => format!("admit {member}"),
            Action::RemoveMember { member } => format!("remove {member}"),
            Action::SetLimits {
                member,
                floor,
                ceiling,
            } => match member {
                Some(m) => format!("limits of {m}: floor {floor}, ceiling {ceiling}"),
                None => format!("default limits: floor {floor}, ceiling {ceiling}"),
            },
            Action::Payout { to, amount, memo } => {
                format!("pay {amount} out of the commons to {to} ({memo})")
            }
            Action::JoinParent { parent } => format!("join parent tier {}", parent.short()),
            Action::LeaveParent => "leave the parent tier".to_string(),
            Action::AdmitGroup { group } => format!("admit group {} into this tier", group.short()),
            Action::RemoveGroup { group } => {
                format!("remove group {} from this tier", group.short())
            }
            Action::SetDelegates { delegates } => format!(
                "delegates: {}",
                delegates
                    .iter()
                    .map(MemberId::short)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Action::RatifyTreaty { treaty } => format!(
                "ratify {} treaty {} with {}",
                treaty.kind.as_str(),
                treaty.id().short(),
                treaty.parties.map(|p| p.short()).join(" and ")
            ),
            Action::RenewTreaty { treaty, .. } => format!("renew treaty {}", treaty.short()),
            Action::EndTreaty { treaty } => format!("end treaty {}", treaty.short()),
            Action::Lottery { role, count } => format!("pick {count} by lot as {role}"),
        }
    }
}

/// The names [`Action::SetRule`] accepts.
pub const RULE_NAMES: &[&str] = &[
    "quorum_percent",
    "approval_percent",
    "voting_period",
    "revision_cycle",
    "revision_share_percent",
    "distress_escalation",
    "entry_needs_vote",
    "exit_credit_to_commons",
];

/// Apply `rule = value` to `rules`, checked.
pub fn set_rule(rules: &Rules, rule: &str, value: &str) -> Result<Rules, RuleError> {
    let mut r = rules.clone();
    let percent = |v: &str| -> Result<u8, RuleError> {
        v.trim_end_matches('%')
            .parse::<u8>()
            .map_err(|_| RuleError(format!("{rule} must be a share from 0 to 100, not {v:?}")))
    };
    let secs = |v: &str| -> Result<u64, RuleError> {
        if let Ok(n) = v.parse::<u64>() {
            return Ok(n);
        }
        humantime::parse_duration(v)
            .map(|d| d.as_secs())
            .map_err(|_| {
                RuleError(format!(
                    "{rule} must be a duration such as 7days or 30m, not {v:?}"
                ))
            })
    };
    let flag = |v: &str| -> Result<bool, RuleError> {
        v.parse::<bool>()
            .map_err(|_| RuleError(format!("{rule} must be true or false, not {v:?}")))
    };
    match rule {
        "quorum_percent" => r.quorum_percent = percent(value)?,
        "approval_percent" => r.approval_percent = percent(value)?,
        "voting_period" => r.voting_period_secs = secs(value)?,
        "revision_cycle" => r.revision_cycle_secs = secs(value)?,
        "revision_share_percent" => r.revision_share_percent = percent(value)?,
        "distress_escalation" => r.distress_escalation_secs = secs(value)?,
        "distress_per_hour" => {
            // Every node checks the rate against the member's chain of
            // signals, with one number for the group's whole life.
            return broken("distress_per_hour is fixed when a group is founded");
        }
        "entry_needs_vote" => r.entry_needs_vote = flag(value)?,
        "exit_credit_to_commons" => r.exit_credit_to_commons = flag(value)?,
        "default_credit_floor" | "default_credit_ceiling" => return broken(
            "credit limits are set with a set-limits proposal (set-limits default FLOOR CEILING)",
        ),
        other => {
            return broken(format!(
                "unknown rule {other:?}; the rules are {}",
                RULE_NAMES.join(", ")
            ))
        }
    }
    check_rules(&r)?;
    Ok(r)
}

fn check_text(what: &str, text: &str, max: usize) -> Result<(), RuleError> {
    if text.trim().is_empty() {
        return broken(format!("the {what} is empty"));
    }
    let n = text.chars().count();
    if n > max {
        return broken(format!("the {what} is {n} characters; the limit is {max}"));
    }
    Ok(())
}

/// Check an action's shape (everything that does not depend on the
/// group's state). `group` is the group it is proposed in.
pub fn check_action(action: &Action, group: &GroupId) -> Result<(), RuleError> {
    match action {
        Action::AddArticle { title, text } => {
            check_text("article title", title, MAX_ARTICLE_TITLE_CHARS)?;
            check_text("article text", text, MAX_ARTICLE_TEXT_CHARS)
        }
        Action::AmendArticle { article, text } => {
            check_article_number(*article)?;
            check_text("article text", text, MAX_ARTICLE_TEXT_CHARS)
        }
        Action::RepealArticle { article } | Action::ReaffirmArticle { article } => {
            check_article_number(*article)
        }
        Action::SetRule { rule, value } => set_rule(&Rules::default(), rule, value).map(|_| ()),
        Action::AdmitMember { .. } | Action::RemoveMember { .. } | Action::LeaveParent => Ok(()),
        Action::SetLimits { floor, ceiling, .. } => {
            if *floor > 0 || *floor < -MAX_LIMIT {
                return broken(format!("a floor must lie between -{MAX_LIMIT} and 0"));
            }
            if *ceiling < 0 || *ceiling > MAX_LIMIT {
                return broken(format!("a ceiling must lie between 0 and {MAX_LIMIT}"));
            }
            Ok(())
        }
        Action::Payout { to, amount, memo } => {
            if *to == Account::Commons {
                return broken("a payout goes from the commons to a member, not to the commons");
            }
            if *amount == 0 || *amount > MAX_AMOUNT {
                return broken(format!("a payout is 1 to {MAX_AMOUNT} units"));
            }
            if memo.chars().count() > MAX_MEMO_CHARS {
                return broken(format!("the memo is over {MAX_MEMO_CHARS} characters"));
            }
            Ok(())
        }
        Action::JoinParent { parent } => {
            if parent == group {
                return broken("a group cannot be its own parent");
            }
            Ok(())
        }
        Action::AdmitGroup { group: g } | Action::RemoveGroup { group: g } => {
            if g == group {
                return broken("a group cannot be its own child");
            }
            Ok(())
        }
        Action::SetDelegates { delegates } => {
            if delegates.is_empty() || delegates.len() > MAX_DELEGATES {
                return broken(format!("name 1 to {MAX_DELEGATES} delegates"));
            }
            let distinct: BTreeSet<_> = delegates.iter().collect();
            if distinct.len() != delegates.len() {
                return broken("a delegate is named twice");
            }
            Ok(())
        }
        Action::RatifyTreaty { treaty } => check_treaty(treaty, group),
        Action::RenewTreaty { .. } | Action::EndTreaty { .. } => Ok(()),
        Action::Lottery { role, count } => {
            check_text("role", role, MAX_ROLE_CHARS)?;
            if *count == 0 || *count > MAX_LOTTERY_PICKS {
                return broken(format!("a lottery picks 1 to {MAX_LOTTERY_PICKS} people"));
            }
            Ok(())
        }
    }
}

fn check_article_number(n: u32) -> Result<(), RuleError> {
    if n == 0 || n as usize > MAX_ARTICLES * 10 {
        return broken(format!("there is no article {n}"));
    }
    Ok(())
}

/// A treaty's shape: two different parties in order, one of them `group`,
/// terms, an end after its start.
pub fn check_treaty(t: &Treaty, group: &GroupId) -> Result<(), RuleError> {
    if t.parties[0] >= t.parties[1] {
        return broken("a treaty's two parties must be two different groups, in order");
    }
    if !t.parties.contains(group) {
        return broken("this group is not a party to the treaty");
    }
    check_text("treaty terms", &t.terms, MAX_TERMS_CHARS)?;
    if t.end_ms <= t.start_ms {
        return broken("a treaty must end after it starts");
    }
    Ok(())
}

/// Check a governance record's shape as filed in `group` by `author`
/// (everything that does not depend on other records).
pub fn check_record(
    body: &RecordBody,
    group: &GroupId,
    author: &MemberId,
) -> Result<(), RuleError> {
    match body {
        RecordBody::Proposal(p) => check_action(&p.action, group),
        RecordBody::Vote(v) => match v.for_group {
            Some(g) if g == *group => broken("a group cannot vote for itself in its own tier"),
            _ => Ok(()),
        },
        RecordBody::Decision(d) => {
            if d.counted.len() > MAX_COUNTED_VOTES {
                return broken(format!(
                    "a decision names {} votes; the limit is {MAX_COUNTED_VOTES}",
                    d.counted.len()
                ));
            }
            if d.counted.windows(2).any(|w| w[0] >= w[1]) {
                return broken("a decision names its votes once each, in id order");
            }
            if d.signed_at_ms < d.decided_at_ms {
                return broken("a decision signed before the moment it says it was decided");
            }
            Ok(())
        }
        RecordBody::Exit(e) => {
            if e.member != *author {
                return broken(format!(
                    "an exit signed by {author} for {}: only the member who leaves can sign it",
                    e.member
                ));
            }
            Ok(())
        }
        RecordBody::CharterEdit(e) => {
            if !e.action.is_charter_edit() {
                return broken(format!(
                    "a founders' edit changes articles and rules only, not {}",
                    e.action.kind_name()
                ));
            }
            check_action(&e.action, group)
        }
        RecordBody::Delegation(d) => {
            if d.child == *group {
                return broken("a group cannot delegate to itself");
            }
            if d.delegates.is_empty() || d.delegates.len() > MAX_DELEGATES {
                return broken(format!("a delegation names 1 to {MAX_DELEGATES} delegates"));
            }
            if !d.delegates.contains(author) {
                return broken("a delegation must be filed by one of its delegates");
            }
            if d.until_ms <= d.from_ms {
                return broken("a delegation must end after it starts");
            }
            d.proof
                .check_cited("delegation", &d.child, &d.proposal, d.from_ms, |action| {
                    matches!(action, Action::SetDelegates { delegates } if *delegates == d.delegates)
                })
        }
        RecordBody::Counterpart(c) => {
            if c.group == *group {
                return broken("a treaty's counterpart is the other group, not this one");
            }
            if let TreatyAct::Ratified(t) = &c.act {
                check_treaty(t, group)?;
                if t.id() != c.treaty || !t.parties.contains(&c.group) {
                    return broken("the counterpart's treaty does not match");
                }
            }
            c.proof.check_cited(
                "treaty counterpart",
                &c.group,
                &c.proposal,
                c.at_ms,
                |action| match (action, &c.act) {
                    (Action::RatifyTreaty { treaty }, TreatyAct::Ratified(t)) => treaty == t,
                    (Action::RenewTreaty { treaty, end_ms }, TreatyAct::Renewed { end_ms: e }) => {
                        *treaty == c.treaty && end_ms == e
                    }
                    (Action::EndTreaty { treaty }, TreatyAct::Ended) => *treaty == c.treaty,
                    _ => false,
                },
            )
        }
        _ => Ok(()),
    }
}

/// One article as it stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArticleState {
    /// Its number (never reused).
    pub number: u32,
    /// Title.
    pub title: String,
    /// Ratified text.
    pub text: String,
    /// When it was last ratified, amended or reaffirmed.
    pub revised_at_ms: u64,
    /// Not revisited within one revision cycle.
    pub overdue: bool,
}

/// A seat in a vote: a member, or a child group through its delegates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Seat {
    /// A member's own seat.
    Member(MemberId),
    /// A child group's seat, cast by its delegates.
    Group(GroupId),
}

/// Where a proposal stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Votes may still change it.
    Open,
    /// Voting is over; no decision record is held here yet, so nothing
    /// takes effect.
    Deciding,
    /// Passed; in effect since its decision.
    Passed,
    /// Failed.
    Failed,
}

/// What a decided proposal did. In JSON it is the sentence a member reads
/// (`"in effect"`, ...), as it was when this was a string.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Effect {
    /// Passed and carried out.
    InEffect,
    /// Passed, but could not be carried out, and why (an article removed
    /// meanwhile, a member already gone, ...).
    NotCarriedOut(String),
    /// Failed at once: its proposer was not on the roll when submitting.
    ProposerOffRoll,
}

const IN_EFFECT: &str = "in effect";
const NOT_CARRIED_OUT: &str = "passed, but could not take effect: ";
const PROPOSER_OFF_ROLL: &str = "the proposer was not on the roll when submitting";

impl std::fmt::Display for Effect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Effect::InEffect => f.write_str(IN_EFFECT),
            Effect::NotCarriedOut(why) => write!(f, "{NOT_CARRIED_OUT}{why}"),
            Effect::ProposerOffRoll => f.write_str(PROPOSER_OFF_ROLL),
        }
    }
}

impl From<Effect> for String {
    fn from(e: Effect) -> String {
        e.to_string()
    }
}

impl TryFrom<String> for Effect {
    type Error = String;

    fn try_from(s: String) -> Result<Effect, String> {
        if s == IN_EFFECT {
            Ok(Effect::InEffect)
        } else if s == PROPOSER_OFF_ROLL {
            Ok(Effect::ProposerOffRoll)
        } else if let Some(why) = s.strip_prefix(NOT_CARRIED_OUT) {
            Ok(Effect::NotCarriedOut(why.to_string()))
        } else {
            Err(format!("not a proposal's effect: {s:?}"))
        }
    }
}

/// A vote that counts for nothing, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IgnoredVote {
    /// The vote record.
    pub vote: Hash32,
    /// Its signer.
    pub voter: MemberId,
    /// Why it does not count.
    pub reason: String,
}

/// A proposal with its tally.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposalState {
    /// The proposal's id.
    pub id: ProposalId,
    /// Who proposed it.
    pub proposer: MemberId,
    /// What it asks for.
    pub proposal: Proposal,
    /// Its deadline.
    pub deadline_ms: u64,
    /// Quorum and approval it is judged by (from the rules at submission).
    pub quorum_percent: u8,
    /// See `quorum_percent`.
    pub approval_percent: u8,
    /// How many seats may vote.
    pub seats: usize,
    /// Seats voting yes.
    pub yes: usize,
    /// Seats voting no.
    pub no: usize,
    /// Seats abstaining.
    pub abstain: usize,
    /// The seats' counted votes (a list in JSON, whose keys are strings).
    #[serde(with = "seat_map")]
    pub votes: BTreeMap<Seat, (Choice, Hash32)>,
    /// Open, passed or failed.
    pub outcome: Outcome,
    /// When it was decided (while deciding: when voting was over).
    pub decided_at_ms: Option<u64>,
    /// What it did, or why a passed proposal could not take effect.
    pub effect: Option<Effect>,
    /// Votes that count for nothing, with the reason.
    pub ignored: Vec<IgnoredVote>,
    /// The decision records in force (side by side, their votes count
    /// together).
    #[serde(default)]
    pub decisions: Vec<Hash32>,
    /// Decision records that count for nothing, with the reason.
    #[serde(default)]
    pub ignored_decisions: Vec<(Hash32, String)>,
}

mod seat_map {
    use super::{Choice, Hash32, Seat};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;

    type Votes = BTreeMap<Seat, (Choice, Hash32)>;

    pub fn serialize<S: Serializer>(votes: &Votes, s: S) -> Result<S::Ok, S::Error> {
        votes.iter().collect::<Vec<_>>().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Votes, D::Error> {
        Ok(Vec::<(Seat, (Choice, Hash32))>::deserialize(d)?
            .into_iter()
            .collect())
    }
}

/// Shared proposals, on the wire as plain ones.
mod shared_proposals {
    use super::{Arc, ProposalState};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        proposals: &[Arc<ProposalState>],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(proposals.iter().map(|p| &**p))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<Arc<ProposalState>>, D::Error> {
        Ok(Vec::<ProposalState>::deserialize(d)?
            .into_iter()
            .map(Arc::new)
            .collect())
    }
}

/// What became of a treaty, as this group sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TreatyStatus {
    /// Proposed here; not ratified by this group yet.
    Proposed,
    /// One party has ratified; waiting for the other.
    AwaitingOther,
    /// Ratified by both; not started yet.
    NotStarted,
    /// In force.
    Active,
    /// Its end passed without both parties renewing it.
    Expired,
    /// Ended by a party.
    Ended,
}

/// A treaty and where it stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreatyState {
    /// Its id.
    pub id: Hash32,
    /// The treaty.
    pub treaty: Treaty,
    /// The other party.
    pub other: GroupId,
    /// When this group ratified it.
    pub ratified_here_ms: Option<u64>,
    /// When the other party ratified it (as carried over).
    pub ratified_there_ms: Option<u64>,
    /// The end this group has agreed to.
    pub end_here_ms: u64,
    /// The end the other party has agreed to.
    pub end_there_ms: u64,
    /// When it was ended by a party, if it was.
    pub ended_ms: Option<u64>,
    /// Where it stands.
    pub status: TreatyStatus,
}

impl TreatyState {
    /// A treaty of `group`'s that neither party has ratified yet.
    fn new(treaty: &Treaty, group: &GroupId) -> TreatyState {
        TreatyState {
            id: treaty.id(),
            treaty: treaty.clone(),
            other: treaty.other(group),
            ratified_here_ms: None,
            ratified_there_ms: None,
            end_here_ms: treaty.end_ms,
            end_there_ms: treaty.end_ms,
            ended_ms: None,
            status: TreatyStatus::Proposed,
        }
    }

    /// The end in force: what both parties agreed to.
    pub fn end_ms(&self) -> u64 {
        self.end_here_ms.min(self.end_there_ms)
    }
}

/// A child group's delegates as this (parent) group knows them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelegationState {
    /// The delegation record.
    pub record: Hash32,
    /// The delegation.
    pub delegation: Delegation,
}

/// A lottery's pick.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LotteryPick {
    /// The proposal that called for it.
    pub proposal: Hash32,
    /// The role.
    pub role: String,
    /// The seed: the hash of the proposal and the votes that decided it.
    pub seed: Hash32,
    /// Who was picked, in order.
    pub picked: Vec<MemberId>,
}

/// A group's governance at one moment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Governance {
    /// The group.
    pub group: GroupId,
    /// When this state holds.
    pub now_ms: u64,
    /// The group's creator.
    pub creator: MemberId,
    /// When it was founded.
    pub created_at_ms: u64,
    /// Articles in force, by number.
    pub articles: Vec<ArticleState>,
    /// Numbers of repealed articles.
    pub repealed: Vec<u32>,
    /// The rules in force.
    pub rules: Rules,
    /// The roll: members and when they (last) joined.
    pub roll: BTreeMap<MemberId, u64>,
    /// Admitted by ticket, waiting for an entry vote.
    pub awaiting_entry: BTreeSet<MemberId>,
    /// Former members and when they left or were removed.
    pub former: BTreeMap<MemberId, u64>,
    /// The parent tier, if any.
    pub parent: Option<GroupId>,
    /// Child groups admitted into this tier.
    pub children: BTreeSet<GroupId>,
    /// This group's delegates in its parent, and until when.
    pub delegates: Option<(Vec<MemberId>, u64, ProposalId)>,
    /// Child groups' delegations filed here, newest per child.
    pub child_delegations: BTreeMap<GroupId, DelegationState>,
    /// Every proposal, oldest first.
    /// (Shared with the kept timeline they were judged in: a view copies
    /// no proposal.)
    #[serde(with = "shared_proposals")]
    pub proposals: Vec<Arc<ProposalState>>,
    /// Treaties this group is party to.
    pub treaties: BTreeMap<Hash32, TreatyState>,
    /// Lottery picks.
    pub lotteries: Vec<LotteryPick>,
    /// The current revision cycle (from 0) and when it started.
    pub cycle: (u64, u64),
    /// Articles revisited since the current cycle started.
    pub revisited_this_cycle: usize,
    /// How many articles the charter asks to revisit each cycle.
    pub revisit_per_cycle: usize,
    /// Founders' edits that did not take effect, and why.
    pub ignored_edits: Vec<(Hash32, String)>,
}

impl Governance {
    /// The governance of `group` at `now_ms`, from the group's genesis
    /// (`creator`, `created_at_ms`, `charter`) and its records
    /// (id, signer and decoded body, in any order), replayed from the
    /// start. A [`Timeline`] keeps the replay from one moment to the next.
    pub fn at<'r>(
        group: GroupId,
        creator: MemberId,
        created_at_ms: u64,
        charter: &Charter,
        parent: Option<GroupId>,
        records: impl IntoIterator<Item = (Hash32, MemberId, &'r RecordBody)>,
        now_ms: u64,
    ) -> Governance {
        let mut timeline = Timeline::new(group, creator, created_at_ms, charter, parent);
        for (id, author, body) in records {
            timeline.add(id, author, body);
        }
        timeline.from_start(now_ms)
    }

    /// Apply a decided action at `at`. `counted` are the votes that
    /// decided it (the lottery's seed).
    fn apply(
        &mut self,
        action: &Action,
        proposal: Hash32,
        at: u64,
        next_article: &mut u32,
        counted: &[Hash32],
    ) -> Result<(), String> {
        match action {
            Action::AddArticle { title, text } => {
                if self.articles.len() >= MAX_ARTICLES {
                    return Err(format!("the charter already has {MAX_ARTICLES} articles"));
                }
                self.articles.push(ArticleState {
                    number: *next_article,
                    title: title.clone(),
                    text: text.clone(),
                    revised_at_ms: at,
                    overdue: false,
                });
                *next_article += 1;
            }
            Action::AmendArticle { article, text } => {
                let a = self.article_mut(*article)?;
                a.text = text.clone();
                a.revised_at_ms = at;
            }
            Action::ReaffirmArticle { article } => self.article_mut(*article)?.revised_at_ms = at,
            Action::RepealArticle { article } => {
                self.article_mut(*article)?;
                self.articles.retain(|a| a.number != *article);
                self.repealed.push(*article);
            }
            Action::SetRule { rule, value } => {
                self.rules = set_rule(&self.rules, rule, value).map_err(|e| e.0)?;
            }
            Action::AdmitMember { member } => {
                if self.roll.contains_key(member) {
                    return Err("already a member".into());
                }
                self.awaiting_entry.remove(member);
                self.former.remove(member);
                self.roll.insert(*member, at);
            }
            Action::RemoveMember { member } => {
                if self.roll.remove(member).is_none() {
                    return Err("not a member".into());
                }
                self.former.insert(*member, at);
            }
            // Carried out on the ledger by the proposer's node.
            Action::SetLimits { .. } | Action::Payout { .. } => {}
            Action::JoinParent { parent } => self.parent = Some(*parent),
            Action::LeaveParent => self.parent = None,
            Action::AdmitGroup { group } => {
                self.children.insert(*group);
            }
            Action::RemoveGroup { group } => {
                if !self.children.remove(group) {
                    return Err("that group is not in this tier".into());
                }
            }
            Action::SetDelegates { delegates } => {
                if let Some(d) = delegates.iter().find(|d| !self.roll.contains_key(d)) {
                    return Err(format!("{d} is not a member"));
                }
                let until = at.saturating_add(self.rules.revision_cycle_secs.saturating_mul(1000));
                self.delegates = Some((delegates.clone(), until, ProposalId::from(proposal)));
            }
            Action::RatifyTreaty { .. } | Action::RenewTreaty { .. } | Action::EndTreaty { .. } => {
                self.apply_treaty(action, at)?
            }
            Action::Lottery { role, count } => self.draw_lottery(role, *count, proposal, counted),
        }
        Ok(())
    }

    /// Ratify, renew or end a treaty at `at` (any other action is left alone).
    fn apply_treaty(&mut self, action: &Action, at: u64) -> Result<(), String> {
        match action {
            Action::RatifyTreaty { treaty } => {
                let id = treaty.id();
                if at >= treaty.end_ms {
                    return Err("the treaty's end has passed".into());
                }
                let group = self.group;
                let t = self
                    .treaties
                    .entry(id)
                    .or_insert_with(|| TreatyState::new(treaty, &group));
                t.ratified_here_ms.get_or_insert(at);
            }
            Action::RenewTreaty { treaty, end_ms } => {
                let t = self
                    .treaties
                    .get_mut(treaty)
                    .ok_or("this group has not ratified that treaty")?;
                if t.ended_ms.is_some() || at >= t.end_ms() {
                    return Err("the treaty has lapsed; a new treaty is needed".into());
                }
                t.end_here_ms = t.end_here_ms.max(*end_ms);
            }
            Action::EndTreaty { treaty } => {
                let t = self
                    .treaties
                    .get_mut(treaty)
                    .ok_or("this group has not ratified that treaty")?;
                t.ended_ms.get_or_insert(at);
            }
            _ => {}
        }
        Ok(())
    }

    /// Draw `count` members for `role`, the same on every node: the
    /// members ordered by a hash of each with a seed made of the proposal
    /// and the votes that decided it (`counted`).
    fn draw_lottery(&mut self, role: &str, count: u32, proposal: Hash32, counted: &[Hash32]) {
        let mut ids: Vec<Hash32> = counted.to_vec();
        ids.sort();
        let mut parts: Vec<&[u8]> = vec![b"nestwork/lottery/v1", &proposal.0];
        parts.extend(ids.iter().map(|h| h.0.as_slice()));
        let seed = Hash32::of_parts(&parts);
        let mut pool: Vec<(Hash32, MemberId)> = self
            .roll
            .keys()
            .map(|m| (Hash32::of_parts(&[&seed.0, &m.0]), *m))
            .collect();
        pool.sort();
        self.lotteries.push(LotteryPick {
            proposal,
            role: role.to_string(),
            seed,
            picked: pool
                .into_iter()
                .take(count as usize)
                .map(|(_, m)| m)
                .collect(),
        });
    }

    fn article_mut(&mut self, number: u32) -> Result<&mut ArticleState, String> {
        if self.repealed.contains(&number) {
            return Err(format!("article {number} was repealed"));
        }
        self.articles
            .iter_mut()
            .find(|a| a.number == number)
            .ok_or_else(|| format!("there is no article {number}"))
    }

    /// Delegations filed here by child groups' delegates: the newest per
    /// child that is in this tier.
    fn file_delegations<'a>(&mut self, delegations: impl Iterator<Item = &'a Signed<Delegation>>) {
        for d in delegations {
            if !self.children.contains(&d.body.child) || d.body.from_ms > self.now_ms {
                continue;
            }
            let newer = self
                .child_delegations
                .get(&d.body.child)
                .is_none_or(|old| (old.delegation.from_ms, old.record) < (d.body.from_ms, d.id));
            if newer {
                self.child_delegations.insert(
                    d.body.child,
                    DelegationState {
                        record: d.id,
                        delegation: d.body.clone(),
                    },
                );
            }
        }
    }

    /// The other parties' decisions, carried over, in time order.
    fn file_counterparts<'a>(
        &mut self,
        counterparts: impl Iterator<Item = &'a Signed<Counterpart>>,
    ) {
        let mut ordered: Vec<&Signed<Counterpart>> = counterparts
            .filter(|c| c.body.at_ms <= self.now_ms)
            .collect();
        ordered.sort_by_key(|c| (c.body.at_ms, c.id));
        for c in ordered {
            let Some(t) = self.treaties.get_mut(&c.body.treaty) else {
                // Ratified there first: shown once this group ratifies.
                if let TreatyAct::Ratified(treaty) = &c.body.act {
                    let mut t = TreatyState::new(treaty, &self.group);
                    t.ratified_there_ms = Some(c.body.at_ms);
                    self.treaties.insert(t.id, t);
                }
                continue;
            };
            if t.other != c.body.group {
                continue;
            }
            match &c.body.act {
                TreatyAct::Ratified(_) => {
                    t.ratified_there_ms.get_or_insert(c.body.at_ms);
                }
                TreatyAct::Renewed { end_ms } => {
                    if t.ended_ms.is_none() && c.body.at_ms < t.end_ms() {
                        t.end_there_ms = t.end_there_ms.max(*end_ms);
                    }
                }
                TreatyAct::Ended => {
                    t.ended_ms.get_or_insert(c.body.at_ms);
                }
            }
        }
    }

    fn settle_treaties(&mut self, now: u64) {
        for t in self.treaties.values_mut() {
            t.status = match (t.ratified_here_ms, t.ratified_there_ms) {
                _ if t.ended_ms.is_some() => TreatyStatus::Ended,
                (None, _) => TreatyStatus::Proposed,
                (Some(_), None) => TreatyStatus::AwaitingOther,
                _ if now >= t.end_ms() => TreatyStatus::Expired,
                _ if now < t.treaty.start_ms => TreatyStatus::NotStarted,
                _ => TreatyStatus::Active,
            };
        }
    }

    fn settle_cycle(&mut self, now: u64) {
        let cycle_ms = self.rules.revision_cycle_secs.saturating_mul(1000).max(1);
        let n = now.saturating_sub(self.created_at_ms) / cycle_ms;
        let start = self.created_at_ms + n * cycle_ms;
        self.cycle = (n, start);
        self.revisited_this_cycle = self
            .articles
            .iter()
            .filter(|a| a.revised_at_ms >= start && a.revised_at_ms > self.created_at_ms)
            .count();
        let share = usize::from(self.rules.revision_share_percent);
        self.revisit_per_cycle = (self.articles.len() * share).div_ceil(100);
        for a in &mut self.articles {
            a.overdue = now.saturating_sub(a.revised_at_ms) > cycle_ms;
        }
    }

    /// Whether `member` is on the roll now.
    pub fn is_member(&self, member: &MemberId) -> bool {
        self.roll.contains_key(member)
    }

    /// A proposal by id.
    pub fn proposal(&self, id: &ProposalId) -> Option<&ProposalState> {
        self.proposals.iter().find(|p| p.id == *id).map(|p| &**p)
    }

    /// Articles overdue for revision.
    pub fn overdue(&self) -> Vec<u32> {
        self.articles
            .iter()
            .filter(|a| a.overdue)
            .map(|a| a.number)
            .collect()
    }

    /// Days (rounded up) until `until_ms`.
    pub fn days_left(&self, until_ms: u64) -> u64 {
        until_ms.saturating_sub(self.now_ms).div_ceil(DAY_MS)
    }
}

// Here rather than in `crate::proof`, which stays below governance's state.
impl DecisionProof {
    /// The proof that `passed` (a proposal of `group` shown passed) was
    /// decided, from the group's own records, with the time its cited
    /// decision took effect: of the decision records in force, one that
    /// passed it by itself, the one that settled it if it did. `None` when
    /// no such record, or the admissions of the signers, are held.
    pub fn of(
        group: &GroupId,
        records: &BTreeMap<Hash32, SignedRecord>,
        passed: &ProposalState,
    ) -> Option<(DecisionProof, u64)> {
        let proposal = records.get(&passed.id.hash32())?;
        let (decision, at) = passed
            .decisions
            .iter()
            .filter_map(|id| {
                let r = records.get(id)?;
                match RecordBody::decode(&r.body) {
                    Ok(RecordBody::Decision(d)) if d.passed => Some((r, d.decided_at_ms)),
                    _ => None,
                }
            })
            .min_by_key(|(r, at)| (Some(*at) != passed.decided_at_ms, r.id()))?;
        let proof = DecisionProof {
            proposal: proposal.encode(),
            decision: decision.encode(),
            members: MemberProof::of(group, records, &[proposal.author, decision.author])?,
        };
        Some((proof, at))
    }
}

impl ProposalState {
    fn count(&mut self) {
        let (mut y, mut n, mut a) = (0, 0, 0);
        for (choice, _) in self.votes.values() {
            match choice {
                Choice::Yes => y += 1,
                Choice::No => n += 1,
                Choice::Abstain => a += 1,
            }
        }
        (self.yes, self.no, self.abstain) = (y, n, a);
    }

    /// Whether it passes with `extra_yes` and `extra_no` more votes.
    fn passes(&self, extra_yes: usize, extra_no: usize) -> bool {
        let (y, n) = (self.yes + extra_yes, self.no + extra_no);
        let turnout = y + n + self.abstain;
        let quorum = turnout * 100 >= usize::from(self.quorum_percent) * self.seats;
        let approved = y + n > 0 && y * 100 >= usize::from(self.approval_percent) * (y + n);
        self.seats > 0 && quorum && approved
    }

    /// The outcome if no seat still to vote can change it.
    fn settled(&self) -> Option<bool> {
        let remaining = self.seats - self.votes.len();
        // Those still to vote could stay away (the quorum's worst case) or
        // all vote no (the approval's worst case); any mix lies between.
        if self.passes(0, 0) && self.passes(0, remaining) {
            return Some(true);
        }
        if !self.passes(remaining, 0) {
            return Some(false);
        }
        None
    }

    fn decide(&mut self, passed: bool, at: u64) {
        self.outcome = if passed {
            Outcome::Passed
        } else {
            Outcome::Failed
        };
        self.decided_at_ms = Some(at);
    }

    /// The ids of the votes counted, in id order.
    pub fn counted(&self) -> Vec<Hash32> {
        let mut ids: Vec<Hash32> = self.votes.values().map(|(_, id)| *id).collect();
        ids.sort_unstable();
        ids
    }

    /// While deciding: the decision record that says what the votes held
    /// here decided, signed at `now_ms`.
    pub fn decision_record(&self, now_ms: u64) -> Option<Decision> {
        if self.outcome != Outcome::Deciding {
            return None;
        }
        Some(Decision {
            proposal: self.id,
            counted: self.counted(),
            passed: self.passes(0, 0),
            decided_at_ms: self.decided_at_ms?,
            signed_at_ms: now_ms,
        })
    }

    /// Whether votes are still taken.
    pub fn is_open(&self) -> bool {
        self.outcome == Outcome::Open
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(seats: usize, quorum: u8, approval: u8) -> ProposalState {
        ProposalState {
            id: ProposalId::from(Hash32([0; 32])),
            proposer: MemberId([0; 32]),
            proposal: Proposal {
                action: Action::LeaveParent,
                submitted_at_ms: 0,
            },
            deadline_ms: 0,
            quorum_percent: quorum,
            approval_percent: approval,
            seats,
            yes: 0,
            no: 0,
            abstain: 0,
            votes: BTreeMap::new(),
            outcome: Outcome::Open,
            decided_at_ms: None,
            effect: None,
            ignored: Vec::new(),
            decisions: Vec::new(),
            ignored_decisions: Vec::new(),
        }
    }

    fn vote(s: &mut ProposalState, seat: u8, choice: Choice) {
        s.votes.insert(
            Seat::Member(MemberId([seat; 32])),
            (choice, Hash32([seat; 32])),
        );
        s.count();
    }

    #[test]
    fn settles_early_only_when_no_vote_can_change_it() {
        let mut s = state(5, 50, 60);
        vote(&mut s, 1, Choice::Yes);
        vote(&mut s, 2, Choice::Yes);
        assert_eq!(s.settled(), None);
        vote(&mut s, 3, Choice::Yes);
        // 3 yes of 5: quorum met; 2 more no would give 60%: still passes.
        assert_eq!(s.settled(), Some(true));

        let mut s = state(5, 50, 60);
        vote(&mut s, 1, Choice::No);
        vote(&mut s, 2, Choice::No);
        assert_eq!(s.settled(), None);
        vote(&mut s, 3, Choice::Abstain);
        // 0 yes, 2 no: 2 more yes give 50% < 60%.
        assert_eq!(s.settled(), Some(false));
    }

    #[test]
    fn an_effect_reads_back_from_the_sentence_a_member_reads() {
        for effect in [
            Effect::InEffect,
            Effect::NotCarriedOut("no article 3".into()),
            Effect::ProposerOffRoll,
        ] {
            let sentence = String::from(effect.clone());
            assert_eq!(Effect::try_from(sentence), Ok(effect));
        }
        assert_eq!(String::from(Effect::InEffect), "in effect");
        assert!(Effect::try_from("in force".to_string()).is_err());
    }

    #[test]
    fn rules_by_name() {
        let r = set_rule(&Rules::default(), "voting_period", "2days").expect("duration");
        assert_eq!(r.voting_period_secs, 2 * 24 * 3600);
        assert!(set_rule(&Rules::default(), "quorum_percent", "101").is_err());
        assert!(set_rule(&Rules::default(), "nonsense", "1").is_err());
        assert!(set_rule(&Rules::default(), "entry_needs_vote", "maybe").is_err());
    }

    #[test]
    fn treaty_shape() {
        let a = GroupId::from(Hash32([1; 32]));
        let b = GroupId::from(Hash32([2; 32]));
        let t = Treaty {
            parties: [a, b],
            kind: TreatyKind::MutualAid,
            terms: "help".into(),
            start_ms: 0,
            end_ms: 10,
        };
        assert!(check_treaty(&t, &a).is_ok());
        assert!(check_treaty(&t, &GroupId::from(Hash32([3; 32]))).is_err());
        let backwards = Treaty {
            parties: [b, a],
            ..t.clone()
        };
        assert!(check_treaty(&backwards, &a).is_err());
    }
}
