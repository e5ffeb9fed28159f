//! Test helpers over a World whose target is never contacted, and the World's own tests:
//! what every exchange is checked for, deviations, blocked setups.

use std::time::Duration;

use super::*;
use crate::context::RunContext;
use crate::verdict::{Deviation, FailureClass};
use serde_json::{json, Value};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// A world over a context whose target is never contacted.
pub(crate) fn world() -> AuthWorld {
    let ctx = RunContext::new(
        "http://127.0.0.1:9".into(),
        Some("sk_live_adminadminadminadminadminadminadmin00".into()),
        None,
        Vec::new(),
        "test".into(),
        crate::Capabilities::basic(),
        false,
        reqwest::Client::new(),
        None,
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    rt.block_on(with_context(ctx, async { AuthWorld::new() }))
        .expect("a world")
}

/// An exchange answering `method path` with `status` and the JSON `body`.
pub(crate) fn exchange(method: &str, path: &str, status: u16, body: Value) -> Exchange {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1000);
    Exchange {
        id: SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        method: method.into(),
        endpoint: crate::support::http::endpoint_of(method, path),
        path: path.into(),
        request_headers: Vec::new(),
        request_body: None,
        status,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.to_string(),
        json: Some(body),
        elapsed: Duration::ZERO,
    }
}

/// Checks `ex` as if the target had just answered it; the panic message, if any.
pub(crate) fn check(w: &mut AuthWorld, ex: &Exchange) -> Option<String> {
    let ex = ex.clone();
    catch_unwind(AssertUnwindSafe(|| {
        w.last = Some(ex.clone());
        w.check_exchange(&ex);
    }))
    .err()
    .map(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default()
    })
}

/// A prefix of 29 characters in all, and upstream's real ones: 29 and 32 characters
/// after `pk_live_`/`sk_live_`, and one as long as a contract key's body (38).
const PK29: &str = "pk_live_AbCdEfGhIjKlMnOpQrStU";
const PK_UP: &str = "pk_live_AbCdEfGhIjKlMnOpQrStUvWxYz012";
const SK_UP: &str = "sk_live_AbCdEfGhIjKlMnOpQrStUvWxYz012345";
const RK_LONG: &str = "rk_live_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789ab";
const SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

#[test]
fn an_issued_prefix_is_never_flagged() {
    assert_eq!(
        (
            PK29.len(),
            PK_UP.len() - 8,
            SK_UP.len() - 8,
            RK_LONG.len() - 8
        ),
        (29, 29, 32, 38)
    );
    let mut w = world();
    let tenant = |pk: &str, secret: &str| {
        json!({"status":"success","data":{"tenant":{"id":"tenant:a","status":"active"},
            "credentials":{"publicKey":{"prefix":pk},"secretKey":{"prefix":SK_UP,"secret":secret}}}})
    };
    for (pk, secret) in [(PK29, "feedfacefeedface"), (PK_UP, SECRET)] {
        let created = exchange("POST", "/admin/tenants", 201, tenant(pk, secret));
        assert_eq!(
            check(&mut w, &created),
            None,
            "the issuing answer is not a leak"
        );
    }
    let minted =
        json!({"status":"success","data":{"id":"key:3","prefix":RK_LONG,"type":"restricted"}});
    let minted = exchange("POST", "/admin/tenants/tenant%3Aa/keys", 201, minted);
    assert_eq!(check(&mut w, &minted), None);
    // Lists and rows show prefixes legitimately, in later answers.
    let row =
        json!({"status":"success","data":{"id":"tenant:a","publicKey":PK_UP,"secretKey":SK_UP}});
    let row = exchange("GET", "/admin/tenants/tenant%3Aa", 200, row);
    assert_eq!(check(&mut w, &row), None);
    let keys = json!({"status":"success","data":[
        {"id":"key:1","keyPrefix":PK29},{"id":"key:2","keyPrefix":SK_UP},{"id":"key:3","keyPrefix":RK_LONG}]});
    let keys = exchange("GET", "/admin/tenants/tenant%3Aa/keys", 200, keys);
    assert_eq!(check(&mut w, &keys), None);
    // The secret part shown again is a leak, of class security, and never printed.
    let leak = json!({"data":[{"id":"key:2","keyPrefix":SK_UP,"secret":SECRET}]});
    let leak = exchange("GET", "/admin/tenants/tenant%3Aa/keys", 200, leak);
    let msg = check(&mut w, &leak).expect("a leak");
    assert!(
        msg.starts_with("[authconf:security] SECRET LEAK: GET /admin/tenants/tenant%3Aa/keys"),
        "{msg}"
    );
    assert!(!msg.contains(SECRET), "{msg}");
}

