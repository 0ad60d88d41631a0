//! A bundle file as `group import` reads it: decoded (tag and format, then
//! at most `MAX_BUNDLE_BYTES`), the group document's changes applied all or
//! nothing to an empty document of the bundle's id, then each ledger period
//! whose id is that period's of the group (`Node::import` refuses any
//! other) applied in order to an opened period document through a ledger
//! gate, as `Node::import` does on its copy before it stores anything; then
//! the group's view, which import names the group by.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nestwork_core::ChangeBundle;
use nestwork_docs::engine::ledger_period_id;
use nestwork_docs::{GroupView, SignedDoc};
use nestwork_fuzz::LedgerGate;

fuzz_target!(|data: &[u8]| {
    nestwork_fuzz::quiet_caught_decoder_panics();
    let Ok(mut bundle) = ChangeBundle::decode(data) else {
        return;
    };
    let group = bundle.doc;
    let mut doc = SignedDoc::empty(group);
    let report = doc.apply(std::mem::take(&mut bundle.changes));
    if !report.rejected.is_empty() || !report.missing_deps.is_empty() {
        return;
    }
    let Some(view) = GroupView::of(&doc) else {
        return;
    };
    let _ = view.name;
    let Some(mut gate) = LedgerGate::of_group(&doc) else {
        return;
    };
    bundle.periods.sort_by_key(|p| p.period);
    for p in bundle.periods {
        if p.doc != ledger_period_id(&group, p.period) {
            return;
        }
        let Ok(mut period) = SignedDoc::ledger_period(group, p.period) else {
            return;
        };
        let report = period.apply_with(p.changes, &mut gate);
        if !report.rejected.is_empty() {
            return;
        }
    }
    let _ = gate.ledger.len();
});
