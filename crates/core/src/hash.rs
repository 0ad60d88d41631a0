//! 32-byte content hashes, shown as lowercase hex.

use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

/// A SHA-256 digest: the id of a record, a group or a document. In JSON it
/// is a hex string; in the canonical encoding, 32 raw bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hash32(pub [u8; 32]);

crate::encoding::text_or_bytes_serde!(Hash32, "a 64-character hex hash");

impl Hash32 {
    /// Hash `parts` in order, each prefixed by its length so that the
    /// boundaries between parts are part of what is hashed.
    pub fn of_parts(parts: &[&[u8]]) -> Self {
        let mut h = Sha256::new();
        for p in parts {
            h.update((p.len() as u64).to_be_bytes());
            h.update(p);
        }
        Hash32(h.finalize().into())
    }

    /// Hash one byte string.
    pub fn of(bytes: &[u8]) -> Self {
        Hash32(Sha256::digest(bytes).into())
    }

    /// Lowercase hex, 64 characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 12 hex characters, for people.
    pub fn short(&self) -> String {
        self.to_hex()[..12].to_string()
    }
}

impl fmt::Display for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash32({})", self.short())
    }
}

impl FromStr for Hash32 {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        let malformed = |reason: &str| crate::Error::Malformed {
            what: "hash",
            reason: reason.to_string(),
        };
        if s.len() != 64 {
            return Err(malformed("expected 64 hex characters"));
        }
        let bytes = hex::decode(s).map_err(|e| malformed(&e.to_string()))?;
        let mut out = [0u8; 32];
        out.copy_from_slice(&bytes);
        Ok(Hash32(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_length_prefixed() {
        assert_ne!(
            Hash32::of_parts(&[b"ab", b"c"]),
            Hash32::of_parts(&[b"a", b"bc"])
        );
    }

    #[test]
    fn hex_round_trip() {
        let h = Hash32::of(b"x");
        assert_eq!(h.to_hex().parse::<Hash32>(), Ok(h));
        assert!("zz".parse::<Hash32>().is_err());
    }
}
