//! The two signed envelopes.
//!
//! - A [`SignedRecord`] is an insert-only fact (a group's genesis, a
//!   membership, later a payment or a distress signal): its author signs the
//!   canonical bytes of its body, and its id is the hash of the whole
//!   envelope, so it can be stored under its id and never rewritten.
//! - A [`SignedChange`] wraps the bytes of one Automerge change with the
//!   author's signature over the document id and the change's hash. The
//!   hash commits to every byte of the change (Automerge computes it over
//!   the uncompressed chunk), and signing it rather than the bytes lets a
//!   change travel compressed or not. The engine that parses the bytes checks
//!   that they hash to `hash`; a change cannot be replayed into another
//!   document or altered in transit.
//!
//! Each domain has its own signing prefix so a signature made for one can
//! never be presented as the other.

use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::limits::MAX_CHANGE_DATA_BYTES;
use crate::{encoding, Error, Hash32, MemberId, MemberKey, Result};

const RECORD_DOMAIN: &[u8] = b"nestwork/record/v1\0";
const CHANGE_DOMAIN: &[u8] = b"nestwork/change/v1\0";

pub use crate::limits::{MAX_BUNDLE_BYTES, MAX_CHANGE_BYTES, MAX_RECORD_BYTES};

/// An insert-only fact signed by its author.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub struct SignedRecord {
    /// Who signed it.
    pub author: MemberId,
    /// The canonical encoding of the record's body (defined by the document
    /// kind that stores it).
    pub body: Vec<u8>,
    /// ed25519 signature over the record domain and `body`.
    pub signature: Vec<u8>,
}

impl SignedRecord {
    /// Sign `body` as `key`.
    pub fn sign(key: &MemberKey, body: Vec<u8>) -> Self {
        let signature = key.sign(&record_message(&body)).to_vec();
        SignedRecord {
            author: key.id(),
            body,
            signature,
        }
    }

    /// Check the signature against the author's key.
    pub fn verify(&self) -> Result<()> {
        verify_one(
            &self.author,
            &record_message(&self.body),
            &self.signature,
            "record",
        )
    }

    /// Canonical bytes of the whole envelope.
    pub fn encode(&self) -> Vec<u8> {
        encoding::encode(self)
    }

    /// Decode and verify untrusted bytes.
    pub fn decode_verified(bytes: &[u8]) -> Result<Self> {
        let record: SignedRecord = encoding::decode("record", bytes, MAX_RECORD_BYTES)?;
        record.verify()?;
        Ok(record)
    }

    /// Decode bytes this node checked, signature included, before it
    /// stored them (a document read back from its own store).
    pub fn decode_stored(bytes: &[u8]) -> Result<Self> {
        encoding::decode("record", bytes, MAX_RECORD_BYTES)
    }

    /// The record's id: the hash of its canonical bytes.
    pub fn id(&self) -> Hash32 {
        Hash32::of(&self.encode())
    }
}

fn record_message(body: &[u8]) -> Vec<u8> {
    [RECORD_DOMAIN, body].concat()
}

/// One Automerge change with its author's signature.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub struct SignedChange {
    /// Who made the change. The change's Automerge actor id must begin with
    /// this key (checked by the document engine, which can parse changes).
    pub author: MemberId,
    /// The document the change belongs to.
    pub doc: Hash32,
    /// The Automerge hash of the change; what the signature covers.
    pub hash: Hash32,
    /// The raw bytes of the Automerge change.
    pub change: Vec<u8>,
    /// ed25519 signature over the change domain, `doc` and `hash`.
    pub signature: Vec<u8>,
}

impl SignedChange {
    /// Sign the change with hash `hash` and bytes `change` for document
    /// `doc` as `key`.
    pub fn sign(key: &MemberKey, doc: Hash32, hash: Hash32, change: Vec<u8>) -> Self {
        let signature = key.sign(&change_message(&doc, &hash)).to_vec();
        SignedChange {
            author: key.id(),
            doc,
            hash,
            change,
            signature,
        }
    }

    /// Check the signature against the author's key.
    pub fn verify(&self) -> Result<()> {
        verify_one(
            &self.author,
            &change_message(&self.doc, &self.hash),
            &self.signature,
            "change",
        )
    }

