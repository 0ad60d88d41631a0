//! The canonical binary encoding: postcard over serde types that contain no
//! unordered maps, so one value has exactly one encoding and signatures over
//! it are reproducible on every node.

use serde::{de::DeserializeOwned, Serialize};

/// Encode a value canonically.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // postcard only fails on types serde cannot express (e.g. maps with
    // non-serialisable keys); all our types are plain structs and enums.
    postcard::to_stdvec(value).expect("canonical types always encode")
}

/// The length of a value's canonical encoding, without encoding it.
pub fn encoded_len<T: Serialize>(value: &T) -> usize {
    // Size counting fails only where `encode` would (see there).
    postcard::experimental::serialized_size(value).expect("canonical types always encode")
}

/// Decode untrusted bytes, refusing anything over `limit` bytes or with
/// bytes left over after the value.
pub fn decode<T: DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
    limit: usize,
) -> crate::Result<T> {
    if bytes.len() > limit {
        return Err(crate::Error::TooLarge {
            what,
            size: bytes.len(),
            limit,
        });
    }
    let (value, rest) = postcard::take_from_bytes(bytes).map_err(|e| crate::Error::Malformed {
        what,
        reason: e.to_string(),
    })?;
    if !rest.is_empty() {
        return Err(crate::Error::Malformed {
            what,
            reason: format!("{} unexpected trailing bytes", rest.len()),
        });
    }
    Ok(value)
}

/// Serde for a 32-byte id with `Display` and `FromStr`: its text form for
/// human-readable formats (JSON, TOML), its raw bytes for postcard.
macro_rules! text_or_bytes_serde {
    ($ty:ty, $expecting:literal) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(
                &self,
                s: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                if s.is_human_readable() {
                    s.collect_str(self)
                } else {
                    serde::Serialize::serialize(&self.0, s)
                }
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(
                d: D,
            ) -> std::result::Result<Self, D::Error> {
                if d.is_human_readable() {
                    let text = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
                    text.parse()
                        .map_err(|_| serde::de::Error::custom(concat!("expected ", $expecting)))
                } else {
                    <[u8; 32] as serde::Deserialize>::deserialize(d).map(Self)
                }
            }
        }
    };
}
pub(crate) use text_or_bytes_serde;
