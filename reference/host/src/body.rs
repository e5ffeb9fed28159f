//! Request bodies: read within a limit and a deadline, or drained and thrown away after a
//! refusal. Shared by the HTTP server and the driver's host (an upload is read only once the
//! key's tenant is known).

use std::time::Duration;

use auth_core::graph::MAX_CSV_BYTES;
use auth_core::ApiError;
use axum::body::{Body, Bytes};
use futures::StreamExt;

/// Reads at most `limit + 1` bytes: enough for the core to tell "too large" without buffering
/// whatever a client chooses to send. A body that does not arrive within the body deadline
/// is a 408, one that fails to arrive a 400: never a shorter body.
pub(crate) async fn read_limited(
    body: Body,
    limit: usize,
    deadline: Duration,
) -> Result<Vec<u8>, ApiError> {
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
pub(crate) fn linger(body: Body, limit: usize, linger: Duration) {
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
pub(crate) struct Unread {
    pub(crate) body: Option<Body>,
    pub(crate) linger: Duration,
}

impl Drop for Unread {
    fn drop(&mut self) {
        if let Some(body) = self.body.take() {
            linger(body, MAX_CSV_BYTES, self.linger);
        }
    }
}

/// Whether the declared length is over `limit` (so the body need not be read to refuse it).
pub(crate) fn declared_over(headers: &http::HeaderMap, limit: usize) -> bool {
    headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|n| n > limit as u64)
}
