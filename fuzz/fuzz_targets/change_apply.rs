//! Signed changes decoded and applied by the document engine to a group
//! (the fixture: a founder and an admitted member). The first byte chooses
//! the mode:
//! - 0 mod 3: the rest is one encoded `SignedChange` (as the store and a
//!   sync frame carry it), applied whatever its signature;
//! - 1 mod 3: a batch, `Vec<SignedChange>` (as gossip carries it);
//! - 2 mod 3: raw Automerge change bytes, signed here by the member (or
//!   the founder, if the change's actor is theirs) over their hash, so that
//!   mutations get past the signature and reach the change parser and the
//!   document rules, as a member's own hostile change would.
//!
//! Whatever is applied, the document must still answer for its heads,
//! changes and view.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nestwork_core::limits::{MAX_CHANGE_DATA_BYTES, MAX_GOSSIP_BYTES};
use nestwork_core::{encoding, Hash32, MemberId, SignedChange};
use nestwork_docs::GroupView;
use nestwork_fuzz::{fixture, key_of, member};

/// The hash Automerge gives the change, if it is an uncompressed change
/// chunk it parses (a compressed one is left to the engine, which bounds
/// its inflation; this harness would not).
fn automerge_hash(bytes: &[u8]) -> Option<(Hash32, Option<MemberId>)> {
    if bytes.len() > MAX_CHANGE_DATA_BYTES || bytes.get(8) != Some(&1) {
        return None;
    }
    let change = std::panic::catch_unwind(|| automerge::Change::from_bytes(bytes.to_vec()))
        .ok()?
        .ok()?;
    let actor = change.actor_id().to_bytes();
    let author = (actor.len() == 40)
        .then(|| actor[..32].try_into().ok().map(MemberId))
        .flatten();
    Some((Hash32(change.hash().0), author))
}

fuzz_target!(|data: &[u8]| {
    nestwork_fuzz::quiet_caught_decoder_panics();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let f = fixture();
    let changes = match mode % 3 {
        0 => match SignedChange::decode(rest) {
            Ok(c) => vec![c],
            Err(_) => return,
        },
        1 => {
            match encoding::decode::<Vec<SignedChange>>("gossip payload", rest, MAX_GOSSIP_BYTES) {
                Ok(c) => c,
                Err(_) => return,
            }
        }
        _ => {
            let (hash, author) = automerge_hash(rest).unwrap_or_else(|| (Hash32::of(rest), None));
            let key = author.and_then(|a| key_of(&a)).unwrap_or_else(member);
            vec![SignedChange::sign(
                &key,
                f.group().hash32(),
                hash,
                rest.to_vec(),
            )]
        }
    };
    let mut doc = f.admitted.clone();
    let report = doc.apply(changes);
    if !report.applied.is_empty() {
        let _ = doc.heads();
        let _ = doc.changes_since(&[]);
        let _ = doc.description();
        let _ = GroupView::of(&doc);
    }
});
