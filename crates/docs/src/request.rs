//! What a member asks a group to decide, before it is checked against the
//! group: one variant per proposal kind, with typed fields. Selectors that
//! need the group's state to mean anything (a member's id or a unique start
//! of one, a group's name or id, a treaty id's start) stay words; the node
//! resolves them into an [`Action`](crate::governance::Action). It lives in
//! docs, not in node, because drafts (stored here as words) turn into it.

use serde::{Deserialize, Serialize};

use crate::governance::TreatyKind;

/// A proposal (or a direct charter edit) as asked for. In JSON, tagged by
/// kind: `{"kind":"add-article","text":"..."}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ProposeRequest {
    /// Add an article; without a title, its first words are the title.
    AddArticle {
        /// A short title.
        #[serde(default)]
        title: Option<String>,
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
    /// Strike an article.
    RepealArticle {
        /// The article's number.
        article: u32,
    },
    /// Confirm an article as it stands.
    ReaffirmArticle {
        /// The article's number.
        article: u32,
    },
    /// Change one rule of the charter.
    SetRule {
        /// The rule's name.
        rule: String,
        /// Its new value, in words ("60", "14days", "true").
        value: String,
    },
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
    /// Set one member's credit limits, or the group default.
    SetLimits {
        /// Whose (id or unique start); the group default when absent.
        #[serde(default)]
        member: Option<String>,
        /// Lowest balance allowed.
        floor: i64,
        /// Highest balance allowed.
        ceiling: i64,
    },
    /// Pay a member out of the commons.
    Payout {
        /// The payee (id or unique start).
        member: String,
        /// Minor units.
        amount: u64,
        /// What for.
        #[serde(default)]
        memo: String,
    },
    /// Join a parent tier.
    JoinParent {
        /// The parent: a name or id.
        group: String,
    },
    /// Leave the parent tier.
    LeaveParent,
    /// Admit a child group into this tier.
    AdmitGroup {
        /// The child: a name or id.
        group: String,
    },
    /// Take a child group out of this tier.
    RemoveGroup {
        /// The child: a name or id.
        group: String,
    },
    /// Name this group's delegates to its parent tier.
    SetDelegates {
        /// Each delegate (id or unique start).
        members: Vec<String>,
    },
    /// Ratify a treaty the other party proposed or ratified.
    RatifyTreaty {
        /// The treaty's id, or a unique start of it.
        treaty: String,
    },
    /// Propose a new treaty with another group (ratifying it on this side).
    NewTreaty {
        /// The other party: a name or id.
        group: String,
        /// What it binds the parties to.
        treaty_kind: TreatyKind,
        /// How long it lasts from now, in seconds.
        duration_secs: u64,
        /// Its terms.
        terms: String,
    },
    /// Extend a treaty.
    RenewTreaty {
        /// The treaty's id start.
        treaty: String,
        /// How much longer, in seconds.
        duration_secs: u64,
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

impl ProposeRequest {
    /// The kind, as in JSON.
    pub fn kind(&self) -> &'static str {
        match self {
            ProposeRequest::AddArticle { .. } => "add-article",
            ProposeRequest::AmendArticle { .. } => "amend-article",
            ProposeRequest::RepealArticle { .. } => "repeal-article",
            ProposeRequest::ReaffirmArticle { .. } => "reaffirm-article",
            ProposeRequest::SetRule { .. } => "set-rule",
            ProposeRequest::AdmitMember { .. } => "admit-member",
            ProposeRequest::RemoveMember { .. } => "remove-member",
            ProposeRequest::SetLimits { .. } => "set-limits",
            ProposeRequest::Payout { .. } => "payout",
            ProposeRequest::JoinParent { .. } => "join-parent",
            ProposeRequest::LeaveParent => "leave-parent",
            ProposeRequest::AdmitGroup { .. } => "admit-group",
            ProposeRequest::RemoveGroup { .. } => "remove-group",
            ProposeRequest::SetDelegates { .. } => "set-delegates",
            ProposeRequest::RatifyTreaty { .. } => "ratify-treaty",
            ProposeRequest::NewTreaty { .. } => "new-treaty",
            ProposeRequest::RenewTreaty { .. } => "renew-treaty",
            ProposeRequest::EndTreaty { .. } => "end-treaty",
            ProposeRequest::Lottery { .. } => "lottery",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_tagged_by_kind() {
        let req = ProposeRequest::AddArticle {
            title: None,
            text: "Seeds are shared.".into(),
        };
        let json = serde_json::to_string(&req).expect("json");
        assert_eq!(
            json,
            r#"{"kind":"add-article","title":null,"text":"Seeds are shared."}"#
        );
        let back: ProposeRequest =
            serde_json::from_str(r#"{"kind":"set-limits","floor":-200,"ceiling":500}"#)
                .expect("parse");
        assert_eq!(
            back,
            ProposeRequest::SetLimits {
                member: None,
                floor: -200,
                ceiling: 500
            }
        );
        let back: ProposeRequest = serde_json::from_str(
            r#"{"kind":"new-treaty","group":"North","treaty_kind":"mutual-aid","duration_secs":60,"terms":"t"}"#,
        )
        .expect("parse");
        assert_eq!(back.kind(), "new-treaty");
    }
}
