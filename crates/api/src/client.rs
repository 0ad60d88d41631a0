//! The client side: how CLI commands talk to the running node.

use std::time::Duration;

use nestwork_node::DataDir;
use serde::{de::DeserializeOwned, Serialize};

use crate::endpoint::{read_token, Endpoint};
use crate::wire::{
    AnswerRequest, BalanceView, CharterView, CreateGroup, Description, Draft, ErrorBody, GroupView,
    ImportReport, Invite, InviteRequest, JoinRequest, LeaveRequest, LeaveView, LedgerView,
    LimitRequest, Lookup, PayRequest, PaymentView, PeerInfo, ProposalView, ProposalsView,
    ProposeRequest, RaiseRequest, SignalItem, SignalView, StatusReport, TreatyView, VoteRequest,
};

/// Why a client request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No node answers for this data directory.
    #[error("no node is running for data directory {dir}")]
    NotRunning {
        /// The data directory.
        dir: String,
    },
    /// The node answered with an error.
    #[error("{message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The node's message.
        message: String,
        /// What a selector failed to name, when that is why.
        lookup: Option<Lookup>,
    },
    /// Anything else on the way.
    #[error("talking to the node: {0}")]
    Transport(String),
}

/// A connection to the node of one data directory.
pub struct Client {
    dir: String,
    base: String,
    token: String,
    agent: ureq::Agent,
}

impl Client {
    /// Find the node of `dir`; [`ClientError::NotRunning`] if none is.
    pub fn connect(dir: &DataDir) -> Result<Client, ClientError> {
        let not_running = || ClientError::NotRunning {
            dir: dir.root().display().to_string(),
        };
        let endpoint = Endpoint::read(dir).ok_or_else(not_running)?;
        let token = read_token(dir).map_err(|_| not_running())?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into();
        let client = Client {
            dir: dir.root().display().to_string(),
            base: format!("http://{}", endpoint.addr),
            token,
            agent,
        };
        Ok(client)
    }

    /// GET a JSON resource.
    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let response = self
            .agent
            .get(self.url(path))
            .header("Authorization", self.auth())
            .call()
            .map_err(|e| self.transport(e))?;
        json_or_error(response)
    }

    /// GET raw bytes.
    fn get_bytes(&self, path: &str) -> Result<Vec<u8>, ClientError> {
        let mut response = self
            .agent
            .get(self.url(path))
            .header("Authorization", self.auth())
            .call()
            .map_err(|e| self.transport(e))?;
        if !response.status().is_success() {
            return Err(api_error(response));
        }
        response
            .body_mut()
            .with_config()
            .limit(nestwork_core::signed::MAX_BUNDLE_BYTES as u64)
            .read_to_vec()
            .map_err(|e| ClientError::Transport(e.to_string()))
    }

    /// POST or PUT a JSON body, expecting JSON back.
    fn send<B: Serialize, T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let request = match method {
            "PUT" => self.agent.put(self.url(path)),
            _ => self.agent.post(self.url(path)),
        };
        let response = request
            .header("Authorization", self.auth())
            .send_json(body)
            .map_err(|e| self.transport(e))?;
        json_or_error(response)
    }

    /// POST raw bytes, expecting JSON back.
    fn post_bytes<T: DeserializeOwned>(&self, path: &str, body: &[u8]) -> Result<T, ClientError> {
        let response = self
            .agent
            .post(self.url(path))
            .header("Authorization", self.auth())
            .header("Content-Type", "application/octet-stream")
            .send(body)
            .map_err(|e| self.transport(e))?;
        json_or_error(response)
    }

    /// GET a server-sent event stream and hand each event's data to
    /// `on_event` until it returns false or the node goes away.
    fn events(
        &self,
        path: &str,
        mut on_event: impl FnMut(&str) -> bool,
    ) -> Result<(), ClientError> {
        use std::io::BufRead;
        // A stream stays open as long as the member watches: no timeout.
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let response = agent
            .get(self.url(path))
            .header("Authorization", self.auth())
            .header("Accept", "text/event-stream")
            .call()
            .map_err(|e| self.transport(e))?;
        if !response.status().is_success() {
            return Err(api_error(response));
        }
        let reader = std::io::BufReader::new(response.into_body().into_reader());
        for line in reader.lines() {
            let line = line.map_err(|e| ClientError::Transport(e.to_string()))?;
            if let Some(data) = line.strip_prefix("data:") {
                if !on_event(data.trim_start()) {
                    break;
                }
            }
        }
        Ok(())
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v1{}", self.base, path)
    }

    fn auth(&self) -> String {
        format!("Bearer {}", self.token)
    }

    fn transport(&self, e: ureq::Error) -> ClientError {
        match e {
            // A stale api.json from a node that was killed: nobody listens.
            ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
                ClientError::NotRunning {
                    dir: self.dir.clone(),
                }
            }
            ureq::Error::ConnectionFailed => ClientError::NotRunning {
                dir: self.dir.clone(),
            },
            other => ClientError::Transport(other.to_string()),
        }
    }
}

