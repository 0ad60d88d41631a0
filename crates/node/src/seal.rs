//! The group's gossip seal keys as this node holds them, and the key
//! records it should write: a new key when someone has left, the current
//! key for members admitted since (the rules are in `nestwork_docs::seal`).
//!
//! Each need is written first by one member (the lowest member id among
//! those who can: see [`Need::first`]); every other member writes it too if
//! it is still unmet [`SEAL_KEY_GRACE`] after this node first saw it, so a
//! group whose first writer is offline still gets its key. Two keys made at
//! once are harmless: every node picks the same one.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use nestwork_core::{GroupId, Hash32, MemberId, MemberKey};
use nestwork_docs::seal::{self, Keyring, Need, SealKey};

use crate::state::State;

/// How long a member other than the first waits before writing a key
/// record the group still lacks.
pub const SEAL_KEY_GRACE: Duration = Duration::from_secs(3);

/// What the node remembers of seal keys between calls.
#[derive(Default)]
pub(crate) struct SealMemory {
    /// Boxes tried, by record id: the key each opened, if any.
    opened: HashMap<Hash32, Option<[u8; 32]>>,
    /// Needs seen and since when, by group.
    needs: HashMap<GroupId, (Need, Instant)>,
}

/// The keyring of `group` as the document is, or as it was just before
/// `before` (one of its changes: the key to seal that change with is the
/// one current at its causal past), opened with this member's `key`.
pub(crate) fn keyring_in(
    docs: &mut State,
    group: &GroupId,
    before: Option<&Hash32>,
    key: &MemberKey,
    memory: &mut SealMemory,
) -> Option<Keyring> {
    let doc = docs.groups.get_mut(group)?;
    let (members, outside) = match before {
        Some(change) => doc.roll_before(change)?,
        None => (doc.members().clone(), doc.outside_members()),
    };
    let (genesis, _) = doc.genesis()?;
    Some(seal::keyring(
        group,
        &genesis.encode(),
        &members,
        &outside,
        doc.seal_key_records(),
        key,
        &mut memory.opened,
    ))
}

/// The key records member `me` (holding `key`) should write now, by group,
/// in the groups it is a member of (see the module's text).
pub(crate) fn keys_due(
    docs: &mut State,
    me: &MemberId,
    key: &MemberKey,
    memory: &mut SealMemory,
) -> Vec<(GroupId, Vec<SealKey>)> {
    let mut todo = Vec::new();
    let groups: Vec<GroupId> = docs
        .groups
        .iter()
        .filter(|(_, d)| d.members().contains(me))
        .map(|(g, _)| *g)
        .collect();
    for group in groups {
        let Some(ring) = keyring_in(docs, &group, None, key, memory) else {
            continue;
        };
        let Some(need) = ring.need else {
            memory.needs.remove(&group);
            continue;
        };
        let since = match memory.needs.get(&group) {
            Some((n, at)) if *n == need => *at,
            _ => {
                memory.needs.insert(group, (need.clone(), Instant::now()));
                Instant::now()
            }
        };
        if need.first() != *me && since.elapsed() < SEAL_KEY_GRACE {
            continue;
        }
        let records = match &need {
            Need::NewKey { to, .. } => {
                let key: [u8; 32] = rand::random();
                seal::seal_to(&group, &key, to)
            }
            Need::Reissue { key_id, to, .. } => match ring.keys.get(key_id) {
                Some(key) => seal::seal_to(&group, key, to),
                // Not a key this node holds: another member's to give.
                None => continue,
            },
        };
        memory.needs.remove(&group);
        todo.push((group, records));
    }
    todo
}
