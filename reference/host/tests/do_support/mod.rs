//! Support for the Durable Object tests (`tests/objects.rs`): a service with test controls on
//! an ephemeral port of 127.0.0.1, a checking HTTP client, and a WebSocket client.
//!
//! Kept apart from `tests/common` (the API-key tests' helpers) so the two suites can change
//! independently.

#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use auth_service::{Config, RunningService};
use futures::{SinkExt, StreamExt};
use reqwest::header::HeaderMap;
use reqwest::{Client, Method, RequestBuilder};
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// `sk_live_` plus 40 alphanumeric characters.
pub const ADMIN_KEY: &str = "sk_live_DurableObjectSuite0123456789abcdefABCDEF";
pub const BASE_DOMAIN: &str = "auth.test";

/// One answer, read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Resp {
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn num_header(&self, name: &str) -> u64 {
        self.header(name)
            .parse()
            .unwrap_or_else(|_| panic!("header {name} is a whole number: {:?}", self.headers))
    }

    pub fn request_id(&self) -> String {
        self.header("x-request-id").to_owned()
    }

    /// Asserts status and problem code.
    #[track_caller]
    pub fn expect(&self, status: u16, code: &str) -> &Self {
        assert_eq!(
            (self.status, self.code()),
            (status, code),
            "unexpected answer: {}",
            self.text
        );
        self
    }

    /// Asserts a status and returns the body.
    #[track_caller]
    pub fn ok(&self, status: u16) -> &Value {
        assert_eq!(self.status, status, "unexpected answer: {}", self.text);
        &self.body
    }

    /// Asserts the four RateLimit headers are there and consistent; answers
    /// `(limit, remaining, reset)`.
    #[track_caller]
    pub fn rate_headers(&self) -> (u64, u64, u64) {
        let limit = self.num_header("ratelimit-limit");
        let remaining = self.num_header("ratelimit-remaining");
        let reset = self.num_header("ratelimit-reset");
        let policy = self.header("ratelimit-policy");
        assert!(
            policy.starts_with(&format!("{limit};w=")),
            "RateLimit-Policy {policy:?} names the limit {limit}"
        );
        assert!(remaining <= limit, "remaining {remaining} <= limit {limit}");
        assert!(reset >= 1, "RateLimit-Reset is at least 1");
        (limit, remaining, reset)
    }
}

/// A tenant made through the admin API, with its first two keys.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: String,
    pub slug: String,
    pub pk: String,
    pub sk: String,
}

pub fn client() -> Client {
    Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap()
}

pub async fn spawn_in(dir: &Path, test_hooks: bool) -> RunningService {
    assert_eq!(ADMIN_KEY.len(), 8 + 40);
    auth_service::spawn(Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_path_buf(),
        base_domain: Some(BASE_DOMAIN.into()),
        admin_key: Some(ADMIN_KEY.into()),
        test_hooks,
    })
    .await
    .expect("service starts")
}

/// A running service with its own data dir.
pub struct Svc {
    service: Option<RunningService>,
    pub dir: TempDir,
    pub client: Client,
    pub base: String,
    test_hooks: bool,
}

impl Svc {
    /// A service with test controls on.
    pub async fn start() -> Self {
        Self::start_with(true).await
    }

    pub async fn start_with(test_hooks: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let service = spawn_in(dir.path(), test_hooks).await;
        let base = service.base_url();
        Self {
            service: Some(service),
            dir,
            client: client(),
            base,
            test_hooks,
        }
    }

    pub fn addr(&self) -> String {
        self.base.trim_start_matches("http://").to_owned()
    }

    /// Shuts the service down (waiting for requests in flight) and starts a new one on the
    /// same data dir and admin key.
    pub async fn restart(&mut self) {
        if let Some(s) = self.service.take() {
            tokio::time::timeout(Duration::from_secs(10), s.shutdown())
                .await
                .expect("shutdown finishes");
        }
        let service = spawn_in(self.dir.path(), self.test_hooks).await;
        self.base = service.base_url();
        self.client = client();
        self.service = Some(service);
    }

    pub fn req(&self, method: &str, path: &str) -> RequestBuilder {
        self.client.request(
            Method::from_bytes(method.as_bytes()).unwrap(),
            format!("{}{}", self.base, path),
        )
    }

