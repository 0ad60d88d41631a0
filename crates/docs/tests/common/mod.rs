//! Test helpers shared by the document tests (each test file uses some).
#![allow(dead_code)]

use nestwork_core::{Hash32, MemberKey, SignedChange};
use nestwork_docs::{SignedDoc, Writer};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// Member `n`'s key and device (the same on every test replica).
pub fn writer(n: u8) -> Writer {
    Writer::new(MemberKey::from_secret([n; 32]), [n; 8])
}

/// Deliver `changes` to a fresh replica of `id` in a shuffled order, in
/// batches of 1 to `max_batch`, some twice, running `after_each` on the
/// replica after every batch (its first error stops the delivery). What
/// still waits at the end depends on something refused: it is tried again
/// until nothing more applies, then stays out.
pub fn deliver_in_batches<E>(
    id: Hash32,
    changes: &[SignedChange],
    seed: u64,
    max_batch: usize,
    mut after_each: impl FnMut(&SignedDoc) -> Result<(), E>,
) -> Result<SignedDoc, E> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut order = changes.to_vec();
    order.shuffle(&mut rng);
    let mut doc = SignedDoc::empty(id);
    let mut held: Vec<SignedChange> = Vec::new();
    let mut rest = order.as_slice();
    while !rest.is_empty() {
        let n = rng.gen_range(1..=rest.len().min(max_batch));
        let (now, later) = rest.split_at(n);
        rest = later;
        let mut batch = std::mem::take(&mut held);
        batch.extend(now.iter().cloned());
        if rng.gen_bool(0.3) {
            batch.extend(now.iter().cloned());
        }
        held = doc.apply(batch).missing_deps;
        after_each(&doc)?;
    }
    for _ in 0..changes.len() {
        if held.is_empty() {
            break;
        }
        let before = held.len();
        held = doc.apply(held).missing_deps;
        after_each(&doc)?;
        if held.len() == before {
            break;
        }
    }
    Ok(doc)
}

/// Deliver `changes` to a fresh replica of `id` in a shuffled order and
/// batches of 1 to 4, some twice; return it with the hashes it refused.
pub fn shuffled_replica(
    id: Hash32,
    changes: &[SignedChange],
    seed: u64,
) -> (SignedDoc, std::collections::BTreeSet<String>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut all = changes.to_vec();
    all.shuffle(&mut rng);
    let mut replica = SignedDoc::empty(id);
    let mut refused = std::collections::BTreeSet::new();
    let mut held: Vec<SignedChange> = Vec::new();
    for chunk in all.chunks(rng.gen_range(1..5)) {
        let mut batch = std::mem::take(&mut held);
        batch.extend(chunk.iter().cloned());
        if rng.gen_bool(0.3) {
            batch.extend(chunk.iter().cloned());
        }
        let report = replica.apply(batch);
        refused.extend(report.rejected.iter().map(|r| r.change.clone()));
        held = report.missing_deps;
    }
    for _ in 0..all.len() {
        if held.is_empty() {
            break;
        }
        let report = replica.apply(std::mem::take(&mut held));
        refused.extend(report.rejected.iter().map(|r| r.change.clone()));
        held = report.missing_deps;
    }
    (replica, refused)
}
