//! The HTTP server: axum reads each request's body (within its limits and deadline), hands
//! the request to the core's driver ([`auth_core::drive`]) over the native host
//! ([`crate::adapter::Native`]), and carries the WebSockets tenant objects accept.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use auth_core::graph::MAX_CSV_BYTES;
use auth_core::http::MAX_BODY_BYTES;
use auth_core::objects::DurableObject;
use auth_core::{ApiError, TenantState};
use axum::body::Body;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request, State};
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures::{SinkExt, StreamExt};

use crate::adapter::{Native, Upgrade};
use crate::body::{declared_over, linger, read_limited, Unread};
use crate::objects::Accepted;
pub use crate::state::AppState;

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
    let ws = if path == "/v1/events" {
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
    } else if declared_over(&parts.headers, MAX_BODY_BYTES) {
        linger(body, MAX_CSV_BYTES, state.limits.linger);
        return problem(ApiError::PayloadTooLarge);
    } else {
        match read_limited(body, MAX_BODY_BYTES, state.limits.body_read_timeout).await {
            Ok(b) => (b, None),
            Err(e) => return problem(e),
        }
    };
    let host = Native {
        state: &state,
        upload: std::sync::Mutex::new(Unread {
            body: later,
            linger: state.limits.linger,
        }),
        accept: ws.is_some(),
    };
    let core_req = http::Request::from_parts(parts, bytes);
    let driven = auth_core::drive(&state.service, &host, core_req).await;
    drop(host);
    let status = driven.response.status().as_u16();
    let response = match (driven.upgrade, ws) {
        (
            Some(Upgrade {
                tenant_id,
                accepted,
            }),
            Some(ws),
        ) => {
            let st = Arc::clone(&state);
            let max = state.limits.ws_message_bytes;
            ws.max_message_size(max)
                .max_frame_size(max)
                .on_upgrade(move |conn| pump(st, tenant_id, accepted, conn))
                .into_response()
        }
        _ => to_axum(driven.response),
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
