//! A fake target that speaks the upstream cf-auth dialect
//! (`shared/reference/upstream-cf-auth-contract.md`, §1-§6, §9-§10): the `{status:"success",
//! data}` admin envelope, `{publicKey:{prefix}, secretKey:{prefix, secret}}` credentials with
//! prefixes of 29 to 32 characters and 64-hex secrets, `Authorization: Bearer prefix:secret`,
//! admin key minting, no `/v1/api-keys` and no `/.well-known/authconf`, soft delete,
//! `/v1/auth/*` with `{userId, tenantId, type, iat, exp}` JWTs, its error shapes, `/do/*`.
//!
//! It is a fake: in-memory maps, no persistence, no mail. [`Defects`] switches each carried
//! defect of §14 on or off; with every defect off it keeps the dialect's routes and shapes but
//! follows the rules of docs/contract.md that the suite checks where the dialect has a route.
//!
//! Not carried, because no black-box request can show them (they go to the closing note):
//! - D7 (reset and verification tokens interchangeable): the tokens travel only by mail, and
//!   this dialect has no mail capture; the suite cannot hold either token.
//! - D8 alone (raw-case lookup on resend/forgot): with D9 off both answers are the same fixed
//!   200, so the case is only visible in which mail is sent. With D9 on it shows (carried).
//! - D9's "Account is not active" before the password: no route makes a user inactive.
//! - D22 (error details and Authorization headers in logs/Sentry): logs are not black-box.
//! - D23 (an admin secret committed to the repository): repository hygiene, not behaviour.
//! - D24 (unsalted SHA-256, non-constant-time compare): storage and timing, not responses
//!   (the suite has no timed tests by rule).

// Handlers return the refusal itself as their error: it is the answer to send, built at
// most once per request, so its size does not matter.
#![allow(clippy::result_large_err)]

mod admin;
mod users;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use axum::Router;
use rand::Rng as _;
use serde_json::{json, Value};

/// The defects of §14 the fake carries, each switchable.
#[derive(Debug, Clone, Copy, Default)]
pub struct Defects {
    /// D1: any tenant's secret key is a platform admin key.
    pub d1_tenant_secret_is_admin: bool,
    /// D2: the `/do/*` routes need no authentication.
    pub d2_open_objects: bool,
    /// D3: register picks the tenant from `X-Tenant-ID` and auto-creates unknown ones.
    pub d3_auto_create_tenant: bool,
    /// D4: logout and password changes leave the JWT valid (no session check).
    pub d4_logout_keeps_jwt: bool,
    /// D5: the JWT secret is the fallback literal `default-secret-change-in-production`.
    pub d5_default_jwt_secret: bool,
    /// D6: change-password does not check the new password's strength.
    pub d6_weak_password_on_change: bool,
    /// D8: resend-verification looks the address up without lowercasing it.
    pub d8_email_case: bool,
    /// D9: resend-verification says "User not found" / "Email already verified".
    pub d9_enumeration: bool,
    /// D10: a missing `Authorization` is 400 (zod), `/validate` answers 200 `valid:false`,
    /// and the 401 bodies differ ("No token provided" vs "Invalid token").
    pub d10_missing_auth_400: bool,
    /// D11: keys and users of deleted or suspended tenants keep working; `X-Tenant-ID` wins
    /// over the API key on admin routes; a token's tenant is never cross-checked.
    pub d11_tenant_status_ignored: bool,
    /// D12: public and restricted keys authenticate by their prefix alone.
    pub d12_prefix_alone: bool,
    /// D13: the documented `parent_id` field is ignored (only `parentId` is read).
    pub d13_parent_id_ignored: bool,
    /// D21: CORS echoes any `Origin` with `Access-Control-Allow-Credentials: true`.
    pub d21_cors_reflects: bool,
    /// The first `X-Tenant-ID` wins when the header is sent twice (no cross-check).
    pub first_tenant_header_wins: bool,
    /// Tokens carry no session id or jti: the same user gets the same JWT within a second.
    pub non_unique_tokens: bool,
}

