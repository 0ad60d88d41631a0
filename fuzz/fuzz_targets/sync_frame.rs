//! The sync protocol's frame decoder, as a stream from any peer reaches
//! it: the node's own request-response codec reads a request and a
//! response from the bytes. The first byte chooses the mode: bit 0 a
//! request or a response; bit 1 whether the rest is the raw stream (length
//! prefix and all) or a frame body that gets a correct length prefix, so
//! that mutations reach the decoder rather than the length check. What
//! decodes goes through the checks a node makes before anything else (a
//! change's size, a ticket's signature).
#![no_main]

use futures::executor::block_on;
use futures::io::Cursor;
use libfuzzer_sys::fuzz_target;
use libp2p::request_response::Codec as _;
use libp2p::StreamProtocol;
use nestwork_core::SignedChange;
use nestwork_fuzz::T0;
use nestwork_net::protocol::{Codec, Request, Response, PROTOCOL};

fn check_changes(changes: &[SignedChange]) {
    for c in changes {
        let _ = c.check_size();
    }
    let _ = SignedChange::verify_all(changes);
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let stream = if mode & 2 == 0 {
        rest.to_vec()
    } else {
        let mut framed = (rest.len() as u32).to_be_bytes().to_vec();
        framed.extend_from_slice(rest);
        framed
    };
    let protocol = StreamProtocol::new(PROTOCOL);
    let mut codec = Codec::default();
    let mut io = Cursor::new(stream);
    if mode & 1 == 0 {
        match block_on(codec.read_request(&protocol, &mut io)) {
            Ok(Request::Sync { changes, heads, .. }) => {
                let _ = heads.len();
                check_changes(&changes);
            }
            Ok(Request::Join { ticket }) => {
                let _ = ticket.verify(T0);
                let _ = ticket.id();
            }
            Err(_) => {}
        }
    } else {
        match block_on(codec.read_response(&protocol, &mut io)) {
            Ok(Response::Sync { changes, .. } | Response::Joined { changes }) => {
                check_changes(&changes)
            }
            Ok(Response::Refused { reason }) => {
                let _ = reason.len();
            }
            Err(_) => {}
        }
    }
});
