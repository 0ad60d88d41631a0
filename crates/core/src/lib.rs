//! The vocabulary every other crate speaks: member keys and ids, hashes, and
//! the two signed envelopes (records and document changes) with their
//! canonical encoding.
//!
//! Everything here is pure: no disk, no network, no clock. Bytes that come
//! from a peer, a file or a user are decoded here with a size bound and
//! verified here; a failure is an [`Error`] that says what was wrong, never a
//! panic. This crate must not learn about document kinds (see `nestwork-docs`)
//! or storage (see `nestwork-store`).
//!
//! Layout:
//! - [`keys`]: the member's ed25519 key, its key file format, member ids;
//! - [`keybox`]: a secret sealed to one member's key (X25519 of it);
//! - [`hash`]: 32-byte SHA-256 hashes, the ids of records and changes;
//! - [`id`]: typed ids over a hash (group, document, proposal, signal), so
//!   that one cannot be passed for another;
//! - [`signed`]: signed records (insert-only facts) and signed changes
//!   (Automerge changes wrapped with their author's signature);
//! - [`encoding`]: the canonical, bounded binary encoding;
//! - [`limits`]: every size limit, in one table.

pub mod encoding;
pub mod hash;
pub mod id;
pub mod keybox;
pub mod keys;
pub mod limits;
pub mod signed;

pub use hash::Hash32;
pub use id::{DocId, GroupId, ProposalId, SignalId};
pub use keys::{MemberId, MemberKey};
pub use signed::{ChangeBundle, PeriodChanges, SignedChange, SignedRecord};

/// What went wrong with a key, an id or a signed envelope.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// The bytes do not decode as the expected structure.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What we tried to decode.
        what: &'static str,
        /// Why it failed.
        reason: String,
    },
    /// The input is larger than we accept.
    #[error("{what} is {size} bytes, over the limit of {limit}")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The signature does not match the author's key and the signed bytes.
    #[error("bad signature on {what} claimed by {author}")]
    BadSignature {
        /// What carried the signature.
        what: &'static str,
        /// The claimed author.
        author: MemberId,
    },
    /// The author's public key is not a valid ed25519 point.
    #[error("author key {0} is not a valid ed25519 public key")]
    BadAuthorKey(MemberId),
}

/// Result with the core [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