#[test]
fn a_whole_credential_nobody_issued_is_flagged() {
    let mut w = world();
    let foreign = format!("{SK_UP}:{SECRET}");
    let ex = exchange("GET", "/v1/tenant", 200, json!({"key": foreign}));
    let msg = check(&mut w, &ex).expect("a stray credential");
    assert!(msg.contains("did not issue"), "{msg}");
}

#[test]
fn a_token_issued_twice_is_a_finding_not_a_leak() {
    let mut w = world();
    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJ1c2VySWQiOiJ1MSJ9.c2lnbmF0dXJlc2lnbmF0dXJl";
    let first = exchange(
        "POST",
        "/v1/auth/register",
        201,
        json!({"accessToken": jwt}),
    );
    let second = exchange("POST", "/v1/auth/login", 200, json!({"accessToken": jwt}));
    assert_eq!(check(&mut w, &first), None);
    assert_eq!(check(&mut w, &second), None, "issued again: no leak");
    assert_eq!(
        w.ctx.findings(),
        vec![(
            FailureClass::Security,
            "non-unique token: POST /v1/auth/login issued the same accessToken as earlier POST /v1/auth/register".to_owned()
        )]
    );
    // Shown by an answer that does not issue it, the token is still a leak.
    let shown = exchange("GET", "/v1/auth/me", 200, json!({"echo": jwt}));
    let msg = check(&mut w, &shown).expect("a leak");
    assert!(msg.contains("SECRET LEAK: GET /v1/auth/me"), "{msg}");
}

#[test]
fn deviations_are_recorded_outside_contract_and_fail_inside() {
    let mut w = world();
    w.scenario_key = Some("features/x.feature:7".into());
    w.last = Some(exchange("GET", "/v1/auth/me", 401, json!({})));
    let r = catch_unwind(AssertUnwindSafe(|| {
        w.deviate("expected WWW-Authenticate: Bearer, got none")
    }));
    assert!(
        r.is_ok(),
        "a deviation does not stop a behavioural scenario"
    );
    assert_eq!(
        w.ctx.take_deviations("features/x.feature:7"),
        vec![Deviation {
            request: "GET /v1/auth/me".into(),
            message: "expected WWW-Authenticate: Bearer, got none".into()
        }]
    );
    w.scenario_tags = vec!["@contract".into()];
    let r = catch_unwind(AssertUnwindSafe(|| {
        w.deviate("expected problem+json, got json")
    }));
    let msg = r.expect_err("inside @contract the shape is the subject");
    let msg = msg.downcast_ref::<String>().cloned().unwrap_or_default();
    assert_eq!(
        msg,
        "[authconf:conformance] GET /v1/auth/me: expected problem+json, got json"
    );
    assert!(w.ctx.take_deviations("features/x.feature:7").is_empty());
}

#[test]
fn blocked_names_the_route_template() {
    let w = world();
    let ex = exchange("POST", "/v1/api-keys", 404, json!({"error":"Not Found"}));
    let r = catch_unwind(AssertUnwindSafe(|| {
        w.expect_setup(&ex, &[201], "creating key \"ci\"")
    }));
    let p = r.expect_err("blocked");
    let msg = p.downcast_ref::<String>().cloned().unwrap_or_default();
    assert_eq!(
        msg.lines().next(),
        Some("[authconf:blocked] POST /v1/api-keys answered 404")
    );
    let ex = exchange("POST", "/admin/tenants/tenant%3Aa/keys", 404, json!({}));
    let mut ex = ex;
    ex.endpoint = crate::support::http::endpoint_of("POST", "/admin/tenants/{A.id}/keys");
    let r = catch_unwind(AssertUnwindSafe(|| w.expect_setup(&ex, &[201], "minting")));
    let msg = r
        .expect_err("blocked")
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(
        msg.starts_with("[authconf:blocked] POST /admin/tenants/{id}/keys answered 404"),
        "{msg}"
    );
}

#[test]
fn a_tenant_created_by_any_step_is_tracked_for_cleanup() {
    let mut w = world();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let slug = format!("{}test-adhoc", crate::SLUG_PREFIX);
    rt.block_on(async {
        // A feature's own `POST /admin/tenants` (not the named-tenant setup), to a target
        // that never answers: the tenant is tracked before the request leaves.
        let body = json!({"slug": slug, "name": "Ad hoc"}).to_string();
        w.send(Req::new("POST", "/admin/tenants", Cred::None).json(&body))
            .await;
        w.send(Req::new("GET", "/admin/tenants", Cred::None)).await;
    });
    assert_eq!(w.ctx.take_tenants(), vec![format!("tenant:{slug}")]);
}
