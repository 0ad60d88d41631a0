//! A broken rule: the error every check in this crate returns, at the
//! bottom so that every module can use it.

/// A broken rule, in words a member can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RuleError(pub String);

/// Fail with a broken rule.
pub(crate) fn broken<T>(msg: impl Into<String>) -> Result<T, RuleError> {
    Err(RuleError(msg.into()))
}
