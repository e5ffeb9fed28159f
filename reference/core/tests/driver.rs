//! The request driver's sequence, over a scripted host that records every call: each test
//! fails if the driver skips a step, reorders one, or runs one it should not.

mod support;

use auth_core::keys::{self, Environment, KeyType};
use auth_core::route::GraphOp;
use auth_core::{Front, Notice, Request, TenantOutcome};
use http::{HeaderMap, Method};
use support::{block_on, json, service, FakeHost, Sevens, ADMIN_KEY};

fn request(method: Method, path: &str, bearer: Option<&str>) -> Request {
    let mut b = http::Request::builder().method(method).uri(path);
    if let Some(token) = bearer {
        b = b.header("authorization", format!("Bearer {token}"));
    }
    b.body(Vec::new()).expect("request")
}

fn tenant_key() -> String {
    keys::generate(KeyType::Secret, Environment::Live, &Sevens)
}

fn notice(tenant_id: &str) -> (String, Notice) {
    (
        tenant_id.to_owned(),
        Notice {
            actor: "platform_admin".into(),
            action: "tenant.updated".into(),
            target: tenant_id.to_owned(),
            detail: serde_json::json!({}),
            request_id: String::new(),
            end_sessions: false,
        },
    )
}

fn graph_outcome(op: GraphOp) -> TenantOutcome {
    let mut headers = HeaderMap::new();
    headers.insert("ratelimit-limit", "100".parse().unwrap());
    TenantOutcome::Graph {
        op,
        actor_key_id: "key:a".into(),
        needs: op.needs(),
        headers,
    }
}

#[test]
fn a_keyed_request_goes_to_its_owners_object_without_the_shared_rows() {
    let service = service();
    let mut host = FakeHost::new(&service);
    host.owner = Some("tenant:a".into());
    let key = tenant_key();
    let driven = block_on(auth_core::drive(
        &service,
        &host,
        request(Method::GET, "/v1/rate-limit", Some(&key)),
    ));
    assert_eq!(driven.response.status(), 200);
    assert_eq!(host.calls(), ["key_owner", "tenant"]);
    assert!(driven.response.headers().contains_key("x-request-id"));
}

#[test]
fn a_key_without_an_owner_is_the_uniform_401() {
    let service = service();
    let host = FakeHost::new(&service);
    let key = tenant_key();
    let driven = block_on(auth_core::drive(
        &service,
        &host,
        request(Method::GET, "/v1/tenant", Some(&key)),
    ));
    assert_eq!(driven.response.status(), 401);
    assert_eq!(host.calls(), ["key_owner"]);
}

#[test]
fn notices_are_delivered_before_the_answer_and_a_failed_one_replaces_it() {
    let service = service();
    let host = FakeHost::new(&service);
    *host.front_answer.borrow_mut() = Some(Front::Respond {
        response: json(200, "{\"tenant\":{}}"),
        notices: vec![notice("tenant:a")],
    });
    let req = request(Method::PATCH, "/admin/tenants/tenant%3Aa", Some(ADMIN_KEY));
    let driven = block_on(auth_core::drive(&service, &host, req));
    assert_eq!(driven.response.status(), 200);
    assert_eq!(host.calls(), ["front", "notify"]);

    let mut host = FakeHost::new(&service);
    host.notify_fails = true;
    *host.front_answer.borrow_mut() = Some(Front::Respond {
        response: json(200, "{\"tenant\":{}}"),
        notices: vec![notice("tenant:a")],
    });
    let req = request(Method::PATCH, "/admin/tenants/tenant%3Aa", Some(ADMIN_KEY));
    let driven = block_on(auth_core::drive(&service, &host, req));
    assert_eq!(
        driven.response.status(),
        503,
        "the client must not hear of a change its tenant's object has not"
    );
    assert!(driven.response.headers().contains_key("retry-after"));
}

#[test]
fn an_upload_is_read_only_after_its_key_has_an_owner() {
    let service = service();
    let key = tenant_key();
    let upload = || request(Method::PUT, "/v1/graph/csv", Some(&key));

    // No key at all: refused by the front, nothing read.
    let host = FakeHost::new(&service);
    let req = request(Method::PUT, "/v1/graph/csv", None);
    let driven = block_on(auth_core::drive(&service, &host, req));
    assert_eq!(driven.response.status(), 401);
    assert!(host.calls().is_empty(), "{:?}", host.calls());

    // A key nobody owns: refused after the lookup, nothing read.
    let host = FakeHost::new(&service);
    let driven = block_on(auth_core::drive(&service, &host, upload()));
    assert_eq!(driven.response.status(), 401);
    assert_eq!(host.calls(), ["key_owner"]);

    // An owned key: read, then the object sees the body, then it is stored and audited.
    let mut host = FakeHost::new(&service);
    host.owner = Some("tenant:a".into());
    host.upload = b"subject,relation,object\n".to_vec();
    *host.tenant_answer.borrow_mut() = Some(graph_outcome(GraphOp::Upload));
    let driven = block_on(auth_core::drive(&service, &host, upload()));
    assert_eq!(driven.response.status(), 200);
    assert_eq!(
        host.calls(),
        [
            "key_owner",
            "read_upload",
            "tenant",
            "store_upload",
            "audit"
        ]
    );
    assert_eq!(host.seen_body.borrow().as_deref(), Some(&host.upload[..]));
    assert_eq!(driven.response.headers()["ratelimit-limit"], "100");
}