    /// Verify many changes at once. ed25519 batch verification is about
    /// twice as fast per signature; when the batch fails we fall back to one
    /// by one so that each change gets its own verdict.
    pub fn verify_all(changes: &[SignedChange]) -> Vec<Result<()>> {
        let mut messages = Vec::with_capacity(changes.len());
        let mut signatures = Vec::with_capacity(changes.len());
        let mut keys: Vec<VerifyingKey> = Vec::with_capacity(changes.len());
        for c in changes {
            let parts = c
                .author
                .verifying_key()
                .ok()
                .zip(parse_signature(&c.signature));
            match parts {
                Some((k, s)) => {
                    keys.push(k);
                    signatures.push(s);
                    messages.push(change_message(&c.doc, &c.hash));
                }
                None => return changes.iter().map(SignedChange::verify).collect(),
            }
        }
        let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
        if !changes.is_empty() && ed25519_dalek::verify_batch(&refs, &signatures, &keys).is_ok() {
            return changes.iter().map(|_| Ok(())).collect();
        }
        changes.iter().map(SignedChange::verify).collect()
    }

    /// Canonical bytes of the envelope.
    pub fn encode(&self) -> Vec<u8> {
        encoding::encode(self)
    }

    /// Decode untrusted bytes (the signature is checked separately, so that
    /// many can be verified in one batch).
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        encoding::decode("change", bytes, MAX_CHANGE_BYTES)
    }

    /// Refuse a change over the size limits before anything is done with
    /// it. A change arrives inside a larger message (a gossip batch, a sync
    /// answer, a bundle), so [`SignedChange::decode`]'s limit is not checked
    /// on the way in; the store reads every change back with that limit, so
    /// one accepted over it would stop the node from starting.
    pub fn check_size(&self) -> Result<()> {
        if self.change.len() > MAX_CHANGE_DATA_BYTES {
            return Err(Error::TooLarge {
                what: "change",
                size: self.change.len(),
                limit: MAX_CHANGE_DATA_BYTES,
            });
        }
        let size = encoding::encoded_len(self);
        if size > MAX_CHANGE_BYTES {
            return Err(Error::TooLarge {
                what: "change envelope",
                size,
                limit: MAX_CHANGE_BYTES,
            });
        }
        Ok(())
    }
}

fn change_message(doc: &Hash32, hash: &Hash32) -> Vec<u8> {
    [CHANGE_DOMAIN, &doc.0, &hash.0].concat()
}

fn parse_signature(bytes: &[u8]) -> Option<Signature> {
    let arr: [u8; 64] = bytes.try_into().ok()?;
    Some(Signature::from_bytes(&arr))
}

/// Check a detached signature by `author` over `msg` (strict ed25519:
/// no malleable or small-order signatures).
pub fn verify_signature(
    author: &MemberId,
    msg: &[u8],
    sig: &[u8],
    what: &'static str,
) -> Result<()> {
    verify_one(author, msg, sig, what)
}

