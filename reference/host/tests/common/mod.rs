//! Test support: a service on an ephemeral port with a data dir of its own, and a small HTTP
//! client that checks the rules every response must follow (no 500, `X-Request-Id`, errors as
//! problem documents).

#![allow(dead_code)]

use std::path::Path;

use auth_service::{Config, RunningService};
use reqwest::header::HeaderMap;
use reqwest::{Client, Method, RequestBuilder};
use serde_json::{json, Value};
use tempfile::TempDir;

pub const ADMIN_KEY: &str = "sk_live_IntegrationTestAdminKey0123456789abcdef";
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

    pub fn field(&self) -> &str {
        self.body["field"].as_str().unwrap_or("")
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
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

    /// Asserts a 400 `invalid_field` (or `invalid_query`) naming `field`, in `field` and in
    /// `errors`.
    #[track_caller]
    pub fn expect_field(&self, code: &str, field: &str) -> &Self {
        self.expect(400, code);
        assert_eq!(self.field(), field, "field of {}", self.text);
        let errors = self.body["errors"].as_array().expect("errors list");
        assert!(
            errors
                .iter()
                .any(|e| e["field"] == field && e["message"].is_string()),
            "errors of {}",
            self.text
        );
        self
    }

    /// Asserts a success status and returns the body.
    #[track_caller]
    pub fn ok(&self, status: u16) -> &Value {
        assert_eq!(self.status, status, "unexpected answer: {}", self.text);
        &self.body
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

/// A running service plus its data dir. Dropping it stops the service with the test's runtime.
pub struct Harness {
    service: Option<RunningService>,
    pub dir: TempDir,
    pub client: Client,
    pub base: String,
}

pub fn client() -> Client {
    Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap()
}

/// A request to `base` + `path` with an optional bearer key, extra headers and an optional
/// JSON body.
pub fn request(
    client: &Client,
    base: &str,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> RequestBuilder {
    let mut rb = client.request(
        Method::from_bytes(method.as_bytes()).unwrap(),
        format!("{base}{path}"),
    );
    if let Some(k) = bearer {
        rb = rb.bearer_auth(k);
    }
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    rb
}

/// The settings of a service on 127.0.0.1 (an ephemeral port) with its data in `dir`, no base
/// domain and the platform admin key `admin_key`.
pub fn local_config(dir: &Path, admin_key: &str, test_hooks: bool) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_path_buf(),
        base_domain: None,
        admin_key: Some(admin_key.into()),
        test_hooks,
    }
}

pub async fn spawn_in(dir: &Path, admin_key: Option<&str>) -> RunningService {
    auth_service::spawn(Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_path_buf(),
        base_domain: Some(BASE_DOMAIN.into()),
        admin_key: admin_key.map(str::to_owned),
        test_hooks: false,
    })
    .await
    .expect("service starts")
}

