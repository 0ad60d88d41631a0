//! Governance steps for multi-node scenarios: propose, vote, and wait
//! until every node agrees.

use std::time::Duration;

use nestwork_core::{Hash32, ProposalId};
use nestwork_docs::governance::{Choice, Outcome};
use nestwork_node::governance::{ProposalView, ProposeRequest, VoteRequest};

use crate::{wait_until, TestNode};

/// How long a scenario waits for a condition before failing.
const LIMIT: Duration = Duration::from_secs(60);

/// Propose on `n`'s node; panics with the reason if refused.
pub fn propose(n: &TestNode, group: &Hash32, req: ProposeRequest) -> ProposalView {
    n.node
        .propose(&group.to_hex(), &req)
        .unwrap_or_else(|e| panic!("propose {}: {e}", req.kind()))
}

/// Vote on `n`'s node; panics with the reason if refused.
pub fn vote(n: &TestNode, proposal: &ProposalId, choice: Choice, for_group: Option<&Hash32>) {
    n.node
        .vote(
            &proposal.to_hex(),
            &VoteRequest {
                choice,
                for_group: for_group.map(Hash32::to_hex),
            },
        )
        .unwrap_or_else(|e| panic!("vote: {e}"));
}

/// Where `proposal` stands on `n`'s node.
pub fn outcome(n: &TestNode, group: &Hash32, proposal: &ProposalId) -> Option<Outcome> {
    n.node
        .proposals(&group.to_hex())
        .ok()?
        .proposals
        .into_iter()
        .find(|p| p.state.id == *proposal)
        .map(|p| p.state.outcome)
}

/// Wait until every node shows `proposal` passed.
pub async fn passed_everywhere(nodes: &[&TestNode], group: &Hash32, proposal: &ProposalId) {
    wait_until("the proposal to pass on every node", LIMIT, || {
        nodes
            .iter()
            .all(|n| outcome(n, group, proposal) == Some(Outcome::Passed))
    })
    .await;
}

/// Wait until every node holds `proposal`.
pub async fn has_proposal(nodes: &[&TestNode], group: &Hash32, proposal: &ProposalId) {
    wait_until("the proposal to reach every node", LIMIT, || {
        nodes.iter().all(|n| outcome(n, group, proposal).is_some())
    })
    .await;
}

/// Wait until every node's roll of `group` has `size` members.
pub async fn roll_of(nodes: &[&TestNode], group: &Hash32, size: usize) {
    wait_until("every node to see the whole roll", LIMIT, || {
        nodes.iter().all(|n| {
            n.node
                .charter(&group.to_hex())
                .is_ok_and(|c| c.members.len() == size)
        })
    })
    .await;
}

/// Propose on `proposer` and vote yes with each of `voters`; wait until
/// every one of `everyone` shows it passed.
pub async fn pass(
    proposer: &TestNode,
    voters: &[&TestNode],
    everyone: &[&TestNode],
    group: &Hash32,
    req: ProposeRequest,
) -> ProposalView {
    let p = propose(proposer, group, req);
    has_proposal(everyone, group, &p.state.id).await;
    for v in voters {
        vote(v, &p.state.id, Choice::Yes, None);
    }
    passed_everywhere(everyone, group, &p.state.id).await;
    p
}
