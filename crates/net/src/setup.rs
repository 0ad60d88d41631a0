//! The swarm a node starts with: transports and behaviours for its key,
//! its listeners bound, its external addresses announced, its configured
//! peers and relays dialled once. `actor::spawn` runs these in order and
//! hands the swarm to the event loop.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::SwarmEvent;
use libp2p::{noise, tcp, yamux, Multiaddr, PeerId, Swarm, SwarmBuilder};
use nestwork_core::MemberKey;

use crate::behaviour::Behaviour;
use crate::reach::Relay;
use crate::{NetConfig, NetError};

/// The swarm for `key`, with its behaviours and their metrics, and the
/// sync codec's traffic counters.
pub(crate) fn build_swarm(
    config: &NetConfig,
    key: &MemberKey,
) -> Result<
    (
        Swarm<Behaviour>,
        prometheus_client::registry::Registry,
        Arc<crate::protocol::SyncTraffic>,
    ),
    NetError,
> {
    let keypair = libp2p::identity::Keypair::ed25519_from_bytes(key.secret_bytes())
        .map_err(|e| NetError::Key(e.to_string()))?;
    let (mdns_on, relay_server) = (config.mdns, config.relay_server);
    let mut metrics = prometheus_client::registry::Registry::default();
    let codec = crate::protocol::Codec::default();
    let traffic = codec.traffic.clone();
    let swarm = SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| NetError::Setup(e.to_string()))?
        .with_quic()
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .map_err(|e| NetError::Setup(e.to_string()))?
        .with_behaviour(|key, relay_client| {
            Behaviour::new(
                key,
                relay_client,
                mdns_on,
                relay_server,
                &mut metrics,
                codec,
            )
        })
        .map_err(|e| NetError::Setup(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
        .build();
    Ok((swarm, metrics, traffic))
}

/// Bind every listen address, and wait until each is bound, so callers can
/// hand out addresses; then announce the external ones.
pub(crate) async fn listen(
    swarm: &mut Swarm<Behaviour>,
    config: &NetConfig,
) -> Result<(), NetError> {
    for addr in &config.listen {
        let addr: Multiaddr = addr
            .parse()
            .map_err(|e| address("listen address", addr, e))?;
        swarm
            .listen_on(addr.clone())
            .map_err(|e| NetError::Listen {
                addr: addr.clone(),
                reason: e.to_string(),
            })?;
    }
    // Wait until every listener is bound, so callers can hand out addresses.
    let mut bound = 0;
    while bound < config.listen.len() {
        match tokio::time::timeout(Duration::from_secs(10), swarm.select_next_some()).await {
            Ok(SwarmEvent::NewListenAddr { .. }) => bound += 1,
            Ok(SwarmEvent::ListenerError { error, .. })
            | Ok(SwarmEvent::ListenerClosed {
                reason: Err(error), ..
            }) => return Err(NetError::ListenFailed(error.to_string())),
            Ok(_) => {}
            Err(_) => return Err(NetError::ListenTimeout),
        }
    }
    for addr in &config.external {
        let addr: Multiaddr = addr
            .parse()
            .map_err(|e| address("external address", addr, e))?;
        swarm.add_external_address(addr);
    }
    if config.relay_server && config.external.is_empty() {
        let concrete: Vec<Multiaddr> = swarm
            .listeners()
            .filter(|a| {
                !a.iter()
                    .any(|p| matches!(p, Protocol::Ip4(ip) if ip.is_unspecified()))
            })
            .cloned()
            .collect();
        tracing::info!(addrs = ?concrete, "serving as a relay; announcing listen addresses (set network.external to override)");
        for addr in concrete {
            swarm.add_external_address(addr);
        }
    }
    Ok(())
}

/// Dial the configured bootstrap peers and relays once, each address once;
/// returns when each peer was dialled.
pub(crate) fn dial_first_peers(
    swarm: &mut Swarm<Behaviour>,
    config: &NetConfig,
) -> Result<HashMap<PeerId, Instant>, NetError> {
    let mut first_dials: Vec<&String> = Vec::new();
    for addr in config.bootstrap.iter().chain(config.relays.iter()) {
        if !first_dials.contains(&addr) {
            first_dials.push(addr);
        }
    }
    let mut last_dial = HashMap::new();
    for addr in first_dials {
        let addr: Multiaddr = addr.parse().map_err(|e| address("peer address", addr, e))?;
        let Some(Protocol::P2p(peer)) = addr.iter().last() else {
            return Err(NetError::NoPeerId(addr));
        };
        swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
        last_dial.insert(peer, Instant::now());
        if let Err(e) = swarm.dial(addr.clone()) {
            tracing::warn!(%addr, error = %e, "cannot dial configured peer");
        }
    }
    Ok(last_dial)
}

/// The configured relays, none reserved yet.
pub(crate) fn relays_of(config: &NetConfig) -> Result<HashMap<PeerId, Relay>, NetError> {
    // A slot on each relay is reserved once the connection to it is up
    // (reserving while the first dial is in flight makes the relay client
    // dial again and give up); see `reserve_on_relay`.
    let mut relays = HashMap::new();
    for relay in &config.relays {
        let addr: Multiaddr = relay
            .parse()
            .map_err(|e| address("relay address", relay, e))?;
        if let Some(Protocol::P2p(peer)) = addr.iter().last() {
            relays.insert(
                peer,
                Relay {
                    addr,
                    listener: None,
                    reserved: false,
                },
            );
        }
    }
    Ok(relays)
}

/// A configured address that does not parse.
pub(crate) fn address(what: &'static str, addr: &str, error: libp2p::multiaddr::Error) -> NetError {
    NetError::Address {
        what,
        addr: addr.to_string(),
        reason: error.to_string(),
    }
}