/// One method per route: the paths live here and in the server's router,
/// nowhere else. Selectors (a group's name or id start, a proposal's id
/// start, ...) are percent-encoded here.
impl Client {
    /// `GET /status`.
    pub fn status(&self) -> Result<StatusReport, ClientError> {
        self.get("/status")
    }

    /// `GET /peers`.
    pub fn peers(&self) -> Result<Vec<PeerInfo>, ClientError> {
        self.get("/peers")
    }

    /// `GET /groups`.
    pub fn groups(&self) -> Result<Vec<GroupView>, ClientError> {
        self.get("/groups")
    }

    /// `GET /groups/{group}`.
    pub fn group(&self, group: &str) -> Result<GroupView, ClientError> {
        self.get(&format!("/groups/{}", segment(group)))
    }

    /// `POST /groups`.
    pub fn create_group(&self, req: &CreateGroup) -> Result<GroupView, ClientError> {
        self.send("POST", "/groups", req)
    }

    /// `PUT /groups/{group}/description`.
    pub fn describe(&self, group: &str, text: String) -> Result<GroupView, ClientError> {
        let path = format!("/groups/{}/description", segment(group));
        self.send("PUT", &path, &Description { text })
    }

    /// `POST /groups/{group}/invite`.
    pub fn invite(&self, group: &str, expires_secs: Option<u64>) -> Result<Invite, ClientError> {
        let path = format!("/groups/{}/invite", segment(group));
        self.send("POST", &path, &InviteRequest { expires_secs })
    }

    /// `POST /join`.
    pub fn join(&self, ticket: String) -> Result<GroupView, ClientError> {
        self.send("POST", "/join", &JoinRequest { ticket })
    }

    /// `GET /groups/{group}/export`: the group's bundle.
    pub fn export(&self, group: &str) -> Result<Vec<u8>, ClientError> {
        self.get_bytes(&format!("/groups/{}/export", segment(group)))
    }

    /// `POST /import`.
    pub fn import(&self, bundle: &[u8]) -> Result<ImportReport, ClientError> {
        self.post_bytes("/import", bundle)
    }

    /// `POST /groups/{group}/leave`.
    pub fn leave(&self, group: &str, confirm: bool) -> Result<LeaveView, ClientError> {
        let path = format!("/groups/{}/leave", segment(group));
        self.send("POST", &path, &LeaveRequest { confirm })
    }

    /// `POST /groups/{group}/payments`.
    pub fn pay(&self, group: &str, req: &PayRequest) -> Result<PaymentView, ClientError> {
        self.send("POST", &format!("/groups/{}/payments", segment(group)), req)
    }

    /// `GET /groups/{group}/balances`, of one account or all.
    pub fn balances(&self, group: &str, account: Option<&str>) -> Result<BalanceView, ClientError> {
        let mut path = format!("/groups/{}/balances", segment(group));
        if let Some(a) = account {
            path.push_str(&format!("?account={}", segment(a)));
        }
        self.get(&path)
    }

    /// `GET /groups/{group}/payments`: `limit` payments after the newest
    /// `skip`, of one account or all.
    pub fn ledger(
        &self,
        group: &str,
        account: Option<&str>,
        skip: usize,
        limit: usize,
    ) -> Result<LedgerView, ClientError> {
        let mut path = format!(
            "/groups/{}/payments?skip={skip}&limit={limit}",
            segment(group)
        );
        if let Some(a) = account {
            path.push_str(&format!("&account={}", segment(a)));
        }
        self.get(&path)
    }

    /// `POST /groups/{group}/limits`.
    pub fn set_limit(&self, group: &str, req: &LimitRequest) -> Result<BalanceView, ClientError> {
        self.send("POST", &format!("/groups/{}/limits", segment(group)), req)
    }

    /// `GET /groups/{group}/charter`.
    pub fn charter(&self, group: &str) -> Result<CharterView, ClientError> {
        self.get(&format!("/groups/{}/charter", segment(group)))
    }

    /// `POST /groups/{group}/charter/edits`.
    pub fn edit_charter(
        &self,
        group: &str,
        req: &ProposeRequest,
    ) -> Result<CharterView, ClientError> {
        let path = format!("/groups/{}/charter/edits", segment(group));
        self.send("POST", &path, req)
    }

