//! Governance's records: proposals and what they ask for, votes,
//! decisions, exits, founders' edits, delegations and treaties. How they
//! are counted is in [`crate::governance`].

use nestwork_core::{GroupId, Hash32, MemberId, ProposalId};
use serde::{Deserialize, Serialize};

use super::ledger::Account;
use super::proof::DecisionProof;

/// A vote.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Choice {
    /// For.
    Yes,
    /// Against.
    No,
    /// Present, neither for nor against (counts for the quorum).
    Abstain,
}

/// What a treaty binds its parties to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TreatyKind {
    /// Distress signals cross between the parties.
    MutualAid,
    /// Anything else the terms say.
    Cooperation,
}

/// A treaty between two groups: specific terms, limited in time. Both
/// groups ratify the same treaty (the same bytes, so the same id).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Treaty {
    /// The two groups, sorted.
    pub parties: [GroupId; 2],
    /// What it does.
    pub kind: TreatyKind,
    /// The terms, in words.
    pub terms: String,
    /// When it starts (ms since the Unix epoch).
    pub start_ms: u64,
    /// When it ends unless both parties renew it.
    pub end_ms: u64,
}

/// What a proposal asks for. (Externally tagged: the canonical encoding
/// cannot read internally tagged enums.)
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// Add an article.
    AddArticle {
        /// A short title.
        title: String,
        /// Its text.
        text: String,
    },
    /// Replace an article's text.
    AmendArticle {
        /// The article's number.
        article: u32,
        /// The new text.
        text: String,
    },
    /// Strike an article (its number is not reused).
    RepealArticle {
        /// The article's number.
        article: u32,
    },
    /// Confirm an article as it stands, for this revision cycle.
    ReaffirmArticle {
        /// The article's number.
        article: u32,
    },
    /// Change one rule of the charter.
    SetRule {
        /// The rule's name (see [`RULE_NAMES`]).
        rule: String,
        /// Its new value, in words ("60", "14days", "true").
        value: String,
    },
    /// Admit someone to the roll (where entry needs a vote).
    AdmitMember {
        /// Who.
        member: MemberId,
    },
    /// Take someone off the roll.
    RemoveMember {
        /// Who.
        member: MemberId,
    },
    /// Set credit limits: one member's, or the group default.
    SetLimits {
        /// Whose (the group default when `None`).
        member: Option<MemberId>,
        /// Lowest balance allowed (zero or below).
        floor: i64,
        /// Highest balance allowed (zero or above).
        ceiling: i64,
    },
    /// Pay out of the commons account.
    Payout {
        /// The payee (a member).
        to: Account,
        /// Minor units.
        amount: u64,
        /// What for.
        memo: String,
    },
    /// Join a parent tier (the parent decides on its side too).
    JoinParent {
        /// The parent group.
        parent: GroupId,
    },
    /// Leave the parent tier.
    LeaveParent,
    /// Admit a child group into this tier (it decided to join on its side).
    AdmitGroup {
        /// The child group.
        group: GroupId,
    },
    /// Take a child group out of this tier.
    RemoveGroup {
        /// The child group.
        group: GroupId,
    },
    /// Name the delegates who vote for this group in its parent, for one
    /// revision cycle.
    SetDelegates {
        /// The delegates (members of this group).
        delegates: Vec<MemberId>,
    },
    /// Ratify a treaty with another group.
    RatifyTreaty {
        /// The treaty.
        treaty: Treaty,
    },
    /// Extend a treaty that is still in force.
    RenewTreaty {
        /// The treaty's id.
        treaty: Hash32,
        /// The new end (ms since the Unix epoch).
        end_ms: u64,
    },
    /// End a treaty now.
    EndTreaty {
        /// The treaty's id.
        treaty: Hash32,
    },
    /// Pick members at random for a role (a jury, a steward), verifiably.
    Lottery {
        /// The role.
        role: String,
        /// How many to pick.
        count: u32,
    },
}

/// A proposal, signed by the member who submits it. Its content is frozen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// What it asks for.
    pub action: Action,
    /// When it was submitted, by the proposer's clock.
    pub submitted_at_ms: u64,
}

/// A vote, signed by the voter. A seat's last vote before the decision counts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    /// The proposal.
    pub proposal: ProposalId,
    /// Yes, no or abstain.
    pub choice: Choice,
    /// When, by the voter's clock.
    pub cast_at_ms: u64,
    /// In a parent tier: the child group this delegate votes for (`None`:
    /// the voter's own seat).
    pub for_group: Option<GroupId>,
}

/// The decision on a proposal, signed once voting is over by its signer's
/// clock: the votes it counted and what they decided. Every node recounts
/// the named votes and ignores a decision that does not match.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// The proposal.
    pub proposal: ProposalId,
    /// The votes counted, one per seat, in id order.
    pub counted: Vec<Hash32>,
    /// Whether it passed.
    pub passed: bool,
    /// When it was decided: the vote that settled it, or the deadline.
    pub decided_at_ms: u64,
    /// When it was signed, by its signer's clock (no earlier).
    pub signed_at_ms: u64,
}

/// A member leaves, by their own signed word. Nobody can block it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exit {
    /// Who leaves (must be the signer).
    pub member: MemberId,
    /// When, by their clock.
    pub at_ms: u64,
}

/// The creator edits the charter directly, before anyone else has joined.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CharterEdit {
    /// A charter edit (article or rule).
    pub action: Action,
    /// When, by the creator's clock.
    pub at_ms: u64,
}

/// Filed in a parent tier by a delegate of a child group: the child's
/// passed "set delegates" proposal, carried over.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delegation {
    /// The child group.
    pub child: GroupId,
    /// Its delegates (the signer is one of them).
    pub delegates: Vec<MemberId>,
    /// The child's proposal that named them.
    pub proposal: ProposalId,
    /// From when (the child's decision).
    pub from_ms: u64,
    /// Until when (one revision cycle of the child later).
    pub until_ms: u64,
    /// The child's proposal and its decision, as signed there.
    pub proof: DecisionProof,
}

/// What the other party of a treaty decided.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TreatyAct {
    /// It ratified the treaty.
    Ratified(Treaty),
    /// It renewed it until a new end.
    Renewed {
        /// The new end.
        end_ms: u64,
    },
    /// It ended it.
    Ended,
}

/// Filed in one party of a treaty by a member of both: the other party's
/// decision about it, carried over.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counterpart {
    /// The treaty.
    pub treaty: Hash32,
    /// The other party.
    pub group: GroupId,
    /// Its proposal that decided.
    pub proposal: ProposalId,
    /// What it decided.
    pub act: TreatyAct,
    /// When its decision took effect.
    pub at_ms: u64,
    /// Its proposal and its decision, as signed there.
    pub proof: DecisionProof,
}
