//! The HTTP server side.

use std::future::Future;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use nestwork_core::signed::MAX_BUNDLE_BYTES;
use nestwork_core::ChangeBundle;
use nestwork_docs::distress::SignalStatus;
use nestwork_node::{Node, NodeError};

use crate::wire::{
    AnswerRequest, BalanceView, CreateGroup, Description, ErrorBody, Invite, InviteRequest,
    JoinRequest, LeaveRequest, LeaveView, LedgerView, LimitRequest, PayRequest, PaymentView,
    ProposalView, ProposalsView, ProposeRequest, RaiseRequest, SignalItem, SignalView,
    StatusReport, TreatyView, VoteRequest,
};
use nestwork_net::{NetHandle, Replica, Ticket};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Default life of an invite ticket.
const DEFAULT_INVITE_SECS: u64 = 7 * 24 * 60 * 60;
/// Longest life of an invite ticket.
const MAX_INVITE_SECS: u64 = 365 * 24 * 60 * 60;

#[derive(Clone)]
struct AppState {
    node: Arc<Node>,
    net: Option<NetHandle>,
    token: Arc<String>,
    /// Cancelled when the server is to stop: long-lived streams end on
    /// it, or graceful shutdown would wait for them for ever.
    stopping: CancellationToken,
    /// Tasks that feed those streams, awaited before [`serve`] returns so
    /// none still holds the node.
    tasks: TaskTracker,
}

impl AppState {
    fn net(&self) -> Result<&NetHandle, ApiError> {
        self.net.as_ref().ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the network is not running",
            )
        })
    }
}

/// An error as the API reports it.
pub struct ApiError {
    status: StatusCode,
    body: ErrorBody,
}

impl ApiError {
    fn new(status: StatusCode, error: impl Into<String>) -> Self {
        ApiError {
            status,
            body: ErrorBody {
                error: error.into(),
                lookup: None,
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> Self {
        let status = match &e {
            NodeError::NotFound { .. } => StatusCode::NOT_FOUND,
            NodeError::Ambiguous { .. } => StatusCode::CONFLICT,
            NodeError::Invalid(_) | NodeError::Rejected(_) | NodeError::BundleRefused { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            NodeError::Store(_) | NodeError::Identity(_) | NodeError::NotDurable(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        ApiError {
            status,
            body: ErrorBody {
                error: e.to_string(),
                lookup: e.lookup(),
            },
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("bad request body: {}", e.body_text()),
        )
    }
}

type ApiResult<T> = Result<Json<T>, ApiError>;

/// Run a blocking node operation (it may wait for the disk) off the async
/// threads.
async fn blocking<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&Node) -> Result<T, NodeError> + Send + 'static,
) -> Result<T, ApiError> {
    let node = state.node.clone();
    tokio::task::spawn_blocking(move || f(&node))
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("request failed: {e}"),
            )
        })?
        .map_err(ApiError::from)
}

/// The router, with the token check on every route.
pub fn router(node: Arc<Node>, net: Option<NetHandle>, token: String) -> Router {
    router_of(AppState {
        node,
        net,
        token: Arc::new(token),
        stopping: CancellationToken::new(),
        tasks: TaskTracker::new(),
    })
}

fn router_of(state: AppState) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/groups", get(list_groups).post(create_group))
        .route("/v1/groups/{group}", get(show_group))
        .route("/v1/groups/{group}/charter", get(show_charter))
        .route("/v1/groups/{group}/description", put(describe))
        .route("/v1/groups/{group}/export", get(export))
        .route("/v1/import", post(import))
        .route("/v1/groups/{group}/invite", post(invite))
        .route("/v1/join", post(join))
        .route("/v1/peers", get(peers))
        .route("/v1/groups/{group}/payments", get(ledger).post(pay))
        .route("/v1/groups/{group}/balances", get(balances))
        .route("/v1/groups/{group}/limits", post(set_limit))
        .route(
            "/v1/groups/{group}/proposals",
            get(list_proposals).post(propose),
        )
        .route("/v1/groups/{group}/charter/edits", post(edit_charter))
        .route(
            "/v1/groups/{group}/drafts",
            get(list_drafts).post(new_draft),
        )
        .route("/v1/groups/{group}/drafts/{draft}", put(edit_draft))
        .route(
            "/v1/groups/{group}/drafts/{draft}/submit",
            post(submit_draft),
        )
        .route("/v1/groups/{group}/leave", post(leave))
        .route("/v1/proposals/{proposal}/votes", post(vote))
        .route("/v1/groups/{group}/distress", post(raise_signal))
        .route("/v1/distress", get(list_signals))
        .route("/v1/distress/events", get(distress_events))
        .route("/v1/distress/{signal}/answers", post(answer_signal))
        .route("/v1/treaties", get(list_treaties))
        .route("/v1/treaties/{treaty}", get(show_treaty))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such API route") })
        .layer(DefaultBodyLimit::max(MAX_BUNDLE_BYTES))
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state)
}

