//! The signed-document engine and the document kinds built on it.
//!
//! A Nestwork document is an Automerge document with a fixed top level:
//!
//! - `records`: a map from record id (hex hash) to the bytes of a
//!   [`SignedRecord`](nestwork_core::SignedRecord). Insert-only: a change may
//!   add a key whose value hashes to it; it may never delete or overwrite one.
//! - `free`: free-form collaborative parts (the group's description), plain
//!   Automerge text and maps that any member may edit.
//!
//! Every change is a [`SignedChange`](nestwork_core::SignedChange). The engine
//! ([`engine::SignedDoc`]) verifies each incoming change (signature, that its
//! actor is its author, the structure rules above, the author's membership,
//! the kind's rules for each new record) **before** applying it, and applies
//! accepted changes in one batch, because one `apply_changes` call costs about
//! the same for one change as for a hundred.
//!
//! What the user sees is a pure function of the document ([`view`]).
//!
//! This crate does no I/O: no disk, no network, no clock (time is passed in).
//! Ledger ([`ledger`]) and governance ([`governance`]) records are
//! [`record::RecordBody`] variants with their rules beside them.

mod charter;
pub mod decisions;
pub mod distress;
pub mod distress_due;
pub mod due;
pub mod engine;
mod error;
pub mod governance;
pub mod group_ledger;
pub mod ledger;
pub mod proof;
pub mod record;
pub mod request;
pub mod rules;
pub mod seal;
pub mod view;

pub use engine::{ApplyReport, NoLedger, RecordGate, Rejection, SignedDoc, Writer};
pub use record::{Admission, Article, Charter, GroupGenesis, GroupKind, RecordBody, Rules};
pub use request::ProposeRequest;
pub use view::{CharterView, GroupView};

/// Why a local operation could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The operation breaks a rule of the document kind.
    #[error("{0}")]
    Rule(#[from] rules::RuleError),
    /// Automerge refused the operation (a bug on our side if it happens).
    #[error("document engine error: {0}")]
    Automerge(#[from] automerge::AutomergeError),
    /// A stored or received document does not have the expected shape.
    #[error("document {0} is malformed: {1}")]
    Malformed(String, String),
}
