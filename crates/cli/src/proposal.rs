//! The proposal kinds as subcommands of `propose`, `charter edit` and
//! `draft new`: clap checks each kind's arguments and every kind turns
//! into the typed [`ProposeRequest`] the node resolves against the group.

use clap::{Args, Subcommand};
use nestwork_api::wire::ProposeRequest;
use nestwork_docs::governance::TreatyKind;

/// `add-article [TITLE] TEXT`
#[derive(Args, Debug)]
pub struct AddArticle {
    /// `[TITLE] TEXT`: an optional title, then the text; without a title,
    /// the text's first words are the title.
    // One list, because clap takes no optional positional before a
    // required one.
    #[arg(value_name = "TEXT", num_args = 1..=2, required = true, allow_hyphen_values = true)]
    words: Vec<String>,
}

impl AddArticle {
    fn request(self) -> ProposeRequest {
        let mut words = self.words;
        let text = words.pop().unwrap_or_default();
        ProposeRequest::AddArticle {
            title: words.pop(),
            text,
        }
    }
}

/// `amend-article N TEXT`
#[derive(Args, Debug)]
pub struct AmendArticle {
    /// The article's number.
    #[arg(value_name = "N")]
    article: u32,
    /// The new text.
    #[arg(allow_hyphen_values = true)]
    text: String,
}

/// An article's number alone (repeal, reaffirm).
#[derive(Args, Debug)]
pub struct ArticleNumber {
    /// The article's number.
    #[arg(value_name = "N")]
    article: u32,
}

/// `set-rule NAME VALUE`
#[derive(Args, Debug)]
pub struct SetRule {
    /// The rule (quorum_percent, voting_period, ...).
    #[arg(value_name = "NAME")]
    rule: String,
    /// Its new value (60, 14days, true, ...).
    value: String,
}

/// `ratify-treaty TREATY` or `ratify-treaty GROUP KIND DURATION TERMS`
#[derive(Args, Debug)]
pub struct RatifyTreaty {
    /// A treaty the other side proposed (its id start), or the other group
    /// of a new treaty.
    #[arg(value_name = "TREATY|GROUP")]
    target: String,
    /// A new treaty's kind: mutual-aid or cooperation.
    #[arg(value_name = "KIND", requires_all = ["duration", "terms"])]
    treaty_kind: Option<TreatyKind>,
    /// How long a new treaty lasts (30days, 1year, ...).
    #[arg(value_name = "DURATION")]
    duration: Option<humantime::Duration>,
    /// A new treaty's terms.
    #[arg(value_name = "TERMS", allow_hyphen_values = true)]
    terms: Option<String>,
}

impl RatifyTreaty {
    fn request(self) -> ProposeRequest {
        match (self.treaty_kind, self.duration, self.terms) {
            (Some(treaty_kind), Some(duration), Some(terms)) => ProposeRequest::NewTreaty {
                group: self.target,
                treaty_kind,
                duration_secs: duration.as_secs(),
                terms,
            },
            // clap requires all three together or none.
            _ => ProposeRequest::RatifyTreaty {
                treaty: self.target,
            },
        }
    }
}

/// Selectors: a member is an id or a unique start of one (4+ characters),
/// a group a name or id, a treaty an id start.
#[derive(Subcommand, Debug)]
pub enum ProposalKind {
    /// Add an article.
    AddArticle(AddArticle),
    /// Replace an article's text.
    AmendArticle(AmendArticle),
    /// Strike an article (its number is not reused).
    RepealArticle(ArticleNumber),
    /// Confirm an article as it stands, for this revision cycle.
    ReaffirmArticle(ArticleNumber),
    /// Change one rule of the charter.
    SetRule(SetRule),
    /// Admit someone waiting to enter, or a former member.
    AdmitMember {
        /// Their id, or a unique start of it.
        member: String,
    },
    /// Take a member off the roll.
    RemoveMember {
        /// Their id, or a unique start of it.
        member: String,
    },
    /// Set a member's credit limits, or the group default.
    SetLimits {
        /// A member, or `default` for the group default.
        #[arg(value_name = "MEMBER|default")]
        member: String,
        /// Lowest balance allowed (zero or below).
        #[arg(allow_negative_numbers = true)]
        floor: i64,
        /// Highest balance allowed (zero or above).
        #[arg(allow_negative_numbers = true)]
        ceiling: i64,
    },
    /// Pay a member out of the commons.
    Payout {
        /// The payee.
        member: String,
        /// Minor units.
        amount: u64,
        /// What for (the remaining words).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        memo: Vec<String>,
    },
    /// Join a parent tier (the parent admits the group on its side).
    JoinParent {
        /// The parent group.
        group: String,
    },
    /// Leave the parent tier.
    LeaveParent,
    /// Admit a child group into this tier.
    AdmitGroup {
        /// The child group.
        group: String,
    },
    /// Take a child group out of this tier.
    RemoveGroup {
        /// The child group.
        group: String,
    },
    /// Name this group's delegates to its parent tier.
    SetDelegates {
        /// The delegates.
        #[arg(value_name = "MEMBER", required = true)]
        members: Vec<String>,
    },
    /// Ratify a treaty the other side proposed, or propose a new one.
    RatifyTreaty(RatifyTreaty),
    /// Extend a treaty.
    RenewTreaty {
        /// The treaty's id start.
        treaty: String,
        /// How much longer (30days, 1year, ...).
        duration: humantime::Duration,
    },
    /// End a treaty early.
    EndTreaty {
        /// The treaty's id start.
        treaty: String,
    },
    /// Draw members by lot for a role.
    Lottery {
        /// The role.
        role: String,
        /// How many to draw.
        count: u32,
    },
}

