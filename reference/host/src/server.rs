//! The HTTP server: axum hands every request to the core's front, runs tenant requests in the
//! tenant's objects, and carries WebSockets for them.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use auth_core::graph::{GraphCall, GraphRoute, GraphState, MAX_CSV_BYTES};
use auth_core::http::MAX_BODY_BYTES;
use auth_core::objects::DurableObject;
use auth_core::test_controls::TestControl;
use auth_core::{ApiError, Front, MetricsFlushed, Notice, Ports, TenantOutcome, TenantState};
use axum::body::{Body, Bytes};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request, State};
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures::{SinkExt, StreamExt};
use http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::blobs::BlobStore;
use crate::listener::ClientAddr;
use crate::objects::{Accepted, Runtime};
use crate::settings::Limits;
use crate::{Database, HostClock, OsEntropy};

/// Keyless end-user auth requests per client address.
pub type AddressLimiter = governor::DefaultKeyedRateLimiter<std::net::IpAddr>;

pub struct AppState {
    pub service: auth_core::Service,
    pub db: Arc<Database>,
    pub clock: Arc<HostClock>,
    pub tenants: Arc<Runtime<TenantState>>,
    pub graphs: Arc<Runtime<GraphState>>,
    pub blobs: BlobStore,
    pub test_hooks: bool,
    pub limits: Limits,
    pub keyless_by_address: AddressLimiter,
}

pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = state.limits.clone();
    let app = Router::new().fallback(handle).with_state(state);
    crate::listener::serve(listener, app, &limits, shutdown).await
}

/// Evicts idle objects once a second, as the platform does.
pub fn start_evictor(state: Arc<AppState>, idle: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut stopping = state.tenants.stopping();
        loop {
            tokio::select! {
                _ = tick.tick() => {},
                _ = stopping.changed() => return,
            }
            state.tenants.evict_idle(idle.as_millis() as i64, None);
            state.graphs.evict_idle(idle.as_millis() as i64, None);
            // Addresses whose budget is whole again hold no memory.
            state.keyless_by_address.retain_recent();
        }
    });
}

/// Reads at most `limit + 1` bytes: enough for the core to tell "too large" without buffering
/// whatever a client chooses to send. A body that does not arrive within the body deadline
/// is a 408, one that fails to arrive a 400: never a shorter body.
async fn read_limited(body: Body, limit: usize, deadline: Duration) -> Result<Vec<u8>, ApiError> {
    let read = async {
        let mut stream = body.into_data_stream();
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk: Bytes = chunk
                .map_err(|_| ApiError::InvalidJson("The request body could not be read.".into()))?;
            let room = limit + 1 - out.len();
            out.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if out.len() > limit {
                break;
            }
        }
        Ok(out)
    };
    tokio::time::timeout(deadline, read)
        .await
        .unwrap_or(Err(ApiError::RequestTimeout))
}

