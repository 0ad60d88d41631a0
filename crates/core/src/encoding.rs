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
