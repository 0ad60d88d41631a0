//! How client commands find a running node: `api.json` (address and pid)
//! and `api.token` in the data directory.

use nestwork_node::data_dir::{write_atomic, DataDir};
use serde::{Deserialize, Serialize};

/// What a running node writes to `api.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Endpoint {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// The node's process id.
    pub pid: u32,
}

impl Endpoint {
    /// Write `api.json` (atomically).
    pub fn write(&self, dir: &DataDir) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        write_atomic(&dir.api_file(), &json, 0o600)
    }

    /// Read `api.json`, if a node has written one.
    pub fn read(dir: &DataDir) -> Option<Endpoint> {
        let bytes = std::fs::read(dir.api_file()).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Remove `api.json` (clean shutdown).
    pub fn remove(dir: &DataDir) {
        let _ = std::fs::remove_file(dir.api_file());
    }
}

/// The API token of `dir`, created (owner-only) on first use.
pub fn token(dir: &DataDir) -> std::io::Result<String> {
    let path = dir.token_file();
    let fresh = hex::encode(rand::random::<[u8; 32]>());
    nestwork_node::data_dir::create_new(&path, fresh.as_bytes(), 0o600)?;
    read_token(dir)
}

/// The token of `dir` as written by the node.
pub fn read_token(dir: &DataDir) -> std::io::Result<String> {
    Ok(std::fs::read_to_string(dir.token_file())?
        .trim()
        .to_string())
}