/// Reads and throws away a body the server refuses without reading it (declared too large, or
/// no valid key for an upload), after the refusal has been handed to hyper: a client still
/// sending would otherwise meet a reset and lose the answer (a "lingering close", as nginx's
/// `lingering_time`). Bounded in time (`linger`) and in bytes (`limit`); nothing is kept, so
/// memory stays flat whatever the caller sends.
fn linger(body: Body, limit: usize, linger: Duration) {
    if linger.is_zero() {
        return;
    }
    tokio::spawn(async move {
        let drain = async {
            let mut stream = body.into_data_stream();
            let mut seen = 0usize;
            while let Some(Ok(chunk)) = stream.next().await {
                seen += chunk.len();
                if seen > limit {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(linger, drain).await;
    });
}

/// An upload body not read yet: dropped unread (the front refused the request), it is
/// drained by [`linger`] so the client gets the refusal.
struct Unread {
    body: Option<Body>,
    linger: Duration,
}

impl Drop for Unread {
    fn drop(&mut self) {
        if let Some(body) = self.body.take() {
            linger(body, MAX_CSV_BYTES, self.linger);
        }
    }
}

/// Whether the declared length is over `limit` (so the body need not be read to refuse it).
fn declared_over(parts: &http::request::Parts, limit: usize) -> bool {
    parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|n| n > limit as u64)
}

fn to_axum(resp: auth_core::Response) -> Response {
    let (parts, body) = resp.into_parts();
    Response::from_parts(parts, Body::from(body))
}

fn problem(e: ApiError) -> Response {
    to_axum(auth_core::finish(e.into_response(), "-", false))
}

async fn handle(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let started = Instant::now();
    let (mut parts, body) = req.into_parts();
    let method = parts.method.clone();
    // The path only: query strings may carry what a client wrongly thinks is a credential.
    let path = parts.uri.path().to_owned();
    let upgrade = if path == "/v1/events" {
        WebSocketUpgrade::from_request_parts(&mut parts, &())
            .await
            .ok()
    } else {
        None
    };
    // A large body (a CSV upload) is read only once the front has authenticated the key: a
    // caller without one never gets more than the ordinary budget of MAX_BODY_BYTES.
    let (bytes, later) = if path == "/v1/graph/csv" {
        (Vec::new(), Some(body))
    } else if declared_over(&parts, MAX_BODY_BYTES) {
        linger(body, MAX_CSV_BYTES, state.limits.linger);
        return problem(ApiError::PayloadTooLarge);
    } else {
        match read_limited(body, MAX_BODY_BYTES, state.limits.body_read_timeout).await {
            Ok(b) => (b, None),
            Err(e) => return problem(e),
        }
    };
    let core_req = http::Request::from_parts(parts, bytes);
    let (response, status) = if state.test_hooks && path.starts_with("/_test/") {
        let r = test_control(&state, core_req).await;
        let s = r.status().as_u16();
        (r, s)
    } else {
        dispatch(&state, core_req, upgrade, later).await
    };
    tracing::info!(
        %method,
        %path,
        status,
        micros = started.elapsed().as_micros() as u64,
        "request"
    );
    response
}

/// Runs the stateless front with the shared database.
async fn front(state: &Arc<AppState>, req: auth_core::Request) -> Result<Front, ApiError> {
    let st = Arc::clone(state);
    tokio::task::spawn_blocking(move || {
        let conn = st.db.lock();
        let sql = crate::sqlite::SqliteSql(&conn);
        let ports = Ports {
            db: &sql,
            clock: &*st.clock,
            entropy: &OsEntropy,
        };
        st.service.front(&ports, req)
    })
    .await
    .map_err(|_| ApiError::Internal)
}

/// Refuses a keyless end-user auth request over its client address's budget.
fn keyless_by_address(state: &AppState, request: &auth_core::Request) -> Result<(), ApiError> {
    let keyless_user_route = request
        .extensions()
        .get::<auth_core::users::UserRequest>()
        .is_some_and(|u| !u.route.uses_access_token());
    let Some(ClientAddr(ip)) = request.extensions().get::<ClientAddr>().copied() else {
        return Ok(());
    };
    if !keyless_user_route {
        return Ok(());
    }
    state
        .keyless_by_address
        .check_key(&ip)
        .map_err(|not_until| {
            use governor::clock::{Clock, DefaultClock};
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            ApiError::RateLimited(wait.as_secs().max(1))
        })
}

/// Reads the body of a CSV upload the front has let through, up to its own limit.
async fn read_upload(
    state: &AppState,
    request: &mut auth_core::Request,
    body: Body,
) -> Result<(), ApiError> {
    let (parts, _) = std::mem::take(request).into_parts();
    let bytes = if declared_over(&parts, MAX_CSV_BYTES) {
        linger(body, MAX_CSV_BYTES, state.limits.linger);
        return Err(ApiError::PayloadTooLarge);
    } else {
        read_limited(body, MAX_CSV_BYTES, state.limits.body_read_timeout).await?
    };
    *request = http::Request::from_parts(parts, bytes);
    Ok(())
}

async fn dispatch(
    state: &Arc<AppState>,
    req: auth_core::Request,
    upgrade: Option<WebSocketUpgrade>,
    later: Option<Body>,
) -> (Response, u16) {
    let head = req.method() == Method::HEAD;
    let mut later = Unread {
        body: later,
        linger: state.limits.linger,
    };
    let mut req = req;
    let decided = loop {
        match front(state, req).await {
            Ok(Front::FlushMetrics { mut request })
                if request.extensions().get::<MetricsFlushed>().is_none() =>
            {
                flush_metrics(state).await;
                request.extensions_mut().insert(MetricsFlushed);
                req = request;
            }
            Ok(f) => break f,
            Err(e) => return (problem(e), 500),
        }
    };
    match decided {
        Front::FlushMetrics { .. } => (problem(ApiError::Internal), 500),
        Front::Respond { response, notices } => {
            // Tell each tenant's object before the client hears back, so the very next request
            // sees the change.
            for (tenant_id, notice) in notices {
                let r = state
                    .tenants
                    .call(&tenant_id, false, move |o: &mut TenantState, env| {
                        o.notice(env, &notice)
                    })
                    .await;
                if !matches!(r, Ok((Ok(()), _))) {
                    tracing::error!(tenant = %tenant_id, "could not notify the tenant object");
                    return (problem(ApiError::Internal), 500);
                }
            }
            let status = response.status().as_u16();
            (to_axum(response), status)
        }
        Front::Tenant {
            tenant_id,
            key_hash,
            mut request,
        } => {
            let request_id = auth_core::request_id(&request);
            let early = if key_hash.is_empty() {
                keyless_by_address(state, &request)
            } else {
                Ok(())
            };
            let early = match (early, later.body.take()) {
                (Err(e), _) => Err(e),
                (Ok(()), Some(body)) => read_upload(state, &mut request, body).await,
                (Ok(()), None) => Ok(()),
            };
            if let Err(e) = early {
                let response = auth_core::finish(e.into_response(), &request_id, head);
                let status = response.status().as_u16();
                return (to_axum(response), status);
            }
            let st = Arc::clone(state);
            let req = Arc::new(request);
            let req2 = Arc::clone(&req);
            let called = state
                .tenants
                .call(
                    &tenant_id,
                    upgrade.is_some(),
                    move |o: &mut TenantState, env| o.fetch(env, &st.service, &req2, &key_hash),
                )
                .await;
            let (outcome, accepted) = match called {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "tenant object failed");
                    return (problem(ApiError::Internal), 500);
                }
            };
            let response = match outcome {
                TenantOutcome::Respond(resp)
                    if resp.status() == StatusCode::SWITCHING_PROTOCOLS =>
                {
                    match (upgrade, accepted) {
                        (Some(ws), Some(accepted)) => {
                            let st = Arc::clone(state);
                            let tenant = tenant_id.clone();
                            let max = state.limits.ws_message_bytes;
                            return (
                                ws.max_message_size(max)
                                    .max_frame_size(max)
                                    .on_upgrade(move |conn| pump(st, tenant, accepted, conn))
                                    .into_response(),
                                101,
                            );
                        }
                        _ => resp,
                    }
                }
                TenantOutcome::Respond(resp) => resp,
                TenantOutcome::Graph {
                    actor_key_id,
                    headers,
                    ..
                } => {
                    let mut resp = run_graph(
                        state,
                        &tenant_id,
                        &actor_key_id,
                        &request_id,
                        Arc::clone(&req),
                    )
                    .await;
                    for (k, v) in &headers {
                        resp.headers_mut().insert(k, v.clone());
                    }
                    resp
                }
            };
            let response = auth_core::finish(response, &request_id, head);
            let status = response.status().as_u16();
            (to_axum(response), status)
        }
    }
}

