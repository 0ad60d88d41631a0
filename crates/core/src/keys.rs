//! The member key (ed25519) and the member id derived from it.
//!
//! A member id is shown exactly as libp2p shows the `PeerId` of the same
//! ed25519 key ("12D3KooW..."), so one string names both the member and the
//! node it runs: the identity-multihash of the protobuf-encoded public key,
//! in base58.

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use std::fmt;
use std::str::FromStr;

use crate::{Error, Result};

/// First token of a key file; the format version lives in it.
const KEY_FILE_TAG: &str = "nestwork-member-key-v1";

/// Protobuf header of a libp2p ed25519 public key (field 1 = type Ed25519,
/// field 2 = 32 bytes of data), and the identity multihash header (code 0,
/// length 36) wrapped around it.
const PEER_ID_PREFIX: [u8; 6] = [0x00, 0x24, 0x08, 0x01, 0x12, 0x20];

/// A member's public identity: their ed25519 public key. In JSON it is the
/// PeerId string; in the canonical encoding, 32 raw bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemberId(pub [u8; 32]);

crate::encoding::text_or_bytes_serde!(MemberId, "a member id (12D3KooW...)");

impl MemberId {
    /// The ed25519 verifying key, if these bytes are a valid point.
    pub fn verifying_key(&self) -> Result<VerifyingKey> {
        // Decompressing the point is about a third of the cost of checking
        // a signature, and a group's few members sign every change and
        // record it holds: each thread keeps the keys it decompressed last
        // (bounded, so a flood of strangers' keys only empties it).
        thread_local! {
            static KEYS: std::cell::RefCell<std::collections::HashMap<[u8; 32], VerifyingKey>> =
                std::cell::RefCell::new(std::collections::HashMap::new());
        }
        const KEPT: usize = 1024;
        if let Some(key) = KEYS.with(|k| k.borrow().get(&self.0).copied()) {
            return Ok(key);
        }
        let key = VerifyingKey::from_bytes(&self.0).map_err(|_| Error::BadAuthorKey(*self))?;
        KEYS.with(|k| {
            let mut k = k.borrow_mut();
            if k.len() >= KEPT {
                k.clear();
            }
            k.insert(self.0, key);
        });
        Ok(key)
    }

    /// The same id in libp2p `PeerId` bytes (identity multihash).
    pub fn to_peer_id_bytes(&self) -> Vec<u8> {
        let mut out = PEER_ID_PREFIX.to_vec();
        out.extend_from_slice(&self.0);
        out
    }

    /// The reverse of [`Self::to_peer_id_bytes`]; `None` for a PeerId that is
    /// not an inline ed25519 key.
    pub fn from_peer_id_bytes(bytes: &[u8]) -> Option<Self> {
        let key = bytes.strip_prefix(&PEER_ID_PREFIX[..])?;
        Some(MemberId(key.try_into().ok()?))
    }

    /// A short form for people: the last 8 characters of the full id.
    pub fn short(&self) -> String {
        let s = self.to_string();
        s[s.len().saturating_sub(8)..].to_string()
    }
}

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&bs58::encode(self.to_peer_id_bytes()).into_string())
    }
}

impl fmt::Debug for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MemberId({})", self.short())
    }
}

impl FromStr for MemberId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let malformed = |reason: &str| Error::Malformed {
            what: "member id",
            reason: reason.to_string(),
        };
        if s.len() > 64 {
            return Err(malformed("too long"));
        }
        let bytes = bs58::decode(s)
            .into_vec()
            .map_err(|e| malformed(&e.to_string()))?;
        let id = MemberId::from_peer_id_bytes(&bytes)
            .ok_or_else(|| malformed("not an ed25519 peer id (expected 12D3KooW...)"))?;
        id.verifying_key()
            .map_err(|_| malformed("not a valid ed25519 public key"))?;
        Ok(id)
    }
}

/// A member's secret key. Never printed: `Debug` shows only the public id.
#[derive(Clone)]
pub struct MemberKey(SigningKey);