impl Defects {
    /// Every carried defect on.
    pub fn all() -> Self {
        Defects {
            d1_tenant_secret_is_admin: true,
            d2_open_objects: true,
            d3_auto_create_tenant: true,
            d4_logout_keeps_jwt: true,
            d5_default_jwt_secret: true,
            d6_weak_password_on_change: true,
            d8_email_case: true,
            d9_enumeration: true,
            d10_missing_auth_400: true,
            d11_tenant_status_ignored: true,
            d12_prefix_alone: true,
            d13_parent_id_ignored: true,
            d21_cors_reflects: true,
            first_tenant_header_wins: true,
            non_unique_tokens: true,
        }
    }

    /// No defect: the dialect's routes and shapes with the contract's rules.
    pub fn none() -> Self {
        Defects::default()
    }
}

/// The upstream's fallback JWT secret (D5).
pub const DEFAULT_JWT_SECRET: &str = "default-secret-change-in-production";

#[derive(Debug, Clone)]
pub(crate) struct Tenant {
    pub id: String,
    pub slug: String,
    pub name: String,
    pub plan: String,
    pub status: String,
    pub parent_id: Option<String>,
    pub depth: u64,
    pub public_prefix: String,
    pub secret_prefix: String,
    pub created_at: u64,
    pub updated_at: u64,
}

