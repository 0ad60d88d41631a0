//! Raising and answering distress signals on test nodes.

use std::time::Duration;

use nestwork_core::{GroupId, Hash32};
use nestwork_docs::distress::{Category, Severity, SignalView};
use nestwork_docs::governance::{Action, TreatyKind, TreatyStatus};
use nestwork_docs::ProposeRequest;
use nestwork_node::distress::{AnswerRequest, Answering, RaiseRequest};
use nestwork_node::Clock;

use crate::governance::{pass, roll_of};
use crate::{wait_until, TestNode};

const LIMIT: Duration = Duration::from_secs(60);
/// Past the default escalation time (5 minutes).
pub const PAST_ESCALATION: Duration = Duration::from_secs(6 * 60);

/// Raise a critical medical signal with `text` in `group` on `n`.
pub fn raise(n: &TestNode, group: &Hash32, text: &str) -> Hash32 {
    n.node
        .distress_raise(
            &group.to_hex(),
            &RaiseRequest {
                category: Category::Medical,
                severity: Severity::Critical,
                location: Some("north camp".into()),
                expires_secs: None,
                text: text.into(),
            },
        )
        .unwrap_or_else(|e| panic!("raise: {e}"))
        .id
        .hash32()
}

/// Answer `signal` on `n`.
pub fn answer(n: &TestNode, signal: &Hash32, kind: Answering, eta_secs: Option<u64>) {
    n.node
        .distress_answer(
            &signal.to_hex(),
            &AnswerRequest {
                kind,
                text: "coming".into(),
                eta_secs,
            },
        )
        .unwrap_or_else(|e| panic!("{kind:?}: {e}"));
}

/// `signal` as `n` shows it, in `group` or across every group it holds.
pub fn seen(n: &TestNode, group: Option<&Hash32>, signal: &Hash32) -> Option<SignalView> {
    n.node
        .distress_list(group.map(|g| g.to_hex()).as_deref(), true)
        .ok()?
        .into_iter()
        .find(|s| s.view.id.hash32() == *signal)
        .map(|s| s.view)
}

/// Wait until `n` holds `signal` in `group` and has noted when it first
/// did (its tick does, just after it arrives): escalation counts from
/// then, so a test that moves the clock past the escalation time waits
/// for this first.
pub async fn held(n: &TestNode, group: &Hash32, signal: &Hash32) {
    wait_until(
        "the node to note when it first held the call",
        LIMIT,
        || {
            n.node
                .distress_list(Some(&group.to_hex()), true)
                .is_ok_and(|l| {
                    l.iter()
                        .any(|s| s.view.id.hash32() == *signal && s.held_since_ms.is_some())
                })
        },
    )
    .await;
}

/// A hub, the region above it and a mutual-aid treaty partner, on four
/// nodes that share a clock the test moves.
pub struct Nest {
    /// The clock every node runs on.
    pub clock: Clock,
    /// Node 1 (member of all three groups), node 2 (the hub), node 3 (the
    /// region), node 4 (the partner).
    pub nodes: Vec<TestNode>,
    /// The hub.
    pub hub: Hash32,
    /// The region above it.
    pub region: Hash32,
    /// The hub's mutual-aid treaty partner.
    pub partner: Hash32,
}

/// Four nodes and three groups: the region, the hub under it and the hub's
/// mutual-aid treaty partner, all founded and
/// bound on node 1 before anyone else joins (so node 1 alone decides),
/// then one member each for the hub, the region and the partner.
pub async fn nest() -> Nest {
    let clock = Clock::default();
    let mut nodes = Vec::new();
    for seed in 1..=4 {
        nodes.push(TestNode::start_clocked(seed, &clock).await);
    }
    let founder = &nodes[0];
    let region = founder.create_group("North Valley");
    let hub = founder.create_group("Riverside");
    let partner = founder.create_group("Hillside");
    let solo = [founder];
    pass(
        founder,
        &solo,
        &solo,
        &hub,
        ProposeRequest::JoinParent {
            group: region.to_hex(),
        },
    )
    .await;
    pass(
        founder,
        &solo,
        &solo,
        &region,
        ProposeRequest::AdmitGroup {
            group: hub.to_hex(),
        },
    )
    .await;
    let p = pass(
        founder,
        &solo,
        &solo,
        &hub,
        ProposeRequest::NewTreaty {
            group: partner.to_hex(),
            treaty_kind: TreatyKind::MutualAid,
            duration_secs: 90 * 86_400,
            terms: "Calls for help cross between us.".into(),
        },
    )
    .await;
    let Action::RatifyTreaty { treaty } = &p.state.proposal.action else {
        panic!("a treaty");
    };
    pass(
        founder,
        &solo,
        &solo,
        &partner,
        ProposeRequest::RatifyTreaty {
            treaty: treaty.id().to_hex(),
        },
    )
    .await;
    wait_until("the treaty to be active in the hub", LIMIT, || {
        founder
            .node
            .treaties(Some(&hub.to_hex()))
            .is_ok_and(|ts| ts.iter().any(|t| t.state.status == TreatyStatus::Active))
    })
    .await;
    founder.admit(&nodes[1], hub).await;
    founder.admit(&nodes[2], region).await;
    founder.admit(&nodes[3], partner).await;
    roll_of(&[founder, &nodes[1]], &hub, 2).await;
    roll_of(&[founder, &nodes[2]], &region, 2).await;
    roll_of(&[founder, &nodes[3]], &partner, 2).await;
    Nest {
        clock,
        nodes,
        hub,
        region,
        partner,
    }
}

impl Nest {
    /// Raise a call on node 2 and let it climb (nobody answers in the hub).
    pub async fn raise_and_climb(&self, text: &str) -> Hash32 {
        let [_, caller, in_region, at_partner] = &self.nodes[..] else {
            panic!("four nodes");
        };
        let signal = raise(caller, &self.hub, text);
        held(&self.nodes[0], &self.hub, &signal).await;
        self.clock.advance(PAST_ESCALATION);
        wait_until("the call in the region and at the partner", LIMIT, || {
            let from_hub = vec![GroupId::from(self.hub)];
            seen(in_region, Some(&self.region), &signal).is_some_and(|v| v.path == from_hub)
                && seen(at_partner, Some(&self.partner), &signal)
                    .is_some_and(|v| v.path == from_hub)
        })
        .await;
        signal
    }
}
