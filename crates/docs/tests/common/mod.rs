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
