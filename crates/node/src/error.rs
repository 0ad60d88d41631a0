//! [`NodeError`]: why a request to the node failed, in words a member can
//! act on.

use nestwork_docs::Rejection;
use nestwork_store::StoreError;

use crate::identity;

/// Why a request to the node failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Nothing of the kind asked for matches the selector.
    #[error("no {what} matches {sel:?}")]
    NotFound {
        /// What was looked for.
        what: Lookup,
        /// The selector as given: an id, a start of one, or a name.
        sel: String,
    },
    /// Several things of the kind asked for match the selector.
    #[error("{sel:?} matches several {what}s{}; use more of the id", listed(.matches))]
    Ambiguous {
        /// What was looked for.
        what: Lookup,
        /// The selector as given.
        sel: String,
        /// Short ids of what matched, where they help choose.
        matches: Vec<String>,
    },
    /// The request breaks a rule.
    #[error("{0}")]
    Invalid(String),
    /// Changes from a bundle or a peer were refused; nothing was stored.
    #[error("refused: {}", summarise(.0))]
    Rejected(Vec<Rejection>),
    /// Changes of a bundle were refused: the whole bundle is, and nothing
    /// was stored.
    #[error("the bundle was refused and nothing was stored: in {what}, {}", summarise(.rejections))]
    BundleRefused {
        /// Which of the bundle's documents held the refused changes.
        what: String,
        /// Each refused change with its reason.
        rejections: Vec<Rejection>,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The identity files.
    #[error(transparent)]
    Identity(#[from] identity::IdentityError),
    /// The change was made and stored but the disk did not confirm it.
    #[error("the change was made but the disk did not confirm it ({0}); it may be lost if the node stops now. A payment repeated with the same request id is not made twice")]
    NotDurable(StoreError),
}

/// What a selector was to name. Errors carry it rather than advice, so
/// each interface can say in its own words where to find one (the CLI
/// names the command that lists them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lookup {
    /// A group, by id, start of an id, or name.
    Group,
    /// A member of a group, by the start of their id.
    Member,
    /// A treaty between groups.
    Treaty,
    /// A proposal.
    Proposal,
    /// A distress signal.
    Signal,
}

impl std::fmt::Display for Lookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Lookup::Group => "group",
            Lookup::Member => "member",
            Lookup::Treaty => "treaty",
            Lookup::Proposal => "proposal",
            Lookup::Signal => "signal",
        })
    }
}

impl NodeError {
    /// Nothing of kind `what` matches `sel`.
    pub(crate) fn not_found(what: Lookup, sel: impl ToString) -> Self {
        NodeError::NotFound {
            what,
            sel: sel.to_string(),
        }
    }

    /// Several things of kind `what` match `sel`.
    pub(crate) fn ambiguous(what: Lookup, sel: impl ToString, matches: Vec<String>) -> Self {
        NodeError::Ambiguous {
            what,
            sel: sel.to_string(),
            matches,
        }
    }

    /// What a selector failed to name (none or several matched), if that
    /// is why the request failed.
    pub fn lookup(&self) -> Option<Lookup> {
        match self {
            NodeError::NotFound { what, .. } | NodeError::Ambiguous { what, .. } => Some(*what),
            _ => None,
        }
    }
}

fn listed(matches: &[String]) -> String {
    if matches.is_empty() {
        String::new()
    } else {
        format!(" ({})", matches.join(", "))
    }
}

fn summarise(rejections: &[Rejection]) -> String {
    let first = rejections
        .first()
        .map(|r| {
            format!(
                "change {} by {}: {}",
                &r.change[..12.min(r.change.len())],
                r.author,
                r.reason
            )
        })
        .unwrap_or_default();
    match rejections.len() {
        0 | 1 => first,
        n => format!("{first} (and {} more)", n - 1),
    }
}

impl From<nestwork_docs::rules::RuleError> for NodeError {
    fn from(e: nestwork_docs::rules::RuleError) -> Self {
        NodeError::Invalid(e.0)
    }
}

impl From<nestwork_docs::Error> for NodeError {
    fn from(e: nestwork_docs::Error) -> Self {
        NodeError::Invalid(e.to_string())
    }
}
