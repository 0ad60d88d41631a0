//! What a node keeps on disk of its own ledger counts, beside the signed
//! documents: the base it counts from, the heads of each period wholly
//! below it (cold, not loaded), and **checkpoints**: older bases, kept so
//! that a late record needs the history from a little below its period
//! counted again, not the whole ledger from period 0.
//!
//! All of it is computed by this node from payments it verified, stored
//! under ids no document has (the store's marks), and never sent. Any of
//! it may be dropped at any time: the node then counts from further down.

use nestwork_core::encoding::{decode, encode};
use nestwork_core::{GroupId, Hash32};
use nestwork_docs::ledger::Base;
use nestwork_store::DocStore;
#[cfg(test)]
use nestwork_store::Store;
use serde::{Deserialize, Serialize};

use nestwork_docs::group_ledger::{period_id, GroupLedger};

use crate::error::NodeError;

pub use nestwork_docs::group_ledger::CHECKPOINT_EVERY;

/// An older base, and the periods that were wholly below it (their heads
/// are in their own marks while they stay cold).
#[derive(Debug, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The base.
    pub base: Base,
    /// The periods wholly below it when it was kept.
    pub cold: Vec<u64>,
}

/// Where a group's ledger base is kept (an id no document has, so no
/// change ever erases it).
fn base_mark(group: &GroupId) -> Hash32 {
    Hash32::of_parts(&[b"nestwork/ledger-base/v1", group.as_bytes()])
}

/// Where the checkpoint at `period` is kept.
fn checkpoint_mark(group: &GroupId, period: u64) -> Hash32 {
    Hash32::of_parts(&[
        b"nestwork/ledger-checkpoint/v1",
        group.as_bytes(),
        &period.to_be_bytes(),
    ])
}

/// The stored base of `group`; `None` if there is none, or it is damaged
/// (logged: the ledger is then counted again).
pub fn stored_base(store: &dyn DocStore, group: &GroupId) -> Result<Option<Base>, NodeError> {
    let Some(bytes) = store.mark(&base_mark(group))? else {
        return Ok(None);
    };
    match decode("ledger base", &bytes, usize::MAX) {
        Ok(base) => Ok(Some(base)),
        Err(e) => {
            tracing::error!(group = %group.short(), error = %e, "stored ledger base is damaged; counting the ledger again");
            Ok(None)
        }
    }
}

/// Forget the stored base: the next start counts the ledger again.
pub fn forget_base(store: &dyn DocStore, group: &GroupId) -> Result<(), NodeError> {
    Ok(store.remove_mark(&base_mark(group))?)
}

/// The stored heads of cold period `period`, if it is marked cold.
pub fn cold_heads(
    store: &dyn DocStore,
    group: &GroupId,
    period: u64,
) -> Result<Option<Vec<Hash32>>, NodeError> {
    Ok(store
        .mark(&period_id(group, period).hash32())?
        .and_then(|h| decode::<Vec<Hash32>>("period heads", &h, usize::MAX).ok()))
}

/// Forget that period `period` is cold (it is counted again).
pub fn forget_cold(store: &dyn DocStore, group: &GroupId, period: u64) -> Result<(), NodeError> {
    Ok(store.remove_mark(&period_id(group, period).hash32())?)
}

/// After the base of `l` moved: store it, unload (and mark cold) the
/// periods that lie wholly below it, and keep it as a checkpoint if it is
/// the first base in its run of [`CHECKPOINT_EVERY`] periods.
pub fn store_rebase(
    store: &dyn DocStore,
    group: &GroupId,
    l: &mut GroupLedger,
) -> Result<(), NodeError> {
    store.set_mark(&base_mark(group), &encode(l.ledger.base()))?;
    for period in l.coolable() {
        if let Some(heads) = l.cool(period) {
            store.set_mark(&period_id(group, period).hash32(), &encode(&heads))?;
        }
    }
    let now = Checkpoint {
        base: l.ledger.base().clone(),
        cold: l.cold.keys().copied().collect(),
    };
    let passed = l
        .take_passed()
        .into_iter()
        .map(|(base, cold)| Checkpoint { base, cold });
    for checkpoint in passed.chain([now]) {
        let period = checkpoint.base.period;
        if l.last_checkpoint
            .is_none_or(|last| last / CHECKPOINT_EVERY < period / CHECKPOINT_EVERY)
        {
            store.set_mark(&checkpoint_mark(group, period), &encode(&checkpoint))?;
            l.last_checkpoint = Some(period);
        }
    }
    Ok(())
}

