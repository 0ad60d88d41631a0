//! Key boxes: a 32-byte secret sealed to one member, so that only the
//! holder of that member's key opens it.
//!
//! A member has one key, ed25519, which signs. To seal to it, its public
//! key is taken in its Montgomery form (the X25519 key of the same secret,
//! as libsodium's `crypto_sign_ed25519_pk_to_curve25519` does) and the
//! sender makes a fresh key pair for each box: the Diffie-Hellman of the
//! two, hashed with both public keys and the box's context, keys
//! ChaCha20-Poly1305 for this one box (so a fixed nonce is safe). Using one
//! key pair both to sign and for Diffie-Hellman this way is sound
//! (Thormarker, "On using the same key pair for Ed25519 and an X25519 based
//! KEM", 2021); it spares every member a second key to publish and keep.
//!
//! A box is [`KEY_BOX_BYTES`] bytes: the sender's one-time public key (32,
//! Edwards form), then the sealed secret (32) and its tag (16).

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use ed25519_dalek::{SigningKey, VerifyingKey};

use crate::{Hash32, MemberId, MemberKey};

/// The size of a key box.
pub const KEY_BOX_BYTES: usize = 32 + 32 + 16;

/// Why a key box could not be made or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyBoxError {
    /// Not the size of a box.
    #[error("a key box is {KEY_BOX_BYTES} bytes, this one is {0}")]
    Length(usize),
    /// The one-time key in the box is not a point of the curve.
    #[error("the key box's one-time key is not a valid public key")]
    BadOneTimeKey,
    /// The recipient's id is not a key one can seal to.
    #[error("cannot seal to {0}: not a valid public key")]
    BadRecipient(MemberId),
    /// Sealed to someone else, for another context, or altered.
    #[error("the key box does not open with this member's key")]
    DoesNotOpen,
}

fn box_cipher(
    shared: &[u8; 32],
    one_time: &[u8; 32],
    to: &MemberId,
    context: &[u8],
) -> ChaCha20Poly1305 {
    let key = Hash32::of_parts(&[b"nestwork/key-box/v1", shared, one_time, &to.0, context]);
    ChaCha20Poly1305::new(Key::from_slice(&key.0))
}

/// Seal `secret` to `to`, bound to `context` (the box opens only for the
/// same context: the group and the key's id).
pub fn seal(
    to: &MemberId,
    context: &[u8],
    secret: &[u8; 32],
) -> Result<[u8; KEY_BOX_BYTES], KeyBoxError> {
    let theirs = to
        .verifying_key()
        .map_err(|_| KeyBoxError::BadRecipient(*to))?
        .to_montgomery();
    let one_time = SigningKey::generate(&mut rand::rngs::OsRng);
    let one_time_public = one_time.verifying_key().to_bytes();
    let shared = theirs.mul_clamped(one_time.to_scalar_bytes()).to_bytes();
    if shared == [0; 32] {
        // A key of small order: nothing sealed to it would be secret.
        return Err(KeyBoxError::BadRecipient(*to));
    }
    let sealed = box_cipher(&shared, &one_time_public, to, context)
        .encrypt(
            Nonce::from_slice(&[0; 12]),
            Payload {
                msg: secret,
                aad: context,
            },
        )
        .map_err(|_| KeyBoxError::DoesNotOpen)?;
    let mut out = [0u8; KEY_BOX_BYTES];
    out[..32].copy_from_slice(&one_time_public);
    out[32..].copy_from_slice(&sealed);
    Ok(out)
}

/// Check a box's shape (its size, its one-time key) without opening it:
/// what every node can check of a box sealed to someone else.
pub fn check(boxed: &[u8]) -> Result<(), KeyBoxError> {
    if boxed.len() != KEY_BOX_BYTES {
        return Err(KeyBoxError::Length(boxed.len()));
    }
    let mut one_time = [0u8; 32];
    one_time.copy_from_slice(&boxed[..32]);
    VerifyingKey::from_bytes(&one_time).map_err(|_| KeyBoxError::BadOneTimeKey)?;
    Ok(())
}

/// Open a box sealed to `me` for `context`.
pub fn open(me: &MemberKey, context: &[u8], boxed: &[u8]) -> Result<[u8; 32], KeyBoxError> {
    check(boxed)?;
    let mut one_time = [0u8; 32];
    one_time.copy_from_slice(&boxed[..32]);
    let point = VerifyingKey::from_bytes(&one_time)
        .map_err(|_| KeyBoxError::BadOneTimeKey)?
        .to_montgomery();
    let shared = point
        .mul_clamped(me.signing_key().to_scalar_bytes())
        .to_bytes();
    if shared == [0; 32] {
        return Err(KeyBoxError::DoesNotOpen);
    }
    let opened = box_cipher(&shared, &one_time, &me.id(), context)
        .decrypt(
            Nonce::from_slice(&[0; 12]),
            Payload {
                msg: &boxed[32..],
                aad: context,
            },
        )
        .map_err(|_| KeyBoxError::DoesNotOpen)?;
    opened.try_into().map_err(|_| KeyBoxError::DoesNotOpen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_member_it_is_sealed_to_opens_a_box() {
        let alice = MemberKey::from_secret([1; 32]);
        let bob = MemberKey::from_secret([2; 32]);
        let secret = [7u8; 32];
        let boxed = seal(&alice.id(), b"group/key", &secret).expect("seal");
        assert_eq!(open(&alice, b"group/key", &boxed), Ok(secret));
        assert_eq!(
            open(&bob, b"group/key", &boxed),
            Err(KeyBoxError::DoesNotOpen)
        );
        // Bound to its context: not movable to another group or key.
        assert_eq!(
            open(&alice, b"group/other key", &boxed),
            Err(KeyBoxError::DoesNotOpen)
        );
        // Two boxes of the same secret differ (a fresh one-time key each).
        let again = seal(&alice.id(), b"group/key", &secret).expect("seal");
        assert_ne!(boxed, again);
    }

    #[test]
    fn a_tampered_box_is_refused() {
        let alice = MemberKey::from_secret([1; 32]);
        let boxed = seal(&alice.id(), b"ctx", &[9; 32]).expect("seal");
        for i in [0, 31, 32, 50, 63, 64, 79] {
            let mut altered = boxed;
            altered[i] ^= 1;
            assert!(open(&alice, b"ctx", &altered).is_err(), "byte {i}");
        }
        assert_eq!(
            open(&alice, b"ctx", &boxed[..40]),
            Err(KeyBoxError::Length(40))
        );
        let mut long = boxed.to_vec();
        long.push(0);
        assert_eq!(open(&alice, b"ctx", &long), Err(KeyBoxError::Length(81)));
    }

    #[test]
    fn a_box_whose_one_time_key_is_no_point_is_refused_unopened() {
        // Find 32 bytes that do not decompress to a curve point.
        let bad = (0u8..=255)
            .map(|b| {
                let mut k = [b; 32];
                k[31] &= 0x7f;
                k
            })
            .find(|k| VerifyingKey::from_bytes(k).is_err())
            .expect("some bytes are no point");
        let mut boxed = [0u8; KEY_BOX_BYTES];
        boxed[..32].copy_from_slice(&bad);
        assert_eq!(check(&boxed), Err(KeyBoxError::BadOneTimeKey));
        let alice = MemberKey::from_secret([1; 32]);
        assert_eq!(open(&alice, b"", &boxed), Err(KeyBoxError::BadOneTimeKey));
    }
}