impl MemberKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Self {
        MemberKey(SigningKey::generate(&mut rand::rngs::OsRng))
    }

    /// A key from 32 secret bytes (seeded keys for tests).
    pub fn from_secret(secret: [u8; 32]) -> Self {
        MemberKey(SigningKey::from_bytes(&secret))
    }

    /// The 32 secret bytes, for handing the same key to libp2p.
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The ed25519 key itself, for the key boxes.
    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.0
    }

    /// The public member id.
    pub fn id(&self) -> MemberId {
        MemberId(self.0.verifying_key().to_bytes())
    }

    /// Sign `msg`.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.0.sign(msg).to_bytes()
    }

    /// The key file text: a tag line with the hex secret, and a warning.
    pub fn to_file_text(&self) -> String {
        format!(
            "# Nestwork member key for {}. Keep this file secret: it is who you are.\n{} {}\n",
            self.id(),
            KEY_FILE_TAG,
            hex::encode(self.0.to_bytes())
        )
    }

    /// Parse a key file. Comment lines (`#`) and blank lines are ignored;
    /// exactly one key line must remain.
    pub fn from_file_text(text: &str) -> Result<Self> {
        let malformed = |reason: &str| Error::Malformed {
            what: "key file",
            reason: reason.to_string(),
        };
        if text.len() > 4096 {
            return Err(malformed("file is too large to be a key file"));
        }
        let mut lines = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'));
        let line = lines.next().ok_or_else(|| malformed("no key line"))?;
        if lines.next().is_some() {
            return Err(malformed("more than one key line"));
        }
        let secret_hex = line
            .strip_prefix(KEY_FILE_TAG)
            .map(str::trim)
            .ok_or_else(|| malformed(&format!("key line does not start with {KEY_FILE_TAG}")))?;
        let bytes = hex::decode(secret_hex).map_err(|_| malformed("secret is not hex"))?;
        let secret: [u8; 32] = bytes
            .try_into()
            .map_err(|_| malformed("secret must be 32 bytes (64 hex characters)"))?;
        Ok(MemberKey::from_secret(secret))
    }
}

impl fmt::Debug for MemberKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MemberKey(public {})", self.id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifying_keys_come_back_the_same_from_the_kept_ones_and_bad_keys_still_fail() {
        let id = MemberKey::from_secret([9; 32]).id();
        let first = id.verifying_key().expect("a valid key");
        assert_eq!(id.verifying_key().expect("kept"), first);
        // Not a point on the curve: refused every time, never kept.
        let bad = (0u8..=255)
            .map(|b| MemberId([b; 32]))
            .find(|m| VerifyingKey::from_bytes(&m.0).is_err())
            .expect("some byte pattern is not a point");
        assert!(bad.verifying_key().is_err());
        assert!(bad.verifying_key().is_err());
        // More keys than are kept: all still right.
        for seed in 0..1500u32 {
            let mut secret = [0u8; 32];
            secret[..4].copy_from_slice(&seed.to_le_bytes());
            let key = MemberKey::from_secret(secret);
            let id = key.id();
            let message = b"kept keys";
            let signature = key.sign(message);
            assert!(id
                .verifying_key()
                .expect("valid")
                .verify_strict(message, &ed25519_dalek::Signature::from_bytes(&signature))
                .is_ok());
        }
    }

    #[test]
    fn member_id_looks_like_a_libp2p_peer_id_and_round_trips() {
        let key = MemberKey::from_secret([7; 32]);
        let s = key.id().to_string();
        assert!(s.starts_with("12D3KooW"), "{s}");
        assert_eq!(s.parse::<MemberId>(), Ok(key.id()));
        assert!("12D3KooWnotreal".parse::<MemberId>().is_err());
        assert!("".parse::<MemberId>().is_err());
    }

    #[test]
    fn key_file_round_trips_and_rejects_garbage() {
        let key = MemberKey::generate();
        let text = key.to_file_text();
        assert_eq!(
            MemberKey::from_file_text(&text).map(|k| k.id()),
            Ok(key.id())
        );
        for bad in [
            "",
            "hello",
            "nestwork-member-key-v1 abcd",
            "nestwork-member-key-v1 zz",
        ] {
            assert!(MemberKey::from_file_text(bad).is_err(), "{bad:?}");
        }
        let doubled = format!("{text}{text}");
        assert!(MemberKey::from_file_text(&doubled).is_err());
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let key = MemberKey::from_secret([9; 32]);
        assert!(!format!("{key:?}").contains(&hex::encode([9u8; 32])));
    }
}
