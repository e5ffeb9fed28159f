//! The protocol between the Worker, the directory (`AuthPlatform`), the tenants' objects
//! (`TenantState`) and the graph objects (`GraphStateCSV`): one enum of calls,
//! [`InternalCall`], over one route, `POST /_internal` ([`PATH`]), decoded in one place
//! ([`receive`]) and answered with one enum, [`InternalAnswer`].
//!
//! Why one enum: each call and its fields are a type the compiler checks on both sides, a
//! malformed call is one decode error (a 400 problem, never a panic), and an object cannot
//! grow a path nobody else knows of. A call is the JSON body of the `POST`, except the two that
//! carry a client's request ([`InternalCall::Forward`], [`InternalCall::Graph`]): the request
//! keeps the client's method, headers and body, and the call travels in [`CALL_HEADER`]; the
//! client's path and query travel inside the call.
//!
//! Clients never reach it: the Worker entry refuses `/_internal` and everything under it, the
//! objects are reached only through their namespace bindings, and every request built for an
//! object from a client's drops the client's `x-authconf-internal-*` headers.
//!
//! Every call from the directory to a tenant's object carries a [`Sync`]: the tenant's row, the
//! JWT keyring and the test clock as the directory has them now. The tenant's object applies it
//! and keeps it: a tenant request the stateless Worker sends straight to the object (a
//! [`InternalCall::Forward`] without a sync) runs with what the object holds. That is current
//! because the directory delivers every change before its answer: a tenant's row with the
//! notice of the admin change, a keyring rotation and a test-clock step to every tenant's
//! object ([`TenantOp::Apply`], [`TenantOp::Clock`]).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use worker::{Env, Request, RequestInit, Response, Stub};

use auth_core::ApiError;

use crate::tables::{
    KeyRow, KeyringRow, MailRow, OnboardingRow, TableRows, TenantRow, TenantUserRow, UsageRow,
};

/// The one internal route.
pub const PATH: &str = "/_internal";
/// Every internal header starts with this; requests built from a client's drop them.
pub const HEADER_PREFIX: &str = "x-authconf-internal-";
/// A call that carries a client's request: the [`InternalCall`], base64url JSON.
pub const CALL_HEADER: &str = "x-authconf-internal-call";
/// On the answer to a forwarded request: the body is an [`InternalAnswer`] (a graph hop, "not
/// mine"), not the client's answer.
pub const ANSWER_HEADER: &str = "x-authconf-internal-answer";
/// Tenant → directory, on any answer: the call changed the tenant's keys; pull them
/// ([`TenantOp::Keys`]).
pub const KEYS_CHANGED_HEADER: &str = "x-authconf-internal-keys-changed";
/// Worker → directory, on a client request it hands over: the request id the driver gave it
/// (the directory names it in its answer and audit records). Only the Worker sets it: it drops
/// every internal header a client sent.
pub const REQUEST_ID_HEADER: &str = "x-authconf-internal-request-id";

/// Every call between the Worker and the objects.
#[derive(Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum InternalCall {
    /// Directory → tenant object: apply the [`Sync`], then run `op`.
    Tenant { sync: Sync, op: TenantOp },
    /// Directory or Worker → tenant object, in [`CALL_HEADER`]: a client's tenant request.
    /// Without a sync it comes straight from the Worker, which found the key's tenant in the
    /// index (KV): the object first checks that the key is one of its tenant's, and answers
    /// [`InternalAnswer::NotMine`] otherwise.
    Forward {
        sync: Option<Sync>,
        forward: Forward,
    },
    /// Worker → tenant object: append a graph change's audit record. Sent after the graph
    /// object's 2xx, so it carries no [`Sync`].
    Audit { notice: auth_core::Notice },
    /// Tenant object → directory: merge the tenant's keys into the mirror.
    MergeKeys { shipment: Shipment<KeyRow> },
    /// Tenant object → directory: add usage counts to `usage_metrics`.
    MergeUsage { shipment: Shipment<UsageRow> },
    /// Worker → directory, after an index miss: the tenant owning a key hash, from the mirror
    /// (the directory also writes the index entry).
    KeyOwner { key_hash: String },
    /// Worker → graph object, in [`CALL_HEADER`]: a graph route, as `actor`, under the tenant
    /// object's clock; with `reload` the body is the tenant's stored CSV.
    Graph { graph: GraphRequest },
    /// Directory → graph object: drop the in-memory graph (test control).
    EvictGraph,
}

