//! The tenant's graph (docs/contract.md, "Graph (the tenant's GraphStateCSV object)"):
//! upload, reload, check, validate and mutations, one version per concurrent mutation,
//! durability across eviction and restart, and concurrent uploads.
//!
//! Each test runs its own service on 127.0.0.1 with a data dir of its own; every answer
//! passes the checks of `support::Service::send`.

mod support;

use std::collections::BTreeSet;

use futures::future::join_all;
use serde_json::{json, Value};

use support::{assert_gapless, enc, record_fields, Resp, Service, Tenant, Ws};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_graph_mutations_make_one_version_each() {
    let (svc, t) = Service::hooks_with_tenant("graph-many").await;
    let answers = svc
        .post_concurrently(&t.sk, "/v1/graph/mutations", 30, |i| {
            json!({"mutations": [{"op": "add", "edge": {"subject_type": "user",
                "subject_id": format!("u{i}"), "relation": "member", "object_type": "group",
                "object_id": "all"}}]})
        })
        .await;
    let versions: BTreeSet<i64> = answers
        .iter()
        .map(|r| r.ok(200)["version"].as_i64().unwrap())
        .collect();
    assert_eq!(
        versions,
        (1..=30).collect::<BTreeSet<i64>>(),
        "one version per call"
    );
    let s = svc.call(Some(&t.sk), "GET", "/v1/graph/state", None).await;
    assert_eq!(s.ok(200)["version"], 30);
    assert_eq!(s.body["edgeCount"], 30);
    let r = svc
        .call(
            Some(&t.sk),
            "GET",
            "/v1/graph/mutations?since=0&limit=1000",
            None,
        )
        .await;
    let log = r.ok(200)["mutations"].as_array().unwrap().clone();
    let logged: Vec<i64> = log.iter().map(|m| m["version"].as_i64().unwrap()).collect();
    assert_eq!(logged, (1..=30).collect::<Vec<i64>>());
    let records = svc.audit(&t.sk, 100).await;
    assert_gapless(&records);
    let audited: BTreeSet<i64> = records
        .iter()
        .filter(|r| r["action"] == "graph.mutated")
        .map(|r| r["detail"]["version"].as_i64().unwrap())
        .collect();
    assert_eq!(audited, versions);
    for i in [0, 29] {
        assert!(check(&svc, &t.sk, &format!("user:u{i}"), "member", "group:all").await);
    }
}

const CSV: &str = "subject_type,subject_id,relation,object_type,object_id\r\n\
user,alice,member,group,eng\r\n\
group,eng,viewer,doc,readme\r\n\
user,\"bob, jr\",owner,doc,\"plan \"\"x\"\"\"\r\n";

async fn put_csv(svc: &Service, key: &str, csv: &str) -> Resp {
    svc.send_body("PUT", "/v1/graph/csv", key, "text/csv", csv.to_owned())
        .await
}

/// `GET /v1/graph/mutations?since=` with `key`, which must succeed.
async fn graph_log(svc: &Service, key: &str, since: i64) -> Value {
    let path = format!("/v1/graph/mutations?since={since}");
    svc.call(Some(key), "GET", &path, None)
        .await
        .ok(200)
        .clone()
}

/// A POST of `body` to `/v1/graph/{leaf}` that must succeed: its body.
async fn graph_post(svc: &Service, key: &str, leaf: &str, body: Value) -> Value {
    let path = format!("/v1/graph/{leaf}");
    svc.post(key, &path, body).await.ok(200).clone()
}

async fn check(svc: &Service, key: &str, subject: &str, relation: &str, object: &str) -> bool {
    let body = json!({"subject": subject, "relation": relation, "object": object});
    let r = graph_post(svc, key, "check", body).await;
    r["allowed"].as_bool().expect("allowed")
}

async fn validate(svc: &Service, key: &str, edges: &[&str], user: &str, resource: &str) -> Value {
    let body = json!({"edgeIds": edges, "userId": user, "resourceId": resource});
    graph_post(svc, key, "validate", body).await
}

/// The two edges of alice's chain to the readme in [`CSV`].
const E1: &str = "user:alice:member:group:eng";
const E2: &str = "group:eng:viewer:doc:readme";

