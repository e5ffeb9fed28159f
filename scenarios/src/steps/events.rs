//! The event stream: opened or refused, frames sent, events received or not, closed by the
//! target, complete and in order (`features/events.feature`, `audit.feature`).

use std::time::Duration;

use cucumber::{then, when};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use crate::support::records::{action, expand_actions, seq};
use crate::verdict::FailureClass;
use crate::world::{connect, read_until, AuthWorld};

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
    if let Err(e) = s.send_text(text).await {
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
        match tokio::time::timeout(deadline - now, s.next_message()).await {
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

#[then(
    regex = r#"^the stream "([^"]+)" receives exactly the events "([^"]*)" in seq order within (\d+) seconds?$"#
)]
/// Collects event frames until as many as expected have come (or the time is up), then
/// listens half a second more: an extra event is as wrong as a missing one.
async fn stream_exactly(w: &mut AuthWorld, name: String, actions: String, secs: u64) {
    let want = expand_actions(&actions);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    let mut got: Vec<Value> = Vec::new();
    while got.len() < want.len() {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            break;
        }
        match read_until(w, &name, left, &|v| v["type"] == "event").await {
            Some(v) => got.push(v),
            None => break,
        }
    }
    if got.len() == want.len() {
        let extra = read_until(w, &name, Duration::from_millis(500), &|v| {
            v["type"] == "event"
        })
        .await;
        if let Some(v) = extra {
            got.push(v);
        }
    }
    let records: Vec<Value> = got.iter().map(|v| v["record"].clone()).collect();
    let actions_got: Vec<String> = records.iter().map(action).collect();
    if actions_got != want {
        w.fail_as(
            FailureClass::Conformance,
            format!(
                "WebSocket /v1/events {name:?}: expected exactly the events {want:?} within {secs} s, got {actions_got:?}"
            ),
        );
    }
    let seqs: Vec<Option<i64>> = records.iter().map(seq).collect();
    let first = seqs.first().copied().flatten().unwrap_or(0);
    let consecutive = seqs
        .iter()
        .enumerate()
        .all(|(i, s)| *s == Some(first + i as i64));
    if !consecutive {
        w.fail_as(
            FailureClass::Conformance,
            format!("WebSocket /v1/events {name:?}: expected events in seq order without gaps, got seq {seqs:?}"),
        );
    }
}
