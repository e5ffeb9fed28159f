//! Opening and reading event streams (`GET /v1/events` over WebSocket, the key in
//! `Authorization`). Every frame read goes through the run's secret check, like every HTTP
//! response.

use std::time::Duration;

use serde_json::Value;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::{self, Message};

use super::stream::Stream;

use super::core::AuthWorld;
use crate::support::http::Cred;

/// Connects; `Err(status)` when the target answers the upgrade with an HTTP status.
pub(crate) async fn connect(w: &AuthWorld, cred: &Cred) -> Result<Stream, String> {
    let url = w
        .ctx
        .base_url
        .replacen("http://", "ws://", 1)
        .replacen("https://", "wss://", 1)
        + "/v1/events";
    let mut req = url
        .into_client_request()
        .map_err(|e| format!("bad URL: {e}"))?;
    for (k, v) in &w.ctx.extra_headers {
        if let (Ok(k), Ok(v)) = (
            tungstenite::http::HeaderName::from_bytes(k.as_bytes()),
            tungstenite::http::HeaderValue::from_str(v),
        ) {
            req.headers_mut().insert(k, v);
        }
    }
    if let Cred::Bearer { value, .. } = cred {
        let v = tungstenite::http::HeaderValue::from_str(&format!("Bearer {value}"))
            .map_err(|e| e.to_string())?;
        req.headers_mut().insert("authorization", v);
    }
    let connect = tokio_tungstenite::connect_async(req);
    match tokio::time::timeout(Duration::from_secs(5), connect).await {
        Err(_) => Err("timed out".into()),
        Ok(Err(tungstenite::Error::Http(resp))) => Err(format!("HTTP {}", resp.status().as_u16())),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok((ws, _))) => Ok(Stream::new(ws)),
    }
}

/// Reads frames for up to `wait`, until `want` accepts one; returns it.
pub(crate) async fn read_until(
    w: &mut AuthWorld,
    name: &str,
    wait: Duration,
    want: &dyn Fn(&Value) -> bool,
) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return None;
        }
        let Some(s) = w.streams.get_mut(name) else {
            w.harness_error(format!("no open stream {name:?}"))
        };
        let next = tokio::time::timeout(deadline - now, s.next_message()).await;
        let text = match next {
            Err(_) => return None,
            Ok(None) => return None,
            Ok(Some(Err(e))) => w.fail(format!(
                "GET /v1/events (stream {name:?}): expected frames, got a transport error: {e}"
            )),
            Ok(Some(Ok(Message::Text(t)))) => t.to_string(),
            Ok(Some(Ok(Message::Close(_)))) => return None,
            Ok(Some(Ok(_))) => continue,
        };
        // A frame is a response like any other: it must not repeat a secret.
        if let Some(leak) = w.ctx.secrets.leaked_in(&text, 0) {
            w.fail_as(
                crate::FailureClass::Security,
                format!(
                    "SECRET LEAK: GET /v1/events (stream {name:?}): expected no secret in a frame, got the secret {:?}",
                    leak.label
                ),
            );
        }
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if let Some(s) = w.streams.get_mut(name) {
            s.seen.push(v.clone());
        }
        if want(&v) {
            return Some(v);
        }
    }
}