/// The newest checkpoint at or below `top`, with its period.
pub fn checkpoint_at_or_below(
    store: &dyn DocStore,
    group: &GroupId,
    top: u64,
) -> Result<Option<(u64, Checkpoint)>, NodeError> {
    for period in (0..=top).rev() {
        let Some(bytes) = store.mark(&checkpoint_mark(group, period))? else {
            continue;
        };
        match decode::<Checkpoint>("ledger checkpoint", &bytes, usize::MAX) {
            Ok(c) if c.base.period == period => return Ok(Some((period, c))),
            _ => {
                tracing::warn!(group = %group.short(), period, "stored ledger checkpoint is damaged; skipped");
                store.remove_mark(&checkpoint_mark(group, period))?;
            }
        }
    }
    Ok(None)
}

/// Forget all `group`'s counts: its base, which of `periods` are cold, and
/// every checkpoint. The next start counts the ledger from period 0.
pub fn forget_counts(
    store: &dyn DocStore,
    group: &GroupId,
    periods: Vec<u64>,
) -> Result<(), NodeError> {
    forget_base(store, group)?;
    for period in &periods {
        forget_cold(store, group, *period)?;
    }
    forget_checkpoints_above(store, group, None, periods)
}

/// Forget every checkpoint of `group` above `period` (all of them for
/// `None`), among `periods`: they were counted without what is being
/// counted now (a fork below their cut would be lost from the balances
/// by counting from them), and are kept again as the base moves up.
pub fn forget_checkpoints_above(
    store: &dyn DocStore,
    group: &GroupId,
    period: Option<u64>,
    periods: impl IntoIterator<Item = u64>,
) -> Result<(), NodeError> {
    for p in periods {
        if period.is_none_or(|above| p > above) {
            store.remove_mark(&checkpoint_mark(group, p))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint(period: u64) -> Checkpoint {
        Checkpoint {
            base: Base {
                period,
                payments: period * 10,
                ..Base::default()
            },
            cold: (0..period).collect(),
        }
    }

    #[test]
    fn a_late_record_finds_the_newest_checkpoint_at_or_below_and_skips_a_damaged_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let group = GroupId::from(Hash32::of(b"group"));
        let other = GroupId::from(Hash32::of(b"other group"));
        for period in [0, 4, 9] {
            store
                .set_mark(
                    &checkpoint_mark(&group, period),
                    &encode(&checkpoint(period)),
                )
                .expect("mark");
        }
        store
            .set_mark(&checkpoint_mark(&other, 6), &encode(&checkpoint(6)))
            .expect("mark");
        let found = |top| {
            checkpoint_at_or_below(&store, &group, top)
                .expect("read")
                .map(|(p, c)| (p, c.base.payments, c.cold.len()))
        };
        assert_eq!(found(20), Some((9, 90, 9)));
        assert_eq!(found(8), Some((4, 40, 4)), "another group's is not used");
        assert_eq!(found(3), Some((0, 0, 0)));
        // Bytes that do not decode, or a checkpoint filed under another
        // period, are skipped (and dropped), never counted from.
        store
            .set_mark(&checkpoint_mark(&group, 9), b"not a checkpoint")
            .expect("mark");
        store
            .set_mark(&checkpoint_mark(&group, 4), &encode(&checkpoint(3)))
            .expect("mark");
        assert_eq!(found(20), Some((0, 0, 0)));
        assert_eq!(store.mark(&checkpoint_mark(&group, 9)).expect("read"), None);
    }

    #[test]
    fn checkpoints_above_the_one_counted_from_are_forgotten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let group = GroupId::from(Hash32::of(b"group"));
        for period in [0, 4, 8, 12] {
            store
                .set_mark(
                    &checkpoint_mark(&group, period),
                    &encode(&checkpoint(period)),
                )
                .expect("mark");
        }
        forget_checkpoints_above(&store, &group, Some(4), 0..14).expect("forget");
        let held = |p| {
            store
                .mark(&checkpoint_mark(&group, p))
                .expect("read")
                .is_some()
        };
        assert!(held(0) && held(4) && !held(8) && !held(12));
        forget_checkpoints_above(&store, &group, None, 0..14).expect("forget");
        assert!(!held(0) && !held(4));
    }
}
