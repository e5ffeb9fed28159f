//! The faults of issue 13 (suite power): each breaks one rule that the suite once passed
//! without noticing. `before` may answer a request itself; `after` rewrites an answer.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use serde_json::Value;

use super::{lock, Fault, Proxy};

/// What the faults of this module remember between requests.
#[derive(Default)]
pub struct State {
    /// Authorization -> the records of its last audit-log page.
    audit_pages: std::sync::Mutex<HashMap<String, Vec<Value>>>,
    /// Access tokens that logged out.
    logged_out: std::sync::Mutex<HashSet<String>>,
    /// Access token -> its last 200 answer from `GET /v1/auth/validate`.
    validated: std::sync::Mutex<HashMap<String, Bytes>>,
    /// Addresses that have an account (from sign-up answers).
    known_emails: std::sync::Mutex<HashSet<String>>,
    /// Authorization -> a cached `GET /v1/tenant` answer and when it was stored.
    tenant_cache: std::sync::Mutex<HashMap<String, (Instant, Bytes)>>,
}

/// How long the response cache of `CachedRevokedKeys` keeps an answer.
const CACHE_TTL: Duration = Duration::from_secs(60);

fn json_ok(body: Bytes) -> axum::response::Response {
    let mut r = axum::response::Response::new(axum::body::Body::from(body));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        "application/json".parse().expect("header"),
    );
    r
}

/// Answers a request without the upstream, when the fault says so.
pub fn before(
    p: &Proxy,
    method: &http::Method,
    path: &str,
    auth: &str,
) -> Option<axum::response::Response> {
    match p.fault {
        Fault::ValidateAfterLogout if path == "/v1/auth/logout" && !auth.is_empty() => {
            // Remember the token; the logout itself goes through.
            lock(&p.more.logged_out).insert(auth.to_owned());
            None
        }
        Fault::ValidateAfterLogout
            if path == "/v1/auth/validate" && lock(&p.more.logged_out).contains(auth) =>
        {
            lock(&p.more.validated).get(auth).cloned().map(json_ok)
        }
        Fault::CachedRevokedKeys if *method == http::Method::GET && path == "/v1/tenant" => {
            let cache = lock(&p.more.tenant_cache);
            match cache.get(auth) {
                Some((at, b)) if at.elapsed() < CACHE_TTL => Some(json_ok(b.clone())),
                _ => None,
            }
        }
        _ => None,
    }
}

/// The address of a login request, lowercased.
fn login_email(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    Some(v.get("email")?.as_str()?.trim().to_ascii_lowercase())
}

/// Rewrites an upstream answer, when the fault says so.
#[allow(clippy::too_many_arguments)]
pub async fn after(
    p: &Proxy,
    method: &http::Method,
    path: &str,
    auth: &str,
    req_body: &[u8],
    status: &mut http::StatusCode,
    headers: &mut http::HeaderMap,
    body: &mut Bytes,
) {
    let ok = status.is_success();
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    match (p.fault, parsed) {
        (Fault::RetryAfterMs, _) if *status == http::StatusCode::TOO_MANY_REQUESTS => {
            let secs: u64 = headers
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(1);
            headers.insert(
                http::header::RETRY_AFTER,
                (secs * 1000).to_string().parse().expect("header"),
            );
        }
        (
            Fault::RevocationNotAudited | Fault::AuditOutOfOrder | Fault::ForeignAuditRecords,
            Some(mut v),
        ) if ok && path == "/v1/audit-log" => {
            audit(p, auth, &mut v);
            *body = Bytes::from(serde_json::to_vec(&v).expect("json"));
        }
        (Fault::ValidateAfterLogout, _) if ok && path == "/v1/auth/validate" => {
            lock(&p.more.validated).insert(auth.to_owned(), body.clone());
        }
        (Fault::SlowKnownLogins, Some(v)) if path == "/v1/auth/register" && ok => {
            if let Some(e) = v.pointer("/user/email").and_then(Value::as_str) {
                lock(&p.more.known_emails).insert(e.to_ascii_lowercase());
            }
        }
        (Fault::SlowKnownLogins, _) if path == "/v1/auth/login" && !ok => {
            let known =
                login_email(req_body).is_some_and(|e| lock(&p.more.known_emails).contains(&e));
            if known {
                // Skipping the hash for unknown addresses looks the same from outside.
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
        (Fault::SqlInDetail, Some(mut v))
            if status.is_client_error() && v.get("detail").is_some() =>
        {
            v["detail"] = Value::String(
                "SQLITE_CONSTRAINT: UNIQUE constraint failed: api_keys.key_hash \
                 (reference/core/src/store.rs:142) in SELECT id FROM tenants WHERE slug = ?"
                    .into(),
            );
            *body = Bytes::from(serde_json::to_vec(&v).expect("json"));
        }
        (Fault::InvertedGraphCheck, Some(mut v)) if ok && path == "/v1/graph/check" => {
            let viewer = serde_json::from_slice::<Value>(req_body)
                .ok()
                .is_some_and(|b| b["relation"] == "viewer");
            if let (true, Some(a)) = (viewer, v.get("allowed").and_then(Value::as_bool)) {
                v["allowed"] = Value::Bool(!a);
                *body = Bytes::from(serde_json::to_vec(&v).expect("json"));
            }
        }
        (Fault::InvalidCsvAccepted, _)
            if path == "/v1/graph/csv" && *status == http::StatusCode::BAD_REQUEST =>
        {
            *status = http::StatusCode::OK;
            headers.insert(
                http::header::CONTENT_TYPE,
                "application/json".parse().expect("header"),
            );
            *body = Bytes::from_static(br#"{"stored":true,"edgeCount":2}"#);
        }
        (Fault::GraphVersionStuck, Some(mut v)) if ok && path.starts_with("/v1/graph/") => {
            let mut changed = false;
            for f in ["version", "currentVersion"] {
                if v.get(f).is_some_and(Value::is_i64) {
                    v[f] = Value::from(1);
                    changed = true;
                }
            }
            if changed {
                *body = Bytes::from(serde_json::to_vec(&v).expect("json"));
            }
        }
        (Fault::CachedRevokedKeys, _)
            if ok && *method == http::Method::GET && path == "/v1/tenant" =>
        {
            lock(&p.more.tenant_cache).insert(auth.to_owned(), (Instant::now(), body.clone()));
        }
        _ => {}
    }
}

/// The audit faults: drop revocations, swap the first two records, or mix in a record of
/// another caller's last page.
fn audit(p: &Proxy, auth: &str, v: &mut Value) {
    let Some(records) = v.get_mut("records").and_then(Value::as_array_mut) else {
        return;
    };
    match p.fault {
        Fault::RevocationNotAudited => records.retain(|r| r["action"] != "api_key.revoked"),
        Fault::AuditOutOfOrder if records.len() >= 2 => records.swap(0, 1),
        Fault::ForeignAuditRecords => {
            let mine = records.clone();
            let foreign = lock(&p.more.audit_pages)
                .iter()
                .find(|(a, page)| a.as_str() != auth && !page.is_empty())
                .and_then(|(_, page)| page.last().cloned());
            if let Some(f) = foreign {
                records.push(f);
            }
            lock(&p.more.audit_pages).insert(auth.to_owned(), mine);
        }
        _ => {}
    }
}

/// `FirstEventOnly`: whether this event frame, the `n`th of its socket (from 0), is passed on.
pub fn pass_event(fault: Fault, n: usize) -> bool {
    fault != Fault::FirstEventOnly || n == 0
}