    /// Sends and checks what every answer must satisfy.
    pub async fn send(&self, rb: RequestBuilder) -> Resp {
        let r = rb.send().await.expect("request goes through");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        assert!(status < 500, "no input yields a 5xx: {status} {text}");
        assert!(
            headers.get("x-request-id").is_some_and(|v| !v.is_empty()),
            "every response carries X-Request-Id ({status} {text})"
        );
        if status >= 400 && !text.is_empty() {
            assert_eq!(
                headers.get("content-type").map(|v| v.to_str().unwrap()),
                Some("application/problem+json"),
                "errors are problem documents: {text}"
            );
            let code = body["code"].as_str().expect("problem code");
            assert_eq!(body["type"], format!("urn:auth-service:problem:{code}"));
            assert_eq!(body["status"], status);
            if status == 401 {
                assert_eq!(
                    headers.get("www-authenticate").map(|v| v.to_str().unwrap()),
                    Some("Bearer")
                );
            }
        }
        Resp {
            status,
            headers,
            body,
            text,
        }
    }

    /// A request with an optional bearer key and an optional JSON body.
    pub async fn call(
        &self,
        key: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Resp {
        let mut rb = self.req(method, path);
        if let Some(k) = key {
            rb = rb.bearer_auth(k);
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        self.send(rb).await
    }

    pub async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> Resp {
        self.call(Some(ADMIN_KEY), method, path, body).await
    }

    /// A tenant with `rateLimit` `requests` per `window_seconds`.
    pub async fn tenant_with_limit(
        &self,
        slug: &str,
        requests: u32,
        window_seconds: u32,
    ) -> Tenant {
        let r = self
            .admin(
                "POST",
                "/admin/tenants",
                Some(json!({"slug": slug, "name": format!("Tenant {slug}"),
                            "rateLimit": {"requests": requests, "windowSeconds": window_seconds}})),
            )
            .await;
        let b = r.ok(201);
        Tenant {
            id: b["tenant"]["id"].as_str().unwrap().into(),
            slug: b["tenant"]["slug"].as_str().unwrap().into(),
            pk: b["credentials"]["publicKey"].as_str().unwrap().into(),
            sk: b["credentials"]["secretKey"].as_str().unwrap().into(),
        }
    }

    /// A tenant whose quota no test reaches by accident.
    pub async fn tenant(&self, slug: &str) -> Tenant {
        self.tenant_with_limit(slug, 1_000_000, 60).await
    }

    /// `POST /v1/api-keys` with `key`: `(apiKey, keySecret)`.
    pub async fn create_key(&self, key: &str, body: Value) -> (Value, String) {
        let r = self
            .call(Some(key), "POST", "/v1/api-keys", Some(body))
            .await;
        let b = r.ok(201);
        (
            b["apiKey"].clone(),
            b["credentials"]["keySecret"].as_str().unwrap().to_owned(),
        )
    }

    pub async fn secret_key(&self, key: &str, name: &str) -> (Value, String) {
        self.create_key(
            key,
            json!({"name": name, "type": "secret", "environment": "live"}),
        )
        .await
    }

    pub async fn restricted_key(&self, key: &str, perms: &[&str]) -> (Value, String) {
        self.create_key(
            key,
            json!({"name": "restricted", "type": "restricted", "environment": "live",
                   "permissions": perms}),
        )
        .await
    }

    /// The id of the key `secret` among the tenant's keys (found by its display prefix).
    pub async fn key_id_of(&self, sk: &str, secret: &str) -> String {
        let r = self.call(Some(sk), "GET", "/v1/api-keys", None).await;
        let keys = r.ok(200)["apiKeys"].as_array().unwrap().clone();
        let found: Vec<&Value> = keys
            .iter()
            .filter(|k| k["displayPrefix"] == secret[..12])
            .collect();
        assert_eq!(found.len(), 1, "one key with the prefix of the secret");
        found[0]["id"].as_str().unwrap().to_owned()
    }

    /// The status of `GET /v1/tenant` with `key`.
    pub async fn use_key(&self, key: &str) -> Resp {
        self.call(Some(key), "GET", "/v1/tenant", None).await
    }

    /// Every audit record, read in pages of `page`.
    pub async fn audit(&self, key: &str, page: u32) -> Vec<Value> {
        let mut out = Vec::new();
        let mut after = 0i64;
        for _ in 0..10_000 {
            let r = self
                .call(
                    Some(key),
                    "GET",
                    &format!("/v1/audit-log?after={after}&limit={page}"),
                    None,
                )
                .await;
            let b = r.ok(200);
            let records = b["records"].as_array().unwrap();
            assert!(records.len() <= page as usize);
            if records.is_empty() {
                assert!(b["nextAfter"].is_null(), "no records, no nextAfter: {b}");
                return out;
            }
            let last = records.last().unwrap()["seq"].as_i64().unwrap();
            assert_eq!(b["nextAfter"], last, "nextAfter is the last seq");
            out.extend(records.iter().cloned());
            after = last;
        }
        panic!("the audit log does not end");
    }

    // --- test controls -------------------------------------------------------------------

    /// `POST /_test/clock`: answers the new time in ms.
    pub async fn advance(&self, ms: i64) -> i64 {
        let r = self
            .admin("POST", "/_test/clock", Some(json!({"advanceMs": ms})))
            .await;
        r.ok(200)["nowMs"].as_i64().expect("nowMs")
    }

    pub async fn now_ms(&self) -> i64 {
        self.advance(0).await
    }

    /// Moves the clock to 1 ms past the start of the next window of `seconds`, so a whole
    /// window lies ahead.
    pub async fn start_of_next_window(&self, seconds: i64) {
        let w = seconds * 1000;
        let now = self.now_ms().await;
        let after = self.advance(w - now.rem_euclid(w) + 1).await;
        assert!(after.rem_euclid(w) < 1000, "at the start of a window");
    }

    pub async fn evict(&self, tenant: Option<&str>) -> i64 {
        let body = match tenant {
            Some(t) => json!({"tenantId": t}),
            None => json!({}),
        };
        let r = self.admin("POST", "/_test/evict", Some(body)).await;
        r.ok(200)["evicted"].as_i64().expect("evicted")
    }

    pub async fn fire_alarms(&self, tenant: Option<&str>) -> i64 {
        let body = match tenant {
            Some(t) => json!({"tenantId": t}),
            None => json!({}),
        };
        let r = self.admin("POST", "/_test/alarms/fire", Some(body)).await;
        r.ok(200)["fired"].as_i64().expect("fired")
    }

    // --- WebSockets ----------------------------------------------------------------------

    /// Opens `GET /v1/events` as a WebSocket with `key` (if any) in the Authorization header.
    pub async fn ws(&self, key: Option<&str>) -> Result<Ws, tungstenite::Error> {
        let mut req = format!("ws://{}/v1/events", self.addr())
            .into_client_request()
            .unwrap();
        if let Some(k) = key {
            req.headers_mut()
                .insert("authorization", format!("Bearer {k}").parse().unwrap());
        }
        let (stream, resp) = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_tungstenite::connect_async(req),
        )
        .await
        .expect("the handshake ends")?;
        assert_eq!(resp.status().as_u16(), 101);
        Ok(Ws { stream })
    }

    /// A connected socket, with its `connected` message read and checked.
    pub async fn ws_connected(&self, key: &str, tenant_id: &str) -> Ws {
        let mut ws = self.ws(Some(key)).await.expect("upgrade");
        let hello = ws.next_json().await;
        assert_eq!(hello["type"], "connected", "{hello}");
        assert_eq!(hello["tenantId"], tenant_id, "{hello}");
        assert!(
            hello["keyId"].as_str().unwrap().starts_with("key:"),
            "{hello}"
        );
        assert!(hello["timestamp"].is_i64(), "{hello}");
        ws
    }

    /// A socket over a TCP connection with a tiny receive buffer, for a reader that stops
    /// reading: the server's frames pile up in its own queue instead of the kernel's.
    pub async fn ws_slow_reader(&self, key: &str) -> Ws {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.set_recv_buffer_size(2048).unwrap();
        let tcp = sock.connect(self.addr().parse().unwrap()).await.unwrap();
        let mut req = format!("ws://{}/v1/events", self.addr())
            .into_client_request()
            .unwrap();
        req.headers_mut()
            .insert("authorization", format!("Bearer {key}").parse().unwrap());
        let (stream, resp) = tokio_tungstenite::client_async(req, MaybeTlsStream::Plain(tcp))
            .await
            .expect("upgrade");
        assert_eq!(resp.status().as_u16(), 101);
        Ws { stream }
    }

    /// The HTTP status a failed upgrade answered with.
    pub async fn ws_refused(&self, key: Option<&str>) -> u16 {
        match self.ws(key).await {
            Ok(_) => panic!("the upgrade should have been refused"),
            Err(tungstenite::Error::Http(resp)) => resp.status().as_u16(),
            Err(e) => panic!("unexpected handshake error {e}"),
        }
    }
}

/// One WebSocket client connection.
pub struct Ws {
    pub stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// What the next frame (other than pings and pongs) was.
#[derive(Debug)]
pub enum Frame {
    Json(Value),
    Close(Option<u16>),
    /// The connection ended without a close frame, or failed.
    Ended,
    /// Nothing arrived in time.
    Silent,
}

impl Ws {
    pub async fn send_text(&mut self, text: &str) {
        self.stream
            .send(Message::Text(text.to_owned()))
            .await
            .expect("send");
    }

