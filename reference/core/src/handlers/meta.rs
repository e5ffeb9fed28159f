//! Routes without authentication: health, the OpenAPI document, the capabilities document.

use auth_contract::{Health, CONTRACT_VERSION};
use http::StatusCode;
use serde_json::json;

use crate::http::{json, Response};
use crate::ports::Clock;

/// The OpenAPI 3.1 document of the contract this core serves.
pub const OPENAPI_JSON: &str = include_str!("../../openapi.json");

pub fn health(clock: &dyn Clock) -> Response {
    json(
        StatusCode::OK,
        &Health {
            status: "ok".into(),
            timestamp: clock.now_ms(),
            version: crate::VERSION.into(),
        },
    )
}

pub fn openapi() -> Response {
    let mut resp = http::Response::new(OPENAPI_JSON.as_bytes().to_vec());
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

/// `/.well-known/authconf`: what this deployment offers, so a harness can skip what it lacks
/// instead of calling it a failure.
pub fn capabilities(base_domain: Option<&str>, test_hooks: bool) -> Response {
    let hooks = test_hooks;
    json(
        StatusCode::OK,
        &json!({
            "service": "auth-service",
            "contractVersion": CONTRACT_VERSION,
            "version": crate::VERSION,
            "routing": {
                "baseDomain": base_domain,
                "sources": ["header", "subdomain", "key", "query"],
            },
            "revocation": {"consistency": "immediate", "maxDelaySeconds": 0},
            "rateLimit": {
                "algorithm": crate::ratelimit::ALGORITHM,
                "exact": true,
                "toleranceRequests": 0,
                "scope": "tenant",
                "windowAlignment": "epoch",
                "override": true,
                "planDefaults": {"free": 100, "pro": 1000, "enterprise": 10000},
                "defaultWindowSeconds": 60,
                "note": "Exactly `requests` successes per window under any concurrency; up to twice the limit across a window boundary.",
            },
            "features": {
                "apiKeys": true,
                "rateLimit": true,
                "auditLog": true,
                "events": true,
                "graph": true,
                "userAuth": true,
                "adminDashboard": true,
                "platformAdmins": true,
                "usageMetrics": true,
                "mailCapture": false,
            },
            "testControls": {
                "enabled": hooks,
                "basePath": if hooks { Some("/_test") } else { None },
                "clock": hooks,
                "evict": hooks,
                "alarms": hooks,
            },
        }),
    )
}