/// What the directory asks of a tenant's object, after the [`Sync`].
#[derive(Serialize, Deserialize, Clone)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum TenantOp {
    /// Nothing else: a keyring rotation reaching every object before the admin's answer.
    Apply,
    /// A change the admin API made, with the rows it wrote for the tenant.
    Notice {
        notice: auth_core::Notice,
        rows: Vec<TableRows>,
    },
    /// The keys changed since the last pull ([`crate::rows::take_changed_keys`]); every key
    /// of the tenant with `all` (after a pull whose answer was lost).
    Keys { all: bool },
    /// The onboarding rows `GET /admin/tenants/{id}` shows.
    Onboarding,
    /// Move pending usage counts out and answer them.
    Flush,
    /// Fire the alarm now if one is scheduled (test control).
    Fire,
    /// Fire the alarm if it is due under the clock in the sync.
    Clock,
    /// Drop the in-memory `TenantState` (test control).
    Evict,
}

/// Every answer to an [`InternalCall`].
#[derive(Serialize, Deserialize, Debug, PartialEq)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub enum InternalAnswer {
    /// The call was carried out (apply, notice, audit, merges).
    Done,
    /// [`TenantOp::Keys`]: key images for the mirror.
    Keys { rows: Vec<KeyRow> },
    /// [`TenantOp::Onboarding`].
    Onboarding {
        tenant_users: Vec<TenantUserRow>,
        mail_outbox: Vec<MailRow>,
        tenant_onboarding: Vec<OnboardingRow>,
    },
    /// [`TenantOp::Flush`]: usage rows.
    Usage { rows: Vec<UsageRow> },
    /// [`TenantOp::Fire`], [`TenantOp::Clock`]: how many alarms ran.
    Fired { fired: u64 },
    /// [`TenantOp::Evict`], [`InternalCall::EvictGraph`]: how many objects dropped their state.
    Evicted { evicted: u64 },
    /// [`InternalCall::KeyOwner`].
    Owner { tenant_id: Option<String> },
    /// A direct [`InternalCall::Forward`] whose key is not this tenant's (or the object does
    /// not know its tenant yet): nothing ran; the Worker asks the directory instead.
    NotMine,
    /// A forwarded graph route the object admitted and counted: the Worker runs the hop.
    GraphHop { hop: GraphHop },
}

/// What the directory knows that a tenant's object needs on every call.
#[derive(Serialize, Deserialize, Clone, Default)]
pub struct Sync {
    pub tenant_id: String,
    /// The tenant's row, absent for an unknown id.
    pub tenant: Option<TenantRow>,
    /// Every `jwt_keys` row.
    pub keyring: Vec<KeyringRow>,
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
    /// The client's path and query (the request itself goes to [`PATH`]).
    pub target: String,
    /// The client's `Host` (a routing source: the tenant's subdomain), which a request built
    /// for the object's stub cannot carry as a header of its own.
    pub host: Option<String>,
}

/// A graph route for the tenant's graph object.
#[derive(Serialize, Deserialize)]
pub struct GraphRequest {
    pub tenant_id: String,
    pub actor: String,
    /// The tenant object's clock (test time).
    pub now_ms: i64,
    /// The client's path and query.
    pub target: String,
    /// The body is the tenant's stored CSV, to reload from (only the Worker sends one).
    pub reload: bool,
}

/// A graph route the tenant's object admitted and counted (`TenantOutcome::Graph`): what the
/// driver needs to run the hop. The tenant id and clock are the object's: after a "not mine"
/// the object that answered is not the one the Worker's index named.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub struct GraphHop {
    pub tenant_id: String,
    pub op: auth_core::route::GraphOp,
    pub actor_key_id: String,
    /// The rate-limit headers the answer carries.
    pub headers: Vec<(String, String)>,
    /// The object's clock (test time), for the graph object.
    pub now_ms: i64,
}

/// Rows a tenant's object sends to the directory.
#[derive(Serialize, Deserialize, Clone)]
pub struct Shipment<T> {
    pub tenant_id: String,
    pub rows: Vec<T>,
}

/// Whether a client's path is the internal route or under it: the Worker entry refuses it (404)
/// before anything else runs.
pub fn reserved(path: &str) -> bool {
    path == PATH || path.starts_with("/_internal/")
}

impl InternalCall {
    /// Whether the call travels in [`CALL_HEADER`] with a client's request as the body.
    fn carries_request(&self) -> bool {
        matches!(self, Self::Forward { .. } | Self::Graph { .. })
    }
}

/// Why a request is not an internal call: answered as a 400 problem document.
fn malformed(why: impl std::fmt::Display) -> ApiError {
    ApiError::InvalidJson(format!("Not an internal call: {why}."))
}

