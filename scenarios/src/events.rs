//! WebSocket steps: the event stream (`GET /v1/events`) opened with a key in the
//! `Authorization` header. Every frame received goes through the run's secret check, like
//! every HTTP response.

use std::time::Duration;

use cucumber::{then, when};
use futures::{SinkExt as _, StreamExt as _};
use serde_json::Value;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::world::{AuthWorld, Cred};

/// An open event stream.
pub struct Stream {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    /// Frames received and not yet consumed by a step.
    pub seen: Vec<Value>,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream").field("seen", &self.seen).finish()
    }
}

/// Connects; `Err(status)` when the target answers the upgrade with an HTTP status.
async fn connect(w: &AuthWorld, cred: &Cred) -> Result<Stream, String> {
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
        Ok(Ok((ws, _))) => Ok(Stream {
            ws,
            seen: Vec::new(),
        }),
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
        let next = tokio::time::timeout(deadline - now, s.ws.next()).await;
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

#[when(regex = r#"^"([^"]+)" opens the event stream "([^"]+)"$"#)]
async fn open(w: &mut AuthWorld, cred: String, name: String) {
    let c = w.cred(&cred);
    match connect(w, &c).await {
        Ok(s) => {
            w.streams.insert(name.clone(), s);
        }
        Err(e)
            if e.starts_with("HTTP 404")
                || e.starts_with("HTTP 405")
                || e.starts_with("HTTP 501") =>
        {
            let status = e[5..8].parse().unwrap_or(404);
            w.blocked_with(
                "GET",
                "/v1/events",
                status,
                format!("opening the event stream as {cred:?}: {e}"),
            )
        }
        Err(e) => w.fail(format!(
            "GET /v1/events (WebSocket) as {cred:?}: expected the stream to open, got {e}"
        )),
    }
    let hello = read_until(w, &name, Duration::from_secs(3), &|v| {
        v["type"] == "connected"
    })
    .await;
    match hello {
        None => w.fail(format!(
            "GET /v1/events as {cred:?}: expected a \"connected\" message within 3 s, got none"
        )),
        Some(v) => {
            let tenant = cred.split(':').next().unwrap_or_default().to_owned();
            if let Some(t) = w.tenants.get(&tenant) {
                if v.get("tenantId").and_then(Value::as_str) != Some(t.id.as_str()) {
                    w.fail_as(
                        crate::FailureClass::Security,
                        format!(
                            "GET /v1/events as {cred:?}: expected a stream of tenant {}, got one of {}",
                            t.id, v["tenantId"]
                        ),
                    );
                }
            }
        }
    }
}

#[then(regex = r#"^opening the event stream as "([^"]+)" is refused$"#)]
async fn open_refused(w: &mut AuthWorld, cred: String) {
    let c = w.cred(&cred);
    match connect(w, &c).await {
        Ok(_) => w.fail_as(
            crate::FailureClass::Security,
            format!("GET /v1/events (WebSocket) as {cred:?}: expected a 4xx refusal, got an open stream"),
        ),
        Err(e) if e.starts_with("HTTP 4") => {}
        Err(e) => w.fail(format!(
            "GET /v1/events (WebSocket) as {cred:?}: expected a 4xx refusal, got {e}"
        )),
    }
}

#[when(regex = r#"^I send '(.*)' on the stream "([^"]+)"$"#)]
async fn send_frame(w: &mut AuthWorld, text: String, name: String) {
    let Some(s) = w.streams.get_mut(&name) else {
        w.fail(format!("no open stream {name:?}"))
    };
    if let Err(e) = s.ws.send(Message::text(text)).await {
        w.fail(format!(
            "GET /v1/events (stream {name:?}): expected to send a frame, got {e}"
        ));
    }
}

#[then(
    regex = r#"^the stream "([^"]+)" receives a message of type "([^"]+)" within (\d+) seconds?$"#
)]
async fn receives_type(w: &mut AuthWorld, name: String, ty: String, secs: u64) {
    let got = read_until(w, &name, Duration::from_secs(secs), &|v| {
        v["type"] == ty.as_str()
    })
    .await;
    if got.is_none() {
        w.fail(format!(
            "GET /v1/events (stream {name:?}): expected a {ty:?} message within {secs} s, got none"
        ));
    }
}

#[then(
    regex = r#"^the stream "([^"]+)" receives an event mentioning "([^"]+)" within (\d+) seconds?$"#
)]
async fn receives_event(w: &mut AuthWorld, name: String, text: String, secs: u64) {
    let text = w.expand(&text, false);
    let got = read_until(w, &name, Duration::from_secs(secs), &|v| {
        v["type"] == "event" && v.to_string().contains(&text)
    })
    .await;
    if got.is_none() {
        w.fail(format!(
            "GET /v1/events (stream {name:?}): expected an event mentioning {text:?} within {secs} s, got none"
        ));
    }
}

#[then(regex = r#"^the stream "([^"]+)" receives no event within (\d+) seconds?$"#)]
async fn receives_nothing(w: &mut AuthWorld, name: String, secs: u64) {
    let got = read_until(w, &name, Duration::from_secs(secs), &|v| {
        v["type"] == "event"
    })
    .await;
    if let Some(v) = got {
        w.fail_as(
            crate::FailureClass::Security,
            format!(
                "GET /v1/events (stream {name:?}): expected no event within {secs} s, got one meant for someone else: {v}"
            ),
        );
    }
}

#[then(regex = r#"^the stream "([^"]+)" is closed by the target within (\d+) seconds?$"#)]
async fn closed_by_target(w: &mut AuthWorld, name: String, secs: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let now = tokio::time::Instant::now();
        if now >= deadline {
            w.fail(format!(
                "GET /v1/events (stream {name:?}): expected the target to close it within {secs} s, got it still open"
            ));
        }
        let Some(s) = w.streams.get_mut(&name) else {
            w.harness_error(format!("no open stream {name:?}"))
        };
        match tokio::time::timeout(deadline - now, s.ws.next()).await {
            Err(_) => continue,
            Ok(None) | Ok(Some(Ok(Message::Close(_)))) | Ok(Some(Err(_))) => return,
            Ok(Some(Ok(Message::Text(t)))) => {
                // Frames before the close (the revocation's own event) are still checked.
                if let Some(leak) = w.ctx.secrets.leaked_in(&t, 0) {
                    w.fail_as(
                        crate::FailureClass::Security,
                        format!(
                            "SECRET LEAK: GET /v1/events (stream {name:?}): expected no secret in a frame, got the secret {:?}",
                            leak.label
                        ),
                    );
                }
            }
            Ok(Some(Ok(_))) => {}
        }
    }
}
