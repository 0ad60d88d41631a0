//! Every size limit in one table.
//!
//! Each limit is checked at the first byte it can be: a frame's length
//! before anything is allocated for it, a compressed change while it
//! inflates, a change's envelope when it is accepted. The store reads back
//! with the very same constants, so nothing a node accepted can stop it
//! from starting again.

/// Largest encoded signed record (a charter's genesis with its articles is
/// the largest; a few KiB in practice).
pub const MAX_RECORD_BYTES: usize = 64 * 1024;

/// Largest encoded change envelope (author, document, hash, change bytes,
/// signature), accepted or read back from the store.
pub const MAX_CHANGE_BYTES: usize = 512 * 1024;

/// Room left in [`MAX_CHANGE_BYTES`] for the envelope around the Automerge
/// bytes (three ids, a signature, length prefixes: under 256 bytes) and the
/// header of a chunk that travelled compressed and is sent on uncompressed.
pub const CHANGE_ENVELOPE_SLACK: usize = 1024;

/// Largest Automerge change, as it travels and, when compressed, once
/// inflated: an accepted change always fits an envelope of
/// [`MAX_CHANGE_BYTES`], whichever form it is sent on in.
pub const MAX_CHANGE_DATA_BYTES: usize = MAX_CHANGE_BYTES - CHANGE_ENVELOPE_SLACK;

/// Most operations in one change: no more than one per byte it may take,
/// so run-length encoding cannot turn a small change into a huge list.
pub const MAX_CHANGE_OPS: usize = MAX_CHANGE_DATA_BYTES;

/// Largest bundle of changes accepted from a file or an API request.
pub const MAX_BUNDLE_BYTES: usize = 64 * 1024 * 1024;

/// Largest gossip message.
pub const MAX_GOSSIP_BYTES: usize = 1024 * 1024;

/// Largest sync request frame. Anyone, member or not, can open a stream
/// and send one, and it is read whole before the asker's membership is
/// checked, so this is also the most a stranger's stream makes a node
/// hold. A member with more changes to push than fit says so, and the
/// other side pulls them (answers are read only from peers we asked).
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// Largest sync response frame.
pub const MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;

/// Most a sync stream reads ahead of the bytes that actually arrived:
/// a frame's length is a claim, so its buffer grows with what is received,
/// in steps of this size, never to the claim at once.
pub const MAX_READ_AHEAD_BYTES: usize = 64 * 1024;

/// Most sync streams open at once on one connection.
pub const MAX_SYNC_STREAMS: usize = 16;

/// Most connections to one peer. A member may hold a relayed and a direct
/// (hole punched) connection over TCP and QUIC at once, and a node that
/// was killed or moved leaves QUIC connections that look alive until their
/// idle timeout: with 4, a member restarting twice within ten seconds was
/// refused (the NAT lab found it), and 8 still was at times.
pub const MAX_CONNECTIONS_PER_PEER: u32 = 16;

/// Most incoming connections established at once.
pub const MAX_INCOMING_CONNECTIONS: u32 = 256;

/// Most incoming connections still in their handshake at once.
pub const MAX_PENDING_INCOMING: u32 = 64;

/// Most gossip topics (groups) a peer's subscriptions are kept for: a
/// member may belong to this many groups and still get live gossip from
/// everyone; a stranger makes a node hold at most this many per
/// connection (about 100 bytes each).
pub const MAX_PEER_TOPICS: usize = 1024;

/// Most heads a peer may list (they must fit a request with room left).
pub const MAX_HEADS: usize = 1024;

/// Longest invite ticket text.
pub const MAX_TICKET_CHARS: usize = 4096;

/// Largest stored document metadata entry.
pub const MAX_DOC_META_BYTES: usize = 4096;

/// Largest stored list of a peer's heads.
pub const MAX_PEER_HEADS_BYTES: usize = 64 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_accepted_change_fits_its_envelope_whatever_form_it_travels_in() {
        // Envelope: three 32-byte ids, a 64-byte signature, two length
        // prefixes of at most 5 bytes; a change chunk header is at most
        // 4 + 4 + 1 + 10 bytes.
        let envelope = 3 * 32 + 64 + 2 * 5;
        let header = 4 + 4 + 1 + 10;
        const { assert!(MAX_CHANGE_DATA_BYTES < MAX_CHANGE_BYTES) };
        assert!(MAX_CHANGE_DATA_BYTES + envelope + header <= MAX_CHANGE_BYTES);
        const { assert!(MAX_RECORD_BYTES < MAX_CHANGE_DATA_BYTES) };
        // A request's heads (32 bytes and a prefix each) leave room for
        // changes.
        const { assert!(MAX_HEADS * 34 + 16 * 1024 < MAX_REQUEST_BYTES) };
    }
}