/// The `reason` of a refused validation.
fn reason(v: Value) -> String {
    v["reason"]
        .as_str()
        .unwrap_or_else(|| panic!("a reason: {v}"))
        .to_owned()
}

/// `GET /v1/graph/state` with `key`.
async fn graph_state(svc: &Service, key: &str) -> Value {
    svc.call(Some(key), "GET", "/v1/graph/state", None)
        .await
        .ok(200)
        .clone()
}

/// An empty graph, then [`CSV`] uploaded (stored, not loaded) and reloaded as version 1.
async fn upload_and_reload(svc: &Service, t: &Tenant) {
    let sk = t.sk.as_str();
    let r = svc.call(Some(sk), "GET", "/v1/graph/state", None).await;
    let s = r.ok(200);
    assert_eq!(
        (s["version"].as_i64(), s["edgeCount"].as_i64()),
        (Some(0), Some(0))
    );
    assert_eq!(s["initialized"], false);
    assert!(
        r.headers.contains_key("ratelimit-remaining"),
        "graph answers carry RateLimit headers"
    );

    // Upload: stored as tenants/<tenantId>/graph.csv.
    let r = put_csv(svc, sk, CSV).await;
    let b = r.ok(200);
    assert_eq!(b["edgeCount"], 3);
    assert_eq!(b["key"], format!("tenants/{}/graph.csv", t.id));
    assert!(r.headers.contains_key("ratelimit-remaining"));
    // Uploading does not load.
    assert_eq!(graph_state(svc, sk).await["version"], 0);

    let r = svc.call(Some(sk), "POST", "/v1/graph/reload", None).await;
    let b = r.ok(200);
    assert_eq!(b["success"], true);
    assert_eq!(b["tenantId"], t.id);
    assert_eq!(
        (b["edgeCount"].as_i64(), b["version"].as_i64()),
        (Some(3), Some(1))
    );
    let s = graph_state(svc, sk).await;
    assert_eq!(s["tenantId"], t.id);
    assert_eq!(
        (s["version"].as_i64(), s["edgeCount"].as_i64()),
        (Some(1), Some(3))
    );
    assert!(s["loadedAt"].is_string());
}

/// Check and validate on the graph of [`CSV`].
async fn check_and_validate(svc: &Service, sk: &str) {
    // Check: direct, through membership, quoted fields, and no.
    assert!(check(svc, sk, "group:eng", "viewer", "doc:readme").await);
    assert!(check(svc, sk, "user:alice", "viewer", "doc:readme").await);
    assert!(check(svc, sk, "user:bob, jr", "owner", "doc:plan \"x\"").await);
    assert!(!check(svc, sk, "user:alice", "owner", "doc:readme").await);
    assert!(!check(svc, sk, "user:mallory", "viewer", "doc:readme").await);

    // Validate.
    assert_eq!(
        validate(svc, sk, &[E1, E2], "user:alice", "doc:readme").await,
        json!({"valid": true})
    );
    assert_eq!(
        reason(validate(svc, sk, &[], "user:alice", "doc:readme").await),
        "Empty edge chain"
    );
    assert_eq!(
        reason(
            validate(
                svc,
                sk,
                &[E1, "user:x:member:group:y"],
                "user:alice",
                "doc:readme"
            )
            .await
        ),
        "Edge not found: user:x:member:group:y"
    );
    assert!(
        reason(validate(svc, sk, &[E2, E1], "group:eng", "group:eng").await)
            .starts_with("Chain break: ")
    );
    assert!(
        reason(validate(svc, sk, &[E1, E2], "user:bob", "doc:readme").await)
            .starts_with("Chain start mismatch: ")
    );
    assert!(
        reason(validate(svc, sk, &[E1, E2], "user:alice", "doc:other").await)
            .starts_with("Chain end mismatch: ")
    );
}