/// Serve `router` on `listener` until `shutdown` completes; in-flight
/// requests finish first.
pub async fn serve(
    listener: tokio::net::TcpListener,
    node: Arc<Node>,
    net: Option<NetHandle>,
    token: String,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if token.trim().is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "refusing to serve the API with an empty token (it would let anyone in)",
        ));
    }
    let state = AppState {
        node,
        net,
        token: Arc::new(token),
        stopping: CancellationToken::new(),
        tasks: TaskTracker::new(),
    };
    let (stopping, tasks) = (state.stopping.clone(), state.tasks.clone());
    let served = axum::serve(listener, router_of(state))
        .with_graceful_shutdown(async move {
            shutdown.await;
            // End the event streams, so the open requests can finish.
            stopping.cancel();
        })
        .await;
    tasks.close();
    tasks.wait().await;
    served
}

async fn require_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // An empty token would match a request that sends none: never accept it.
    if state.token.trim().is_empty() || !constant_time_eq(given.as_bytes(), state.token.as_bytes())
    {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing or wrong API token (it is in the node's data directory, file api.token)",
        )
        .into_response();
    }
    next.run(request).await
}

/// Compare without stopping at the first difference, so response time says
/// nothing about how much of a guessed token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn status(State(s): State<AppState>) -> ApiResult<StatusReport> {
    let network = match &s.net {
        Some(net) => net.status().await.ok(),
        None => None,
    };
    // The node's status reads every group under the node's lock, which a
    // writer holds while the disk flushes: not on an async thread.
    let node = blocking(&s, |n| Ok(n.status())).await?;
    Ok(Json(StatusReport { node, network }))
}

async fn peers(State(s): State<AppState>) -> ApiResult<Vec<nestwork_net::PeerInfo>> {
    let peers = s
        .net()?
        .peers()
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    Ok(Json(peers))
}

async fn invite(
    State(s): State<AppState>,
    Path(group): Path<String>,
    body: Result<Json<InviteRequest>, JsonRejection>,
) -> ApiResult<Invite> {
    let Json(req) = body?;
    let secs = req.expires_secs.unwrap_or(DEFAULT_INVITE_SECS);
    if secs == 0 || secs > MAX_INVITE_SECS {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "an invite lasts between 1 second and {} days",
                MAX_INVITE_SECS / 86_400
            ),
        ));
    }
    let view = blocking(&s, move |n| n.group(&group)).await?;
    let expires_at_ms = s.node.now_ms() + secs * 1000;
    let ticket = s
        .net()?
        .invite(view.id, view.name.clone(), expires_at_ms)
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    Ok(Json(Invite {
        ticket: ticket.to_text(),
        qr: ticket.to_qr(),
        group: view.id,
        group_name: view.name,
        expires_at_ms,
        addrs: ticket.addrs,
    }))
}

async fn join(
    State(s): State<AppState>,
    body: Result<Json<JoinRequest>, JsonRejection>,
) -> ApiResult<nestwork_docs::GroupView> {
    let Json(req) = body?;
    let unprocessable = |e: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e);
    let ticket = Ticket::from_text(&req.ticket).map_err(|e| unprocessable(e.to_string()))?;
    ticket
        .verify(s.node.now_ms())
        .map_err(|e| unprocessable(e.to_string()))?;
    let doc = s
        .net()?
        .join(ticket)
        .await
        .map_err(|e| unprocessable(e.to_string()))?;
    Ok(Json(blocking(&s, move |n| n.group(&doc.to_hex())).await?))
}

async fn list_groups(State(s): State<AppState>) -> ApiResult<Vec<nestwork_docs::GroupView>> {
    Ok(Json(blocking(&s, |n| Ok(n.groups())).await?))
}

