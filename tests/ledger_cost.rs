//! Applying a payment costs the same after 100,000 payments as after
//! 1,000: the ledger's checks use prefix sums, and each period is its own
//! Automerge document, so history never reaches the apply path.
//!
//! This compares two costs measured in one run on one machine, so it holds
//! on slow and fast machines alike; the figures themselves come from
//! `scripts/bench ledger`.

use std::time::Instant;

use nestwork_testkit::ledger_sim::LedgerSim;

const MEMBERS: usize = 20;
const PERIOD: u32 = 1_000;
const SAMPLES: usize = 200;

/// Median time to receive and apply one payment, in microseconds, after
/// `history` payments. The history ends half-way through a period, so both
/// measurements see period documents of the same size.
fn cost_after(history: usize) -> f64 {
    let mut sim = LedgerSim::new(MEMBERS, PERIOD);
    sim.grow(history, 1_000);
    assert_eq!(sim.len(), history);
    assert!(
        sim.held() <= 3 * PERIOD as usize,
        "the replica holds recent periods only: {}",
        sim.held()
    );
    let mut times = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let (period, changes) = sim.pay();
        let count = changes.len();
        let start = Instant::now();
        let report = sim.replica.apply(period, changes);
        times.push(start.elapsed().as_secs_f64() * 1e6);
        assert_eq!(report.applied.len(), count);
    }
    times.sort_by(f64::total_cmp);
    times[SAMPLES / 2]
}

#[test]
fn a_payment_costs_the_same_at_100k_payments_of_history_as_at_1k() {
    let small = cost_after(1_500);
    let large = cost_after(100_500);
    eprintln!("median apply cost: {small:.0} µs at 1.5k, {large:.0} µs at 100.5k");
    assert!(
        large < 2.0 * small,
        "applying at 100k costs {large:.0} µs, more than twice {small:.0} µs at 1k"
    );
}