/// Each mutation call is one new version; answers the state after them.
async fn mutate(svc: &Service, sk: &str) -> Value {
    // Mutations: each call is one new version, seen by the very next check.
    let r = svc.post(sk, "/v1/graph/mutations", json!({"mutations": [{"op": "add", "edge": {"subject_type": "user", "subject_id": "carol",
                "relation": "member", "object_type": "group", "object_id": "eng"}}]}))
        .await;
    assert_eq!(r.ok(200)["version"], 2);
    assert_eq!(r.body["applied"], 1);
    assert!(check(svc, sk, "user:carol", "viewer", "doc:readme").await);
    let r = svc
        .post(
            sk,
            "/v1/graph/mutations",
            json!({"mutations": [{"op": "revoke", "edgeId": E1}]}),
        )
        .await;
    assert_eq!(r.ok(200)["version"], 3);
    assert!(!check(svc, sk, "user:alice", "viewer", "doc:readme").await);
    assert_eq!(
        reason(validate(svc, sk, &[E1, E2], "user:alice", "doc:readme").await),
        format!("Edge revoked: {E1}")
    );
    let s = graph_state(svc, sk).await;
    assert_eq!(
        (s["version"].as_i64(), s["edgeCount"].as_i64()),
        (Some(3), Some(3))
    );
    // Revoking an unknown edge refuses the whole batch, naming it; nothing changes.
    let r = svc.post(sk, "/v1/graph/mutations", json!({"mutations": [{"op": "revoke", "edgeId": E2}, {"op": "revoke", "edgeId": "a:b:c:d:e"}]}))
        .await;
    r.expect(400, "invalid_field");
    assert_eq!(r.body["field"], "mutations[1].edgeId");
    assert!(check(svc, sk, "group:eng", "viewer", "doc:readme").await);

    s
}

/// The mutation log lists every change in order, with its actor.
async fn mutation_log(svc: &Service, sk: &str, sk_id: &str) {
    // The mutation log.
    let r = svc
        .call(Some(sk), "GET", "/v1/graph/mutations?since=1", None)
        .await;
    let page = r.ok(200).clone();
    assert_eq!(page["currentVersion"], 3);
    assert_eq!(page["hasMore"], false);
    let log: Vec<(i64, String, String, String)> = page["mutations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["version"].as_i64().unwrap(),
                m["op"].as_str().unwrap().to_owned(),
                m["edgeId"].as_str().unwrap().to_owned(),
                m["actorKeyId"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        log,
        [
            (
                2,
                "add".into(),
                "user:carol:member:group:eng".into(),
                sk_id.to_owned()
            ),
            (3, "revoke".into(), E1.into(), sk_id.to_owned()),
        ]
    );
    let r = svc
        .call(Some(sk), "GET", "/v1/graph/mutations?since=0", None)
        .await;
    let all = r.ok(200)["mutations"].as_array().unwrap().clone();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0]["op"], "reload");
    assert!(all[0]["edgeId"].is_null());
    assert_eq!(graph_log(svc, sk, 3).await["mutations"], json!([]));
    svc.call(Some(sk), "GET", "/v1/graph/mutations?since=4", None)
        .await
        .expect(400, "invalid_query");
}

/// A bad CSV changes nothing (`s` is the state before it); a reload reads the last good file.
async fn bad_csv_then_reload(svc: &Service, sk: &str, s: &Value) {
    // A bad CSV: 400 naming line and column; the graph and the stored file stay as they were.
    let bad = "subject_type,subject_id,relation,object_type,object_id\n\
               user,dave,member,group,eng\n\
               user,erin,bad relation,doc,readme\n";
    let r = put_csv(svc, sk, bad).await;
    r.expect(400, "invalid_field");
    assert_eq!(r.body["field"], "csv");
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("line 3, column 3"),
        "{}",
        r.text
    );
    let r = put_csv(
        svc,
        sk,
        "subject_type,subject_id,relation,object_type,object_id\nuser,\"alice,member,group,eng\n",
    )
    .await;
    r.expect(400, "invalid_field");
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("line 2, column 2"),
        "{}",
        r.text
    );
    let r = svc
        .send_body("PUT", "/v1/graph/csv", sk, "application/json", CSV)
        .await;
    assert_eq!(r.status, 415, "{}", r.text);
    let s2 = graph_state(svc, sk).await;
    assert_eq!(&s2, s);
    assert!(!check(svc, sk, "user:dave", "viewer", "doc:readme").await);
    // Reloading reads the last good file: a whole new graph, as the file says.
    let r = svc.call(Some(sk), "POST", "/v1/graph/reload", None).await;
    assert_eq!(
        (r.ok(200)["version"].as_i64(), r.body["edgeCount"].as_i64()),
        (Some(4), Some(3))
    );
    assert!(check(svc, sk, "user:alice", "viewer", "doc:readme").await);
    assert!(!check(svc, sk, "user:carol", "viewer", "doc:readme").await);
}