    pub async fn send_binary(&mut self, bytes: &[u8]) {
        self.stream
            .send(Message::Binary(bytes.to_vec()))
            .await
            .expect("send");
    }

    pub async fn next_frame(&mut self, wait: Duration) -> Frame {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.stream.next()).await {
                Err(_) => return Frame::Silent,
                Ok(None) | Ok(Some(Err(_))) => return Frame::Ended,
                Ok(Some(Ok(msg))) => match msg {
                    Message::Text(t) => {
                        return Frame::Json(
                            serde_json::from_str(&t)
                                .unwrap_or_else(|_| panic!("frames are JSON: {t}")),
                        )
                    }
                    Message::Close(c) => return Frame::Close(c.map(|f| u16::from(f.code))),
                    Message::Binary(b) => panic!("unexpected binary frame {b:?}"),
                    _ => continue,
                },
            }
        }
    }

    /// The next JSON message; fails after 5 s.
    pub async fn next_json(&mut self) -> Value {
        match self.next_frame(Duration::from_secs(5)).await {
            Frame::Json(v) => v,
            other => panic!("expected a JSON message, got {other:?}"),
        }
    }

    /// The next `event` message's record.
    pub async fn next_event(&mut self) -> Value {
        let v = self.next_json().await;
        assert_eq!(v["type"], "event", "{v}");
        v["record"].clone()
    }

