//! The HTTP server: axum hands every request to the core and writes back what it answers.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use auth_core::http::MAX_BODY_BYTES;
use auth_core::{ApiError, Ports};
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::Response;
use axum::Router;
use futures::StreamExt;

use crate::{Database, OsEntropy, SystemClock};

pub struct AppState {
    pub service: auth_core::Service,
    pub db: Database,
}

pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new().fallback(handle).with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Reads at most `MAX_BODY_BYTES + 1` bytes: enough for the core to tell "too large" without
/// buffering whatever a client chooses to send.
async fn read_limited(body: Body) -> Result<Vec<u8>, ()> {
    let mut stream = body.into_data_stream();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk: Bytes = chunk.map_err(|_| ())?;
        let room = MAX_BODY_BYTES + 1 - out.len();
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() > MAX_BODY_BYTES {
            break;
        }
    }
    Ok(out)
}

async fn handle(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let method = parts.method.clone();
    // The path only: query strings may carry what a client wrongly thinks is a credential.
    let path = parts.uri.path().to_owned();
    let bytes = match read_limited(body).await {
        Ok(b) => b,
        Err(()) => return to_axum(ApiError::InvalidJson("The request body could not be read.".into()).into_response()),
    };
    let core_req = http::Request::from_parts(parts, bytes);
    let joined = tokio::task::spawn_blocking(move || {
        let conn = state.db.lock();
        let sql = crate::sqlite::SqliteSql(&conn);
        let ports = Ports {
            db: &sql,
            clock: &SystemClock,
            entropy: &OsEntropy,
        };
        state.service.handle(&ports, core_req)
    })
    .await;
    let (resp, outcome) = match joined {
        Ok(r) => r,
        Err(_) => {
            tracing::error!(%method, %path, "request handler panicked");
            return to_axum(ApiError::Internal.into_response());
        }
    };
    if outcome.internal_error {
        tracing::error!(%method, %path, request_id = %outcome.request_id, "storage failure");
    }
    tracing::info!(
        %method,
        %path,
        status = outcome.status,
        request_id = %outcome.request_id,
        micros = started.elapsed().as_micros() as u64,
        "request"
    );
    to_axum(resp)
}

fn to_axum(resp: auth_core::Response) -> Response {
    let (parts, body) = resp.into_parts();
    Response::from_parts(parts, Body::from(body))
}
