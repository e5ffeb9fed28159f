//! The protocol between the directory (`AuthPlatform`) and the tenants' objects (`TenantState`).
//!
//! Clients never reach it: the Worker entry refuses every `/_internal/` path, the tenant
//! objects are reached only through their namespace binding, and the directory drops every
//! `x-authconf-internal-*` header a client sent before it forwards a request.
//!
//! Every call from the directory to a tenant's object carries a [`Sync`] in a header: the
//! tenant's row, the JWT keyring and the test clock as the directory has them now. The tenant's
//! object applies it and keeps it: a tenant request the stateless Worker sends straight to the
//! object ([`Forward::direct`]) carries none, and runs with what the object holds. That is
//! current because the directory delivers every change before its answer: a tenant's row
//! with the notice of the admin change, a keyring rotation and a test-clock step to every
//! tenant's object ([`SYNC`], [`CLOCK`]).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use worker::{Env, Request, RequestInit, Response, Stub};

use crate::rows::Image;

/// Every internal header starts with this; the directory strips them from client requests.
pub const HEADER_PREFIX: &str = "x-authconf-internal-";
/// Directory → tenant: the [`Sync`], base64url JSON.
pub const SYNC_HEADER: &str = "x-authconf-internal-sync";
/// Directory → tenant, on a forwarded request: the [`Forward`], base64url JSON.
pub const FORWARD_HEADER: &str = "x-authconf-internal-forward";
/// Tenant → directory: the tenant object's next alarm in test time (ms), or `none`.
pub const ALARM_HEADER: &str = "x-authconf-internal-alarm";
/// Tenant → directory: the call changed the tenant's keys; fetch them with [`KEYS`].
pub const KEYS_CHANGED_HEADER: &str = "x-authconf-internal-keys-changed";
/// Tenant → Worker, on a direct call: the key is not one of this tenant's (or the object does
/// not know its tenant yet); nothing ran, the Worker asks the directory instead.
pub const NOT_MINE_HEADER: &str = "x-authconf-internal-not-mine";
/// Tenant → Worker (through the directory after a "not mine"): the object let a graph route
/// through; the [`GraphHop`], base64url JSON. The Worker runs the hop (the core's driver).
pub const GRAPH_HEADER: &str = "x-authconf-internal-graph";

/// Tenant object: run a [`NoticeCall`].
pub const NOTICE: &str = "/_internal/notice";
/// Tenant object: answer the keys changed since the last time ([`crate::rows::take_changed_keys`]).
pub const KEYS: &str = "/_internal/keys";
/// Tenant object: answer every key of the tenant (after a pull whose answer was lost).
pub const ALL_KEYS: &str = "/_internal/keys?all=1";
/// Tenant object: answer the onboarding rows the directory shows in `GET /admin/tenants/{id}`.
pub const ONBOARDING: &str = "/_internal/onboarding";
/// Tenant object: move pending usage counts out and answer them.
pub const FLUSH: &str = "/_internal/flush";
/// Tenant object: fire the alarm now if one is scheduled (test control).
pub const FIRE: &str = "/_internal/fire";
/// Tenant object: fire the alarm if it is due under the clock in the [`Sync`].
pub const CLOCK: &str = "/_internal/clock";
/// Worker → directory, on a request it hands over: the request id the driver gave it (the
/// directory names it in its answer and audit records). Only the Worker sets it: it drops
/// every internal header a client sent.
pub const REQUEST_ID_HEADER: &str = "x-authconf-internal-request-id";
/// Directory: the tenant owning a key hash (`{"keyHash"}` → `{"tenantId"}`), from the mirror;
/// also writes the index entry. The stateless Worker asks on an index miss.
pub const KEY_OWNER: &str = "/_internal/key-owner";
/// Tenant object: apply the [`Sync`] and nothing else (a keyring rotation reaching every
/// tenant's object before the admin's answer).
pub const SYNC: &str = "/_internal/sync";
/// Tenant object: drop the in-memory `TenantState` (test control).
pub const EVICT: &str = "/_internal/evict";
/// Tenant object: append a graph change's audit record (a [`auth_core::Notice`], JSON). The
/// stateless Worker calls it after the graph object's 2xx, so it carries no [`Sync`].
pub const AUDIT: &str = "/_internal/audit";
/// Directory: merge a tenant's keys sent by its object ([`Shipment`]).
pub const MERGE_KEYS: &str = "/_internal/merge-keys";
/// Directory: add usage counts sent by a tenant's object ([`Shipment`]).
pub const MERGE_USAGE: &str = "/_internal/merge-usage";

