//! Sealed gossip, opened and decoded as a node does on its group's topic
//! (`actor.rs`, `open_gossip`): the seal opened with the group key, its
//! seal time checked against a fixed clock (the plaintext is decoded
//! whatever the verdict, to reach the decoder more often), the plaintext
//! decoded as a batch of signed changes (at most
//! `MAX_GOSSIP_BYTES`), refused if empty or mixing documents, then each
//! change's size and the batch's signatures checked. The first byte
//! chooses the mode: even, the rest is what arrived on the topic (almost
//! never opens: it exercises the seal's checks); odd, the rest is a
//! plaintext that is sealed with the group key first, so that mutations
//! reach the decoder. Opening what was sealed must give it back, with its
//! seal time.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nestwork_core::limits::MAX_GOSSIP_BYTES;
use nestwork_core::{encoding, SignedChange};
use nestwork_fuzz::fixture;
use nestwork_net::topic::check_seal_time;

/// The clock the fuzzer's messages are judged by, and sealed at.
const NOW_MS: u64 = 1_800_000_000_000;

fn decode(plain: &[u8]) {
    let Ok(changes) =
        encoding::decode::<Vec<SignedChange>>("gossip payload", plain, MAX_GOSSIP_BYTES)
    else {
        return;
    };
    if changes.is_empty() || changes.iter().any(|c| c.doc != changes[0].doc) {
        return;
    }
    for c in &changes {
        let _ = c.check_size();
    }
    let _ = SignedChange::verify_all(&changes);
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let seal = fixture().seal();
    if mode & 1 == 0 {
        if let Ok(opened) = seal.open(rest) {
            let _ = check_seal_time(opened.sealed_at_ms, NOW_MS);
            decode(&opened.plaintext);
        }
    } else {
        let sealed = seal.seal(rest, NOW_MS);
        let opened = seal.open(&sealed).expect("what the group sealed opens");
        assert_eq!(opened.plaintext, rest);
        assert_eq!(check_seal_time(opened.sealed_at_ms, NOW_MS), Ok(()));
        decode(&opened.plaintext);
    }
});
