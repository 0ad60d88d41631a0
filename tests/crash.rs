//! Crash safety: a real `nestwork run` is killed with SIGKILL at random
//! moments while a client keeps creating groups. After every restart, every
//! group whose creation was acknowledged is there and the store opens.
//!
//! `NESTWORK_CRASH_ROUNDS` sets the number of kill/restart rounds (default
//! 8 for the everyday test run; `scripts/crash-soak` runs 50).

mod common;

use common::*;
use rand::{Rng, SeedableRng};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[test]
fn acknowledged_groups_survive_sigkill_at_random_moments() {
    let rounds: usize = std::env::var("NESTWORK_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let seed: u64 = std::env::var("NESTWORK_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20261122);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("node");
    let acknowledged: Arc<Mutex<BTreeSet<String>>> = Arc::default();

    for round in 0..rounds {
        let node = RunningNode::start(&dir);

        // Every acknowledged group from earlier rounds is present.
        let listed = listed_names(&dir);
        let missing: Vec<_> = acknowledged
            .lock()
            .expect("lock")
            .difference(&listed)
            .cloned()
            .collect();
        assert!(
            missing.is_empty(),
            "round {round}: acknowledged groups lost after SIGKILL: {missing:?}"
        );

        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (dir, stop, acknowledged) = (dir.clone(), stop.clone(), acknowledged.clone());
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    let name = format!("g{round}-{i}");
                    if nw(&dir, &["group", "create", &name]).status.success() {
                        acknowledged.lock().expect("lock").insert(name);
                    }
                    i += 1;
                }
            })
        };
        std::thread::sleep(Duration::from_millis(rng.gen_range(30..400)));
        node.kill();
        stop.store(true, Ordering::SeqCst);
        writer.join().expect("writer thread");
    }

    // A last restart: the store opens and holds everything acknowledged.
    let _node = RunningNode::start(&dir);
    let listed = listed_names(&dir);
    let acknowledged = acknowledged.lock().expect("lock");
    assert!(
        !acknowledged.is_empty(),
        "no group was ever acknowledged; the test proved nothing"
    );
    let missing: Vec<_> = acknowledged.difference(&listed).collect();
    assert!(missing.is_empty(), "acknowledged groups lost: {missing:?}");
    eprintln!(
        "{rounds} SIGKILL rounds, {} acknowledged groups, all present",
        acknowledged.len()
    );
}

fn listed_names(dir: &std::path::Path) -> BTreeSet<String> {
    json(dir, &["group", "list"])
        .as_array()
        .expect("list")
        .iter()
        .map(|g| g["name"].as_str().expect("name").to_string())
        .collect()
}
