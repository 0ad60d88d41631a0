//! Gossip topics and their sealed payloads.
//!
//! Topics are named `nestwork/1/<group-id>/<purpose>` (`1` is the protocol
//! version; purposes: `docs` now, `distress` later). Gossipsub has no
//! per-topic access list, so a payload is sealed with ChaCha20-Poly1305
//! under a key derived from the group's genesis record, which only members
//! (and invitees while they join) are ever sent: a stranger who subscribes
//! to the topic sees only ciphertext. The topic name is bound into every
//! seal, so a payload cannot be moved to another topic.
//!
//! Left for later: a removed member still holds the key; rotating it on
//! removal comes with the governance issue.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use nestwork_core::Hash32;

/// Protocol version in topic names.
pub const TOPIC_VERSION: u32 = 1;

/// The topic that carries a group's document changes.
pub fn docs_topic(group: &Hash32) -> String {
    format!("nestwork/{TOPIC_VERSION}/{}/docs", group.to_hex())
}

/// The group id in a docs topic name, if it is one.
pub fn group_of_docs_topic(topic: &str) -> Option<Hash32> {
    let rest = topic.strip_prefix(&format!("nestwork/{TOPIC_VERSION}/"))?;
    rest.strip_suffix("/docs")?.parse().ok()
}

/// Seals and opens payloads on one group's topic.
#[derive(Clone)]
pub struct GroupSeal {
    cipher: ChaCha20Poly1305,
    topic: String,
}

/// A payload that does not open: not sealed with this group's key, or
/// altered.
#[derive(Debug, thiserror::Error)]
#[error("payload does not open with the group key")]
pub struct SealError;

impl GroupSeal {
    /// The seal of the group whose genesis record (encoded) is `genesis`.
    pub fn new(group: &Hash32, genesis: &[u8]) -> Self {
        let key = Hash32::of_parts(&[b"nestwork/group-seal/v1", &group.0, genesis]);
        GroupSeal {
            cipher: ChaCha20Poly1305::new(Key::from_slice(&key.0)),
            topic: docs_topic(group),
        }
    }

    /// The topic this seal is for.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Nonce (12 random bytes) followed by the ciphertext.
    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        let nonce: [u8; 12] = rand::random();
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: self.topic.as_bytes(),
                },
            )
            .unwrap_or_default();
        [&nonce[..], &sealed].concat()
    }

    /// Open a sealed payload.
    pub fn open(&self, bytes: &[u8]) -> Result<Vec<u8>, SealError> {
        if bytes.len() < 12 + 16 {
            return Err(SealError);
        }
        let (nonce, sealed) = bytes.split_at(12);
        self.cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: self.topic.as_bytes(),
                },
            )
            .map_err(|_| SealError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_round_trip() {
        let g = Hash32::of(b"g");
        assert_eq!(group_of_docs_topic(&docs_topic(&g)), Some(g));
        assert_eq!(group_of_docs_topic("nestwork/1/zz/docs"), None);
    }

    #[test]
    fn only_the_same_group_opens_a_seal() {
        let g = Hash32::of(b"g");
        let seal = GroupSeal::new(&g, b"genesis");
        let sealed = seal.seal(b"hello");
        assert_eq!(seal.open(&sealed).expect("open"), b"hello");
        assert!(GroupSeal::new(&g, b"other genesis").open(&sealed).is_err());
        assert!(GroupSeal::new(&Hash32::of(b"h"), b"genesis")
            .open(&sealed)
            .is_err());
        let mut altered = sealed.clone();
        altered[20] ^= 1;
        assert!(seal.open(&altered).is_err());
        assert!(seal.open(&[1, 2, 3]).is_err());
    }
}