/// Every graph change is audited with its actor and request, and pushed as it happened.
async fn audited_and_pushed(svc: &Service, sk: &str, sk_id: &str, ws: &mut Ws) {
    // Audited.
    let records = svc.audit(sk, 100).await;
    let graph = record_fields(
        &records,
        |r| r["target"] == "graph",
        ["action", "actorKeyId", "requestId"],
    );
    assert_eq!(
        graph.iter().map(|g| g.0).collect::<Vec<_>>(),
        [
            "graph.csv_uploaded",
            "graph.reloaded",
            "graph.mutated",
            "graph.mutated",
            "graph.reloaded"
        ]
    );
    assert!(graph.iter().all(|g| g.1 == sk_id && !g.2.is_empty()));
    // Pushed as they happened.
    for action in graph.iter().map(|g| g.0) {
        assert_eq!(ws.next_event().await["action"], action);
    }
}

/// Size limits: 8 MiB for the graph file, 64 KiB for JSON bodies.
async fn size_limits(svc: &Service, sk: &str) {
    // Size limits: 8 MiB for the graph file, 64 KiB for JSON bodies.
    let mut big = String::from("subject_type,subject_id,relation,object_type,object_id\n");
    while big.len() <= 8 * 1024 * 1024 {
        big.push_str("user,someone-with-a-rather-long-name,member,group,some-group-name\n");
    }
    put_csv(svc, sk, &big)
        .await
        .expect(413, "payload_too_large");
    let r = svc
        .post(
            sk,
            "/v1/graph/check",
            json!({"subject": "x".repeat(70_000)}),
        )
        .await;
    r.expect(413, "payload_too_large");
    assert_eq!(graph_state(svc, sk).await["version"], 4);
}

/// Another tenant's key sees its own empty graph, never `t`'s.
async fn another_tenant_sees_nothing(svc: &Service, t: &Tenant, other: &Tenant) {
    // Another tenant's key sees its own empty graph, never this one.
    let o = other.sk.as_str();
    let s = graph_state(svc, o).await;
    assert_eq!(s["tenantId"], other.id);
    assert_eq!(
        (s["version"].as_i64(), s["edgeCount"].as_i64()),
        (Some(0), Some(0))
    );
    assert!(!check(svc, o, "user:alice", "viewer", "doc:readme").await);
    assert_eq!(
        reason(validate(svc, o, &[E1, E2], "user:alice", "doc:readme").await),
        format!("Edge not found: {E1}")
    );
    assert_eq!(graph_log(svc, o, 0).await["mutations"], json!([]));
    svc.call(Some(o), "POST", "/v1/graph/reload", None)
        .await
        .expect(400, "invalid_field");
    let r = svc
        .send(
            svc.req("GET", "/v1/graph/state")
                .bearer_auth(o)
                .header("x-tenant-id", &t.id),
        )
        .await;
    r.expect(403, "tenant_mismatch");
    assert!(!r.text.contains("readme"));
    let r = svc
        .send(
            svc.req("GET", &format!("/v1/graph/state?tenant_id={}", enc(&t.id)))
                .bearer_auth(o),
        )
        .await;
    r.expect(403, "tenant_mismatch");
}

