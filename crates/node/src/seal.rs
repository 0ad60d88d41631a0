//! The group's gossip seal keys as this node holds them, and the key
//! records it writes: a new key when someone has left, the current key for
//! members admitted since (the rules are in `nestwork_docs::seal`).
//!
//! Each need is written first by one member (the lowest member id among
//! those who can: see [`Need::first`]); every other member writes it too if
//! it is still unmet [`SEAL_KEY_GRACE`] after this node first saw it, so a
//! group whose first writer is offline still gets its key. Two keys made at
//! once are harmless: every node picks the same one.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use nestwork_core::Hash32;
use nestwork_docs::seal::{self, Keyring, Need};
use nestwork_docs::RecordBody;

use crate::node::{Node, State};

/// How long a member other than the first waits before writing a key
/// record the group still lacks.
pub const SEAL_KEY_GRACE: Duration = Duration::from_secs(3);

/// What the node remembers of seal keys between calls.
#[derive(Default)]
pub(crate) struct SealMemory {
    /// Boxes tried, by record id: the key each opened, if any.
    opened: HashMap<Hash32, Option<[u8; 32]>>,
    /// Needs seen and since when, by group.
    needs: HashMap<Hash32, (Need, Instant)>,
}

impl Node {
    /// The keyring of `group` as the document is, or as it was just
    /// before `before` (one of its changes: the key to seal that change
    /// with is the one current at its causal past).
    pub(crate) fn keyring_in(
        &self,
        docs: &mut State,
        group: &Hash32,
        before: Option<&Hash32>,
    ) -> Option<Keyring> {
        let doc = docs.groups.get_mut(group)?;
        let (members, outside) = match before {
            Some(change) => doc.roll_before(change)?,
            None => (doc.members().clone(), doc.outside_members()),
        };
        let (genesis, _) = doc.genesis()?;
        let mut memory = self.seal_memory();
        Some(seal::keyring(
            group,
            &genesis.encode(),
            &members,
            &outside,
            doc.seal_key_records(),
            self.writer.key(),
            &mut memory.opened,
        ))
    }

    /// Write the key records the groups this node is a member of lack
    /// (see the module's text); returns how many it wrote.
    pub fn tend_seal_keys(&self) -> usize {
        let me = self.member();
        let mut todo: Vec<(Hash32, Vec<seal::SealKey>)> = Vec::new();
        {
            let mut docs = self.lock();
            let groups: Vec<Hash32> = docs
                .groups
                .iter()
                .filter(|(_, d)| d.members().contains(&me))
                .map(|(g, _)| *g)
                .collect();
            for group in groups {
                let Some(ring) = self.keyring_in(&mut docs, &group, None) else {
                    continue;
                };
                let mut memory = self.seal_memory();
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
                if need.first() != me && since.elapsed() < SEAL_KEY_GRACE {
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
        }
        let mut written = 0;
        for (group, records) in todo {
            for record in records {
                let boxes = record.boxes.len();
                match self.write_group_record(group, |_| Ok(RecordBody::SealKey(record))) {
                    Ok(id) => {
                        tracing::info!(group = %group.short(), record = %id.short(), boxes, "seal key written");
                        written += 1;
                    }
                    Err(e) => {
                        tracing::warn!(group = %group.short(), error = %e, "could not write a seal key")
                    }
                }
            }
        }
        written
    }
}
