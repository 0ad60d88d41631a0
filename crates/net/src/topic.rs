//! Gossip topics and their sealed payloads.
//!
//! Topics are named `nestwork/2/<group-id>/<purpose>` (`2` is the protocol
//! version; purposes: `docs` now, `distress` later). Gossipsub has no
//! per-topic access list, so a payload is sealed with ChaCha20-Poly1305
//! under the group's current seal key (`nestwork_docs::seal`: derived from
//! the genesis record until someone leaves, then a new key per membership
//! epoch, sealed to each remaining member): a stranger who subscribes to
//! the topic, or a former member, sees only ciphertext. A payload starts
//! with the first [`KEY_ID_BYTES`] bytes of its key's id, in clear, so the
//! receiver knows which of its keys opens it; the topic name and that id
//! are bound into every seal, so a payload cannot be moved to another topic.
//!
//! Inside the seal, before the plaintext, is the time it was sealed
//! ([`SEAL_TIME_BYTES`], milliseconds since the epoch, big-endian): the
//! AEAD authenticates it, so only a key holder can set it. Gossipsub drops
//! a repeat of the same bytes only while its duplicate cache remembers
//! them ([`DUPLICATE_WINDOW`]); after that anyone who recorded a message
//! could publish it again and every node would decode and apply it once
//! more. [`GroupSeals::open`] refuses a message sealed more than
//! [`MAX_SEAL_AGE`] ago or more than [`CLOCK_SKEW`] ahead of this node's
//! clock, before anything in it is decoded, and the duplicate window is
//! long enough to cover every message still inside those bounds: each
//! node validates given sealed bytes at most once.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use std::collections::HashMap;
use std::time::Duration;

use nestwork_core::{GroupId, Hash32};
use nestwork_docs::seal::{self, Keyring};

/// Protocol version in topic names. 2: the seal time inside every sealed
/// payload (a node of version 1 would read its bytes as part of the
/// changes; with another topic name it never receives them).
pub const TOPIC_VERSION: u32 = 2;

/// How far two members' clocks may be apart. A message sealed further
/// ahead of a receiver's clock than this is refused as not yet valid.
pub const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// The oldest a sealed message may be when it is opened: [`CLOCK_SKEW`]
/// for a sender whose clock is behind, plus as long again for delivery
/// (hops, gossip repair at the heartbeat, a validation queue). An honest
/// message takes milliseconds to seconds.
pub const MAX_SEAL_AGE: Duration = Duration::from_secs(2 * 60);

/// How long gossipsub remembers a message id and drops repeats of it
/// (`duplicate_cache_time`). A message is accepted from [`CLOCK_SKEW`]
/// before its seal time (by this node's clock) to [`MAX_SEAL_AGE`] after
/// it; the first copy lands somewhere in that span, so remembering it for
/// the whole span means any later copy that would still open is dropped as
/// a duplicate, and any copy after that is refused as stale.
pub const DUPLICATE_WINDOW: Duration =
    Duration::from_secs(CLOCK_SKEW.as_secs() + MAX_SEAL_AGE.as_secs());

/// Bytes of the seal time at the start of the sealed plaintext.
pub const SEAL_TIME_BYTES: usize = 8;

/// The topic that carries a group's document changes.
pub fn docs_topic(group: &GroupId) -> String {
    format!("nestwork/{TOPIC_VERSION}/{}/docs", group.to_hex())
}

/// The group id in a docs topic name, if it is one.
pub fn group_of_docs_topic(topic: &str) -> Option<GroupId> {
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
    if payload.len() < KEY_ID_BYTES + 12 + SEAL_TIME_BYTES + 16 {
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

/// A payload opened: when it was sealed (as its sender's clock said) and
/// what it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// Milliseconds since the Unix epoch.
    pub sealed_at_ms: u64,
    /// The plaintext.
    pub plaintext: Vec<u8>,
}

impl GroupSeal {
    /// The first seal of the group whose genesis record (encoded) is
    /// `genesis`.
    pub fn new(group: &GroupId, genesis: &[u8]) -> Self {
        GroupSeal::with_key(group, &seal::genesis_key(group, genesis))
    }

    /// The seal of `group` with `key`.
    pub fn with_key(group: &GroupId, key: &[u8; 32]) -> Self {
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

    /// The key id, a nonce (12 random bytes), then the ciphertext of the
    /// seal time `sealed_at_ms` (milliseconds since the Unix epoch: now, for
    /// anything sent) followed by `plaintext`.
    pub fn seal(&self, plaintext: &[u8], sealed_at_ms: u64) -> Vec<u8> {
        let nonce: [u8; 12] = rand::random();
        let inner = [&sealed_at_ms.to_be_bytes()[..], plaintext].concat();
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &inner,
                    aad: &self.aad(),
                },
            )
            .unwrap_or_default();
        [&self.key_id[..], &nonce[..], &sealed].concat()
    }

    /// Open a sealed payload. This checks only the seal; whether its time
    /// is acceptable is [`check_seal_time`]'s question.
    pub fn open(&self, bytes: &[u8]) -> Result<Opened, SealError> {
        if key_id_of(bytes) != Some(self.key_id) {
            return Err(SealError);
        }
        let (nonce, sealed) = bytes[KEY_ID_BYTES..].split_at(12);
        let mut inner = self
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &self.aad(),
                },
            )
            .map_err(|_| SealError)?;
        let time: [u8; SEAL_TIME_BYTES] = inner
            .get(..SEAL_TIME_BYTES)
            .and_then(|t| t.try_into().ok())
            .ok_or(SealError)?;
        inner.drain(..SEAL_TIME_BYTES);
        Ok(Opened {
            sealed_at_ms: u64::from_be_bytes(time),
            plaintext: inner,
        })
    }
}

