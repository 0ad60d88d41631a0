//! The sync protocol (`/nestwork/sync/2`): request-response over a libp2p
//! stream, each message one length-prefixed postcard frame with a size
//! bound, so a peer that sends garbage or a huge length gets an error, not
//! our memory.
//!
//! A sync session for one document, started by A with B:
//! 1. A sends `Sync` with its heads and the changes it believes B lacks
//!    (computed from B's heads as last seen, kept on disk per peer), as
//!    many as fit a request (64 KiB: a request is read before anyone
//!    knows whether A is a member); `more` says A holds more for B;
//! 2. B checks A is a member (a stranger is told only "unknown document"),
//!    verifies and applies A's changes, and answers with its heads and every
//!    change A lacks (up to a size bound; `more` says there is more);
//!    if A said it holds more, B then asks A in turn (a pull: answers are
//!    read only from peers B chose to ask, so they may be large);
//! 3. A verifies and applies them. If B's heads show it still lacks
//!    something, A goes again. After a small change, one round trip.
//!
//! `Join` carries an invite ticket to the inviter, who admits the newcomer
//! and answers with the group's changes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use nestwork_core::{encoding, DocId, Hash32, SignedChange};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::ticket::Ticket;

/// The protocol name.
/// Version 2: requests bounded at 64 KiB, with `more`.
pub const PROTOCOL: &str = "/nestwork/sync/2";
use nestwork_core::limits::MAX_READ_AHEAD_BYTES;
pub use nestwork_core::limits::{MAX_HEADS, MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES};
/// How many change bytes one sync answer carries before saying `more`.
pub const SYNC_BATCH_BYTES: usize = 8 * 1024 * 1024;

/// What a peer asks.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Request {
    /// Reconcile one document.
    Sync {
        /// The document.
        doc: DocId,
        /// The asker's heads.
        heads: Vec<Hash32>,
        /// Changes the asker believes the other side lacks.
        changes: Vec<SignedChange>,
        /// The asker holds more changes the other side lacks than fit a
        /// request: the other side should ask for them.
        more: bool,
    },
    /// Join a group with an invite ticket.
    Join {
        /// The ticket, issued by the node being asked.
        ticket: Ticket,
    },
}

/// What a peer answers.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Response {
    /// Answer to `Sync`.
    Sync {
        /// The answerer's heads, after applying what was sent.
        heads: Vec<Hash32>,
        /// Changes the asker lacks.
        changes: Vec<SignedChange>,
        /// More changes remain; ask again.
        more: bool,
    },
    /// Answer to `Join`: the whole group, admission included.
    Joined {
        /// Every change of the group.
        changes: Vec<SignedChange>,
    },
    /// The request was refused.
    Refused {
        /// Why, for logs and for the person joining.
        reason: String,
    },
}

/// Bytes and requests through the sync protocol since start (frame bytes,
/// length prefixes included).
#[derive(Debug, Default)]
pub struct SyncTraffic {
    /// Bytes written.
    pub bytes_sent: AtomicU64,
    /// Bytes read.
    pub bytes_received: AtomicU64,
    /// Requests this node sent (each is one round trip).
    pub requests_sent: AtomicU64,
}

/// The request-response codec; clones share one [`SyncTraffic`].
#[derive(Clone, Default)]
pub struct Codec {
    /// What went through it.
    pub traffic: Arc<SyncTraffic>,
}

/// Read one frame, refusing a length over `limit` before reading it.
async fn read_counted<T: DeserializeOwned, R: AsyncRead + Unpin + Send>(
    io: &mut R,
    limit: usize,
    what: &'static str,
    counter: &AtomicU64,
) -> std::io::Result<T> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{what} of {len} bytes is over the limit of {limit}"),
        ));
    }
    // The length is only a claim (anyone, member or not, can open a
    // stream and send one): grow the buffer with the bytes that arrive.
    let mut buf = Vec::new();
    while buf.len() < len {
        let start = buf.len();
        buf.resize(start + (len - start).min(MAX_READ_AHEAD_BYTES), 0);
        io.read_exact(&mut buf[start..]).await?;
    }
    counter.fetch_add(4 + len as u64, Ordering::Relaxed);
    encoding::decode(what, &buf, limit)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))
}

/// Write one frame.
async fn write_counted<T: Serialize, W: AsyncWrite + Unpin + Send>(
    io: &mut W,
    value: &T,
    limit: usize,
    counter: &AtomicU64,
) -> std::io::Result<()> {
    let bytes = encoding::encode(value);
    if bytes.len() > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "message over the size limit",
        ));
    }
    counter.fetch_add(4 + bytes.len() as u64, Ordering::Relaxed);
    io.write_all(&(bytes.len() as u32).to_be_bytes()).await?;
    io.write_all(&bytes).await?;
    io.close().await
}