/// What the directory knows that a tenant's object needs on every call.
#[derive(Serialize, Deserialize, Clone, Default)]
pub struct Sync {
    pub tenant_id: String,
    /// The tenant's row (`SELECT * FROM tenants`), absent for an unknown id.
    pub tenant: Option<Vec<serde_json::Value>>,
    /// Every `jwt_keys` row.
    pub keyring: Image,
    /// The test clock's offset from the platform's clock (ms).
    pub offset_ms: i64,
}

/// What the core's front decided about a forwarded request.
#[derive(Serialize, Deserialize)]
pub struct Forward {
    pub key_hash: String,
    pub request_id: String,
    /// The route the core parsed in front of the object (the Worker's `begin`, or the
    /// directory's front): the object runs it and never parses the path again.
    pub route: auth_core::route::TenantRoute,
    /// The client's `Host` (a routing source: the tenant's subdomain), which a request built
    /// for the object's stub cannot carry as a header of its own.
    pub host: Option<String>,
    /// Sent by the stateless Worker, which found the key's tenant in the index (KV), not by
    /// the directory: the object first checks that the key is one of its tenant's, and answers
    /// [`NOT_MINE_HEADER`] otherwise.
    #[serde(default)]
    pub direct: bool,
}

/// A graph route the tenant's object admitted and counted (`TenantOutcome::Graph`): what the
/// driver needs to run the hop. The tenant id and clock are the object's: after a "not mine"
/// the object that answered is not the one the Worker's index named.
#[derive(Serialize, Deserialize)]
pub struct GraphHop {
    pub tenant_id: String,
    pub op: auth_core::route::GraphOp,
    pub actor_key_id: String,
    /// The rate-limit headers the answer carries.
    pub headers: Vec<(String, String)>,
    /// The object's clock (test time), for the graph object.
    pub now_ms: i64,
}

/// A change the admin API made, with the rows it wrote for the tenant.
#[derive(Serialize, Deserialize)]
pub struct NoticeCall {
    pub notice: auth_core::Notice,
    pub rows: Vec<(String, Image)>,
}

/// Rows a tenant's object sends to the directory.
#[derive(Serialize, Deserialize)]
pub struct Shipment {
    pub tenant_id: String,
    pub rows: Image,
}

/// Removes every internal header (from a client's request, or from an answer to a client).
pub fn strip(headers: &mut http::HeaderMap) {
    let names: Vec<_> = headers
        .keys()
        .filter(|n| n.as_str().starts_with(HEADER_PREFIX))
        .cloned()
        .collect();
    for name in names {
        headers.remove(name);
    }
}

pub fn encode<T: Serialize>(value: &T) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap_or_default())
}

pub fn decode<T: for<'de> Deserialize<'de>>(text: &str) -> Option<T> {
    let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
    serde_json::from_slice(&bytes).ok()
}

pub fn tenant_stub(env: &Env, tenant_id: &str) -> worker::Result<Stub> {
    env.durable_object("TENANT_STATE")?
        .id_from_name(tenant_id)?
        .get_stub()
}

pub fn directory_stub(env: &Env) -> worker::Result<Stub> {
    env.durable_object("AUTH_PLATFORM")?
        .id_from_name(crate::PLATFORM_OBJECT)?
        .get_stub()
}

/// POSTs `body` (JSON) to `path` of `stub`, with a [`Sync`] when there is one.
pub async fn post(
    stub: &Stub,
    path: &str,
    sync: Option<&Sync>,
    body: Option<String>,
) -> worker::Result<Response> {
    let headers = worker::Headers::new();
    if let Some(sync) = sync {
        headers.set(SYNC_HEADER, &encode(sync))?;
    }
    headers.set("content-type", "application/json")?;
    let mut init = RequestInit::new();
    init.with_method(worker::Method::Post).with_headers(headers);
    if let Some(body) = body {
        init.with_body(Some(wasm_bindgen::JsValue::from_str(&body)));
    }
    let request = Request::new_with_init(&format!("https://internal{path}"), &init)?;
    stub.fetch_with_request(request).await
}
