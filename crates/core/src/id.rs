//! Typed ids: one [`Hash32`] each, named for what it identifies, so that a
//! document id cannot be passed where a group id is meant (or a proposal's
//! where a signal's is), which a bare hash would let compile.
//!
//! Every id is encoded exactly as the [`Hash32`] inside it (a hex string in
//! JSON, 32 raw bytes in the canonical encoding): records are signed and
//! hashed, stored and sent to peers, so the types change no byte. Going
//! from a hash to an id is an explicit `From`, written where an id is
//! derived (a group's id is its genesis record's hash).

use std::fmt;
use std::str::FromStr;

use crate::Hash32;

/// Declares an id type over [`Hash32`]: its encoding is the hash's
/// (serde `transparent`), its text the hash's hex, its `Debug` its name
/// and short hex; `From` both ways is the only way in or out.
macro_rules! hash_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(Hash32);

        impl $name {
            /// The hash this id is.
            pub const fn hash32(&self) -> Hash32 {
                self.0
            }

            /// The hash's 32 bytes.
            pub const fn as_bytes(&self) -> &[u8; 32] {
                &self.0 .0
            }

            /// Lowercase hex, 64 characters.
            pub fn to_hex(&self) -> String {
                self.0.to_hex()
            }

            /// The first 12 hex characters, for people.
            pub fn short(&self) -> String {
                self.0.short()
            }
        }

        impl From<Hash32> for $name {
            fn from(hash: Hash32) -> Self {
                $name(hash)
            }
        }

        impl From<$name> for Hash32 {
            fn from(id: $name) -> Self {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.0.short())
            }
        }

        impl FromStr for $name {
            type Err = crate::Error;
            fn from_str(s: &str) -> crate::Result<Self> {
                s.parse().map($name)
            }
        }
    };
}

hash_id!(
    /// A group: the hash of its genesis record. The group's own document
    /// has the same id ([`GroupId::doc`]).
    GroupId
);

hash_id!(
    /// A signed document: a group's document or one of its ledger periods.
    DocId
);

hash_id!(
    /// A governance proposal: the id of the record that proposed it.
    ProposalId
);

hash_id!(
    /// A distress signal: the id of the record that raised it.
    SignalId
);

impl GroupId {
    /// The group's own document, whose id is the group's.
    pub const fn doc(&self) -> DocId {
        DocId(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding;

    #[test]
    fn an_id_is_encoded_as_its_hash() {
        let h = Hash32::of(b"genesis");
        let g = GroupId::from(h);
        assert_eq!(encoding::encode(&g), encoding::encode(&h));
        assert_eq!(
            serde_json::to_string(&g).expect("json"),
            serde_json::to_string(&h).expect("json")
        );
        assert_eq!(
            encoding::decode::<GroupId>("group id", &encoding::encode(&h), 32),
            Ok(g)
        );
        assert_eq!(g.to_string(), h.to_string());
        assert_eq!(g.to_hex().parse::<GroupId>(), Ok(g));
        assert!("zz".parse::<DocId>().is_err());
        assert_eq!(g.doc().hash32(), h);
        assert_eq!(format!("{g:?}"), format!("GroupId({})", h.short()));
    }
}
