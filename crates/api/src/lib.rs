//! The node's local HTTP API, both sides of it.
//!
//! - [`server`]: the axum router a running node serves on 127.0.0.1, every
//!   route behind a bearer token kept in the data directory; errors are JSON
//!   `{"error": "..."}` with a 4xx or 5xx status.
//! - [`client`]: what CLI commands use to reach the node, found through the
//!   `api.json` file the node writes into its data directory.
//! - [`endpoint`]: that file and the token file.
//!
//! Routes (all under `/v1`, all need `Authorization: Bearer TOKEN`):
//!
//! | method | path | what |
//! | --- | --- | --- |
//! | GET | `/status` | node health |
//! | GET, POST | `/groups` | list groups, create one |
//! | GET | `/groups/{group}` | one group |
//! | GET | `/groups/{group}/charter` | its charter |
//! | PUT | `/groups/{group}/description` | replace its description |
//! | GET | `/groups/{group}/export` | its signed changes, as a bundle |
//! | POST | `/import` | import a bundle (all or nothing) |
//!
//! This crate holds no state of its own; everything goes to
//! `nestwork_node::Node`.

pub mod client;
pub mod endpoint;
pub mod server;

/// The body of every error response.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct ErrorBody {
    /// What went wrong, for a person.
    pub error: String,
}

/// The body of `PUT /groups/{group}/description`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Description {
    /// The new text.
    pub text: String,
}