impl Harness {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let service = spawn_in(dir.path(), Some(ADMIN_KEY)).await;
        let base = service.base_url();
        Self {
            service: Some(service),
            dir,
            client: client(),
            base,
        }
    }

    /// Stops the service and starts a new one on the same data dir and admin key.
    pub async fn restart(&mut self) {
        if let Some(s) = self.service.take() {
            s.shutdown().await;
        }
        let service = spawn_in(self.dir.path(), Some(ADMIN_KEY)).await;
        self.base = service.base_url();
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
        let req = rb.build().expect("a valid request");
        let what = format!("{} {}", req.method(), req.url());
        let r = self
            .client
            .execute(req)
            .await
            .expect("request goes through");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        assert_ne!(status, 500, "no input yields a 500: {what}: {text}");
        assert!(
            headers.get("x-request-id").is_some_and(|v| !v.is_empty()),
            "every response carries X-Request-Id"
        );
        if status >= 400 && !text.is_empty() {
            assert_eq!(
                headers.get("content-type").map(|v| v.to_str().unwrap()),
                Some("application/problem+json"),
                "errors are problem documents: {what}: {text}"
            );
            let code = body["code"].as_str().expect("problem code");
            assert_eq!(body["type"], format!("urn:auth-service:problem:{code}"));
            assert_eq!(body["status"], status);
            assert!(
                body["title"].is_string() && body["detail"].is_string(),
                "{text}"
            );
            if status == 401 {
                assert_eq!(headers.get("www-authenticate").unwrap(), "Bearer");
            }
            if status == 405 {
                assert!(headers.contains_key("allow"), "405 sets Allow");
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
        let rb = request(&self.client, &self.base, method, path, key, &[], body);
        self.send(rb).await
    }

    pub async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> Resp {
        self.call(Some(ADMIN_KEY), method, path, body).await
    }

    pub async fn create_tenant_with(&self, body: Value) -> Tenant {
        let r = self.admin("POST", "/admin/tenants", Some(body)).await;
        let b = r.ok(201);
        Tenant {
            id: b["tenant"]["id"].as_str().unwrap().into(),
            slug: b["tenant"]["slug"].as_str().unwrap().into(),
            pk: b["credentials"]["publicKey"].as_str().unwrap().into(),
            sk: b["credentials"]["secretKey"].as_str().unwrap().into(),
        }
    }

    /// A tenant with a quota high enough that no test here reaches it.
    pub async fn create_tenant(&self, slug: &str) -> Tenant {
        self.create_tenant_with(json!({"slug": slug, "name": format!("Tenant {slug}"),
                                       "rateLimit": {"requests": 1_000_000, "windowSeconds": 60}}))
            .await
    }

    /// Creates a key with `key` through `POST /v1/api-keys`: `(apiKey, keySecret)`.
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

    /// Whether `key` authenticates on `GET /v1/tenant`.
    pub async fn works(&self, key: &str) -> bool {
        let r = self.call(Some(key), "GET", "/v1/tenant", None).await;
        match r.status {
            200 => true,
            401 => false,
            other => panic!("unexpected {other}: {}", r.text),
        }
    }
}

/// Percent-encodes the `:` of an id, as a client putting it in one path segment would.
pub fn enc(id: &str) -> String {
    id.replace(':', "%3A")
}

/// `YYYY-MM-DDTHH:MM:SSZ`.
pub fn is_rfc3339_utc(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 20
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

/// The key format of the contract: `{pk|sk|rk}_{live|test}_` + 32 + 6 base62 characters.
pub fn is_key_format(k: &str) -> bool {
    let b = k.as_bytes();
    b.len() == 46
        && ["pk_", "sk_", "rk_"].iter().any(|p| k.starts_with(p))
        && (k[3..].starts_with("live_") || k[3..].starts_with("test_"))
        && b[8..].iter().all(u8::is_ascii_alphanumeric)
}

/// CRC-32 (IEEE), written independently of the service's implementation.
pub fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// The checksum suffix the contract defines for the head `sk_live_<random>`.
pub fn checksum(head: &str) -> String {
    const B62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut n = u64::from(crc32(head.as_bytes()));
    let mut out = vec![b'0'; 6];
    for slot in out.iter_mut().rev() {
        *slot = B62[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8(out).unwrap()
}

/// The exact field set of a key object.
pub const KEY_FIELDS: &[&str] = &[
    "createdAt",
    "displayPrefix",
    "environment",
    "expiresAt",
    "id",
    "name",
    "permissions",
    "revokedAt",
    "type",
];

#[track_caller]
pub fn assert_key_object(k: &Value) {
    let mut names: Vec<&str> = k
        .as_object()
        .expect("a key object")
        .keys()
        .map(String::as_str)
        .collect();
    names.sort();
    assert_eq!(names, KEY_FIELDS, "key object fields: {k}");
    let id = k["id"].as_str().unwrap();
    assert!(
        id.len() == 20
            && id.starts_with("key:")
            && id[4..]
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
        "key id {id}"
    );
    assert!(is_rfc3339_utc(k["createdAt"].as_str().unwrap()));
    let dp = k["displayPrefix"].as_str().unwrap();
    assert_eq!(dp.len(), 12, "displayPrefix {dp}");
}

/// Asserts that none of `secrets` appears in `text`.
#[track_caller]
pub fn assert_no_secret(text: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(!text.contains(s), "a secret leaked into {text}");
        // Nor enough of it to use: the random part past the display prefix.
        assert!(
            !text.contains(&s[12..]),
            "part of a secret leaked into {text}"
        );
    }
}