/// Whether a message sealed at `sealed_at_ms` may be opened at `now_ms`
/// (both milliseconds since the Unix epoch): not more than
/// [`MAX_SEAL_AGE`] old, not more than [`CLOCK_SKEW`] ahead.
pub fn check_seal_time(sealed_at_ms: u64, now_ms: u64) -> Result<(), OpenError> {
    let max_age = MAX_SEAL_AGE.as_millis() as u64;
    let skew = CLOCK_SKEW.as_millis() as u64;
    if sealed_at_ms.saturating_add(max_age) < now_ms {
        Err(OpenError::Stale {
            age_s: (now_ms - sealed_at_ms) / 1000,
        })
    } else if sealed_at_ms > now_ms.saturating_add(skew) {
        Err(OpenError::Ahead {
            ahead_s: (sealed_at_ms - now_ms) / 1000,
        })
    } else {
        Ok(())
    }
}

/// Why a payload did not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// It names a key this node does not hold (not given to it, or not
    /// yet: a new key's record may still be on its way).
    #[error("sealed with a key this node does not hold")]
    UnknownKey,
    /// It names a key this node holds but does not open with it (altered,
    /// or too short to be a payload).
    #[error("payload does not open with the group key")]
    DoesNotOpen,
    /// It opens, but was sealed more than [`MAX_SEAL_AGE`] ago: old gossip
    /// published again after gossipsub forgot it, or a sender whose clock
    /// is far behind.
    #[error(
        "sealed {age_s} s ago, longer than gossip lives: a replay, or the sender's clock is behind"
    )]
    Stale {
        /// How long ago, in seconds, by this node's clock.
        age_s: u64,
    },
    /// It opens, but was sealed more than [`CLOCK_SKEW`] ahead of this
    /// node's clock: one of the two clocks is wrong.
    #[error("sealed {ahead_s} s ahead of this node's clock: one of the two clocks is wrong")]
    Ahead {
        /// How far ahead, in seconds.
        ahead_s: u64,
    },
}

/// Every seal a node holds for one group, and the one to seal with now.
#[derive(Clone)]
pub struct GroupSeals {
    group: GroupId,
    topic: String,
    keys: HashMap<ShortKeyId, GroupSeal>,
    current: Option<ShortKeyId>,
}

