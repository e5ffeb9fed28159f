//! Routes without authentication: health, the OpenAPI document, the capabilities document.

use auth_contract::{
    Capabilities, Features, Health, PlanDefaults, RateLimitCapability, Revocation, Routing,
    TestControls, CONTRACT_VERSION,
};
use http::StatusCode;

use crate::http::{json, json_sorted, Response};
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
    json_sorted(
        StatusCode::OK,
        &Capabilities {
            service: "auth-service".into(),
            contract_version: CONTRACT_VERSION.into(),
            version: crate::VERSION.into(),
            routing: Routing {
                base_domain: base_domain.map(str::to_owned),
                sources: ["header", "subdomain", "key", "query"]
                    .map(String::from)
                    .to_vec(),
            },
            revocation: Revocation {
                consistency: "immediate".into(),
                max_delay_seconds: 0,
            },
            rate_limit: RateLimitCapability {
                algorithm: crate::ratelimit::ALGORITHM.into(),
                exact: true,
                tolerance_requests: 0,
                scope: "tenant".into(),
                window_alignment: "epoch".into(),
                overridable: true,
                plan_defaults: PlanDefaults {
                    free: 100,
                    pro: 1000,
                    enterprise: 10000,
                },
                default_window_seconds: 60,
                note: "Exactly `requests` successes per window under any concurrency; up to twice \
                       the limit across a window boundary."
                    .into(),
            },
            features: Features {
                api_keys: true,
                rate_limit: true,
                audit_log: true,
                events: true,
                graph: true,
                user_auth: true,
                admin_dashboard: true,
                platform_admins: true,
                usage_metrics: true,
                mail_capture: false,
            },
            test_controls: TestControls {
                enabled: hooks,
                base_path: hooks.then(|| "/_test".to_owned()),
                clock: hooks,
                evict: hooks,
                alarms: hooks,
            },
        },
    )
}