fn verify_one(author: &MemberId, msg: &[u8], sig: &[u8], what: &'static str) -> Result<()> {
    let key = author.verifying_key()?;
    let sig = parse_signature(sig).ok_or(Error::BadSignature {
        what,
        author: *author,
    })?;
    key.verify_strict(msg, &sig)
        .map_err(|_| Error::BadSignature {
            what,
            author: *author,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(n: u8) -> MemberKey {
        MemberKey::from_secret([n; 32])
    }

    #[test]
    fn record_sign_verify_round_trip() {
        let r = SignedRecord::sign(&key(1), b"hello".to_vec());
        let bytes = r.encode();
        assert_eq!(SignedRecord::decode_verified(&bytes), Ok(r.clone()));
        assert_eq!(r.id(), Hash32::of(&bytes));
    }

    #[test]
    fn record_with_wrong_author_is_rejected() {
        let mut r = SignedRecord::sign(&key(1), b"hello".to_vec());
        r.author = key(2).id();
        assert!(matches!(r.verify(), Err(Error::BadSignature { .. })));
    }

    #[test]
    fn change_is_bound_to_its_document() {
        let c = SignedChange::sign(
            &key(1),
            Hash32::of(b"doc a"),
            Hash32::of(b"c"),
            b"c".to_vec(),
        );
        assert!(c.verify().is_ok());
        let mut moved = c.clone();
        moved.doc = Hash32::of(b"doc b");
        assert!(moved.verify().is_err());
    }

    #[test]
    fn a_record_signature_is_not_a_change_signature() {
        let doc = Hash32::of(b"d");
        let hash = Hash32::of(b"x");
        let body = [&doc.0[..], &hash.0[..]].concat();
        let r = SignedRecord::sign(&key(1), body);
        let forged = SignedChange {
            author: r.author,
            doc,
            hash,
            change: b"x".to_vec(),
            signature: r.signature,
        };
        assert!(forged.verify().is_err());
    }

    #[test]
    fn batch_verification_singles_out_the_bad_one() {
        let doc = Hash32::of(b"d");
        let mut changes: Vec<_> = (0..5u8)
            .map(|i| SignedChange::sign(&key(i), doc, Hash32::of(&[i]), vec![i; 10]))
            .collect();
        changes[3].hash.0[0] ^= 1;
        let verdicts = SignedChange::verify_all(&changes);
        let bad: Vec<usize> = verdicts
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_err())
            .map(|(i, _)| i)
            .collect();
        assert_eq!(bad, vec![3]);
    }

    #[test]
    fn a_change_over_the_limit_fails_its_size_check_and_its_encoding_is_counted_exactly() {
        let doc = Hash32::of(b"d");
        let ok = SignedChange::sign(&key(1), doc, Hash32::of(b"c"), vec![7; 1000]);
        assert_eq!(encoding::encoded_len(&ok), ok.encode().len());
        assert!(ok.check_size().is_ok());
        let big = SignedChange::sign(&key(1), doc, Hash32::of(b"c"), vec![7; MAX_CHANGE_BYTES]);
        assert!(matches!(big.check_size(), Err(Error::TooLarge { .. })));
    }

    proptest! {
        #[test]
        fn any_single_bit_flip_breaks_the_envelope(pos in 0usize..200, bit in 0u8..8) {
            let c = SignedChange::sign(&key(1), Hash32::of(b"d"), Hash32::of(b"c"), vec![42; 64]);
            let mut bytes = c.encode();
            let pos = pos % bytes.len();
            bytes[pos] ^= 1 << bit;
            // A flip in the change bytes is caught by the engine's hash
            // check; everything else the signature covers.
            if let Ok(decoded) = SignedChange::decode(&bytes) {
                prop_assert!(decoded.verify().is_err() || decoded.change != c.change || decoded == c);
            }
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = SignedChange::decode(&bytes);
            let _ = SignedRecord::decode_verified(&bytes);
            let _ = ChangeBundle::decode(&bytes);
            let tagged = [&b"NWBUNDL2"[..], &bytes].concat();
            let _ = ChangeBundle::decode(&tagged);
        }
    }

    fn bundle() -> ChangeBundle {
        let group = Hash32::of(b"group");
        let period = Hash32::of(b"period 0");
        ChangeBundle {
            doc: group,
            changes: vec![SignedChange::sign(
                &key(1),
                group,
                Hash32::of(b"g"),
                vec![1; 20],
            )],
            periods: vec![PeriodChanges {
                period: 0,
                doc: period,
                changes: vec![SignedChange::sign(
                    &key(2),
                    period,
                    Hash32::of(b"p"),
                    vec![2; 20],
                )],
            }],
        }
    }

    #[test]
    fn a_bundle_round_trips_with_its_periods_and_says_its_format() {
        let b = bundle();
        let bytes = b.encode();
        assert_eq!(&bytes[..8], b"NWBUNDL2");
        assert_eq!(bytes.len(), b.encoded_len());
        assert_eq!(ChangeBundle::decode(&bytes), Ok(b.clone()));
        assert_eq!(b.change_count(), 2);
    }

    #[test]
    fn a_first_format_bundle_is_still_read_as_the_group_alone() {
        let b = bundle();
        let old = [
            &b"NWBUNDL1"[..],
            &encoding::encode(&(b.doc, b.changes.clone())),
        ]
        .concat();
        assert_eq!(
            ChangeBundle::decode(&old),
            Ok(ChangeBundle::of_group(b.doc, b.changes))
        );
    }

    #[test]
    fn an_unknown_format_or_an_oversized_bundle_is_refused_plainly() {
        let mut bytes = bundle().encode();
        bytes[7] = b'9';
        let err = ChangeBundle::decode(&bytes).expect_err("unknown format");
        assert!(err.to_string().contains("bundle format '9'"), "{err}");
        let big = vec![0u8; MAX_BUNDLE_BYTES + 1];
        assert!(matches!(
            ChangeBundle::decode(&big),
            Err(Error::TooLarge { what: "bundle", .. })
        ));
        let err = ChangeBundle::decode(b"NWBUNDL").expect_err("no version");
        assert!(err.to_string().contains("not a Nestwork bundle"), "{err}");
    }
}

/// Tag at the start of a bundle, so that a wrong file is recognised as
/// such; the byte after it is the bundle format's version (an ASCII digit).
const BUNDLE_TAG: &[u8; 7] = b"NWBUNDL";

/// The bundle format written now: the group document and every ledger
/// period document of the group.
pub const BUNDLE_VERSION: u8 = 2;

/// The first format (`NWBUNDL1`): the group document alone. Still read;
/// such a bundle carries no ledger periods.
const BUNDLE_VERSION_GROUP_ONLY: u8 = 1;

/// A whole group as signed changes, as written by `group export` and read
/// by `group import`: how a group travels on a USB stick. It holds the group
/// document and every ledger period document of the group, each as its
/// document id and changes; the importing node checks every change as if a
/// peer had sent it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub struct ChangeBundle {
    /// The group (its document's id).
    pub doc: Hash32,
    /// The group document's changes, in causal order.
    pub changes: Vec<SignedChange>,
    /// The group's ledger period documents, oldest first.
    pub periods: Vec<PeriodChanges>,
}