impl GroupSeals {
    /// The seals of a group just subscribed to: its genesis key, current.
    pub fn new(group: GroupId, genesis: &[u8]) -> Self {
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
    pub fn group(&self) -> GroupId {
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

    /// Open a payload with the key it names, if it was sealed within the
    /// bounds of [`check_seal_time`] of `now_ms`; nothing in a stale one is
    /// returned, so nothing in it is decoded.
    pub fn open(&self, bytes: &[u8], now_ms: u64) -> Result<Vec<u8>, OpenError> {
        let id = key_id_of(bytes).ok_or(OpenError::DoesNotOpen)?;
        let seal = self.keys.get(&id).ok_or(OpenError::UnknownKey)?;
        let opened = seal.open(bytes).map_err(|_| OpenError::DoesNotOpen)?;
        check_seal_time(opened.sealed_at_ms, now_ms)?;
        Ok(opened.plaintext)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A moment to seal and open at (tests do not read the clock).
    const NOW: u64 = 1_800_000_000_000;

    #[test]
    fn topic_names_round_trip() {
        let g = GroupId::from(Hash32::of(b"g"));
        assert_eq!(group_of_docs_topic(&docs_topic(&g)), Some(g));
        assert_eq!(group_of_docs_topic("nestwork/2/zz/docs"), None);
        // A version 1 topic (no seal time inside) is not one of ours.
        assert_eq!(
            group_of_docs_topic(&format!("nestwork/1/{}/docs", g.to_hex())),
            None
        );
    }

    #[test]
    fn only_the_same_group_opens_a_seal() {
        let g = GroupId::from(Hash32::of(b"g"));
        let seal = GroupSeal::new(&g, b"genesis");
        let sealed = seal.seal(b"hello", NOW);
        assert_eq!(
            seal.open(&sealed).expect("open"),
            Opened {
                sealed_at_ms: NOW,
                plaintext: b"hello".to_vec()
            }
        );
        assert!(GroupSeal::new(&g, b"other genesis").open(&sealed).is_err());
        assert!(GroupSeal::new(&GroupId::from(Hash32::of(b"h")), b"genesis")
            .open(&sealed)
            .is_err());
        let mut altered = sealed.clone();
        altered[20] ^= 1;
        assert!(seal.open(&altered).is_err());
        assert!(seal.open(&[1, 2, 3]).is_err());
    }

    #[test]
    fn a_group_opens_gossip_of_every_key_it_holds_and_seals_with_the_current() {
        let g = GroupId::from(Hash32::of(b"g"));
        let mut seals = GroupSeals::new(g, b"genesis");
        let old = seals.current().expect("genesis key").seal(b"before", NOW);
        let new_key = [9u8; 32];
        let new_id = seal::key_id(&g, &new_key);
        let later = GroupSeal::with_key(&g, &new_key).seal(b"after", NOW);
        assert_eq!(seals.open(&later, NOW), Err(OpenError::UnknownKey));
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
        assert_eq!(seals.open(&old, NOW).expect("old"), b"before");
        assert_eq!(seals.open(&later, NOW).expect("new"), b"after");
        let sealed = seals.current().expect("current").seal(b"x", NOW);
        assert_eq!(key_id_of(&sealed), Some(short_key_id(&new_id)));
        let mut altered = later.clone();
        altered[30] ^= 1;
        assert_eq!(seals.open(&altered, NOW), Err(OpenError::DoesNotOpen));
        assert_eq!(seals.open(&[0; 5], NOW), Err(OpenError::DoesNotOpen));
        // No key held by members only: nothing to seal with.
        let _ = seals.update(&Keyring {
            keys: Default::default(),
            current: None,
            need: None,
        });
        assert!(seals.current().is_none());
        assert_eq!(seals.held(), 2);
    }

    /// Issue 15, finding 4: gossipsub drops a repeat only while its
    /// duplicate cache remembers the message; a sealed message recorded and
    /// published again after that was opened, decoded and applied in full
    /// by every node, at no cost to whoever sent it. Now its seal time,
    /// which only a key holder can set, refuses it before any decoding.
    #[test]
    fn finding_4_a_sealed_message_replayed_after_the_duplicate_window_is_refused_before_it_is_applied(
    ) {
        let g = GroupId::from(Hash32::of(b"g"));
        let seals = GroupSeals::new(g, b"genesis");
        let seal = seals.current().expect("genesis key");
        let ms = |d: Duration| d.as_millis() as u64;

        // Fresh, and anywhere within the bounds: opens.
        assert_eq!(
            seals.open(&seal.seal(b"fresh", NOW), NOW),
            Ok(b"fresh".to_vec())
        );
        let oldest = NOW - ms(MAX_SEAL_AGE);
        assert!(seals.open(&seal.seal(b"x", oldest), NOW).is_ok());
        let latest = NOW + ms(CLOCK_SKEW);
        assert!(seals.open(&seal.seal(b"x", latest), NOW).is_ok());

        // Sealed when it was first sent, replayed once gossipsub has
        // forgotten it: refused, and says why.
        let replayed = seal.seal(b"old", NOW - ms(DUPLICATE_WINDOW) - 1);
        let refused = seals.open(&replayed, NOW).expect_err("a replay is refused");
        assert_eq!(refused, OpenError::Stale { age_s: 180 });
        assert!(
            refused.to_string().contains("a replay"),
            "a clear reason: {refused}"
        );
        assert!(seals.open(&seal.seal(b"x", oldest - 1), NOW).is_err());
        // A seal time as old as it gets does not overflow.
        assert!(matches!(
            seals.open(&seal.seal(b"x", 0), NOW),
            Err(OpenError::Stale { .. })
        ));

        // Too far ahead of this node's clock: refused too.
        let ahead = seals.open(&seal.seal(b"x", latest + 1), NOW);
        assert_eq!(ahead, Err(OpenError::Ahead { ahead_s: 60 }));
        assert!(matches!(
            seals.open(&seal.seal(b"x", u64::MAX), NOW),
            Err(OpenError::Ahead { .. })
        ));

        // The time cannot be moved without the key: the seal breaks, and
        // that is not a replay but a forgery (rejected, sender penalised).
        let mut moved = replayed.clone();
        moved[KEY_ID_BYTES + 12] ^= 0x80;
        assert_eq!(seals.open(&moved, NOW), Err(OpenError::DoesNotOpen));

        // Every copy that would still open is one gossipsub still drops.
        assert!(DUPLICATE_WINDOW >= MAX_SEAL_AGE + CLOCK_SKEW);
    }
}
