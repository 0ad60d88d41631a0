//! The node: everything a running `nestwork run` holds, without its
//! interfaces.
//!
//! - [`data_dir`]: where a node keeps its files, and how they are written
//!   (secret files owner-only, every file replaced atomically);
//! - [`identity`]: the member key and device tag, with backup and restore;
//! - [`config`]: embedded defaults, then the TOML file, then the environment
//!   (flags are applied last by the CLI);
//! - [`clock`]: the node's clock, which tests can move; every time the node
//!   reads comes from it;
//! - [`error`]: [`NodeError`], why a request failed;
//! - [`views`]: the requests members make and the views they get back;
//! - `state`: what the node holds in memory under its lock, and the one
//!   loader that reads a group from the store (at start-up and to rebuild
//!   it);
//! - [`node`]: [`Node`] owns the store and the state, and holds the one
//!   write path (`Node::commit`): every change is durable before anything
//!   serves, announces or answers it;
//! - the operations, each an `impl Node` over that path: `groups` (found,
//!   describe, admit, a peer's changes), [`bundle`] (export, import),
//!   [`ledger`] (pay, limits, balances), [`governance`] (proposals, votes,
//!   exits, treaties, tiers), [`distress`] (signals raised, answered,
//!   listed), [`status`] (health), [`tick`] (carrying out what
//!   `nestwork_docs::due` says is due, and the seal keys);
//! - `replica`: the node as the network sees it;
//! - [`running`]: a node at work, assembled in one place for `nestwork
//!   run`, the tests and the benchmarks: the node, its network and its
//!   ticker, started together and stopped in order;
//! - `directory`: what the network looks up on its event loop, kept
//!   apart from the node's lock (which a writer holds while the disk
//!   flushes);
//! - `ledger_marks`: what the node stores of its own ledger counts (the
//!   base, cold periods, checkpoints for late records);
//! - `seal`: the group's gossip seal keys, one per membership epoch, and
//!   the key records due.
//!
//! The rules, and what is due when, are pure and live in `nestwork_docs`.
//! The local HTTP API (`nestwork-api`) and the CLI (`nestwork-cli`) sit on
//! top of this crate. Changes from peers go through the same engine check
//! (`SignedDoc::apply`) and the same write path as local ones.

pub mod bundle;
pub mod clock;
pub mod config;
pub mod data_dir;
mod directory;
pub mod distress;
pub mod error;
pub mod governance;
mod groups;
pub mod identity;
pub mod ledger;
pub mod ledger_marks;
pub mod node;
mod replica;
pub mod running;
pub mod seal;
mod served;
mod state;
pub mod status;
pub mod tick;
pub mod views;

#[cfg(test)]
mod durability_tests;

pub use clock::Clock;
pub use config::Config;
pub use data_dir::DataDir;
pub use error::{Lookup, NodeError};
pub use node::Node;
pub use running::{RunError, Running, TICK_EVERY};
