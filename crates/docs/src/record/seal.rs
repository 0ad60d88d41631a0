//! Seal key records: a group's gossip key for a membership epoch, sealed
//! to each member. How keys are made and opened is in [`crate::seal`].

use nestwork_core::{Hash32, MemberId};
use serde::{Deserialize, Serialize};

/// A group's seal key, sealed to members.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealKey {
    /// The key's id ([`key_id`]): gossip sealed with the key names it in
    /// clear, and a box holds the key only if the key hashes to it.
    pub key_id: Hash32,
    /// One box per member, in ascending member order.
    pub boxes: Vec<KeyBox>,
}

/// The key sealed to one member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyBox {
    /// Who opens it.
    pub member: MemberId,
    /// The box ([`KEY_BOX_BYTES`] bytes).
    pub sealed: Vec<u8>,
}
