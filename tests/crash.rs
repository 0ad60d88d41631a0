//! Crash safety: a real `nestwork run` is killed with SIGKILL at random
//! moments while a client keeps creating groups and paying a second node,
//! which stays up, syncs with it and pays it back all along. After every
//! restart, every group whose creation was acknowledged is there and the
//! store opens; at the end the two nodes agree on every balance, every
//! acknowledged payment is counted, and neither account is frozen (a node
//! that reused a payment number after a crash would be).
//!
//! `NESTWORK_CRASH_ROUNDS` sets the number of kill/restart rounds (default
//! 8 for the everyday test run; `scripts/crash-soak` runs 1,000).

mod common;

use common::*;
use rand::{Rng, SeedableRng};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
    let root = tmp.path().to_path_buf();
    // `NESTWORK_CRASH_KEEP`: leave both data directories behind, to look
    // into a failure.
    let _tmp = if std::env::var_os("NESTWORK_CRASH_KEEP").is_some() {
        eprintln!("data directories kept in {}", root.display());
        let _ = tmp.keep();
        None
    } else {
        Some(tmp)
    };
    let dir = root.join("node");
    let acknowledged: Arc<Mutex<BTreeSet<String>>> = Arc::default();

    // The second node, and the group they pay each other in. The killed
    // node listens on one address throughout, so the other dials it again.
    let listen = format!("/ip4/127.0.0.1/tcp/{}", free_port());
    let other = root.join("other");
    let _other_node = RunningNode::start(&other);
    let first = RunningNode::start_on(&dir, &listen);
    ok(&dir, &["group", "create", "Hub"]);
    let ticket = json(&dir, &["group", "invite", "Hub", "--expires", "1h"])["ticket"]
        .as_str()
        .expect("ticket")
        .to_string();
    ok(&other, &["group", "join", &ticket]);
    let me = ok(&dir, &["id"]).trim().to_string();
    let them = ok(&other, &["id"]).trim().to_string();
    first.kill();
    let paid: Arc<AtomicU64> = Arc::default();
    let paid_back: Arc<AtomicU64> = Arc::default();
    let stop_other = Arc::new(AtomicBool::new(false));
    let payer = {
        let (other, me, stop, paid_back) = (
            other.clone(),
            me.clone(),
            stop_other.clone(),
            paid_back.clone(),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                if nw(&other, &["pay", "Hub", &me, "1"]).status.success() {
                    paid_back.fetch_add(1, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };

    for round in 0..rounds {
        let node = RunningNode::start_on(&dir, &listen);

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
            let (dir, stop, acknowledged, paid, them) = (
                dir.clone(),
                stop.clone(),
                acknowledged.clone(),
                paid.clone(),
                them.clone(),
            );
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    if i % 2 == 1 {
                        if nw(&dir, &["pay", "Hub", &them, "1"]).status.success() {
                            paid.fetch_add(1, Ordering::SeqCst);
                        }
                    } else {
                        let name = format!("g{round}-{i}");
                        if nw(&dir, &["group", "create", &name]).status.success() {
                            acknowledged.lock().expect("lock").insert(name);
                        }
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
    stop_other.store(true, Ordering::SeqCst);
    payer.join().expect("payer thread");
    let _node = RunningNode::start_on(&dir, &listen);
    let listed = listed_names(&dir);
    let acknowledged = acknowledged.lock().expect("lock");
    assert!(
        !acknowledged.is_empty(),
        "no group was ever acknowledged; the test proved nothing"
    );
    let missing: Vec<_> = acknowledged.difference(&listed).collect();
    assert!(missing.is_empty(), "acknowledged groups lost: {missing:?}");

    // Both nodes end with the same ledger: every payment acknowledged by
    // either side is in it, and neither account is frozen.
    let (paid, paid_back) = (
        paid.load(Ordering::SeqCst),
        paid_back.load(Ordering::SeqCst),
    );
    // How long the two may take to agree once the last restart is up
    // (`NESTWORK_CRASH_AGREE_S`, 60 s by default).
    let agree_within = Duration::from_secs(
        std::env::var("NESTWORK_CRASH_AGREE_S")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(60),
    );
    let start = std::time::Instant::now();
    let balances = loop {
        let balances = (
            json(&dir, &["balance", "Hub"]),
            json(&other, &["balance", "Hub"]),
        );
        if balances.0["accounts"] == balances.1["accounts"]
            && balances.0["payments"].as_u64() >= Some(paid + paid_back)
        {
            break balances;
        }
        assert!(
            start.elapsed() < agree_within,
            "the two nodes do not agree after {agree_within:?}: {paid} + {paid_back} payments acknowledged; killed node {} ; other node {}; statuses: {} ; {}",
            balances.0,
            balances.1,
            json(&dir, &["status"]),
            json(&other, &["status"]),
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let of = |who: &str| {
        balances.0["accounts"]
            .as_array()
            .expect("accounts")
            .iter()
            .find(|a| a["account"] == who)
            .cloned()
            .expect("account")
    };
    // What the killed node's account sent, net of what it received.
    let sent = of(&them)["balance"].as_i64().expect("balance") + paid_back as i64;
    assert!(
        sent >= paid as i64,
        "acknowledged payments lost: {paid} acknowledged, {sent} held"
    );
    for who in [&me, &them] {
        assert!(of(who)["frozen"].is_null(), "{who} frozen: {}", of(who));
    }
    eprintln!(
        "{rounds} SIGKILL rounds: {} acknowledged groups, all present; {paid} payments acknowledged by the killed node ({sent} held) and {paid_back} by the other, same balances on both, no account frozen",
        acknowledged.len()
    );
}

/// A TCP port free on loopback just now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn listed_names(dir: &std::path::Path) -> BTreeSet<String> {
    json(dir, &["group", "list"])
        .as_array()
        .expect("list")
        .iter()
        .map(|g| g["name"].as_str().expect("name").to_string())
        .collect()
}
