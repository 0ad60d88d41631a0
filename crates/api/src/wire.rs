//! Every request and answer that crosses the local API, in one module: the
//! server ([`crate::server`]) takes and gives these, the typed
//! [`crate::client::Client`] sends and reads them, and the CLI prints them.
//! Views the node makes are defined beside the code that makes them and
//! named here; the API's own bodies are defined here.

pub use nestwork_docs::distress::{AnswerView, SignalView};
pub use nestwork_docs::engine::Draft;
pub use nestwork_docs::view::{CharterView, GroupView};
pub use nestwork_net::{NetStatus, PeerInfo};
pub use nestwork_node::distress::{AnswerRequest, Answering, RaiseRequest, SignalItem};
pub use nestwork_node::governance::{
    LeaveView, ProposalView, ProposalsView, ProposeRequest, TreatyView, VoteRequest,
};
pub use nestwork_node::ledger::{AccountView, BalanceView, LedgerView, PaymentView};
pub use nestwork_node::node::{
    CreateGroup, ImportReport, LimitRequest, MemoryStatus, PayRequest, Status,
};
pub use nestwork_node::Lookup;

/// The body of every error response.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct ErrorBody {
    /// What went wrong, for a person.
    pub error: String,
    /// When a selector (a group name, an id's start) named nothing or
    /// several things: what it was to name, so a client can say where to
    /// find one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookup: Option<Lookup>,
}

/// The body of `PUT /groups/{group}/description`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Description {
    /// The new text.
    pub text: String,
}

/// The body of `POST /groups/{group}/invite`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct InviteRequest {
    /// How long the ticket stays valid, in seconds (default 7 days).
    pub expires_secs: Option<u64>,
}

/// An issued invite.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Invite {
    /// The ticket text to hand over.
    pub ticket: String,
    /// The same as a QR code for a terminal.
    pub qr: String,
    /// The group.
    pub group: nestwork_core::GroupId,
    /// Its name.
    pub group_name: String,
    /// Expiry, ms since the Unix epoch.
    pub expires_at_ms: u64,
    /// Addresses the ticket tells the invitee to try.
    pub addrs: Vec<String>,
}

/// The body of `POST /join`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct JoinRequest {
    /// The ticket text.
    pub ticket: String,
}

/// `GET /status`: the node, and the network when it runs.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct StatusReport {
    /// The node.
    #[serde(flatten)]
    pub node: nestwork_node::node::Status,
    /// The network.
    pub network: Option<nestwork_net::NetStatus>,
}

/// The body of `POST /groups/{group}/leave`.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct LeaveRequest {
    /// Sign the exit (otherwise only say what it would do).
    #[serde(default)]
    pub confirm: bool,
}