impl libp2p::request_response::Codec for Codec {
    type Protocol = libp2p::StreamProtocol;
    type Request = Request;
    type Response = Response;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &Self::Protocol,
        io: &mut T,
    ) -> std::io::Result<Request> {
        read_counted(
            io,
            MAX_REQUEST_BYTES,
            "sync request",
            &self.traffic.bytes_received,
        )
        .await
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &Self::Protocol,
        io: &mut T,
    ) -> std::io::Result<Response> {
        read_counted(
            io,
            MAX_RESPONSE_BYTES,
            "sync response",
            &self.traffic.bytes_received,
        )
        .await
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &Self::Protocol,
        io: &mut T,
        req: Request,
    ) -> std::io::Result<()> {
        self.traffic.requests_sent.fetch_add(1, Ordering::Relaxed);
        write_counted(io, &req, MAX_REQUEST_BYTES, &self.traffic.bytes_sent).await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &Self::Protocol,
        io: &mut T,
        res: Response,
    ) -> std::io::Result<()> {
        write_counted(io, &res, MAX_RESPONSE_BYTES, &self.traffic.bytes_sent).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::Cursor;
    use proptest::prelude::*;

    #[test]
    fn frames_round_trip_and_lengths_are_bounded() {
        futures::executor::block_on(async {
            let mut buf = Vec::new();
            let req = Request::Sync {
                doc: DocId::from(Hash32::of(b"d")),
                heads: vec![Hash32::of(b"h")],
                changes: vec![],
                more: false,
            };
            write_counted(
                &mut Cursor::new(&mut buf),
                &req,
                MAX_REQUEST_BYTES,
                &AtomicU64::new(0),
            )
            .await
            .expect("write");
            let back: Request = read_counted(
                &mut Cursor::new(&buf),
                MAX_REQUEST_BYTES,
                "r",
                &AtomicU64::new(0),
            )
            .await
            .expect("read");
            assert!(matches!(back, Request::Sync { heads, .. } if heads.len() == 1));

            let huge = (u32::MAX).to_be_bytes().to_vec();
            let err = read_counted::<Request, _>(
                &mut Cursor::new(&huge),
                MAX_REQUEST_BYTES,
                "r",
                &AtomicU64::new(0),
            )
            .await
            .expect_err("too big");
            assert!(err.to_string().contains("over the limit"));
        });
    }

    /// A reader that hands out `data` and remembers the largest buffer it
    /// was asked to fill: what a stream makes us allocate.
    struct Claimed {
        data: Cursor<Vec<u8>>,
        largest_read: usize,
    }

    impl AsyncRead for Claimed {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut [u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            self.largest_read = self.largest_read.max(buf.len());
            std::pin::Pin::new(&mut self.data).poll_read(cx, buf)
        }
    }

    /// Finding 4: a frame's claimed length (up to 16 MiB) was allocated
    /// before a byte of it arrived, on any stream, a stranger's too.
    #[test]
    fn finding4_a_claimed_frame_length_is_not_allocated_before_its_bytes_arrive() {
        futures::executor::block_on(async {
            let mut framed = (MAX_REQUEST_BYTES as u32).to_be_bytes().to_vec();
            framed.extend_from_slice(&[0; 1000]);
            let mut stream = Claimed {
                data: Cursor::new(framed),
                largest_read: 0,
            };
            let err =
                read_counted::<Request, _>(&mut stream, MAX_REQUEST_BYTES, "r", &AtomicU64::new(0))
                    .await
                    .expect_err("the stream ended early");
            assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
            assert!(
                stream.largest_read <= MAX_READ_AHEAD_BYTES,
                "asked to fill {} bytes for a frame that sent 1000",
                stream.largest_read
            );
        });
    }

    proptest! {
        #[test]
        fn garbage_frames_are_errors_not_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            futures::executor::block_on(async {
                let mut framed = (bytes.len() as u32).to_be_bytes().to_vec();
                framed.extend_from_slice(&bytes);
                let _ = read_counted::<Request, _>(&mut Cursor::new(&framed), MAX_REQUEST_BYTES, "r", &AtomicU64::new(0)).await;
                let _ = read_counted::<Response, _>(&mut Cursor::new(&bytes), MAX_RESPONSE_BYTES, "r", &AtomicU64::new(0)).await;
            });
        }
    }
}