    /// `POST /groups/{group}/proposals`.
    pub fn propose(&self, group: &str, req: &ProposeRequest) -> Result<ProposalView, ClientError> {
        self.send(
            "POST",
            &format!("/groups/{}/proposals", segment(group)),
            req,
        )
    }

    /// `GET /groups/{group}/proposals`.
    pub fn proposals(&self, group: &str) -> Result<ProposalsView, ClientError> {
        self.get(&format!("/groups/{}/proposals", segment(group)))
    }

    /// `POST /proposals/{proposal}/votes`.
    pub fn vote(&self, proposal: &str, req: &VoteRequest) -> Result<ProposalView, ClientError> {
        self.send(
            "POST",
            &format!("/proposals/{}/votes", segment(proposal)),
            req,
        )
    }

    /// `POST /groups/{group}/drafts`.
    pub fn new_draft(&self, group: &str, req: &ProposeRequest) -> Result<Draft, ClientError> {
        self.send("POST", &format!("/groups/{}/drafts", segment(group)), req)
    }

    /// `PUT /groups/{group}/drafts/{draft}`: replace its text.
    pub fn edit_draft(&self, group: &str, draft: &str, text: String) -> Result<Draft, ClientError> {
        let path = format!("/groups/{}/drafts/{}", segment(group), segment(draft));
        self.send("PUT", &path, &Description { text })
    }

    /// `GET /groups/{group}/drafts`.
    pub fn drafts(&self, group: &str) -> Result<Vec<Draft>, ClientError> {
        self.get(&format!("/groups/{}/drafts", segment(group)))
    }

    /// `POST /groups/{group}/drafts/{draft}/submit`.
    pub fn submit_draft(&self, group: &str, draft: &str) -> Result<ProposalView, ClientError> {
        let path = format!(
            "/groups/{}/drafts/{}/submit",
            segment(group),
            segment(draft)
        );
        self.send("POST", &path, &serde_json::json!({}))
    }

    /// `GET /treaties`, of one group or every group held.
    pub fn treaties(&self, group: Option<&str>) -> Result<Vec<TreatyView>, ClientError> {
        match group {
            Some(g) => self.get(&format!("/treaties?group={}", segment(g))),
            None => self.get("/treaties"),
        }
    }

    /// `GET /treaties/{treaty}`: the treaty as each party held here sees it.
    pub fn treaty(&self, treaty: &str) -> Result<Vec<TreatyView>, ClientError> {
        self.get(&format!("/treaties/{}", segment(treaty)))
    }

    /// `POST /groups/{group}/distress`.
    pub fn raise(&self, group: &str, req: &RaiseRequest) -> Result<SignalView, ClientError> {
        self.send("POST", &format!("/groups/{}/distress", segment(group)), req)
    }

    /// `POST /distress/{signal}/answers`.
    pub fn answer(&self, signal: &str, req: &AnswerRequest) -> Result<SignalView, ClientError> {
        self.send(
            "POST",
            &format!("/distress/{}/answers", segment(signal)),
            req,
        )
    }

    /// `GET /distress`: open signals (`all`: resolved and expired too), of
    /// one group or every group held.
    pub fn signals(&self, group: Option<&str>, all: bool) -> Result<Vec<SignalItem>, ClientError> {
        let mut path = format!("/distress?all={all}");
        if let Some(g) = group {
            path.push_str(&format!("&group={}", segment(g)));
        }
        self.get(&path)
    }

    /// `GET /distress/events`: each new signal and answer, as
    /// [`SignalItem`] JSON, to `on_event` until it returns false.
    pub fn watch_signals(&self, on_event: impl FnMut(&str) -> bool) -> Result<(), ClientError> {
        self.events("/distress/events", on_event)
    }
}

fn json_or_error<T: DeserializeOwned>(
    mut response: ureq::http::Response<ureq::Body>,
) -> Result<T, ClientError> {
    if !response.status().is_success() {
        return Err(api_error(response));
    }
    response
        .body_mut()
        .read_json()
        .map_err(|e| ClientError::Transport(format!("unexpected answer from the node: {e}")))
}

fn api_error(mut response: ureq::http::Response<ureq::Body>) -> ClientError {
    let status = response.status().as_u16();
    let (message, lookup) = response
        .body_mut()
        .read_json::<ErrorBody>()
        .map(|b| (b.error, b.lookup))
        .unwrap_or_else(|_| (format!("the node answered HTTP {status}"), None));
    ClientError::Api {
        status,
        message,
        lookup,
    }
}

/// A user-supplied selector (a group name, an id prefix) as one URL path
/// segment, percent-encoded.
fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
