//! Deliberately non-conformant targets: a proxy in front of the reference that breaks one rule
//! of the contract each. The catalogue test runs the suite against each and checks that the
//! scenario meant to catch the defect fails. The defects mirror real ones (most are the public
//! cf-auth deployment's, `shared/reference/upstream-cf-auth-contract.md` section 14).
//!
//! A proxy over the real reference, rather than a hand-written fake, keeps every other rule
//! intact: the suite must find exactly the broken one, not trip over a fake's gaps.

mod more;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::ws::{Message as AxMessage, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request, State};
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as TMessage;

/// One broken rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Key lists carry the secret of a key (the seed's "secret never listed" broken).
    SecretInList,
    /// Revocation lags: `DELETE /v1/api-keys/{id}` answers at once but takes effect 5 s later.
    LaggingRevocation,
    /// A key of another tenant shows up in the key list.
    ForeignKeyListed,
    /// Rate limiting never answers 429 (the public deployment has none, D26).
    No429,
    /// 429 answers lack `Retry-After`.
    NoRetryAfter,
    /// Malformed JSON bodies get a 500 with the parser's message (the public deployment, §1).
    BadJson500,
    /// Rotation leaves the old key working for an hour.
    RotationKeepsOldKey,
    /// Every tenant's events reach every socket.
    EventsToWrongTenant,
    /// Any tenant secret key works on the admin API (the public deployment's D1).
    TenantKeyIsAdmin,
    /// Durable Object state routes answer without a key (the public deployment's D2).
    ObjectStateWithoutKey,
    /// Logout answers success but the access token keeps working (the seed's §14 defect:
    /// tokens that survive logout).
    LogoutKeepsToken,
    /// `Retry-After` in milliseconds rather than seconds.
    RetryAfterMs,
    /// A key's revocation never shows in the audit log.
    RevocationNotAudited,
    /// The first two records of an audit-log page come out swapped.
    AuditOutOfOrder,
    /// A record of another caller's log is mixed into a page.
    ForeignAuditRecords,
    /// After logout, `GET /v1/auth/validate` keeps answering 200 for the token (`me` is
    /// right).
    ValidateAfterLogout,
    /// Wrong-password logins for known addresses take 300 ms longer than for unknown ones.
    SlowKnownLogins,
    /// 4xx problems carry SQL text and a source path in `detail`.
    SqlInDetail,
    /// `check` answers the opposite for the relation `viewer`.
    InvertedGraphCheck,
    /// A CSV the target refuses is answered 200 (and still not stored).
    InvalidCsvAccepted,
    /// Every graph answer says version 1.
    GraphVersionStuck,
    /// An event stream delivers only its first event.
    FirstEventOnly,
    /// A response cache in front of the target serves `GET /v1/tenant` per Authorization for
    /// a minute, revoked keys included.
    CachedRevokedKeys,
}

impl Fault {
    pub const ALL: [Fault; 23] = [
        Fault::SecretInList,
        Fault::LaggingRevocation,
        Fault::ForeignKeyListed,
        Fault::No429,
        Fault::NoRetryAfter,
        Fault::BadJson500,
        Fault::RotationKeepsOldKey,
        Fault::EventsToWrongTenant,
        Fault::TenantKeyIsAdmin,
        Fault::ObjectStateWithoutKey,
        Fault::LogoutKeepsToken,
        Fault::RetryAfterMs,
        Fault::RevocationNotAudited,
        Fault::AuditOutOfOrder,
        Fault::ForeignAuditRecords,
        Fault::ValidateAfterLogout,
        Fault::SlowKnownLogins,
        Fault::SqlInDetail,
        Fault::InvertedGraphCheck,
        Fault::InvalidCsvAccepted,
        Fault::GraphVersionStuck,
        Fault::FirstEventOnly,
        Fault::CachedRevokedKeys,
    ];
}

struct Proxy {
    fault: Fault,
    upstream: String,
    admin_key: String,
    http: reqwest::Client,
    /// Secrets the upstream handed out, newest last.
    secrets: Mutex<Vec<String>>,
    /// Tenant id -> its secret key, from tenant creation answers.
    tenant_keys: Mutex<HashMap<String, String>>,
    /// Authorization value -> the last key list it received.
    lists: Mutex<HashMap<String, Value>>,
    /// Every event frame from any upstream socket, for `EventsToWrongTenant`.
    events: broadcast::Sender<String>,
    /// State of the faults in [`more`].
    more: more::State,
}