/// The one decode point: the call a request at [`PATH`] makes. A call carrying a client's
/// request comes from [`CALL_HEADER`] (the body stays unread, for the object); every other is
/// the JSON body of a `POST`.
pub async fn receive(req: &mut Request) -> Result<InternalCall, ApiError> {
    if req.path() != PATH {
        return Err(ApiError::NotFound);
    }
    let header = req.headers().get(CALL_HEADER).ok().flatten();
    let body = match header {
        Some(_) => None,
        None if req.method() == worker::Method::Post => Some(
            req.bytes()
                .await
                .map_err(|_| malformed("unreadable body"))?,
        ),
        None => return Err(malformed("not a POST")),
    };
    decode_call(header.as_deref(), body.as_deref())
}

/// [`receive`] without the request: `header` is [`CALL_HEADER`]'s value, `body` the body.
pub fn decode_call(header: Option<&str>, body: Option<&[u8]>) -> Result<InternalCall, ApiError> {
    let call = match (header, body) {
        (Some(text), _) => {
            let bytes = URL_SAFE_NO_PAD
                .decode(text)
                .map_err(|_| malformed("the call header is not base64url"))?;
            let call: InternalCall = serde_json::from_slice(&bytes).map_err(malformed)?;
            if !call.carries_request() {
                return Err(malformed("this call is sent as the body"));
            }
            call
        }
        (None, Some(bytes)) => {
            let call: InternalCall = serde_json::from_slice(bytes).map_err(malformed)?;
            if call.carries_request() {
                return Err(malformed("this call is sent in its header"));
            }
            call
        }
        (None, None) => return Err(malformed("no call")),
    };
    Ok(call)
}

/// The answer to a call, as a 200 JSON response (marked with [`ANSWER_HEADER`], so that on a
/// forwarded request it is told apart from the client's answer).
pub fn answer(answer: &InternalAnswer) -> worker::Result<Response> {
    let body = serde_json::to_vec(answer).map_err(|e| worker::Error::RustError(e.to_string()))?;
    let headers = worker::Headers::new();
    headers.set("content-type", "application/json")?;
    headers.set(ANSWER_HEADER, "1")?;
    Ok(Response::from_bytes(body)?.with_headers(headers))
}

/// Reads the [`InternalAnswer`] of a response marked with [`ANSWER_HEADER`]; `Ok(None)` for
/// an unmarked one (a client's answer), which is left unread.
pub async fn read_answer(resp: &mut Response) -> Result<Option<InternalAnswer>, String> {
    if !resp.headers().has(ANSWER_HEADER).unwrap_or(false) {
        return Ok(None);
    }
    let bytes = resp.bytes().await.map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| format!("an unreadable internal answer: {e}"))
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

/// Whether a client's header may travel into a request built for an object: never one that
/// claims to be internal.
pub fn not_internal(name: &http::HeaderName) -> bool {
    !name.as_str().starts_with(HEADER_PREFIX)
}

fn encode(call: &InternalCall) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(call).unwrap_or_default())
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

/// Sends a call that does not carry a request (`POST /_internal`, the call as the body).
pub async fn post(stub: &Stub, call: &InternalCall) -> worker::Result<Response> {
    let body = serde_json::to_string(call).map_err(|e| worker::Error::RustError(e.to_string()))?;
    let headers = worker::Headers::new();
    headers.set("content-type", "application/json")?;
    let mut init = RequestInit::new();
    init.with_method(worker::Method::Post)
        .with_headers(headers)
        .with_body(Some(wasm_bindgen::JsValue::from_str(&body)));
    let request = Request::new_with_init(&format!("https://internal{PATH}"), &init)?;
    stub.fetch_with_request(request).await
}

/// Sends a call and reads its answer; `keys_changed` tells whether the object said the
/// tenant's keys changed ([`KEYS_CHANGED_HEADER`]).
pub async fn ask(stub: &Stub, call: &InternalCall) -> Result<Asked, String> {
    let mut resp = post(stub, call).await.map_err(|e| e.to_string())?;
    let keys_changed = resp.headers().has(KEYS_CHANGED_HEADER).unwrap_or(false);
    if resp.status_code() != 200 {
        return Err(format!("status {}", resp.status_code()));
    }
    match read_answer(&mut resp).await? {
        Some(answer) => Ok(Asked {
            answer,
            keys_changed,
        }),
        None => Err("an answer without its mark".into()),
    }
}

/// An [`InternalAnswer`] with the flags of its response.
pub struct Asked {
    pub answer: InternalAnswer,
    pub keys_changed: bool,
}

