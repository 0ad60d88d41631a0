//! Signed records and record bodies from untrusted bytes: the envelope
//! decoded and verified (`SignedRecord::decode_verified`), the body decoded
//! (`RecordBody::decode`) and put through the kind's rules, as the engine
//! does for every record a change adds. Whatever decodes must decode again
//! from its own encoding to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nestwork_core::SignedRecord;
use nestwork_docs::rules::{check_record, RecordContext};
use nestwork_docs::RecordBody;
use nestwork_fuzz::{fixture, member};

fn body(bytes: &[u8], genesis: bool) {
    let Ok(body) = RecordBody::decode(bytes) else {
        return;
    };
    assert_eq!(
        RecordBody::decode(&body.encode()).as_ref(),
        Ok(&body),
        "a record body decodes from its own encoding"
    );
    let _ = body.kind_name();
    let _ = body.needs_gate();
    for ledger_period in [None, Some(0)] {
        let _ = check_record(
            &body,
            &RecordContext {
                group: fixture().group(),
                author: member().id(),
                in_genesis_change: genesis,
                ledger_period,
            },
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        // A whole signed record: decoded and verified; its body (whose
        // signature was checked, so only a member's own) decoded.
        if let Ok(record) = SignedRecord::decode_verified(rest) {
            assert_eq!(
                SignedRecord::decode_verified(&record.encode()),
                Ok(record.clone())
            );
            let _ = record.id();
            body(&record.body, mode & 2 != 0);
        }
    } else {
        // A body on its own, as a member could sign any bytes.
        body(rest, mode & 2 != 0);
    }
});
