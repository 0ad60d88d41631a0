//! Gossip topics and their sealed payloads.
//!
//! Topics are named `nestwork/1/<group-id>/<purpose>` (`1` is the protocol
//! version; purposes: `docs` now, `distress` later). Gossipsub has no
//! per-topic access list, so a payload is sealed with ChaCha20-Poly1305
//! under the group's current seal key (`nestwork_docs::seal`: derived from
//! the genesis record until someone leaves, then a new key per membership
//! epoch, sealed to each remaining member): a stranger who subscribes to
//! the topic, or a former member, sees only ciphertext. A payload starts
//! with the first [`KEY_ID_BYTES`] bytes of its key's id, in clear, so the
//! receiver knows which of its keys opens it; the topic name and that id
//! are bound into every seal, so a payload cannot be moved to another topic.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use std::collections::HashMap;

use nestwork_core::Hash32;
use nestwork_docs::seal::{self, Keyring};

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

/// Bytes of the key id in clear at the start of a sealed payload.
pub const KEY_ID_BYTES: usize = 8;

/// The short id of a seal key, as gossip carries it.
pub type ShortKeyId = [u8; KEY_ID_BYTES];

/// The short form of a key id.
pub fn short_key_id(id: &Hash32) -> ShortKeyId {
    let mut out = [0u8; KEY_ID_BYTES];
    out.copy_from_slice(&id.0[..KEY_ID_BYTES]);
    out
}

/// The key a sealed payload names, if it is long enough to be one.
pub fn key_id_of(payload: &[u8]) -> Option<ShortKeyId> {
    if payload.len() < KEY_ID_BYTES + 12 + 16 {
        return None;
    }
    payload[..KEY_ID_BYTES].try_into().ok()
}

/// Seals and opens payloads on one group's topic with one key.
#[derive(Clone)]
pub struct GroupSeal {
    cipher: ChaCha20Poly1305,
    topic: String,
    key_id: ShortKeyId,
}

/// A payload that does not open: not sealed with this group's key, or
/// altered.
#[derive(Debug, thiserror::Error)]
#[error("payload does not open with the group key")]
pub struct SealError;

impl GroupSeal {
    /// The first seal of the group whose genesis record (encoded) is
    /// `genesis`.
    pub fn new(group: &Hash32, genesis: &[u8]) -> Self {
        GroupSeal::with_key(group, &seal::genesis_key(group, genesis))
    }

    /// The seal of `group` with `key`.
    pub fn with_key(group: &Hash32, key: &[u8; 32]) -> Self {
        GroupSeal {
            cipher: ChaCha20Poly1305::new(Key::from_slice(key)),
            topic: docs_topic(group),
            key_id: short_key_id(&seal::key_id(group, key)),
        }
    }

    /// The short id of its key.
    pub fn key_id(&self) -> ShortKeyId {
        self.key_id
    }

    fn aad(&self) -> Vec<u8> {
        [self.topic.as_bytes(), &self.key_id].concat()
    }

    /// The topic this seal is for.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The key id, a nonce (12 random bytes), then the ciphertext.
    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        let nonce: [u8; 12] = rand::random();
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &self.aad(),
                },
            )
            .unwrap_or_default();
        [&self.key_id[..], &nonce[..], &sealed].concat()
    }

    /// Open a sealed payload.
    pub fn open(&self, bytes: &[u8]) -> Result<Vec<u8>, SealError> {
        if key_id_of(bytes) != Some(self.key_id) {
            return Err(SealError);
        }
        let (nonce, sealed) = bytes[KEY_ID_BYTES..].split_at(12);
        self.cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &self.aad(),
                },
            )
            .map_err(|_| SealError)
    }
}

/// Why a payload did not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenError {
    /// It names a key this node does not hold (not given to it, or not
    /// yet: a new key's record may still be on its way).
    UnknownKey,
    /// It names a key this node holds but does not open with it (altered,
    /// or too short to be a payload).
    DoesNotOpen,
}