/// Moves the usage counts every tenant object holds to `usage_metrics` before an admin reads
/// metrics. Objects with counts always have an alarm set, so only those are called.
async fn flush_metrics(state: &Arc<AppState>) {
    for name in state.tenants.scheduled_names() {
        let r = state
            .tenants
            .call(&name, false, |o: &mut TenantState, env| {
                o.flush_metrics(env)
            })
            .await;
        if !matches!(r, Ok((Ok(_), _))) {
            tracing::warn!(tenant = %name, "could not flush usage counts; the alarm will");
        }
    }
}

/// Reads the tenant's uploaded CSV on the blocking pool (file IO off the async workers).
async fn read_blob(state: &Arc<AppState>, tenant_id: &str) -> std::io::Result<Option<Vec<u8>>> {
    let (blocking_state, key) = (Arc::clone(state), auth_core::graph::blob_key(tenant_id));
    tokio::task::spawn_blocking(move || blocking_state.blobs.get(&key))
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
}

/// A graph request the tenant object let through: run it in the tenant's GraphStateCSV object
/// (blob IO happens here, outside the object, as it would with R2 on Workers), then audit
/// changes in the TenantState object.
async fn run_graph(
    state: &Arc<AppState>,
    tenant_id: &str,
    actor: &str,
    request_id: &str,
    req: Arc<auth_core::Request>,
) -> auth_core::Response {
    let call = match GraphCall::of(&req) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let audit_of = call.audit();
    let route = match call {
        GraphCall::Upload => {
            // Parsing up to 8 MiB and the fsynced write take long enough to stall the async
            // workers (and every other request on them): the blocking pool does both.
            let (blocking_state, blocking_req) = (Arc::clone(state), Arc::clone(&req));
            let key = auth_core::graph::blob_key(tenant_id);
            let stored = tokio::task::spawn_blocking(move || {
                let edges = auth_core::graph::check_upload(&blocking_req)?;
                match blocking_state.blobs.put(&key, blocking_req.body()) {
                    Ok(()) => Ok(edges),
                    Err(e) => {
                        tracing::error!(error = %e, "blob write failed");
                        Err(ApiError::Internal)
                    }
                }
            })
            .await;
            let edges = match stored {
                Ok(Ok(n)) => n,
                Ok(Err(e)) => return e.into_response(),
                Err(_) => return ApiError::Internal.into_response(),
            };
            let answer = auth_core::graph::upload_answer(tenant_id, edges, req.body().len());
            if let Some(a) = audit_of {
                audit(
                    state,
                    tenant_id,
                    actor,
                    request_id,
                    a.action,
                    a.detail(&answer),
                )
                .await;
            }
            return answer;
        }
        GraphCall::Reload => match read_blob(state, tenant_id).await {
            Ok(Some(csv)) => GraphRoute::Reload { csv },
            Ok(None) => {
                return ApiError::field("csv", "no graph.csv has been uploaded for this tenant")
                    .into_response()
            }
            Err(e) => {
                tracing::error!(error = %e, "blob read failed");
                return ApiError::Internal.into_response();
            }
        },
        GraphCall::Run(route) => route,
    };
    let actor_owned = actor.to_owned();
    let req2 = Arc::clone(&req);
    let graph_limits = state.limits.graph;
    let called = state
        .graphs
        .call(tenant_id, false, move |g: &mut GraphState, env| {
            g.set_limits(graph_limits);
            g.handle(env, route, &req2, &actor_owned)
        })
        .await;
    let resp = match called {
        Ok((Ok(resp), _)) => resp,
        Ok((Err(e), _)) => return e.into_response(),
        Err(e) => {
            tracing::error!(error = %e, "graph object failed");
            return ApiError::Internal.into_response();
        }
    };
    if let Some(a) = audit_of.filter(|_| resp.status().is_success()) {
        audit(
            state,
            tenant_id,
            actor,
            request_id,
            a.action,
            a.detail(&resp),
        )
        .await;
    }
    resp
}

