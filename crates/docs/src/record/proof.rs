//! Proofs carried inside records: that members were admitted to a group,
//! that a group decided something. How they are checked is in
//! [`crate::proof`].

use serde::{Deserialize, Serialize};

/// Shows that some members were admitted to a group: its founding record
/// and the admissions leading from its founder to each of them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberProof {
    /// The group's founding record (its id is the group's id; its author
    /// the founder).
    pub founding: Vec<u8>,
    /// Admissions, each signed by the founder or by someone admitted by an
    /// earlier one, for a ticket its signer issued for this group.
    pub admissions: Vec<Vec<u8>>,
}

/// Shows that another group decided a proposal: the proposal and its
/// decision record as signed, and that their signers were admitted there.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionProof {
    /// The proposal's signed record.
    pub proposal: Vec<u8>,
    /// A signed decision on it that passed.
    pub decision: Vec<u8>,
    /// The proposer and the decision's signer were admitted there.
    pub members: MemberProof,
}