async fn create_group(
    State(s): State<AppState>,
    body: Result<Json<CreateGroup>, JsonRejection>,
) -> Result<(StatusCode, Json<nestwork_docs::GroupView>), ApiError> {
    let Json(req) = body?;
    let view = blocking(&s, move |n| n.create_group(req)).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

async fn show_group(
    State(s): State<AppState>,
    Path(group): Path<String>,
) -> ApiResult<nestwork_docs::GroupView> {
    Ok(Json(blocking(&s, move |n| n.group(&group)).await?))
}

async fn show_charter(
    State(s): State<AppState>,
    Path(group): Path<String>,
) -> ApiResult<nestwork_docs::CharterView> {
    Ok(Json(blocking(&s, move |n| n.charter(&group)).await?))
}

async fn describe(
    State(s): State<AppState>,
    Path(group): Path<String>,
    body: Result<Json<Description>, JsonRejection>,
) -> ApiResult<nestwork_docs::GroupView> {
    let Json(d) = body?;
    Ok(Json(
        blocking(&s, move |n| n.describe(&group, &d.text)).await?,
    ))
}

async fn export(
    State(s): State<AppState>,
    Path(group): Path<String>,
) -> Result<Response, ApiError> {
    let bundle = blocking(&s, move |n| n.export(&group)).await?;
    Ok((
        [(header::CONTENT_TYPE, "application/octet-stream")],
        bundle.encode(),
    )
        .into_response())
}

async fn import(
    State(s): State<AppState>,
    body: Bytes,
) -> ApiResult<nestwork_node::node::ImportReport> {
    let bundle = ChangeBundle::decode(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    Ok(Json(blocking(&s, move |n| n.import(bundle)).await?))
}

/// Query of `GET .../balances`.
#[derive(serde::Deserialize)]
struct BalanceQuery {
    account: Option<String>,
}

/// Query of `GET .../payments`.
#[derive(serde::Deserialize)]
struct LedgerQuery {
    account: Option<String>,
    #[serde(default)]
    skip: usize,
    limit: Option<usize>,
}

async fn pay(
    State(s): State<AppState>,
    Path(group): Path<String>,
    body: Result<Json<PayRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<PaymentView>), ApiError> {
    let Json(req) = body?;
    let view = blocking(&s, move |n| n.pay(&group, &req)).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

async fn set_limit(
    State(s): State<AppState>,
    Path(group): Path<String>,
    body: Result<Json<LimitRequest>, JsonRejection>,
) -> ApiResult<BalanceView> {
    let Json(req) = body?;
    Ok(Json(
        blocking(&s, move |n| n.set_limit(&group, &req)).await?,
    ))
}

async fn balances(
    State(s): State<AppState>,
    Path(group): Path<String>,
    Query(q): Query<BalanceQuery>,
) -> ApiResult<BalanceView> {
    Ok(Json(
        blocking(&s, move |n| n.balance(&group, q.account.as_deref())).await?,
    ))
}

async fn ledger(
    State(s): State<AppState>,
    Path(group): Path<String>,
    Query(q): Query<LedgerQuery>,
) -> ApiResult<LedgerView> {
    let limit = q.limit.unwrap_or(20);
    Ok(Json(
        blocking(&s, move |n| {
            n.ledger(&group, q.account.as_deref(), q.skip, limit)
        })
        .await?,
    ))
}

async fn propose(
    State(s): State<AppState>,
    Path(group): Path<String>,
    body: Result<Json<ProposeRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<ProposalView>), ApiError> {
    let Json(req) = body?;
    let view = blocking(&s, move |n| n.propose(&group, &req)).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

async fn list_proposals(
    State(s): State<AppState>,
    Path(group): Path<String>,
) -> ApiResult<ProposalsView> {
    Ok(Json(blocking(&s, move |n| n.proposals(&group)).await?))
}

async fn edit_charter(
    State(s): State<AppState>,
    Path(group): Path<String>,
    body: Result<Json<ProposeRequest>, JsonRejection>,
) -> ApiResult<nestwork_docs::CharterView> {
    let Json(req) = body?;
    Ok(Json(
        blocking(&s, move |n| n.charter_edit(&group, &req)).await?,
    ))
}

async fn leave(
    State(s): State<AppState>,
    Path(group): Path<String>,
    body: Result<Json<LeaveRequest>, JsonRejection>,
) -> ApiResult<LeaveView> {
    let Json(req) = body?;
    Ok(Json(
        blocking(&s, move |n| n.leave(&group, req.confirm)).await?,
    ))
}

async fn vote(
    State(s): State<AppState>,
    Path(proposal): Path<String>,
    body: Result<Json<VoteRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<ProposalView>), ApiError> {
    let Json(req) = body?;
    let view = blocking(&s, move |n| n.vote(&proposal, &req)).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// Query of `GET /treaties`.
#[derive(serde::Deserialize)]
struct TreatyQuery {
    group: Option<String>,
}

async fn list_treaties(
    State(s): State<AppState>,
    Query(q): Query<TreatyQuery>,
) -> ApiResult<Vec<TreatyView>> {
    Ok(Json(
        blocking(&s, move |n| n.treaties(q.group.as_deref())).await?,
    ))
}

async fn show_treaty(
    State(s): State<AppState>,
    Path(treaty): Path<String>,
) -> ApiResult<Vec<TreatyView>> {
    Ok(Json(blocking(&s, move |n| n.treaty(&treaty)).await?))
}

async fn list_drafts(
    State(s): State<AppState>,
    Path(group): Path<String>,
) -> ApiResult<Vec<nestwork_docs::engine::Draft>> {
    Ok(Json(blocking(&s, move |n| n.drafts(&group)).await?))
}

async fn new_draft(
    State(s): State<AppState>,
    Path(group): Path<String>,
    body: Result<Json<ProposeRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<nestwork_docs::engine::Draft>), ApiError> {
    let Json(req) = body?;
    let draft = blocking(&s, move |n| n.draft_new(&group, &req)).await?;
    Ok((StatusCode::CREATED, Json(draft)))
}

async fn edit_draft(
    State(s): State<AppState>,
    Path((group, draft)): Path<(String, String)>,
    body: Result<Json<Description>, JsonRejection>,
) -> ApiResult<nestwork_docs::engine::Draft> {
    let Json(req) = body?;
    Ok(Json(
        blocking(&s, move |n| n.draft_edit(&group, &draft, &req.text)).await?,
    ))
}

async fn submit_draft(
    State(s): State<AppState>,
    Path((group, draft)): Path<(String, String)>,
) -> Result<(StatusCode, Json<ProposalView>), ApiError> {
    let view = blocking(&s, move |n| n.draft_submit(&group, &draft)).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

async fn raise_signal(
    State(s): State<AppState>,
    Path(group): Path<String>,
    body: Result<Json<RaiseRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<SignalView>), ApiError> {
    let Json(req) = body?;
    let view = blocking(&s, move |n| n.distress_raise(&group, &req)).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

async fn answer_signal(
    State(s): State<AppState>,
    Path(signal): Path<String>,
    body: Result<Json<AnswerRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<SignalView>), ApiError> {
    let Json(req) = body?;
    let view = blocking(&s, move |n| n.distress_answer(&signal, &req)).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// Query of `GET /distress`.
#[derive(serde::Deserialize)]
struct SignalQuery {
    group: Option<String>,
    #[serde(default)]
    all: bool,
}

async fn list_signals(
    State(s): State<AppState>,
    Query(q): Query<SignalQuery>,
) -> ApiResult<Vec<SignalItem>> {
    Ok(Json(
        blocking(&s, move |n| n.distress_list(q.group.as_deref(), q.all)).await?,
    ))
}

/// `GET /distress/events`: server-sent events, one per live signal at
/// first, then one for each new signal (`signal`) and each new answer
/// (`update`), each carrying the signal as JSON.
async fn distress_events(
    State(s): State<AppState>,
) -> Sse<impl futures::Stream<Item = Result<Event, std::convert::Infallible>>> {
    let node = s.node.clone();
    let mut changes = node.subscribe();
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(256);
    let stopping = s.stopping.clone();
    s.tasks.spawn(async move {
        // Answers seen per signal, so only what is new is sent.
        let mut seen: std::collections::HashMap<nestwork_core::SignalId, usize> =
            Default::default();
        loop {
            let n = node.clone();
            let Ok(Ok(items)) =
                tokio::task::spawn_blocking(move || n.distress_list(None, true)).await
            else {
                break;
            };
            for item in items {
                let answers = item.view.answers.len();
                let live = matches!(
                    item.view.status,
                    SignalStatus::Open | SignalStatus::Answered
                );
                let kind = match seen.insert(item.view.id, answers) {
                    None if live => "signal",
                    Some(before) if before < answers => "update",
                    _ => continue,
                };
                let Ok(data) = serde_json::to_string(&item) else {
                    continue;
                };
                if tx
                    .send(Event::default().event(kind).data(data))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            // Wait for a change to a group document (payments live in
            // period documents and are of no concern here).
            // The watcher leaving ends the task at once.
            loop {
                let received = tokio::select! {
                    r = changes.recv() => r,
                    _ = tx.closed() => return,
                    _ = stopping.cancelled() => return,
                };
                match received {
                    // A group document's change (read from the directory
                    // the network uses, without the node's lock).
                    Ok(event) if Replica::is_group_doc(&*node, &event.doc) => break,
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        }
    });
    let stream =
        futures::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|e| (Ok(e), rx)) },
        );
    Sse::new(stream).keep_alive(KeepAlive::default())
}