async fn audit(
    state: &Arc<AppState>,
    tenant_id: &str,
    actor: &str,
    request_id: &str,
    action: &str,
    detail: Value,
) {
    let notice = Notice {
        actor: actor.to_owned(),
        action: action.to_owned(),
        target: "graph".into(),
        detail,
        request_id: request_id.to_owned(),
        end_sessions: false,
    };
    let r = state
        .tenants
        .call(tenant_id, false, move |o: &mut TenantState, env| {
            o.record(env, &notice)
        })
        .await;
    if !matches!(r, Ok((Ok(()), _))) {
        tracing::error!(tenant = %tenant_id, action, "could not write the audit record");
    }
}

/// Carries one accepted WebSocket: frames from the object's queue go out; frames from the
/// client go to the object, one at a time like every other call. A close requested by the
/// object (or by the runtime stopping) ends the writer at once: frames already queued go out
/// first and then the close frame, except for a too-slow consumer (1013), whose queue is
/// dropped.
async fn pump(state: Arc<AppState>, tenant_id: String, accepted: Accepted, conn: WebSocket) {
    let Accepted {
        socket,
        mut frames,
        close,
    } = accepted;
    let (mut sink, mut stream) = conn.split();
    let writer_close = Arc::clone(&close);
    let writer = tokio::spawn(async move {
        loop {
            tokio::select! {
                biased;
                _ = writer_close.wait() => break,
                frame = frames.recv() => match frame {
                    Some(text) => {
                        if sink.send(Message::Text(text.into())).await.is_err() {
                            return;
                        }
                    }
                    None => break,
                },
            }
        }
        let (code, reason) = writer_close.requested().unwrap_or((1000, String::new()));
        // Frames queued before the close (the audit event announcing a suspension, say) still
        // go out first; only a consumer too slow to drain its queue loses them.
        if code != crate::objects::CLOSE_TOO_SLOW {
            while let Ok(text) = frames.try_recv() {
                if sink.send(Message::Text(text.into())).await.is_err() {
                    return;
                }
            }
        }
        let _ = sink
            .send(Message::Close(Some(axum::extract::ws::CloseFrame {
                code,
                reason: reason.into(),
            })))
            .await;
        let _ = sink.close().await;
    });
    loop {
        let msg = tokio::select! {
            m = stream.next() => m,
            _ = close.wait() => {
                // Give the client a moment to answer the close, then drop the connection.
                let _ = tokio::time::timeout(Duration::from_secs(2), async {
                    while let Some(Ok(m)) = stream.next().await {
                        if matches!(m, Message::Close(_)) { break; }
                    }
                }).await;
                break;
            }
        };
        let msg = match msg {
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                // Over the message limit (1009) or not WebSocket at all (1002): say so and
                // end the socket instead of leaving its writer open.
                // axum wraps its own tungstenite's error: only the message names the cause.
                let too_big = e.to_string().contains("too long");
                let (code, reason) = if too_big {
                    (1009, "message too big")
                } else {
                    (1002, "protocol error")
                };
                close.close(code, reason);
                break;
            }
            None => break,
        };
        let text = match msg {
            Message::Text(t) => t.to_string(),
            // A binary frame is not JSON text: the object answers it with an error frame.
            Message::Binary(_) => "\u{0}binary".to_owned(),
            Message::Close(_) => break,
            // Control frames are metered like messages: a ping flood spends the quota too.
            Message::Ping(_) | Message::Pong(_) => {
                let r = state
                    .tenants
                    .call(&tenant_id, false, move |o: &mut TenantState, env| {
                        o.meter_frame(env, socket)
                    })
                    .await;
                if r.is_err() {
                    break;
                }
                continue;
            }
        };
        let Some(attachment) = state.tenants.socket_attachment(&tenant_id, socket) else {
            break; // the object closed it
        };
        let r = state
            .tenants
            .call(&tenant_id, false, move |o: &mut TenantState, env| {
                o.websocket_message(env, socket, &attachment, &text)
            })
            .await;
        if r.is_err() {
            break;
        }
    }
    state.tenants.remove_socket(&tenant_id, socket);
    if !*state.tenants.stopping().borrow() {
        let _ = state
            .tenants
            .call(&tenant_id, false, move |o: &mut TenantState, env| {
                o.websocket_closed(env, socket)
            })
            .await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
}

