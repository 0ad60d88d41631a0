//! Finding 6 of issue 15: a change must be on disk before anything that
//! could show it to a peer or a client runs.

use crate::data_dir::DataDir;
use crate::node::{Node, Staged, Write};
use crate::views::CreateGroup;
use nestwork_core::MemberKey;

/// Every write goes through `Node::commit`, which appends under the node's
/// lock; that lock is also what `changes_since` (a peer's sync) takes to
/// read a document. So the write must be flushed before the lock is
/// released, and before anything else runs under it: before, the flush
/// came after, and a peer could take a change a crash then lost.
#[test]
fn finding6_a_change_is_on_disk_before_the_lock_that_wrote_it_is_released() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let node =
        Node::open(&DataDir::new(tmp.path()), MemberKey::from_secret([1; 32])).expect("open");
    let group = node
        .create_group(CreateGroup {
            name: "Riverside".into(),
            ..Default::default()
        })
        .expect("create")
        .id;
    let unflushed = node
        .commit(
            |docs| {
                let change = docs
                    .groups
                    .get_mut(&group)
                    .expect("the group")
                    .set_description(&node.writer, "tools and seeds", node.now_ms())
                    .expect("describe")
                    .expect("a change");
                Ok(Staged::local(
                    (),
                    vec![Write::to(group.doc(), vec![change])],
                ))
            },
            // Still under the lock that wrote the change.
            |_, ()| Ok(node.store.unflushed()),
        )
        .expect("commit");
    assert_eq!(
        unflushed, 0,
        "the change is readable under the lock but not yet on disk"
    );
}
