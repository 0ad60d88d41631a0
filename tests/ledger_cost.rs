//! Applying a payment meets the same amount of state after 100,000
//! payments as after 1,000: the ledger's checks use prefix sums, and each
//! period is its own Automerge document, so history never reaches the
//! apply path.
//!
//! What is asserted is counted, not timed (a timing compared within one
//! run still failed on a CI-sized machine with other work beside it: 2.8 ms
//! against 6.6 ms). The medians are printed; the figures come from
//! `scripts/bench ledger`.

use std::time::Instant;

use nestwork_testkit::ledger_sim::LedgerSim;

const MEMBERS: usize = 20;
const PERIOD: u32 = 1_000;
const SAMPLES: usize = 200;

/// Median time to receive and apply one payment, in microseconds, after
/// `history` payments, and the most period documents the replica held
/// while applying. The history ends half-way through a period, so both
/// measurements see period documents of the same size.
fn cost_after(history: usize) -> (f64, usize) {
    let mut sim = LedgerSim::new(MEMBERS, PERIOD);
    sim.grow(history, 1_000);
    assert_eq!(sim.len(), history);
    assert!(
        sim.held() <= 3 * PERIOD as usize,
        "the replica holds recent periods only: {}",
        sim.held()
    );
    let mut times = Vec::with_capacity(SAMPLES);
    let mut periods = 0;
    for _ in 0..SAMPLES {
        let (period, changes) = sim.pay();
        let count = changes.len();
        let start = Instant::now();
        let report = sim.replica.apply(period, changes);
        times.push(start.elapsed().as_secs_f64() * 1e6);
        assert_eq!(report.applied.len(), count);
        periods = periods.max(sim.replica.ledger.periods.len());
    }
    assert!(
        sim.held() <= 3 * PERIOD as usize,
        "the replica holds recent periods only: {}",
        sim.held()
    );
    times.sort_by(f64::total_cmp);
    (times[SAMPLES / 2], periods)
}

#[test]
fn a_payment_at_100k_payments_of_history_meets_no_more_state_than_at_1k() {
    let (small, small_periods) = cost_after(1_500);
    let (large, large_periods) = cost_after(100_500);
    eprintln!(
        "median apply cost: {small:.0} µs at 1.5k, {large:.0} µs at 100.5k; period documents held: {small_periods} and {large_periods}"
    );
    assert!(
        large_periods <= small_periods + 1,
        "at 100k payments the replica held {large_periods} period documents while applying, at 1.5k {small_periods}"
    );
}