/// `/_test/*`: controls that exist only with `--test-hooks`, and only for the platform admin.
async fn test_control(state: &Arc<AppState>, req: auth_core::Request) -> Response {
    let st = Arc::clone(state);
    let req = Arc::new(req);
    let req2 = Arc::clone(&req);
    let authorised = tokio::task::spawn_blocking(move || {
        let conn = st.db.lock();
        let sql = crate::sqlite::SqliteSql(&conn);
        let ports = Ports {
            db: &sql,
            clock: &*st.clock,
            entropy: &OsEntropy,
        };
        st.service.authenticator().admin(&ports, &req2)
    })
    .await
    .unwrap_or(Err(ApiError::Internal));
    if let Err(e) = authorised {
        return problem(e);
    }
    let body = match TestControl::parse(&req) {
        Err(e) => return problem(e),
        Ok(TestControl::AdvanceClock { ms }) => {
            let now = state.clock.advance(ms);
            // Alarms due under the new time fire now.
            state.tenants.fire_due().await;
            json!({"nowMs": now})
        }
        Ok(TestControl::Evict { tenant }) => {
            let n = state.tenants.evict_idle(0, tenant.as_deref())
                + state.graphs.evict_idle(0, tenant.as_deref());
            json!({"evicted": n})
        }
        Ok(TestControl::FireAlarms { tenant }) => {
            let n = state.tenants.fire_all_now(tenant.as_deref()).await;
            json!({"fired": n})
        }
    };
    to_axum(auth_core::finish(
        auth_core::http::json(StatusCode::OK, &body),
        &auth_core::keys::random_hex(8, &OsEntropy),
        false,
    ))
}