impl ProposalKind {
    /// The typed request.
    pub fn request(self) -> ProposeRequest {
        match self {
            ProposalKind::AddArticle(a) => a.request(),
            ProposalKind::AmendArticle(a) => ProposeRequest::AmendArticle {
                article: a.article,
                text: a.text,
            },
            ProposalKind::RepealArticle(a) => ProposeRequest::RepealArticle { article: a.article },
            ProposalKind::ReaffirmArticle(a) => {
                ProposeRequest::ReaffirmArticle { article: a.article }
            }
            ProposalKind::SetRule(a) => ProposeRequest::SetRule {
                rule: a.rule,
                value: a.value,
            },
            ProposalKind::AdmitMember { member } => ProposeRequest::AdmitMember { member },
            ProposalKind::RemoveMember { member } => ProposeRequest::RemoveMember { member },
            ProposalKind::SetLimits {
                member,
                floor,
                ceiling,
            } => ProposeRequest::SetLimits {
                member: (member != "default").then_some(member),
                floor,
                ceiling,
            },
            ProposalKind::Payout {
                member,
                amount,
                memo,
            } => ProposeRequest::Payout {
                member,
                amount,
                memo: memo.join(" "),
            },
            ProposalKind::JoinParent { group } => ProposeRequest::JoinParent { group },
            ProposalKind::LeaveParent => ProposeRequest::LeaveParent,
            ProposalKind::AdmitGroup { group } => ProposeRequest::AdmitGroup { group },
            ProposalKind::RemoveGroup { group } => ProposeRequest::RemoveGroup { group },
            ProposalKind::SetDelegates { members } => ProposeRequest::SetDelegates { members },
            ProposalKind::RatifyTreaty(a) => a.request(),
            ProposalKind::RenewTreaty { treaty, duration } => ProposeRequest::RenewTreaty {
                treaty,
                duration_secs: duration.as_secs(),
            },
            ProposalKind::EndTreaty { treaty } => ProposeRequest::EndTreaty { treaty },
            ProposalKind::Lottery { role, count } => ProposeRequest::Lottery { role, count },
        }
    }
}

/// What `charter edit` changes directly: articles and rules.
#[derive(Subcommand, Debug)]
pub enum CharterEditKind {
    /// Add an article.
    AddArticle(AddArticle),
    /// Replace an article's text.
    AmendArticle(AmendArticle),
    /// Strike an article.
    RepealArticle(ArticleNumber),
    /// Confirm an article as it stands.
    ReaffirmArticle(ArticleNumber),
    /// Change one rule of the charter.
    SetRule(SetRule),
}

impl CharterEditKind {
    /// The typed request, as the same kind of proposal would make it.
    pub fn request(self) -> ProposeRequest {
        let kind = match self {
            CharterEditKind::AddArticle(a) => ProposalKind::AddArticle(a),
            CharterEditKind::AmendArticle(a) => ProposalKind::AmendArticle(a),
            CharterEditKind::RepealArticle(a) => ProposalKind::RepealArticle(a),
            CharterEditKind::ReaffirmArticle(a) => ProposalKind::ReaffirmArticle(a),
            CharterEditKind::SetRule(a) => ProposalKind::SetRule(a),
        };
        kind.request()
    }
}

/// What `draft new` starts: a proposal with a text members edit together.
#[derive(Subcommand, Debug)]
pub enum DraftKind {
    /// A new article; TEXT is the draft.
    AddArticle(AddArticle),
    /// An amended article; TEXT is the draft.
    AmendArticle(AmendArticle),
    /// A new treaty: GROUP KIND DURATION TERMS; TERMS is the draft.
    RatifyTreaty(RatifyTreaty),
}

impl DraftKind {
    /// The typed request, as the same kind of proposal would make it.
    pub fn request(self) -> ProposeRequest {
        let kind = match self {
            DraftKind::AddArticle(a) => ProposalKind::AddArticle(a),
            DraftKind::AmendArticle(a) => ProposalKind::AmendArticle(a),
            DraftKind::RatifyTreaty(a) => ProposalKind::RatifyTreaty(a),
        };
        kind.request()
    }
}