#[test]
fn graph_changes_are_audited_only_when_they_succeed() {
    let service = service();
    let key = tenant_key();
    let mutate = || request(Method::POST, "/v1/graph/mutations", Some(&key));

    let mut host = FakeHost::new(&service);
    host.owner = Some("tenant:a".into());
    *host.tenant_answer.borrow_mut() = Some(graph_outcome(GraphOp::Mutate));
    let driven = block_on(auth_core::drive(&service, &host, mutate()));
    assert_eq!(driven.response.status(), 200);
    assert_eq!(host.calls(), ["key_owner", "tenant", "graph", "audit"]);
    let audited = host.audited.borrow();
    assert_eq!(audited[0].action, "graph.mutated");
    assert_eq!(audited[0].detail, serde_json::json!({"version": 2}));
    assert_eq!(audited[0].actor, "key:a");

    let mut host = FakeHost::new(&service);
    host.owner = Some("tenant:a".into());
    host.graph_status = 400;
    *host.tenant_answer.borrow_mut() = Some(graph_outcome(GraphOp::Mutate));
    let driven = block_on(auth_core::drive(&service, &host, mutate()));
    assert_eq!(driven.response.status(), 400);
    assert_eq!(host.calls(), ["key_owner", "tenant", "graph"]);

    // A read is never audited.
    let mut host = FakeHost::new(&service);
    host.owner = Some("tenant:a".into());
    *host.tenant_answer.borrow_mut() = Some(graph_outcome(GraphOp::State));
    let req = request(Method::GET, "/v1/graph/state", Some(&key));
    block_on(auth_core::drive(&service, &host, req));
    assert_eq!(host.calls(), ["key_owner", "tenant", "graph"]);

    // A reload reads the stored file first.
    let mut host = FakeHost::new(&service);
    host.owner = Some("tenant:a".into());
    *host.tenant_answer.borrow_mut() = Some(graph_outcome(GraphOp::Reload));
    let req = request(Method::POST, "/v1/graph/reload", Some(&key));
    block_on(auth_core::drive(&service, &host, req));
    assert_eq!(
        host.calls(),
        ["key_owner", "tenant", "read_blob", "graph", "audit"]
    );
}

#[test]
fn a_metrics_read_resumes_after_the_flush_without_a_second_front() {
    let service = service();
    for path in [
        "/admin/metrics",
        "/admin/dashboard",
        "/admin/tenants/tenant%3Aa/metrics",
    ] {
        let host = FakeHost::new(&service);
        let driven = block_on(auth_core::drive(
            &service,
            &host,
            request(Method::GET, path, Some(ADMIN_KEY)),
        ));
        assert_eq!(driven.response.status(), 200, "{path}");
        assert_eq!(host.calls(), ["front", "flush_usage", "resume"], "{path}");
        assert_eq!(driven.response.body(), b"{\"resumed\":true}");
    }
    // Not authorised: no flush.
    let host = FakeHost::new(&service);
    let driven = block_on(auth_core::drive(
        &service,
        &host,
        request(Method::GET, "/admin/metrics", None),
    ));
    assert_eq!(driven.response.status(), 401);
    assert_eq!(host.calls(), ["front"]);
}

#[test]
fn only_a_101_hands_the_socket_over() {
    let service = service();
    let key = tenant_key();
    let mut host = FakeHost::new(&service);
    host.owner = Some("tenant:a".into());
    host.accepted = true;
    *host.tenant_answer.borrow_mut() = Some(TenantOutcome::Respond(json(101, "")));
    let req = request(Method::GET, "/v1/events", Some(&key));
    let driven = block_on(auth_core::drive(&service, &host, req));
    assert_eq!(driven.upgrade, Some("socket"));

    let mut host = FakeHost::new(&service);
    host.owner = Some("tenant:a".into());
    host.accepted = true;
    *host.tenant_answer.borrow_mut() = Some(TenantOutcome::Respond(json(429, "{}")));
    let req = request(Method::GET, "/v1/events", Some(&key));
    let driven = block_on(auth_core::drive(&service, &host, req));
    assert_eq!(driven.upgrade, None);
}

#[test]
fn head_answers_carry_no_body() {
    let service = service();
    let mut host = FakeHost::new(&service);
    host.owner = Some("tenant:a".into());
    let key = tenant_key();
    let driven = block_on(auth_core::drive(
        &service,
        &host,
        request(Method::HEAD, "/v1/tenant", Some(&key)),
    ));
    assert_eq!(driven.response.status(), 200);
    assert!(driven.response.body().is_empty());
}
