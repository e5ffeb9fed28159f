//! The meta routes (docs/contract.md, "Meta"): health, capabilities and the OpenAPI
//! document, without a key.
//!
//! Every answer also passes the checks of `support::Service::send` (no 5xx, always
//! `X-Request-Id`, errors as problem documents).

mod support;

use serde_json::json;

use support::*;

#[tokio::test]
async fn meta_routes_answer_without_auth() {
    let h = Service::start().await;
    let r = h.call(None, "GET", "/health", None).await;
    let b = r.ok(200);
    assert_eq!(b["status"], "ok");
    assert_eq!(b["version"], "0.1.0");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let ts = b["timestamp"].as_i64().expect("timestamp in ms");
    assert!(
        (ts - now).abs() < 60_000,
        "timestamp {ts} is ms since the epoch"
    );

    let r = h.call(None, "GET", "/.well-known/authconf", None).await;
    let caps = r.ok(200).clone();
    // The fields this part of the contract fixes; later parts add features and controls.
    assert_eq!(caps["service"], "auth-service");
    assert_eq!(caps["contractVersion"], "1");
    assert_eq!(caps["version"], "0.1.0");
    assert_eq!(
        caps["routing"],
        json!({"baseDomain":"auth.test","sources":["header","subdomain","key","query"]})
    );
    assert_eq!(
        caps["revocation"],
        json!({"consistency":"immediate","maxDelaySeconds":0})
    );
    assert_eq!(caps["features"]["apiKeys"], true);
    assert_eq!(caps["features"]["userAuth"], true);
    for f in ["adminDashboard", "platformAdmins", "usageMetrics"] {
        assert_eq!(caps["features"][f], true, "{f}");
    }
    assert_eq!(caps["features"]["mailCapture"], false);
    assert_eq!(caps["testControls"]["enabled"], false, "no --test-hooks");
    for f in ["rateLimit", "auditLog", "events", "graph"] {
        assert!(caps["features"][f].is_boolean(), "{f}");
    }
    for c in ["clock", "evict", "alarms"] {
        assert!(caps["testControls"][c].is_boolean(), "{c}");
    }

    let r = h.call(None, "GET", "/openapi.json", None).await;
    assert_eq!(r.ok(200)["openapi"], "3.1.0");
    assert!(r.header("content-type").starts_with("application/json"));
    let doc = r.body;
    assert_conforms(&doc, "Capabilities", &caps);
    let health = h.call(None, "GET", "/health", None).await.body;
    assert_conforms(&doc, "Health", &health);

    // HEAD answers like GET, without a body; request ids differ per request.
    let r = h.send(h.req("HEAD", "/health")).await;
    assert_eq!(r.status, 200);
    assert!(r.text.is_empty());
    let a = h.call(None, "GET", "/health", None).await;
    let b = h.call(None, "GET", "/health", None).await;
    assert_ne!(a.header("x-request-id"), b.header("x-request-id"));
}
