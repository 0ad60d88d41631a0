//! The client side: how CLI commands talk to the running node.

use std::time::Duration;

use nestwork_node::DataDir;
use serde::{de::DeserializeOwned, Serialize};

use crate::endpoint::{read_token, Endpoint};
use crate::ErrorBody;

/// Why a client request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No node answers for this data directory.
    #[error("no node is running for data directory {dir}. Start one with: nestwork run --data-dir {dir}")]
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
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let response = self
            .agent
            .get(self.url(path))
            .header("Authorization", self.auth())
            .call()
            .map_err(|e| self.transport(e))?;
        json_or_error(response)
    }

    /// GET raw bytes.
    pub fn get_bytes(&self, path: &str) -> Result<Vec<u8>, ClientError> {
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
    pub fn send<B: Serialize, T: DeserializeOwned>(
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
    pub fn post_bytes<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &[u8],
    ) -> Result<T, ClientError> {
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
    pub fn events(
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
    let message = response
        .body_mut()
        .read_json::<ErrorBody>()
        .map(|b| b.error)
        .unwrap_or_else(|_| format!("the node answered HTTP {status}"));
    ClientError::Api { status, message }
}

/// A user-supplied selector (a group name, an id prefix) as one URL path
/// segment, percent-encoded.
pub fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
