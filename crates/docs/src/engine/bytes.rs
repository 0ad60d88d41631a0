//! Untrusted change bytes, parsed with bounds: Automerge's chunk is
//! checked before Automerge is asked to read (or inflate) it.

use super::*;

/// Parse untrusted change bytes; a panic inside the decoder is a rejection.
pub(super) fn parse_change(bytes: &[u8]) -> Result<Change, String> {
    check_chunk(bytes)?;
    let change = match catch_unwind(|| Change::from_bytes(bytes.to_vec())) {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Err(format!("corrupted change: {e}")),
        Err(_) => return Err("corrupted change: the decoder failed".into()),
    };
    // Run-length encoding lets a few bytes stand for many operations, and
    // every one is expanded when the change is checked and applied.
    if change.len() > MAX_CHANGE_OPS {
        return Err(format!(
            "the change carries {} operations, over the limit of {MAX_CHANGE_OPS}",
            change.len()
        ));
    }
    // Automerge keeps a change as its own re-encoding of it: bytes that
    // parse but are not that encoding would be stored under a hash no
    // change has, and serving the document later panics inside Automerge
    // (a fuzz finding). Only Automerge's own encoding is taken.
    let canonical = catch_unwind(|| Change::from(change.decode()).hash());
    if canonical.ok() != Some(change.hash()) {
        return Err("corrupted change: not in Automerge's own encoding".into());
    }
    // The chunk's checksum is the start of its hash. Automerge does not
    // check it on a compressed change (it hashes what inflates), so those
    // four bytes could be changed in transit and the change still taken
    // and stored as received: refused here, as any other altered byte is.
    if bytes.get(4..8) != Some(&change.hash().0[..4]) {
        return Err("corrupted change: its checksum does not match its contents".into());
    }
    Ok(change)
}

/// The start of every Automerge chunk.
pub(super) const CHUNK_MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
/// Chunk types (after the magic and a 4-byte checksum).
pub(super) const CHUNK_CHANGE: u8 = 1;
pub(super) const CHUNK_COMPRESSED_CHANGE: u8 = 2;

/// Bound what Automerge would inflate before it is asked to. Automerge
/// inflates a compressed change chunk whole, with no limit (a megabyte of
/// deflate is a gigabyte of zeros), and a document or bundle chunk inflates
/// its columns, so: only change chunks are let through, and a compressed
/// one must inflate to at most [`MAX_CHANGE_DATA_BYTES`], counted while
/// inflating into nothing. Automerge then inflates it again, now known to
/// be small.
pub(super) fn check_chunk(bytes: &[u8]) -> Result<(), String> {
    if bytes.len() > MAX_CHANGE_DATA_BYTES {
        return Err(format!(
            "the change is {} bytes, over the limit of {MAX_CHANGE_DATA_BYTES}",
            bytes.len()
        ));
    }
    let (magic, rest) = bytes
        .split_at_checked(4)
        .ok_or("corrupted change: truncated")?;
    if magic != CHUNK_MAGIC {
        return Err("corrupted change: not an Automerge chunk".into());
    }
    let (kind, rest) = match rest.get(4..).and_then(<[u8]>::split_first) {
        Some((kind, rest)) => (*kind, rest),
        None => return Err("corrupted change: truncated".into()),
    };
    match kind {
        CHUNK_CHANGE => Ok(()),
        CHUNK_COMPRESSED_CHANGE => {
            let (len, rest) = read_uleb(rest).ok_or("corrupted change: bad chunk length")?;
            let data = usize::try_from(len)
                .ok()
                .and_then(|len| rest.get(..len))
                .ok_or("corrupted change: truncated")?;
            let limit = MAX_CHANGE_DATA_BYTES as u64;
            let mut inflater =
                std::io::Read::take(flate2::bufread::DeflateDecoder::new(data), limit + 1);
            let inflated = std::io::copy(&mut inflater, &mut std::io::sink())
                .map_err(|_| "corrupted change: it does not inflate".to_string())?;
            if inflated > limit {
                return Err(format!(
                    "the compressed change inflates past the limit of {MAX_CHANGE_DATA_BYTES} bytes"
                ));
            }
            Ok(())
        }
        other => Err(format!(
            "corrupted change: a chunk of type {other} where a change belongs"
        )),
    }
}

/// An unsigned LEB128 number (at most 10 bytes) and what follows it.
pub(super) fn read_uleb(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut value: u64 = 0;
    for (i, byte) in bytes.iter().enumerate().take(10) {
        let part = u64::from(byte & 0x7f);
        value |= part
            .checked_shl(7 * i as u32)
            .filter(|v| v >> (7 * i as u32) == part)?;
        if byte & 0x80 == 0 {
            return Some((value, &bytes[i + 1..]));
        }
    }
    None
}