/// A request for an object's stub that carries a client's request and `call` (in
/// [`CALL_HEADER`]): the client's method, its headers minus internal ones and `Host` (which
/// the call carries when it matters), its body.
pub fn carrying(req: &auth_core::Request, call: &InternalCall) -> worker::Result<Request> {
    let encoded = encode(call);
    crate::convert::to_stub_request(
        req,
        &format!("https://object.internal{PATH}"),
        |name| not_internal(name) && name != http::header::HOST,
        &[(CALL_HEADER, &encoded)],
    )
}

/// The client's path and query of a core request.
pub fn target_of(req: &auth_core::Request) -> String {
    req.uri()
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned())
}

/// The client's `Host` header of a core request.
pub fn host_of(req: &auth_core::Request) -> Option<String> {
    req.headers()
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_of(call: &InternalCall) -> String {
        encode(call)
    }

    #[test]
    fn every_call_survives_the_round_trip() {
        let body_calls = vec![
            InternalCall::Tenant {
                sync: Sync {
                    tenant_id: "t1".into(),
                    offset_ms: 7,
                    ..Sync::default()
                },
                op: TenantOp::Keys { all: true },
            },
            InternalCall::KeyOwner {
                key_hash: "h".into(),
            },
            InternalCall::MergeUsage {
                shipment: Shipment {
                    tenant_id: "t1".into(),
                    rows: vec![UsageRow {
                        count: serde_json::json!(1),
                        ..UsageRow::default()
                    }],
                },
            },
            InternalCall::EvictGraph,
        ];
        for call in &body_calls {
            let bytes = serde_json::to_vec(call).expect("encodes");
            let back = decode_call(None, Some(&bytes)).expect("decodes");
            assert_eq!(
                serde_json::to_value(&back).expect("encodes"),
                serde_json::to_value(call).expect("encodes")
            );
            assert!(
                decode_call(Some(&header_of(call)), None).is_err(),
                "a body call is refused in the header"
            );
        }
        let graph = InternalCall::Graph {
            graph: GraphRequest {
                tenant_id: "t1".into(),
                actor: "key_1".into(),
                now_ms: 5,
                target: "/v1/graph/check?x=1".into(),
                reload: false,
            },
        };
        let back = decode_call(Some(&header_of(&graph)), None).expect("decodes");
        assert!(
            matches!(back, InternalCall::Graph { graph } if graph.target == "/v1/graph/check?x=1")
        );
        let bytes = serde_json::to_vec(&graph).expect("encodes");
        assert!(
            decode_call(None, Some(&bytes)).is_err(),
            "a call carrying a request is refused as a body"
        );
    }

    #[test]
    fn the_internal_route_is_reserved() {
        for path in [
            "/_internal",
            "/_internal/",
            "/_internal/notice",
            "/_internal/keys",
        ] {
            assert!(reserved(path), "{path}");
        }
        for path in [
            "/",
            "/v1/api-keys",
            "/_internals",
            "/admin/_internal",
            "/_test/evict",
        ] {
            assert!(!reserved(path), "{path}");
        }
    }

    #[test]
    fn every_answer_survives_the_round_trip() {
        let answers = vec![
            InternalAnswer::Done,
            InternalAnswer::Fired { fired: 2 },
            InternalAnswer::Evicted { evicted: 1 },
            InternalAnswer::Owner {
                tenant_id: Some("t1".into()),
            },
            InternalAnswer::NotMine,
            InternalAnswer::Usage { rows: vec![] },
        ];
        for a in answers {
            let text = serde_json::to_string(&a).expect("encodes");
            assert_eq!(
                serde_json::from_str::<InternalAnswer>(&text).expect("decodes"),
                a
            );
        }
    }

    #[test]
    fn a_malformed_call_is_a_clear_error_not_a_panic() {
        for body in [
            &b""[..],
            b"{}",
            b"[]",
            b"{\"call\":\"nope\"}",
            b"{\"call\":\"tenant\",\"op\":{\"op\":\"flush\"}}",
            b"\xff\xfe",
        ] {
            match decode_call(None, Some(body)) {
                Err(ApiError::InvalidJson(why)) => assert!(why.starts_with("Not an internal call")),
                Err(other) => panic!("{body:?}: {other:?}"),
                Ok(_) => panic!("{body:?} decoded"),
            }
        }
        for header in ["!!", "e30", ""] {
            assert!(decode_call(Some(header), None).is_err(), "{header}");
        }
        assert!(decode_call(None, None).is_err());
    }
}