/// A running faulty target.
pub struct Faulty {
    pub addr: SocketAddr,
}

impl Faulty {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Starts a proxy with `fault` in front of `upstream` (the reference's base URL).
pub async fn start(fault: Fault, upstream: &str, admin_key: &str) -> Faulty {
    let (events, _) = broadcast::channel(1024);
    let proxy = Arc::new(Proxy {
        fault,
        upstream: upstream.trim_end_matches('/').to_owned(),
        admin_key: admin_key.to_owned(),
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        secrets: Mutex::new(Vec::new()),
        tenant_keys: Mutex::new(HashMap::new()),
        lists: Mutex::new(HashMap::new()),
        events,
        more: more::State::default(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = Router::new().fallback(handle).with_state(proxy);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Faulty { addr }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn bearer(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::to_owned)
}

/// Collects every string that looks like a key in a JSON answer.
fn collect_secrets(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s)
            if (s.starts_with("sk_") || s.starts_with("rk_") || s.starts_with("pk_"))
                && s.len() > 30 =>
        {
            out.push(s.clone())
        }
        Value::Array(items) => items.iter().for_each(|i| collect_secrets(i, out)),
        Value::Object(map) => map.values().for_each(|i| collect_secrets(i, out)),
        _ => {}
    }
}

async fn handle(State(p): State<Arc<Proxy>>, req: Request) -> Response {
    let (mut parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    if path == "/v1/events" {
        if let Ok(ws) = WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
            let mut headers = parts.headers.clone();
            inject_key_if_missing(&p, &mut headers, parts.uri.query());
            return websocket(p, ws, headers, parts.uri.to_string()).await;
        }
    }
    let bytes = axum::body::to_bytes(body, 16 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let method = parts.method.clone();
    let mut headers = parts.headers.clone();
    let mut body = bytes.to_vec();
    let auth = bearer(&headers).unwrap_or_default();
    if let Some(r) = more::before(&p, &method, &path, &auth) {
        return r;
    }

    match p.fault {
        Fault::BadJson500 => {
            let is_json = headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("json"));
            if is_json && !body.is_empty() && serde_json::from_slice::<Value>(&body).is_err() {
                return (
                    http::StatusCode::INTERNAL_SERVER_ERROR,
                    [(http::header::CONTENT_TYPE, "application/json")],
                    r#"{"error":"Internal Server Error","message":"Unexpected token in JSON at position 1"}"#,
                )
                    .into_response();
            }
        }
        Fault::TenantKeyIsAdmin
            if path.starts_with("/admin/")
                && bearer(&headers).is_some_and(|k| k.starts_with("sk_") && k != p.admin_key) =>
        {
            headers.insert(
                http::header::AUTHORIZATION,
                format!("Bearer {}", p.admin_key).parse().expect("header"),
            );
        }
        Fault::ObjectStateWithoutKey => inject_key_if_missing(&p, &mut headers, parts.uri.query()),
        Fault::LogoutKeepsToken if path == "/v1/auth/logout" => {
            return (
                http::StatusCode::OK,
                [(http::header::CONTENT_TYPE, "application/json")],
                r#"{"success":true,"message":"Logged out successfully"}"#,
            )
                .into_response();
        }
        Fault::RotationKeepsOldKey if path.ends_with("/rotate") => {
            body = br#"{"expiresInSeconds":3600}"#.to_vec();
            headers.insert(
                http::header::CONTENT_TYPE,
                "application/json".parse().expect("header"),
            );
        }
        Fault::LaggingRevocation
            if method == http::Method::DELETE && path.starts_with("/v1/api-keys/") =>
        {
            // Answer as if done, and do it later.
            let p2 = Arc::clone(&p);
            let uri = format!("{}{}", p.upstream, parts.uri);
            let auth = headers.get(http::header::AUTHORIZATION).cloned();
            let got = forward(
                &p,
                &method,
                &format!("{}{}", p.upstream, path),
                &headers,
                Vec::new(),
                true,
            )
            .await;
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(5)).await;
                let mut req = p2.http.delete(uri);
                if let Some(a) = auth {
                    req = req.header(http::header::AUTHORIZATION, a);
                }
                let _ = req.send().await;
            });
            return got;
        }
        _ => {}
    }

