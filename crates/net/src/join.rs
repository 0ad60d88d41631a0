//! Joins waiting for the inviter's node: what waits on each inviter, the
//! dials made for it, until when to wait, and when to dial again.
//!
//! Bookkeeping only: the event loop dials, sends and answers; nothing here
//! touches the swarm. What waits is generic (the loop keeps a ticket and
//! the reply to the member), so the rules can be tested without channels.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::swarm::ConnectionId;
use libp2p::{Multiaddr, PeerId};

/// How long a join waits for the inviter's node to become reachable (a
/// direct dial, a relay circuit, or a dial already in flight) and answer.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(20);

/// When every dial for a join failed, how long before trying again (until
/// the deadline): a relay refusing for a moment, or the inviter's slot on
/// its way, is no reason to give up.
pub const JOIN_RETRY: Duration = Duration::from_secs(2);

/// What a user reads when the inviter cannot be reached. The libp2p error
/// goes to the log, never to the user.
pub const INVITER_UNREACHABLE: &str =
    "the inviter's node could not be reached directly or through a relay; is it running?";

/// The dials made for the joins waiting on one inviter, and until when to
/// wait.
#[derive(Debug)]
struct Attempt {
    /// The dials started for it; errors of other dials are not its failure.
    dials: Vec<ConnectionId>,
    /// Give up after this.
    deadline: Instant,
    /// Where to dial the inviter.
    addrs: Vec<Multiaddr>,
    /// All dials failed: dial again at this time.
    retry_at: Option<Instant>,
}

/// The joins waiting for their inviters' nodes.
#[derive(Debug)]
pub(crate) struct Joins<W> {
    waiting: HashMap<PeerId, Vec<W>>,
    attempts: HashMap<PeerId, Attempt>,
}

impl<W> Default for Joins<W> {
    fn default() -> Self {
        Joins {
            waiting: HashMap::new(),
            attempts: HashMap::new(),
        }
    }
}

impl<W> Joins<W> {
    /// `join` waits until `inviter` is connected (or given up).
    pub(crate) fn wait(&mut self, inviter: PeerId, join: W) {
        self.waiting.entry(inviter).or_default().push(join);
    }

    /// A dial to `inviter` at `addrs` was started (`Some`, with its id) or
    /// could not start (`None`). The first dial sets the deadline. Returns
    /// whether a dial for the joins is still in flight; if not, they fail.
    pub(crate) fn dialed(
        &mut self,
        inviter: PeerId,
        addrs: Vec<Multiaddr>,
        dial: Option<ConnectionId>,
        now: Instant,
    ) -> bool {
        let attempt = self.attempts.entry(inviter).or_insert_with(|| Attempt {
            dials: Vec::new(),
            deadline: now + JOIN_TIMEOUT,
            addrs,
            retry_at: None,
        });
        attempt.dials.extend(dial);
        !attempt.dials.is_empty()
    }

    /// A dial to `peer` failed. Returns whether it was the last of the
    /// dials made for joins (another dial's failure is not the joins').
    pub(crate) fn dial_failed(&mut self, peer: PeerId, dial: ConnectionId) -> bool {
        match self.attempts.get_mut(&peer) {
            Some(attempt) => {
                attempt.dials.retain(|d| *d != dial);
                attempt.dials.is_empty()
            }
            None => false,
        }
    }

    /// Every dial for the joins on `inviter` failed: dial again after
    /// [`JOIN_RETRY`] if that is before the deadline (returns true);
    /// otherwise they fail (false).
    pub(crate) fn retry_later(&mut self, inviter: PeerId, now: Instant) -> bool {
        match self.attempts.get_mut(&inviter) {
            Some(attempt) if now + JOIN_RETRY < attempt.deadline => {
                attempt.retry_at = Some(now + JOIN_RETRY);
                true
            }
            _ => false,
        }
    }

    /// `inviter` is connected: the joins waiting on it, to send now.
    pub(crate) fn connected(&mut self, inviter: PeerId) -> Vec<W> {
        self.attempts.remove(&inviter);
        self.waiting.remove(&inviter).unwrap_or_default()
    }

    /// Give up the joins waiting on `inviter`: they are returned, to be
    /// told it could not be reached.
    pub(crate) fn fail(&mut self, inviter: PeerId) -> Vec<W> {
        self.connected(inviter)
    }

    /// The inviters whose joins are past their deadline.
    pub(crate) fn expired(&self, now: Instant) -> Vec<PeerId> {
        self.attempts
            .iter()
            .filter(|(_, a)| a.deadline <= now)
            .map(|(p, _)| *p)
            .collect()
    }

    /// The inviters to dial again now, with where.
    pub(crate) fn due_retries(&mut self, now: Instant) -> Vec<(PeerId, Vec<Multiaddr>)> {
        self.attempts
            .iter_mut()
            .filter(|(_, a)| a.retry_at.is_some_and(|t| t <= now))
            .map(|(p, a)| {
                a.retry_at = None;
                (*p, a.addrs.clone())
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_dials_are_retried_until_the_deadline_then_the_joins_fail() {
        let mut joins = Joins::default();
        let inviter = PeerId::random();
        let t0 = Instant::now();
        let addr: Multiaddr = "/ip4/127.0.0.1/tcp/4001".parse().expect("addr");
        joins.wait(inviter, "first");
        joins.wait(inviter, "second");
        let dial = ConnectionId::new_unchecked(1);
        assert!(joins.dialed(inviter, vec![addr.clone()], Some(dial), t0));

        // Another dial to the same peer failing is not the joins' failure.
        assert!(!joins.dial_failed(inviter, ConnectionId::new_unchecked(2)));
        assert!(joins.dial_failed(inviter, dial));
        assert!(joins.retry_later(inviter, t0));
        assert!(joins.due_retries(t0).is_empty());
        assert_eq!(
            joins.due_retries(t0 + JOIN_RETRY),
            vec![(inviter, vec![addr.clone()])]
        );
        assert!(joins.due_retries(t0 + JOIN_RETRY).is_empty(), "once");

        // The deadline is from the first dial, not from a retry.
        let again = ConnectionId::new_unchecked(3);
        assert!(joins.dialed(inviter, vec![addr], Some(again), t0 + JOIN_RETRY));
        assert!(joins.expired(t0 + JOIN_TIMEOUT - JOIN_RETRY).is_empty());
        assert!(joins.dial_failed(inviter, again));
        assert!(!joins.retry_later(inviter, t0 + JOIN_TIMEOUT - JOIN_RETRY));
        assert_eq!(joins.expired(t0 + JOIN_TIMEOUT), vec![inviter]);
        assert_eq!(joins.fail(inviter), vec!["first", "second"]);
        assert!(joins.expired(t0 + JOIN_TIMEOUT).is_empty());
    }

    #[test]
    fn a_connection_hands_over_the_waiting_joins_and_ends_the_attempt() {
        let mut joins = Joins::default();
        let inviter = PeerId::random();
        let t0 = Instant::now();
        joins.wait(inviter, 1);
        assert!(
            !joins.dialed(inviter, Vec::new(), None, t0),
            "no dial started"
        );
        assert!(joins.dialed(
            inviter,
            Vec::new(),
            Some(ConnectionId::new_unchecked(7)),
            t0
        ));
        assert_eq!(joins.connected(inviter), vec![1]);
        assert!(joins.expired(t0 + JOIN_TIMEOUT).is_empty());
        assert!(!joins.dial_failed(inviter, ConnectionId::new_unchecked(7)));
        assert!(joins.connected(inviter).is_empty());
    }
}
