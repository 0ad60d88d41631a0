//! The node as the network sees it ([`Replica`]): the lookups the
//! network makes on its event loop read the directory, never the node's
//! lock; the rest (a peer's sync, its changes, an admission) goes through
//! the node.

use nestwork_core::{DocId, GroupId, Hash32, MemberId, SignedChange};
use nestwork_docs::ApplyReport;
use nestwork_net::{DocEvent, Replica};
use tokio::sync::broadcast;

use crate::node::Node;

// The lookups (`groups` to `heads`, and `keyring`) run on the network's
// event loop: they read the directory and never take the node's lock.
impl Replica for Node {
    fn groups(&self) -> Vec<(GroupId, Vec<u8>)> {
        self.directory.groups()
    }

    fn group_of(&self, doc: &DocId) -> Option<GroupId> {
        self.directory.group_of(doc)
    }

    fn docs_of(&self, group: &GroupId) -> Vec<DocId> {
        self.directory.docs_of(group)
    }

    fn genesis(&self, group: &GroupId) -> Option<Vec<u8>> {
        self.directory.genesis(group)
    }

    fn is_member(&self, doc: &DocId, member: &MemberId) -> bool {
        self.directory.is_member(doc, member)
    }

    fn heads(&self, doc: &DocId) -> Option<Vec<Hash32>> {
        self.directory.heads(doc)
    }

    fn changes_since(
        &self,
        doc: &DocId,
        have: &[Hash32],
        max_bytes: usize,
    ) -> (Vec<SignedChange>, bool) {
        let all = 'all: {
            let mut docs = self.lock();
            if docs.holds_unsaved(doc) {
                return (Vec::new(), false);
            }
            if let Some((_, _, heads)) = docs.cold_period(doc) {
                if heads == have {
                    return (Vec::new(), false);
                }
                drop(docs);
                if let Some(graph) = self.served_period(doc, heads) {
                    break 'all graph.changes_since(have);
                }
                // Changed meanwhile, or unreadable: load it as a write
                // would, under the lock again (so asked again).
                docs = self.lock();
                if docs.holds_unsaved(doc) {
                    return (Vec::new(), false);
                }
                if let Err(e) = self.warm(&mut docs, doc) {
                    tracing::error!(doc = %doc.short(), error = %e, "cannot load a ledger period");
                }
            }
            docs.doc(doc)
                .map(|d| d.changes_since(have))
                .unwrap_or_default()
        };
        let mut size = 0;
        let mut out = Vec::new();
        for c in all.iter() {
            size += c.change.len() + 128;
            if size > max_bytes && !out.is_empty() {
                return (out, true);
            }
            out.push(c.clone());
        }
        (out, false)
    }

    fn apply_remote(
        &self,
        doc: DocId,
        changes: Vec<SignedChange>,
        joining: bool,
    ) -> Result<ApplyReport, String> {
        Node::apply_remote(self, doc, changes, joining).map_err(|e| e.to_string())
    }

    fn admit(
        &self,
        group: &GroupId,
        member: MemberId,
        ticket: Hash32,
        ticket_signature: Vec<u8>,
    ) -> Result<(), String> {
        Node::admit(self, group, member, ticket, ticket_signature).map_err(|e| e.to_string())
    }

    fn peer_heads(&self, peer: &MemberId, doc: &DocId) -> Option<Vec<Hash32>> {
        self.store.peer_heads(&peer.0, &doc.hash32()).ok().flatten()
    }

    fn set_peer_heads(&self, peer: &MemberId, doc: &DocId, heads: &[Hash32]) {
        if let Err(e) = self.store.set_peer_heads(&peer.0, &doc.hash32(), heads) {
            tracing::warn!(error = %e, "cannot record a peer's heads");
        }
    }

    fn forget_peer_heads(&self, peer: &MemberId, doc: &DocId) {
        if let Err(e) = self.store.forget_peer_heads(&peer.0, &doc.hash32()) {
            tracing::warn!(error = %e, "cannot forget a peer's heads");
        }
    }

    fn keyring(&self, group: &GroupId) -> Option<nestwork_docs::seal::Keyring> {
        self.directory.keyring(group)
    }

    fn subscribe(&self) -> broadcast::Receiver<DocEvent> {
        Node::subscribe(self)
    }
}