/// What read:graph, write:graph, publishable and missing keys may do.
async fn permissions(svc: &Service, t: &Tenant) {
    let sk = t.sk.as_str();
    // Permissions.
    let (_, reader) = svc.restricted_key(sk, &["read:graph"]).await;
    let (_, writer) = svc.restricted_key(sk, &["write:graph"]).await;
    svc.call(Some(&reader), "GET", "/v1/graph/state", None)
        .await
        .ok(200);
    assert!(check(svc, &reader, "user:alice", "viewer", "doc:readme").await);
    assert_eq!(
        validate(svc, &reader, &[E1, E2], "user:alice", "doc:readme").await["valid"],
        true
    );
    svc.call(Some(&reader), "GET", "/v1/graph/mutations?since=0", None)
        .await
        .ok(200);
    svc.expect_post(
        &reader,
        "/v1/graph/mutations",
        json!({"mutations": [{"op": "revoke", "edgeId": E1}]}),
        403,
        "forbidden",
    )
    .await;
    svc.expect_post(
        &writer,
        "/v1/graph/check",
        json!({"subject": "user:alice", "relation": "viewer", "object": "doc:readme"}),
        403,
        "forbidden",
    )
    .await;
    put_csv(svc, &reader, CSV).await.expect(403, "forbidden");
    svc.call(Some(&reader), "POST", "/v1/graph/reload", None)
        .await
        .expect(403, "forbidden");
    svc.call(Some(&writer), "GET", "/v1/graph/state", None)
        .await
        .expect(403, "forbidden");
    svc.call(Some(&writer), "POST", "/v1/graph/reload", None)
        .await
        .ok(200);
    svc.call(Some(&t.pk), "GET", "/v1/graph/state", None)
        .await
        .expect(403, "forbidden");
    svc.call(None, "GET", "/v1/graph/state", None)
        .await
        .expect(401, "unauthorized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_upload_reload_check_validate_and_mutate() {
    let (svc, t) = Service::hooks_with_tenant("graph").await;
    let other = svc.create_tenant("graph-other").await;
    let sk = t.sk.as_str();
    let sk_id = svc.key_id_of(sk, sk).await;
    let mut ws = svc.ws_connected(sk, &t.id).await;
    upload_and_reload(&svc, &t).await;
    check_and_validate(&svc, sk).await;
    let s = mutate(&svc, sk).await;
    mutation_log(&svc, sk, &sk_id).await;
    bad_csv_then_reload(&svc, sk, &s).await;
    audited_and_pushed(&svc, sk, &sk_id, &mut ws).await;
    size_limits(&svc, sk).await;
    another_tenant_sees_nothing(&svc, &t, &other).await;
    permissions(&svc, &t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_survives_eviction_and_restart() {
    let mut svc = Service::with_hooks().await;
    let t = svc.create_tenant("graph-durable").await;
    put_csv(&svc, &t.sk, CSV).await.ok(200);
    svc.call(Some(&t.sk), "POST", "/v1/graph/reload", None)
        .await
        .ok(200);
    svc.post(
        &t.sk,
        "/v1/graph/mutations",
        json!({"mutations": [{"op": "revoke", "edgeId": "group:eng:viewer:doc:readme"}]}),
    )
    .await
    .ok(200);
    let state = graph_state(&svc, &t.sk).await;
    assert!(svc.evict(None).await >= 2);
    assert_eq!(graph_state(&svc, &t.sk).await, state);
    assert!(!check(&svc, &t.sk, "user:alice", "viewer", "doc:readme").await);
    svc.restart().await;
    assert_eq!(graph_state(&svc, &t.sk).await, state);
    assert!(!check(&svc, &t.sk, "user:alice", "viewer", "doc:readme").await);
    assert!(check(&svc, &t.sk, "user:bob, jr", "owner", "doc:plan \"x\"").await);
    // The stored file survived the restart too: reloading it brings the revoked edge back.
    svc.call(Some(&t.sk), "POST", "/v1/graph/reload", None)
        .await
        .ok(200);
    assert!(check(&svc, &t.sk, "user:alice", "viewer", "doc:readme").await);
}

/// Concurrent uploads of one tenant's graph file all succeed (each write has a temporary file
/// of its own), and an 8 MiB file whose header is one field of control bytes gets a small 400
/// that quotes a short prefix of it, not the whole input escaped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_uploads_succeed_and_a_huge_bad_header_gets_a_small_400() {
    let (svc, t) = Service::hooks_with_tenant("uploads").await;
    let answers = join_all((0..32).map(|_| put_csv(&svc, &t.sk, CSV))).await;
    for r in &answers {
        assert_eq!(r.ok(200)["edgeCount"], 3);
    }
    let bad = vec![0x01u8; 8 * 1024 * 1024];
    let r = svc
        .send_body("PUT", "/v1/graph/csv", &t.sk, "text/csv", bad)
        .await;
    r.expect(400, "invalid_field");
    assert!(r.text.len() < 2048, "a {}-byte error", r.text.len());
}
