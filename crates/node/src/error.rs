//! [`NodeError`]: why a request to the node failed, in words a member can
//! act on.

use nestwork_docs::Rejection;
use nestwork_store::StoreError;

use crate::identity;

/// Why a request to the node failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// No group matches what was asked.
    #[error("no group matches {0:?}; `nestwork group list` shows your groups")]
    NotFound(String),
    /// Several groups match.
    #[error("{0:?} matches several groups ({1}); use more of the group id")]
    Ambiguous(String, String),
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
