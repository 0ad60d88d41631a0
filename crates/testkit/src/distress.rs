//! Raising and answering distress signals on test nodes.

use nestwork_core::Hash32;
use nestwork_docs::distress::SignalView;
use nestwork_node::distress::{AnswerRequest, RaiseRequest};

use crate::TestNode;

/// Raise a critical medical signal with `text` in `group` on `n`.
pub fn raise(n: &TestNode, group: &Hash32, text: &str) -> Hash32 {
    n.node
        .distress_raise(
            &group.to_hex(),
            &RaiseRequest {
                category: "medical".into(),
                severity: "critical".into(),
                location: Some("north camp".into()),
                expires_secs: None,
                text: text.into(),
            },
        )
        .unwrap_or_else(|e| panic!("raise: {e}"))
        .id
}

/// Answer `signal` on `n`: `kind` is ack, respond or resolve.
pub fn answer(n: &TestNode, signal: &Hash32, kind: &str, eta_secs: Option<u64>) {
    n.node
        .distress_answer(
            &signal.to_hex(),
            &AnswerRequest {
                kind: kind.into(),
                text: "coming".into(),
                eta_secs,
            },
        )
        .unwrap_or_else(|e| panic!("{kind}: {e}"));
}

/// `signal` as `n` shows it, in `group` or across every group it holds.
pub fn seen(n: &TestNode, group: Option<&Hash32>, signal: &Hash32) -> Option<SignalView> {
    n.node
        .distress_list(group.map(|g| g.to_hex()).as_deref(), true)
        .ok()?
        .into_iter()
        .find(|s| s.view.id == *signal)
        .map(|s| s.view)
}
