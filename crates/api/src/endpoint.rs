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

/// The token of `dir` as written by the node. An empty (or whitespace)
/// token is refused: the API would otherwise accept an empty one, which is
/// no authentication at all.
pub fn read_token(dir: &DataDir) -> std::io::Result<String> {
    let path = dir.token_file();
    let token = std::fs::read_to_string(&path)?.trim().to_string();
    if token.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "the API token in {} is empty; remove the file and a new token is made at the next start",
                path.display()
            ),
        ));
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finding9_an_empty_or_whitespace_token_is_refused_with_a_clear_error() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = DataDir::new(tmp.path());
        for content in ["", "  \n\t "] {
            std::fs::write(dir.token_file(), content).expect("write");
            let err = token(&dir).expect_err("an empty token was accepted");
            assert!(err.to_string().contains("api.token"), "{err}");
            assert!(err.to_string().contains("empty"), "{err}");
        }
        std::fs::remove_file(dir.token_file()).expect("remove");
        let fresh = token(&dir).expect("a new token");
        assert_eq!(fresh.len(), 64);
        assert_eq!(read_token(&dir).expect("read"), fresh);
    }
}