impl Tenant {
    /// The D1 row as Drizzle returns it: camelCase, prefixes only, seconds.
    pub fn row(&self) -> Value {
        json!({"id": self.id, "slug": self.slug, "name": self.name, "parentId": self.parent_id,
               "depth": self.depth, "plan": self.plan, "status": self.status,
               "publicKey": self.public_prefix, "secretKey": self.secret_prefix,
               "branding": null, "limits": null, "schemaVersion": "1.0.0",
               "createdAt": self.created_at, "updatedAt": self.updated_at})
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Key {
    pub id: String,
    pub tenant_id: String,
    pub prefix: String,
    /// None: the key has no secret (a public key; restricted ones too under D12).
    pub secret: Option<String>,
    pub name: String,
    pub kind: String,
    pub environment: String,
    pub permissions: Option<String>,
    pub created_at: u64,
    pub revoked_at: Option<u64>,
}

#[derive(Debug, Clone)]
pub(crate) struct User {
    pub id: String,
    pub tenant_id: String,
    pub email: String,
    pub name: Option<String>,
    pub username: Option<String>,
    pub password: String,
    pub verified: bool,
}

#[derive(Default)]
pub(crate) struct Store {
    pub tenants: BTreeMap<String, Tenant>,
    pub keys: Vec<Key>,
    pub users: Vec<User>,
    /// Live session ids by user id.
    pub sessions: BTreeMap<String, Vec<String>>,
}

pub(crate) struct Fake {
    pub defects: Defects,
    pub jwt_secret: String,
    pub store: Mutex<Store>,
}

/// A running fake.
pub struct Dialect {
    addr: std::net::SocketAddr,
    /// `Bearer` value of the platform admin key (`prefix:secret` of `tenant_000`).
    pub admin_key: String,
    task: tokio::task::JoinHandle<()>,
}

impl Dialect {
    /// Base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Dialect {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(crate) fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn alnum(n: usize) -> String {
    rand::thread_rng()
        .sample_iter(rand::distributions::Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

pub(crate) fn hex(n_bytes: usize) -> String {
    let mut r = rand::thread_rng();
    (0..n_bytes)
        .map(|_| format!("{:02x}", r.gen::<u8>()))
        .collect()
}

/// `<pk|sk|rk>_live_<alnum>`, 29 to 32 characters in all (upstream's suffix length varies).
pub(crate) fn new_prefix(kind: &str, env: &str) -> String {
    let t = match kind {
        "public" => "pk",
        "restricted" => "rk",
        _ => "sk",
    };
    let head = format!("{t}_{env}_");
    let len = rand::thread_rng().gen_range(29..=32);
    format!("{head}{}", alnum(len - head.len()))
}

impl Store {
    /// Creates a tenant and its two default keys; returns (tenant, public prefix, secret).
    pub fn add_tenant(
        &mut self,
        id: &str,
        slug: &str,
        name: &str,
        parent: Option<(String, u64)>,
    ) -> (Tenant, String) {
        let now = now_s();
        let public = new_prefix("public", "live");
        let secret_prefix = new_prefix("secret", "live");
        let secret = hex(32);
        let t = Tenant {
            id: id.to_owned(),
            slug: slug.to_owned(),
            name: name.to_owned(),
            plan: "free".into(),
            status: "active".into(),
            depth: parent.as_ref().map(|p| p.1 + 1).unwrap_or(0),
            parent_id: parent.map(|p| p.0),
            public_prefix: public.clone(),
            secret_prefix: secret_prefix.clone(),
            created_at: now,
            updated_at: now,
        };
        self.tenants.insert(id.to_owned(), t.clone());
        self.add_key(id, &public, None, "Public API Key", "public", None);
        self.add_key(
            id,
            &secret_prefix,
            Some(secret.clone()),
            "Secret API Key",
            "secret",
            None,
        );
        (t, secret)
    }

    pub fn add_key(
        &mut self,
        tenant: &str,
        prefix: &str,
        secret: Option<String>,
        name: &str,
        kind: &str,
        permissions: Option<String>,
    ) -> String {
        let id = format!("key:{}", hex(8));
        self.keys.push(Key {
            id: id.clone(),
            tenant_id: tenant.to_owned(),
            prefix: prefix.to_owned(),
            secret,
            name: name.to_owned(),
            kind: kind.to_owned(),
            environment: "live".into(),
            permissions,
            created_at: now_s(),
            revoked_at: None,
        });
        id
    }
}

/// Starts the fake on `127.0.0.1:0`.
pub async fn start(defects: Defects) -> Dialect {
    let jwt_secret = if defects.d5_default_jwt_secret {
        DEFAULT_JWT_SECRET.to_owned()
    } else {
        alnum(48)
    };
    let mut store = Store::default();
    let (_, admin_secret) =
        store.add_tenant("tenant_000", "relish-platform", "Relish Platform", None);
    let admin_prefix = store.tenants["tenant_000"].secret_prefix.clone();
    let fake = Arc::new(Fake {
        defects,
        jwt_secret,
        store: Mutex::new(store),
    });
    let app = Router::new().fallback(handle).with_state(fake);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Dialect {
        addr,
        admin_key: format!("{admin_prefix}:{admin_secret}"),
        task,
    }
}

/// One request as the handlers see it.
pub(crate) struct Call {
    pub method: Method,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Call {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Every value of `X-Tenant-ID` (the header may be sent more than once).
    pub fn tenant_headers(&self) -> Vec<String> {
        self.headers
            .get_all("x-tenant-id")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .collect()
    }

    /// The JSON body; `Err` carries the answer for a body that is not JSON.
    pub fn json(&self) -> Result<Value, Response> {
        if self.body.is_empty() {
            return Ok(json!({}));
        }
        serde_json::from_slice(&self.body).map_err(|_| {
            reply(
                400,
                json!({"success": false, "error": "Malformed JSON in request body"}),
            )
        })
    }
}

pub(crate) fn reply(status: u16, body: Value) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("static response parts")
}

pub(crate) fn not_found(path: &str) -> Response {
    reply(
        404,
        json!({"error": "Not Found", "message": "The requested endpoint does not exist", "path": path}),
    )
}

fn parse_query(q: Option<&str>) -> BTreeMap<String, String> {
    q.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// Percent-decodes a path segment or query value.
pub(crate) fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn handle(State(fake): State<Arc<Fake>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = to_bytes(body, 1 << 20)
        .await
        .map(|b| b.to_vec())
        .unwrap_or_default();
    let call = Call {
        method: parts.method,
        path: parts.uri.path().to_owned(),
        query: parse_query(parts.uri.query()),
        headers: parts.headers,
        body,
    };
    let origin = call.header("origin").map(str::to_owned);
    let mut resp = if call.method == Method::OPTIONS {
        reply(204, json!({}))
    } else {
        route(&fake, &call)
    };
    cors(&fake, origin.as_deref(), &mut resp);
    resp
}

/// D21: the upstream echoes any Origin with credentials. Without the defect the fake has
/// no allow-list at all, so it sends no CORS headers.
fn cors(fake: &Fake, origin: Option<&str>, resp: &mut Response) {
    let Some(origin) = origin else { return };
    if !fake.defects.d21_cors_reflects {
        return;
    }
    let h = resp.headers_mut();
    if let Ok(v) = origin.parse() {
        h.insert("access-control-allow-origin", v);
    }
    h.insert(
        "access-control-allow-credentials",
        "true".parse().expect("static"),
    );
    h.insert(
        "access-control-allow-methods",
        "GET,POST,PUT,PATCH,DELETE,OPTIONS".parse().expect("static"),
    );
    h.insert(
        "access-control-allow-headers",
        "Content-Type,Authorization".parse().expect("static"),
    );
}

fn route(fake: &Fake, call: &Call) -> Response {
    let path = call.path.as_str();
    let get = call.method == Method::GET;
    match path {
        "/" if get => reply(
            200,
            json!({"name": "CF-Auth API", "version": "0.5.0", "status": "operational"}),
        ),
        "/health" if get => reply(
            200,
            json!({"status": "ok", "timestamp": now_ms(), "version": "0.4.0"}),
        ),
        "/openapi.json" if get => reply(200, openapi()),
        _ if path.starts_with("/admin/") => admin::route(fake, call),
        _ if path.starts_with("/v1/auth/") => users::route(fake, call),
        _ if path.starts_with("/do/") => objects(fake, call),
        _ => not_found(path),
    }
}

/// `/do/*`: Durable Object state, open to anyone upstream (D2); behind the admin key without
/// the defect.
fn objects(fake: &Fake, call: &Call) -> Response {
    let segs: Vec<&str> = call.path.trim_start_matches('/').split('/').collect();
    let known = matches!(
        (call.method.as_str(), segs.as_slice()),
        ("GET", ["do", "tenant-state" | "graph-state", _])
            | ("POST", ["do", "tenant-state", _, "mutation" | "reset"])
            | ("POST", ["do", "graph-state", _, "validate" | "reload"])
    );
    if !known {
        return not_found(&call.path);
    }
    if !fake.defects.d2_open_objects {
        if let Err(r) = admin::authenticate(fake, call) {
            return r;
        }
    }
    let body = match (segs[1], segs.get(3).copied()) {
        ("tenant-state", None) => {
            json!({"tenantId": null, "connections": 0, "lastActivity": now_ms()})
        }
        ("tenant-state", Some("mutation")) => json!({"success": true, "broadcast": 0}),
        ("tenant-state", Some(_)) => json!({"success": true, "message": "State reset"}),
        ("graph-state", None) => json!({"initialized": false, "tenantId": decode(segs[2])}),
        ("graph-state", Some("validate")) => {
            json!({"valid": false, "error": "Graph not initialized"})
        }
        _ => json!({"success": false, "error": "No CSV found"}),
    };
    reply(200, body)
}

/// The routes the fake serves, as an OpenAPI 3.1 document (paths and methods only).
fn openapi() -> Value {
    let routes: &[(&str, &[&str])] = &[
        ("/health", &["get"]),
        ("/admin/dashboard", &["get"]),
        ("/admin/metrics", &["get"]),
        ("/admin/tenants", &["get", "post"]),
        ("/admin/tenants/{id}", &["get", "put", "delete"]),
        ("/admin/tenants/{id}/keys", &["get", "post"]),
        ("/do/tenant-state/{tenantId}", &["get"]),
        ("/do/tenant-state/{tenantId}/mutation", &["post"]),
        ("/do/tenant-state/{tenantId}/reset", &["post"]),
        ("/do/graph-state/{tenantId}", &["get"]),
        ("/do/graph-state/{tenantId}/validate", &["post"]),
        ("/do/graph-state/{tenantId}/reload", &["post"]),
        ("/v1/auth/register", &["post"]),
        ("/v1/auth/login", &["post"]),
        ("/v1/auth/logout", &["post"]),
        ("/v1/auth/me", &["get"]),
        ("/v1/auth/validate", &["get"]),
        ("/v1/auth/resend-verification", &["post"]),
        ("/v1/auth/verify-email", &["post"]),
        ("/v1/auth/forgot-password", &["post"]),
        ("/v1/auth/reset-password", &["post"]),
        ("/v1/auth/change-password", &["post"]),
    ];
    let mut paths = serde_json::Map::new();
    for (p, methods) in routes {
        let ops: serde_json::Map<String, Value> = methods
            .iter()
            .map(|m| {
                (
                    (*m).to_owned(),
                    json!({"responses": {"200": {"description": "OK"}}}),
                )
            })
            .collect();
        paths.insert((*p).to_owned(), Value::Object(ops));
    }
    json!({"openapi": "3.1.0", "info": {"title": "CF-Auth API", "version": "0.4.0"}, "paths": paths})
}
