//! Where this node and its peers stand on the network: the connections to
//! each peer (direct, relayed, hole punched), the slots held on relays, the
//! members to keep reaching, and the plain words `status` and `peers` use.
//!
//! Pure bookkeeping: the event loop feeds it swarm events and asks it what
//! to dial; nothing here touches the swarm.

use std::collections::HashMap;
use std::time::Duration;

use libp2p::autonat::NatStatus;
use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::ConnectionId;
use libp2p::{Multiaddr, PeerId};

/// One open connection to a peer.
#[derive(Clone, Debug)]
pub struct Link {
    /// The remote address of the connection.
    pub address: Multiaddr,
    /// Through a relay circuit.
    pub relayed: bool,
    /// A direct connection made by DCUtR hole punching.
    pub hole_punched: bool,
}

/// What we know of a connected peer.
#[derive(Debug, Default)]
pub struct Peer {
    /// Open connections.
    pub links: HashMap<ConnectionId, Link>,
    /// Last ping round trip.
    pub rtt: Option<Duration>,
    /// Its own direct listen addresses (from identify).
    pub direct_addrs: Vec<Multiaddr>,
}

impl Peer {
    /// The connection that describes the peer best: a direct one if any.
    pub fn best(&self) -> Option<&Link> {
        self.links
            .values()
            .min_by_key(|l| (l.relayed, !l.hole_punched, l.address.to_string()))
    }

    /// Only relayed connections are open.
    pub fn relayed_only(&self) -> bool {
        !self.links.is_empty() && self.links.values().all(|l| l.relayed)
    }
}

/// A relay from the config and our slot on it.
#[derive(Debug)]
pub struct Relay {
    /// The relay's address (ending in `/p2p/PEER_ID`).
    pub addr: Multiaddr,
    /// Our circuit listener on it, once asked for.
    pub listener: Option<ListenerId>,
    /// The relay accepted our reservation: peers can reach us through it.
    pub reserved: bool,
}

/// A member's node we were connected to and want to stay connected to.
#[derive(Debug, Default, Clone)]
pub struct Known {
    /// Direct addresses last heard (identify, the connection itself).
    pub addrs: Vec<Multiaddr>,
}

impl Known {
    /// Remember `addr` (most recent first, a few kept).
    pub fn remember(&mut self, addr: Multiaddr) {
        if is_circuit(&addr) {
            return;
        }
        self.addrs.retain(|a| *a != addr);
        self.addrs.insert(0, addr);
        self.addrs.truncate(8);
    }
}

/// A relay circuit address through `relay` to `peer`.
pub fn circuit_via(relay: &Multiaddr, peer: PeerId) -> Multiaddr {
    relay
        .clone()
        .with(Protocol::P2pCircuit)
        .with(Protocol::P2p(peer))
}

/// Whether the address goes through a relay.
pub fn is_circuit(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::P2pCircuit))
}

/// Where this node stands, in plain words: AutoNAT's verdict and the
/// relay slots it holds.
pub fn reachability(nat: &NatStatus, relays: &HashMap<PeerId, Relay>) -> String {
    let reserved: Vec<String> = relays
        .iter()
        .filter(|(_, r)| r.reserved)
        .map(|(p, _)| p.to_string())
        .collect();
    let through = if reserved.is_empty() {
        None
    } else {
        Some(format!("reachable through relay {}", reserved.join(", ")))
    };
    match (nat, through) {
        (NatStatus::Public(addr), _) => format!("reachable directly at {addr}"),
        (NatStatus::Private, Some(t)) => format!("behind NAT; {t}"),
        (NatStatus::Private, None) if relays.is_empty() => {
            "behind NAT and not reachable from outside (no relay configured: set network.relays)"
                .into()
        }
        (NatStatus::Private, None) => {
            "behind NAT and not reachable from outside (no slot on a relay yet)".into()
        }
        (NatStatus::Unknown, Some(t)) => format!("not yet known whether behind NAT; {t}"),
        (NatStatus::Unknown, None) => {
            "not yet known (no peer has checked whether this node can be reached)".into()
        }
    }
}

/// The kind of a connection in plain words, for `peers`.
pub fn link_kind(link: &Link) -> &'static str {
    match (link.relayed, link.hole_punched) {
        (true, _) => "relayed",
        (false, true) => "direct (hole punched)",
        (false, false) => "direct",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(relayed: bool, hole_punched: bool) -> Link {
        Link {
            address: "/ip4/1.2.3.4/tcp/1".parse().expect("addr"),
            relayed,
            hole_punched,
        }
    }

    #[test]
    fn a_direct_connection_describes_a_peer_before_a_relayed_one() {
        let mut peer = Peer::default();
        peer.links
            .insert(ConnectionId::new_unchecked(1), link(true, false));
        assert!(peer.relayed_only());
        peer.links
            .insert(ConnectionId::new_unchecked(2), link(false, true));
        assert!(!peer.relayed_only());
        assert_eq!(peer.best().map(link_kind), Some("direct (hole punched)"));
    }

    #[test]
    fn reachability_says_where_the_node_stands() {
        let relay_peer = PeerId::random();
        let mut relays = HashMap::new();
        assert!(reachability(&NatStatus::Private, &relays).contains("no relay configured"));
        relays.insert(
            relay_peer,
            Relay {
                addr: "/ip4/11.0.0.1/tcp/4001".parse().expect("addr"),
                listener: None,
                reserved: false,
            },
        );
        assert!(reachability(&NatStatus::Private, &relays).contains("no slot"));
        relays.get_mut(&relay_peer).expect("relay").reserved = true;
        let words = reachability(&NatStatus::Private, &relays);
        assert!(
            words.starts_with("behind NAT; reachable through relay"),
            "{words}"
        );
        assert!(words.contains(&relay_peer.to_string()));
        let public = NatStatus::Public("/ip4/11.0.0.1/tcp/4001".parse().expect("addr"));
        assert!(reachability(&public, &relays).starts_with("reachable directly"));
    }

    #[test]
    fn known_addresses_skip_circuits_and_stay_few() {
        let mut known = Known::default();
        for port in 0..20 {
            known.remember(format!("/ip4/1.2.3.4/tcp/{port}").parse().expect("addr"));
        }
        known.remember(circuit_via(
            &"/ip4/11.0.0.1/tcp/1".parse().expect("addr"),
            PeerId::random(),
        ));
        assert_eq!(known.addrs.len(), 8);
        assert!(known.addrs.iter().all(|a| !is_circuit(a)));
        assert_eq!(known.addrs[0].to_string(), "/ip4/1.2.3.4/tcp/19");
    }
}