/// Every seal a node holds for one group, and the one to seal with now.
#[derive(Clone)]
pub struct GroupSeals {
    group: Hash32,
    topic: String,
    keys: HashMap<ShortKeyId, GroupSeal>,
    current: Option<ShortKeyId>,
}

impl GroupSeals {
    /// The seals of a group just subscribed to: its genesis key, current.
    pub fn new(group: Hash32, genesis: &[u8]) -> Self {
        let first = GroupSeal::new(&group, genesis);
        let id = first.key_id();
        GroupSeals {
            group,
            topic: docs_topic(&group),
            keys: HashMap::from([(id, first)]),
            current: Some(id),
        }
    }

    /// The group.
    pub fn group(&self) -> Hash32 {
        self.group
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Take the keys of `ring`: keys are only ever added (old gossip still
    /// opens); the current one follows the ring. `true` if this gave a new
    /// current key.
    pub fn update(&mut self, ring: &Keyring) -> bool {
        for (id, key) in &ring.keys {
            self.keys
                .entry(short_key_id(id))
                .or_insert_with(|| GroupSeal::with_key(&self.group, key));
        }
        let before = self.current;
        self.current = ring.current.as_ref().map(short_key_id);
        self.current.is_some() && self.current != before
    }

    /// The seal to seal with now; `None` while no key is held by members
    /// only.
    pub fn current(&self) -> Option<&GroupSeal> {
        self.keys.get(&self.current?)
    }

    /// The short id of the current key.
    pub fn current_id(&self) -> Option<ShortKeyId> {
        self.current
    }

    /// The current key, or else any key held (what a test playing a
    /// hostile former member seals with).
    pub fn current_or_any_id(&self) -> Option<ShortKeyId> {
        self.current.or_else(|| self.keys.keys().min().copied())
    }

    /// The seal of one key, if held.
    pub fn get(&self, id: &ShortKeyId) -> Option<&GroupSeal> {
        self.keys.get(id)
    }

    /// How many keys it holds.
    pub fn held(&self) -> usize {
        self.keys.len()
    }

    /// Open a payload with the key it names.
    pub fn open(&self, bytes: &[u8]) -> Result<Vec<u8>, OpenError> {
        let id = key_id_of(bytes).ok_or(OpenError::DoesNotOpen)?;
        let seal = self.keys.get(&id).ok_or(OpenError::UnknownKey)?;
        seal.open(bytes).map_err(|_| OpenError::DoesNotOpen)
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

    #[test]
    fn a_group_opens_gossip_of_every_key_it_holds_and_seals_with_the_current() {
        let g = Hash32::of(b"g");
        let mut seals = GroupSeals::new(g, b"genesis");
        let old = seals.current().expect("genesis key").seal(b"before");
        let new_key = [9u8; 32];
        let new_id = seal::key_id(&g, &new_key);
        let later = GroupSeal::with_key(&g, &new_key).seal(b"after");
        assert_eq!(seals.open(&later), Err(OpenError::UnknownKey));
        let first_id = seal::key_id(&g, &seal::genesis_key(&g, b"genesis"));
        seals.update(&Keyring {
            keys: [
                (first_id, seal::genesis_key(&g, b"genesis")),
                (new_id, new_key),
            ]
            .into_iter()
            .collect(),
            current: Some(new_id),
            need: None,
        });
        assert_eq!(seals.open(&old).expect("old"), b"before");
        assert_eq!(seals.open(&later).expect("new"), b"after");
        let sealed = seals.current().expect("current").seal(b"x");
        assert_eq!(key_id_of(&sealed), Some(short_key_id(&new_id)));
        let mut altered = later.clone();
        altered[30] ^= 1;
        assert_eq!(seals.open(&altered), Err(OpenError::DoesNotOpen));
        assert_eq!(seals.open(&[0; 5]), Err(OpenError::DoesNotOpen));
        // No key held by members only: nothing to seal with.
        let _ = seals.update(&Keyring {
            keys: Default::default(),
            current: None,
            need: None,
        });
        assert!(seals.current().is_none());
        assert_eq!(seals.held(), 2);
    }
}
