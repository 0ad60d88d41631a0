//! What the network looks up on its event loop (which groups this node
//! holds, each group's documents and roll, each document's heads, the
//! group's seal keys), kept apart from the node's state.
//!
//! A writer holds the node's lock while the store flushes to disk (see
//! [`crate::node`]), so a lookup that took that lock would stall the event
//! loop, and with it every peer's gossip and sync, for as long as the disk
//! takes. The directory has a lock of its own, held only to copy a few
//! values in or out, never across the disk. The node updates it after each
//! change is durable (in `announce`, and when it loads or reloads a group),
//! so it never names heads that are not yet on disk.

use std::collections::{BTreeSet, HashMap};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use nestwork_core::{DocId, GroupId, Hash32, MemberId};
use nestwork_docs::seal::Keyring;

/// One group as the network sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Listing {
    /// The genesis record's bytes (the seed of the group's gossip seal).
    pub genesis: Vec<u8>,
    /// The members on the roll now.
    pub members: BTreeSet<MemberId>,
    /// The group document first, then its ledger periods, each with its
    /// heads.
    pub docs: Vec<(DocId, Vec<Hash32>)>,
    /// The group's seal keys as this node holds them now.
    pub keyring: Option<Keyring>,
}

#[derive(Default)]
struct Listings {
    groups: HashMap<GroupId, Listing>,
    /// Each document's group and its place in the group's `docs`.
    docs: HashMap<DocId, (GroupId, usize)>,
}

/// The network's view of the node's documents.
#[derive(Default)]
pub(crate) struct Directory {
    listings: RwLock<Listings>,
}

impl Directory {
    fn read(&self) -> RwLockReadGuard<'_, Listings> {
        // Every update is a plain replacement of values: a panic cannot
        // leave a listing half-written, so keep serving.
        self.listings.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Listings> {
        self.listings.write().unwrap_or_else(|e| e.into_inner())
    }

    /// List `group` afresh (after it was loaded, reloaded, created, or its
    /// roll, keys or set of documents changed).
    pub fn list(&self, group: GroupId, listing: Listing) {
        let mut l = self.write();
        l.forget(&group);
        for (i, (doc, _)) in listing.docs.iter().enumerate() {
            l.docs.insert(*doc, (group, i));
        }
        l.groups.insert(group, listing);
    }

    /// A group this node no longer holds.
    pub fn forget(&self, group: &GroupId) {
        self.write().forget(group);
    }

    /// New heads for a document already listed; `false` if it is not (the
    /// caller lists its group afresh).
    pub fn set_heads(&self, doc: &DocId, heads: Vec<Hash32>) -> bool {
        let mut l = self.write();
        let Some(&(group, i)) = l.docs.get(doc) else {
            return false;
        };
        match l.groups.get_mut(&group).and_then(|g| g.docs.get_mut(i)) {
            Some(entry) => {
                entry.1 = heads;
                true
            }
            None => false,
        }
    }

    pub fn groups(&self) -> Vec<(GroupId, Vec<u8>)> {
        self.read()
            .groups
            .iter()
            .map(|(g, l)| (*g, l.genesis.clone()))
            .collect()
    }

    pub fn group_of(&self, doc: &DocId) -> Option<GroupId> {
        self.read().docs.get(doc).map(|(g, _)| *g)
    }

    pub fn docs_of(&self, group: &GroupId) -> Vec<DocId> {
        match self.read().groups.get(group) {
            Some(l) => l.docs.iter().map(|(d, _)| *d).collect(),
            None => vec![group.doc()],
        }
    }

    pub fn genesis(&self, group: &GroupId) -> Option<Vec<u8>> {
        self.read().groups.get(group).map(|l| l.genesis.clone())
    }

    pub fn is_member(&self, doc: &DocId, member: &MemberId) -> bool {
        let l = self.read();
        l.docs
            .get(doc)
            .and_then(|(g, _)| l.groups.get(g))
            .is_some_and(|g| g.members.contains(member))
    }

    pub fn heads(&self, doc: &DocId) -> Option<Vec<Hash32>> {
        let l = self.read();
        let (group, i) = l.docs.get(doc)?;
        l.groups.get(group)?.docs.get(*i).map(|(_, h)| h.clone())
    }

    pub fn keyring(&self, group: &GroupId) -> Option<Keyring> {
        self.read().groups.get(group)?.keyring.clone()
    }

    /// The whole listing of a group (for tests that compare it with the
    /// node's state).
    #[cfg(test)]
    pub fn listing(&self, group: &GroupId) -> Option<Listing> {
        self.read().groups.get(group).cloned()
    }
}

impl Listings {
    fn forget(&mut self, group: &GroupId) {
        if let Some(old) = self.groups.remove(group) {
            for (doc, _) in old.docs {
                self.docs.remove(&doc);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use nestwork_core::MemberKey;
    use nestwork_net::Replica;

    use crate::node::tests::create;
    use crate::node::Node;
    use crate::DataDir;

    fn riverside(node: &Node) -> nestwork_core::GroupId {
        create(node, "Riverside").expect("create").id
    }

    /// A writer holds the node's lock while the store flushes; before the
    /// directory, the network's lookups took that lock, and the event loop
    /// (every peer's gossip and sync) stood still for as long as the disk
    /// took. Here the lock is held for good: the lookups must still answer.
    #[test]
    fn network_lookups_answer_while_a_writer_holds_the_node() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let me = MemberKey::from_secret([1; 32]);
        let node =
            std::sync::Arc::new(Node::open(&DataDir::new(tmp.path()), me.clone()).expect("open"));
        let group = riverside(&node);
        let held = node.lock();
        let (tx, rx) = mpsc::channel();
        let looker = node.clone();
        std::thread::spawn(move || {
            // `Replica::groups`, not the node's own `groups` (its views
            // for members, which reads the node's state).
            let answers = (
                Replica::groups(&*looker).len(),
                looker.group_of(&group.doc()),
                looker.docs_of(&group).first().copied(),
                looker.genesis(&group).is_some(),
                looker.is_member(&group.doc(), &me.id()),
                looker.heads(&group.doc()).map(|h| h.len()),
                looker.keyring(&group).is_some(),
            );
            let _ = tx.send(answers);
        });
        let answers = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the lookups waited for the node's lock");
        drop(held);
        assert_eq!(
            answers,
            (1, Some(group), Some(group.doc()), true, true, Some(1), true)
        );
    }

    /// The directory follows the node: a new change's heads, and after a
    /// restart the same listing as before it.
    #[test]
    fn the_directory_follows_writes_and_restarts() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = DataDir::new(tmp.path());
        let me = MemberKey::from_secret([1; 32]);
        let node = Node::open(&dir, me.clone()).expect("open");
        let group = riverside(&node);
        let before = node.heads(&group.doc()).expect("heads");
        node.describe(&group.to_hex(), "tools, seeds and a bike")
            .expect("describe");
        let after = node.heads(&group.doc()).expect("heads");
        assert_ne!(before, after, "a durable change moves the listed heads");
        assert_eq!(after, node.lock().groups[&group].heads());
        let listed = node.directory.listing(&group).expect("listed");
        node.close().expect("close");
        drop(node);
        let node = Node::open(&dir, me).expect("reopen");
        assert_eq!(node.directory.listing(&group), Some(listed));
    }
}
