//! A node at work: the open [`Node`], its network and its ticker, started
//! together and stopped in order. `nestwork run`, the tests' nodes and the
//! benchmarks start exactly this, so a node is assembled in one place.

use std::sync::Arc;
use std::time::{Duration, Instant};

use nestwork_core::MemberKey;
use nestwork_net::{NetConfig, NetError, NetHandle};
use tokio::task::JoinHandle;

use crate::{Clock, DataDir, Node, NodeError};

/// How often a running node carries out what is due (decisions to sign,
/// limits, payouts, facts carried to another group); a change that needs
/// it is acted on at once besides (see `tick::spawn_ticker`).
pub const TICK_EVERY: Duration = Duration::from_secs(1);

/// How long stopping waits for the last borrowers of the node (a request
/// being answered, work the network handed off) before it gives up.
const RELEASE_WAIT: Duration = Duration::from_secs(10);

/// Why a node did not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The node could not be opened on its data directory.
    #[error("opening the node: {0}")]
    Open(NodeError),
    /// Opening the node stopped half way (it panicked).
    #[error("opening the node stopped: {0}")]
    Aborted(String),
    /// The network did not start.
    #[error("starting the network: {0}")]
    Network(NetError),
    /// The store could not be flushed on the way out.
    #[error("closing the node: {0}")]
    Close(NodeError),
    /// Something still held the node when it was to close.
    #[error(
        "the node was still in use {0:?} after stopping; its store was flushed but not closed"
    )]
    StillHeld(Duration),
}

// By hand rather than `#[from]`, which would also make the cause the
// error's source and have it printed twice in a chain of causes.
impl From<NodeError> for RunError {
    fn from(e: NodeError) -> RunError {
        RunError::Open(e)
    }
}

impl From<NetError> for RunError {
    fn from(e: NetError) -> RunError {
        RunError::Network(e)
    }
}

/// A started node: [`Node`], its network and its ticker.
pub struct Running {
    /// The node (the API serves it; the network calls it as its replica).
    pub node: Arc<Node>,
    /// The node's network.
    pub net: NetHandle,
    ticker: JoinHandle<()>,
}

impl Running {
    /// Open the node on `dir` (off the async threads: loading reads the
    /// disk), then start its ticker (every `tick_every`) and its network.
    pub async fn start(
        dir: &DataDir,
        key: MemberKey,
        clock: Clock,
        net_config: NetConfig,
        tick_every: Duration,
    ) -> Result<Running, RunError> {
        let node = {
            let (dir, key) = (dir.clone(), key.clone());
            tokio::task::spawn_blocking(move || Node::open_with_clock(&dir, key, clock))
                .await
                .map_err(|e| RunError::Aborted(e.to_string()))??
        };
        let node = Arc::new(node);
        let ticker = crate::tick::spawn_ticker(&node, tick_every);
        let net = match nestwork_net::spawn(net_config, key, node.clone()).await {
            Ok(net) => net,
            Err(e) => {
                ticker.abort();
                return Err(e.into());
            }
        };
        Ok(Running { node, net, ticker })
    }

    /// Stop in order: the ticker, then the network (which waits for the
    /// work it handed off), then the store, flushed and closed once nothing
    /// else holds the node, so the directory can be opened again at once.
    pub async fn stop(self) -> Result<(), RunError> {
        self.ticker.abort();
        // A cancelled ticker ends at its next await point.
        let _ = self.ticker.await;
        self.net.shutdown().await;
        let node = self.node;
        let since = Instant::now();
        while Arc::strong_count(&node) > 1 {
            if since.elapsed() > RELEASE_WAIT {
                node.close().map_err(RunError::Close)?;
                return Err(RunError::StillHeld(RELEASE_WAIT));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        node.close().map_err(RunError::Close)
    }
}