    let url = format!("{}{}", p.upstream, parts.uri);
    forward(&p, &method, &url, &headers, body, false).await
}

/// For `ObjectStateWithoutKey`: a request without a key is given the key of the tenant it
/// names (header or query), or of the newest tenant.
fn inject_key_if_missing(p: &Proxy, headers: &mut http::HeaderMap, query: Option<&str>) {
    if p.fault != Fault::ObjectStateWithoutKey || headers.contains_key(http::header::AUTHORIZATION)
    {
        return;
    }
    let keys = lock(&p.tenant_keys);
    let named = headers
        .get("x-tenant-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| {
            query?
                .split('&')
                .find_map(|kv| kv.strip_prefix("tenant_id="))
                .map(|v| v.replace("%3A", ":"))
        });
    let key = named.and_then(|t| keys.get(&t).cloned()).or_else(|| {
        lock(&p.secrets)
            .iter()
            .rev()
            .find(|s| s.starts_with("sk_"))
            .cloned()
    });
    if let Some(k) = key {
        headers.insert(
            http::header::AUTHORIZATION,
            format!("Bearer {k}").parse().expect("header"),
        );
    }
}

async fn forward(
    p: &Proxy,
    method: &http::Method,
    url: &str,
    headers: &http::HeaderMap,
    body: Vec<u8>,
    fake_delete: bool,
) -> Response {
    if fake_delete {
        // GET the key as it is now and present it as revoked.
        let get = p.http.get(url).headers(headers.clone()).send().await;
        let Ok(resp) = get else {
            return http::StatusCode::BAD_GATEWAY.into_response();
        };
        let status = resp.status();
        let mut v: Value = resp.json().await.unwrap_or(Value::Null);
        if let Some(k) = v.get_mut("apiKey") {
            k["revokedAt"] = Value::String("2026-01-01T00:00:00Z".into());
        }
        return (status, axum::Json(v)).into_response();
    }
    let req_body = body.clone();
    let mut req = p.http.request(method.clone(), url).body(body);
    for (k, v) in headers {
        if k != http::header::HOST && k != http::header::CONTENT_LENGTH {
            req = req.header(k, v);
        }
    }
    if let Some(host) = headers.get(http::header::HOST) {
        // Keep the Host the client sent, so subdomain routing still reaches the upstream.
        req = req.header(http::header::HOST, host);
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(_) => return http::StatusCode::BAD_GATEWAY.into_response(),
    };
    let mut status = resp.status();
    let mut out_headers = resp.headers().clone();
    let bytes = resp.bytes().await.unwrap_or_default();
    let mut body: Bytes = bytes;
    let auth = bearer(headers).unwrap_or_default();
    if let Ok(v) = serde_json::from_slice::<Value>(&body) {
        let mut found = Vec::new();
        collect_secrets(&v, &mut found);
        lock(&p.secrets).extend(found);
        if let (Some(id), Some(sk)) = (
            v.pointer("/tenant/id").and_then(Value::as_str),
            v.pointer("/credentials/secretKey").and_then(Value::as_str),
        ) {
            lock(&p.tenant_keys).insert(id.to_owned(), sk.to_owned());
        }
        let path = url
            .split("://")
            .nth(1)
            .and_then(|r| r.find('/').map(|i| &r[i..]))
            .unwrap_or("");
        let path = path.split('?').next().unwrap_or("");
        if path == "/v1/api-keys" && *method == http::Method::GET && status.is_success() {
            let mut list = v.clone();
            match p.fault {
                Fault::SecretInList => {
                    if let Some(first) = list.pointer_mut("/apiKeys/0") {
                        let secret = lock(&p.secrets)
                            .iter()
                            .rev()
                            .find(|s| s.starts_with(first["displayPrefix"].as_str().unwrap_or("~")))
                            .cloned()
                            .or_else(|| lock(&p.secrets).last().cloned());
                        if let Some(s) = secret {
                            first["keySecret"] = Value::String(s);
                        }
                    }
                }
                Fault::ForeignKeyListed => {
                    let foreign = lock(&p.lists)
                        .iter()
                        .find(|(a, l)| **a != auth && l.pointer("/apiKeys/0").is_some())
                        .and_then(|(_, l)| l.pointer("/apiKeys/0").cloned());
                    if let (Some(f), Some(arr)) = (
                        foreign,
                        list.get_mut("apiKeys").and_then(Value::as_array_mut),
                    ) {
                        arr.push(f);
                    }
                }
                _ => {}
            }
            lock(&p.lists).insert(auth.clone(), v);
            body = Bytes::from(serde_json::to_vec(&list).expect("json"));
        }
    }
    match p.fault {
        Fault::No429 if status == http::StatusCode::TOO_MANY_REQUESTS => {
            status = http::StatusCode::OK;
            out_headers.remove(http::header::RETRY_AFTER);
            body = Bytes::from_static(b"{}");
            out_headers.insert(
                http::header::CONTENT_TYPE,
                "application/json".parse().expect("header"),
            );
        }
        Fault::NoRetryAfter => {
            out_headers.remove(http::header::RETRY_AFTER);
        }
        _ => {}
    }
    let path = url
        .split("://")
        .nth(1)
        .and_then(|r| r.find('/').map(|i| &r[i..]))
        .unwrap_or("")
        .split('?')
        .next()
        .unwrap_or("");
    more::after(
        p,
        method,
        path,
        &auth,
        &req_body,
        &mut status,
        &mut out_headers,
        &mut body,
    )
    .await;
    out_headers.remove(http::header::CONTENT_LENGTH);
    out_headers.remove(http::header::TRANSFER_ENCODING);
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    *r.headers_mut() = out_headers;
    r
}