/// One ledger period document in a [`ChangeBundle`].
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub struct PeriodChanges {
    /// The period's number.
    pub period: u64,
    /// The period document's id (the importing node refuses one that is
    /// not this period's of the bundle's group).
    pub doc: Hash32,
    /// Its changes, in causal order.
    pub changes: Vec<SignedChange>,
}

/// The first format's body.
#[derive(Deserialize)]
struct GroupOnlyBundle {
    doc: Hash32,
    changes: Vec<SignedChange>,
}

impl ChangeBundle {
    /// A bundle of the group document alone (no ledger periods).
    pub fn of_group(doc: Hash32, changes: Vec<SignedChange>) -> Self {
        ChangeBundle {
            doc,
            changes,
            periods: Vec::new(),
        }
    }

    /// How many changes it holds, over every document.
    pub fn change_count(&self) -> usize {
        self.changes.len() + self.periods.iter().map(|p| p.changes.len()).sum::<usize>()
    }

    /// The size of [`ChangeBundle::encode`]'s bytes, without encoding.
    pub fn encoded_len(&self) -> usize {
        BUNDLE_TAG.len() + 1 + encoding::encoded_len(self)
    }

    /// Bytes to write to a file (the current format).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.extend_from_slice(BUNDLE_TAG);
        out.push(b'0' + BUNDLE_VERSION);
        out.extend_from_slice(&encoding::encode(self));
        out
    }

    /// Decode untrusted bytes (signatures are checked by the engine):
    /// at most [`MAX_BUNDLE_BYTES`] in all, refused before anything is
    /// parsed; either format.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        if bytes.len() > MAX_BUNDLE_BYTES {
            return Err(Error::TooLarge {
                what: "bundle",
                size: bytes.len(),
                limit: MAX_BUNDLE_BYTES,
            });
        }
        let (version, body) = bytes
            .strip_prefix(&BUNDLE_TAG[..])
            .and_then(|rest| rest.split_first())
            .ok_or(Error::Malformed {
                what: "bundle",
                reason: "not a Nestwork bundle (wrong header)".into(),
            })?;
        match version.wrapping_sub(b'0') {
            BUNDLE_VERSION => encoding::decode("bundle", body, MAX_BUNDLE_BYTES),
            BUNDLE_VERSION_GROUP_ONLY => {
                let old: GroupOnlyBundle = encoding::decode("bundle", body, MAX_BUNDLE_BYTES)?;
                Ok(ChangeBundle::of_group(old.doc, old.changes))
            }
            _ => Err(Error::Malformed {
                what: "bundle",
                reason: format!(
                    "bundle format {:?} is not one this version of nestwork reads (it reads formats 1 and {BUNDLE_VERSION}); export it again with this version",
                    char::from(*version)
                ),
            }),
        }
    }
}