    /// Waits for the close frame, skipping any events still queued; answers its code.
    pub async fn closed_with(&mut self) -> Option<u16> {
        for _ in 0..1000 {
            match self.next_frame(Duration::from_secs(5)).await {
                Frame::Json(v) if v["type"] == "event" => continue,
                Frame::Json(v) => panic!("unexpected message before the close: {v}"),
                Frame::Close(code) => return code,
                Frame::Ended => return None,
                Frame::Silent => panic!("the socket was not closed"),
            }
        }
        panic!("too many events before the close");
    }

    /// Sends a ping and expects the very next message to be the pong: nothing else was queued.
    pub async fn ping_pong(&mut self) {
        self.send_text(r#"{"type":"ping"}"#).await;
        let v = self.next_json().await;
        assert_eq!(v["type"], "pong", "the next message is the pong: {v}");
        assert!(v["timestamp"].is_i64(), "{v}");
    }

    pub async fn close(mut self) {
        let _ = self
            .stream
            .close(Some(tungstenite::protocol::CloseFrame {
                code: CloseCode::Normal,
                reason: "bye".into(),
            }))
            .await;
    }
}

/// Asserts that none of `secrets`, nor its random part past the display prefix, is in `text`.
#[track_caller]
pub fn assert_no_secret(text: &str, secrets: &[String]) {
    for s in secrets {
        assert!(!text.contains(s.as_str()), "a secret leaked into {text}");
        assert!(
            !text.contains(&s[12..]),
            "part of a secret leaked into {text}"
        );
    }
}

/// `tenant:acme` -> `tenant%3Aacme`, one path segment.
pub fn enc(id: &str) -> String {
    id.replace(':', "%3A")
}
