//! The node's local HTTP API, both sides of it.
//!
//! - [`server`]: the axum router a running node serves on 127.0.0.1, every
//!   route behind a bearer token kept in the data directory; errors are JSON
//!   `{"error": "..."}` with a 4xx or 5xx status, and `"lookup": "group"`
//!   (or member, treaty, proposal, signal) when a selector named nothing
//!   (404) or several things (409).
//! - [`client`]: what CLI commands use to reach the node, found through the
//!   `api.json` file the node writes into its data directory.
//! - [`endpoint`]: that file and the token file;
//! - [`wire`]: every request and answer that crosses the API, named once
//!   for the server, the client and the CLI.
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
//! | GET | `/groups/{group}/export` | its signed changes and ledger periods, as a bundle |
//! | POST | `/import` | import a bundle (all or nothing) |
//! | POST | `/groups/{group}/invite` | issue an invite ticket |
//! | POST | `/join` | join a group with a ticket |
//! | GET | `/peers` | connected peers |
//! | GET, POST | `/groups/{group}/payments` | the ledger's history; pay |
//! | GET | `/groups/{group}/balances` | balances (`?account=`) |
//! | POST | `/groups/{group}/limits` | credit limits (the creator) |
//! | GET, POST | `/groups/{group}/proposals` | proposals with tallies; propose `{"kind": "add-article", "text": ...}` (a `ProposeRequest`) |
//! | POST | `/groups/{group}/charter/edits` | the creator edits the charter before anyone joins |
//! | GET, POST | `/groups/{group}/drafts` | drafts of proposals; start one with a `ProposeRequest` of a kind with a text |
//! | PUT | `/groups/{group}/drafts/{draft}` | replace a draft's text `{text}` (edits merge) |
//! | POST | `/groups/{group}/drafts/{draft}/submit` | submit it as a proposal |
//! | POST | `/groups/{group}/leave` | leave (`{confirm: false}` only says what happens) |
//! | POST | `/proposals/{proposal}/votes` | vote `{choice, for_group}` |
//! | POST | `/groups/{group}/distress` | raise a signal `{category, severity, location, expires_secs, text}` |
//! | GET | `/distress` | signals (`?group=`, `?all=true` for resolved and expired) |
//! | GET | `/distress/events` | server-sent events: each new signal (`signal`) and answer (`update`) |
//! | POST | `/distress/{signal}/answers` | ack, respond or resolve `{kind, text, eta_secs}` |
//! | GET | `/treaties`, `/treaties/{treaty}` | treaties (`?group=`) |
//!
//! This crate holds no state of its own; everything goes to
//! `nestwork_node::Node`.

pub mod client;
pub mod endpoint;
pub mod server;

pub mod wire;

pub use wire::{Description, ErrorBody, Invite, InviteRequest, JoinRequest, StatusReport};