/// Tunnels a WebSocket to the upstream. Under `EventsToWrongTenant` every event frame from any
/// upstream socket is also sent to every client socket.
async fn websocket(
    p: Arc<Proxy>,
    ws: WebSocketUpgrade,
    headers: http::HeaderMap,
    uri: String,
) -> Response {
    let url = format!("{}{}", p.upstream.replacen("http", "ws", 1), uri);
    let mut request = match url.into_client_request() {
        Ok(r) => r,
        Err(_) => return http::StatusCode::BAD_GATEWAY.into_response(),
    };
    for name in [
        http::header::AUTHORIZATION,
        http::HeaderName::from_static("x-tenant-id"),
    ] {
        if let Some(v) = headers.get(&name) {
            request.headers_mut().insert(name, v.clone());
        }
    }
    let upstream = match tokio_tungstenite::connect_async(request).await {
        Ok((s, _)) => s,
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let status = resp.status();
            let body = resp.body().clone().unwrap_or_default();
            let mut r = Response::new(Body::from(body));
            *r.status_mut() = status;
            *r.headers_mut() = resp.headers().clone();
            return r;
        }
        Err(_) => return http::StatusCode::BAD_GATEWAY.into_response(),
    };
    let p2 = Arc::clone(&p);
    ws.on_upgrade(move |client| async move {
        let (mut up_tx, mut up_rx) = upstream.split();
        let (mut cl_tx, mut cl_rx) = client.split();
        let mut fanout = p2.events.subscribe();
        let mut events_seen = 0usize;
        loop {
            tokio::select! {
                m = up_rx.next() => match m {
                    Some(Ok(TMessage::Text(t))) => {
                        let t = t.to_string();
                        let is_event = t.contains("\"type\":\"event\"");
                        if is_event {
                            events_seen += 1;
                        }
                        if is_event && !more::pass_event(p2.fault, events_seen - 1) {
                            continue;
                        }
                        if p2.fault == Fault::EventsToWrongTenant && t.contains("\"event\"") {
                            let _ = p2.events.send(t);
                        } else if cl_tx.send(AxMessage::Text(t.into())).await.is_err() {
                            break;
                        }
                    }
                    Some(Ok(TMessage::Close(_))) | None | Some(Err(_)) => break,
                    _ => {}
                },
                e = fanout.recv() => {
                    if let Ok(t) = e {
                        if cl_tx.send(AxMessage::Text(t.into())).await.is_err() { break; }
                    }
                },
                m = cl_rx.next() => match m {
                    Some(Ok(AxMessage::Text(t)))
                        if up_tx.send(TMessage::Text(t.to_string())).await.is_err() => break,
                    Some(Ok(AxMessage::Close(_))) | None | Some(Err(_)) => break,
                    _ => {}
                },
            }
        }
        let _ = cl_tx.close().await;
        let _ = up_tx.close().await;
    })
}
