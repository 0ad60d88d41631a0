//! A bundle file as `group import` reads it: decoded (magic, then at most
//! `MAX_BUNDLE_BYTES`), and its changes applied all or nothing to an empty
//! document of the bundle's id, as `Node::import` does before it stores
//! anything; then the group's view, which import names the group by.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nestwork_core::ChangeBundle;
use nestwork_docs::{GroupView, SignedDoc};

fuzz_target!(|data: &[u8]| {
    nestwork_fuzz::quiet_caught_decoder_panics();
    let Ok(bundle) = ChangeBundle::decode(data) else {
        return;
    };
    let mut doc = SignedDoc::empty(bundle.doc);
    let report = doc.apply(bundle.changes);
    if report.rejected.is_empty() && report.missing_deps.is_empty() {
        if let Some(view) = GroupView::of(&doc) {
            let _ = view.name;
        }
    }
});
