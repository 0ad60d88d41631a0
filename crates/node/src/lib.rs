//! The node: everything a running `nestwork run` holds, without its
//! interfaces.
//!
//! - [`data_dir`]: where a node keeps its files, and how they are written
//!   (secret files owner-only, every file replaced atomically);
//! - [`identity`]: the member key and device tag, with backup and restore;
//! - [`config`]: embedded defaults, then the TOML file, then the environment
//!   (flags are applied last by the CLI);
//! - [`clock`]: the node's clock, which tests can move;
//! - [`distress`]: distress signals raised, answered, listed and escalated;
//! - [`governance`]: proposals, votes, exits, treaties and tiers as the
//!   node carries them out (the rules are in `nestwork_docs::governance`);
//! - `directory`: what the network looks up on its event loop, kept
//!   apart from the node's lock (which a writer holds while the disk
//!   flushes);
//! - `ledger_marks`: what the node stores of its own ledger counts (the
//!   base, cold periods, checkpoints for late records);
//! - [`seal`]: the group's gossip seal keys, one per membership epoch, and
//!   the key records the node writes;
//! - [`node`]: [`Node`] owns the store and the open documents, carries out
//!   what members ask (create a group, describe it, import a bundle), and
//!   makes every change durable before it reports success.
//!
//! The local HTTP API (`nestwork-api`) and the CLI (`nestwork-cli`) sit on
//! top of this crate. Networking (next) plugs in beside [`Node`]: changes
//! from peers go through the same engine check (`SignedDoc::apply`) and
//! the same persist-then-flush path as local ones.

pub mod clock;
pub mod config;
pub mod data_dir;
mod directory;
pub mod distress;
pub mod governance;
pub mod identity;
pub mod ledger;
pub mod ledger_marks;
pub mod node;
pub mod seal;
mod served;

#[cfg(test)]
mod durability_tests;

pub use clock::Clock;
pub use config::Config;
pub use data_dir::DataDir;
pub use node::{Node, NodeError};
