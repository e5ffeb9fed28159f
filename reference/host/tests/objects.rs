//! Integration tests of the Durable Objects (`TenantState`, `GraphStateCSV`) over real HTTP
//! and a real WebSocket client: exact rate limiting, cache invalidation, the audit log, events,
//! alarms, eviction and restart, the graph routes, and that no object state is reachable
//! without a key. Each test runs its own service on 127.0.0.1 with a data dir of its own.

mod do_support;

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use do_support::{assert_no_secret, enc, Frame, Svc, ADMIN_KEY};
use futures::future::join_all;
use serde_json::{json, Value};

const CLOSE_CREDENTIAL_ENDED: u16 = 1008;

/// Seqs are 1, 2, 3, ... with no gap.
#[track_caller]
fn assert_gapless(records: &[Value]) {
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r["seq"], i as i64 + 1, "seq without gaps: {records:?}");
    }
}

fn actions(records: &[Value]) -> Vec<&str> {
    records
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect()
}

// 1 -------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rate_limit_is_exact_under_200_concurrent_requests() {
    let svc = Svc::start().await;
    let a = svc.tenant_with_limit("rl-a", 50, 3600).await;
    let b = svc.tenant_with_limit("rl-b", 50, 3600).await;
    svc.start_of_next_window(3600).await;

    let burst = (0..200).map(|_| svc.use_key(&a.sk));
    let answers = join_all(burst).await;
    let ok: Vec<_> = answers.iter().filter(|r| r.status == 200).collect();
    let refused: Vec<_> = answers.iter().filter(|r| r.status == 429).collect();
    assert_eq!(
        (ok.len(), refused.len()),
        (50, 150),
        "exactly the limit succeeds"
    );

    // Each success saw a distinct remaining count: 49, 48, ..., 0.
    let mut remaining: Vec<u64> = ok
        .iter()
        .map(|r| {
            let (limit, remaining, reset) = r.rate_headers();
            assert_eq!(limit, 50);
            assert!(reset > 3000 && reset <= 3600, "reset {reset}");
            assert_eq!(r.header("ratelimit-policy"), "50;w=3600");
            remaining
        })
        .collect();
    remaining.sort_unstable();
    assert_eq!(remaining, (0..50).collect::<Vec<u64>>());
    for r in &refused {
        r.expect(429, "rate_limited");
        let (limit, remaining, reset) = r.rate_headers();
        assert_eq!((limit, remaining), (50, 0));
        assert_eq!(r.header("ratelimit-policy"), "50;w=3600");
        let retry: u64 = r
            .header("retry-after")
            .parse()
            .expect("Retry-After seconds");
        assert!(
            (1..=3600).contains(&retry) && retry == reset,
            "Retry-After {retry}"
        );
    }

    // The state route counts too: it is refused, or reports nothing left.
    let r = svc.call(Some(&a.sk), "GET", "/v1/rate-limit", None).await;
    match r.status {
        429 => {
            r.expect(429, "rate_limited");
        }
        200 => assert_eq!(r.body["remaining"], 0),
        s => panic!("unexpected {s}: {}", r.text),
    }
    // Other routes and key types share the tenant's quota.
    svc.call(Some(&a.pk), "GET", "/v1/tenant", None)
        .await
        .expect(429, "rate_limited");

    // Tenant B is untouched by A's burst.
    let r = svc.call(Some(&b.sk), "GET", "/v1/rate-limit", None).await;
    let body = r.ok(200).clone();
    assert_eq!(body["tenantId"], b.id);
    assert_eq!(body["algorithm"], "fixed-window");
    assert_eq!(body["limit"], 50);
    assert_eq!(body["remaining"], 49);
    assert_eq!(body["windowSeconds"], 3600);
    assert!(body["reset"].as_u64().unwrap() <= 3600);
    assert_eq!(r.rate_headers().1, 49);

    // Refused requests consumed nothing: the next window holds the whole quota again.
    svc.start_of_next_window(3600).await;
    let r = svc.call(Some(&a.pk), "GET", "/v1/rate-limit", None).await;
    let body = r.ok(200);
    assert_eq!(
        (body["limit"].as_u64(), body["remaining"].as_u64()),
        (Some(50), Some(49))
    );
    let answers = join_all((0..60).map(|_| svc.use_key(&a.sk))).await;
    assert_eq!(answers.iter().filter(|r| r.status == 200).count(), 49);
    assert_eq!(answers.iter().filter(|r| r.status == 429).count(), 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_defaults_and_rate_limit_override_apply() {
    let svc = Svc::start().await;
    for (plan, limit) in [("free", 100), ("pro", 1000), ("enterprise", 10000)] {
        let r = svc
            .admin(
                "POST",
                "/admin/tenants",
                Some(json!({"slug": format!("plan-{plan}"), "name": "P", "plan": plan})),
            )
            .await;
        let sk = r.ok(201)["credentials"]["secretKey"]
            .as_str()
            .unwrap()
            .to_owned();
        let id = r.body["tenant"]["id"].as_str().unwrap().to_owned();
        let r = svc.call(Some(&sk), "GET", "/v1/rate-limit", None).await;
        assert_eq!(r.ok(200)["limit"], limit);
        assert_eq!(r.body["windowSeconds"], 60);
        assert_eq!(r.header("ratelimit-policy"), format!("{limit};w=60"));
        // The override takes effect on the very next request.
        svc.admin(
            "PATCH",
            &format!("/admin/tenants/{}", enc(&id)),
            Some(json!({"rateLimit": {"requests": 7, "windowSeconds": 30}})),
        )
        .await
        .ok(200);
        let r = svc.call(Some(&sk), "GET", "/v1/rate-limit", None).await;
        assert_eq!(r.ok(200)["limit"], 7);
        assert_eq!(r.body["windowSeconds"], 30);
        assert_eq!(r.header("ratelimit-policy"), "7;w=30");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_refused_before_admission_consume_no_quota() {
    let svc = Svc::start().await;
    let t = svc.tenant_with_limit("rl-unadmitted", 10, 3600).await;
    let other = svc.tenant("rl-unadmitted-other").await;
    svc.start_of_next_window(3600).await;
    let (k, secret) = svc.secret_key(&t.sk, "doomed").await;
    svc.call(
        Some(&t.sk),
        "DELETE",
        &format!("/v1/api-keys/{}", enc(k["id"].as_str().unwrap())),
        None,
    )
    .await
    .ok(200);
    // A revoked key, a key naming another tenant, and no key: none of them counts.
    for r in join_all((0..30).map(|_| svc.use_key(&secret))).await {
        r.expect(401, "unauthorized");
    }
    for _ in 0..5 {
        svc.send(
            svc.req("GET", "/v1/tenant")
                .bearer_auth(&t.sk)
                .header("x-tenant-id", &other.id),
        )
        .await
        .expect(403, "tenant_mismatch");
        svc.call(None, "GET", "/v1/tenant", None)
            .await
            .expect(401, "unauthorized");
    }
    let r = svc.call(Some(&t.sk), "GET", "/v1/rate-limit", None).await;
    assert_eq!(
        r.ok(200)["remaining"],
        10 - 3,
        "creation, revocation, this read"
    );
}

// 2 -------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_key_creations_lose_no_update() {
    let svc = Svc::start().await;
    let t = svc.tenant("many").await;
    let creations = (0..50).map(|i| {
        svc.call(
            Some(&t.sk),
            "POST",
            "/v1/api-keys",
            Some(json!({"name": format!("k{i}"), "type": "secret", "environment": "live"})),
        )
    });
    let answers = join_all(creations).await;
    let mut ids = HashSet::new();
    let mut secrets = HashSet::new();
    for r in &answers {
        let b = r.ok(201);
        ids.insert(b["apiKey"]["id"].as_str().unwrap().to_owned());
        secrets.insert(b["credentials"]["keySecret"].as_str().unwrap().to_owned());
    }
    assert_eq!((ids.len(), secrets.len()), (50, 50));

    let r = svc.call(Some(&t.sk), "GET", "/v1/api-keys", None).await;
    let listed: HashSet<String> = r.ok(200)["apiKeys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed.len(), 52, "the two first keys and the 50 new ones");
    assert!(ids.is_subset(&listed));

    let records = svc.audit(&t.sk, 17).await;
    assert_gapless(&records);
    assert_eq!(records[0]["action"], "tenant.created");
    let created: Vec<&Value> = records
        .iter()
        .filter(|r| r["action"] == "api_key.created")
        .collect();
    assert_eq!(created.len(), 50);
    let targets: HashSet<String> = created
        .iter()
        .map(|r| r["target"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(targets, ids);
    let secrets: Vec<String> = secrets.into_iter().collect();
    assert_no_secret(&serde_json::to_string(&records).unwrap(), &secrets);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_graph_mutations_make_one_version_each() {
    let svc = Svc::start().await;
    let t = svc.tenant("graph-many").await;
    let calls = (0..30).map(|i| {
        svc.call(
            Some(&t.sk),
            "POST",
            "/v1/graph/mutations",
            Some(
                json!({"mutations": [{"op": "add", "edge": {"subject_type": "user",
                "subject_id": format!("u{i}"), "relation": "member", "object_type": "group",
                "object_id": "all"}}]}),
            ),
        )
    });
    let answers = join_all(calls).await;
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

// 3 -------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_log_orders_pages_names_actor_and_request_and_holds_no_secret() {
    let svc = Svc::start().await;
    let r = svc
        .admin(
            "POST",
            "/admin/tenants",
            Some(json!({"slug": "audited", "name": "Audited",
                        "rateLimit": {"requests": 100000, "windowSeconds": 60}})),
        )
        .await;
    let created_rid = r.request_id();
    let body = r.ok(201).clone();
    let tid = body["tenant"]["id"].as_str().unwrap().to_owned();
    let sk = body["credentials"]["secretKey"]
        .as_str()
        .unwrap()
        .to_owned();
    let pk = body["credentials"]["publicKey"]
        .as_str()
        .unwrap()
        .to_owned();
    let sk_id = svc.key_id_of(&sk, &sk).await;
    let mut ws = svc.ws_connected(&sk, &tid).await;

    // (action, actor, target, request id) expected, in order.
    let mut expected: Vec<(String, String, String, String)> = vec![(
        "tenant.created".into(),
        "platform_admin".into(),
        tid.clone(),
        created_rid,
    )];
    let mut secrets = vec![sk.clone(), pk.clone()];
    let mut key_ids = Vec::new();
    for i in 0..4 {
        let r = svc
            .call(
                Some(&sk),
                "POST",
                "/v1/api-keys",
                Some(json!({"name": format!("a{i}"), "type": "secret", "environment": "live"})),
            )
            .await;
        let b = r.ok(201);
        let id = b["apiKey"]["id"].as_str().unwrap().to_owned();
        secrets.push(b["credentials"]["keySecret"].as_str().unwrap().to_owned());
        expected.push((
            "api_key.created".into(),
            sk_id.clone(),
            id.clone(),
            r.request_id(),
        ));
        key_ids.push(id);
    }
    let r = svc
        .call(
            Some(&sk),
            "POST",
            &format!("/v1/api-keys/{}/rotate", enc(&key_ids[0])),
            None,
        )
        .await;
    let b = r.ok(201);
    secrets.push(b["credentials"]["keySecret"].as_str().unwrap().to_owned());
    expected.push((
        "api_key.rotated".into(),
        sk_id.clone(),
        key_ids[0].clone(),
        r.request_id(),
    ));
    // An action made with another key of the tenant names that key.
    let other_id = key_ids[1].clone();
    let other_secret = secrets[3].clone();
    let r = svc
        .call(
            Some(&other_secret),
            "DELETE",
            &format!("/v1/api-keys/{}", enc(&key_ids[2])),
            None,
        )
        .await;
    r.ok(200);
    expected.push((
        "api_key.revoked".into(),
        other_id,
        key_ids[2].clone(),
        r.request_id(),
    ));
    let r = svc
        .admin(
            "PATCH",
            &format!("/admin/tenants/{}", enc(&tid)),
            Some(json!({"name": "Renamed"})),
        )
        .await;
    r.ok(200);
    expected.push((
        "tenant.updated".into(),
        "platform_admin".into(),
        tid.clone(),
        r.request_id(),
    ));
    let r = svc
        .admin(
            "POST",
            &format!("/admin/tenants/{}/keys", enc(&tid)),
            Some(json!({"name": "by-admin", "type": "secret", "environment": "live"})),
        )
        .await;
    let b = r.ok(201);
    secrets.push(b["credentials"]["keySecret"].as_str().unwrap().to_owned());
    expected.push((
        "api_key.created".into(),
        "platform_admin".into(),
        b["apiKey"]["id"].as_str().unwrap().to_owned(),
        r.request_id(),
    ));
    // Reads are not audited.
    svc.call(Some(&sk), "GET", "/v1/api-keys", None)
        .await
        .ok(200);

    let records = svc.audit(&sk, 1000).await;
    assert_gapless(&records);
    let got: Vec<(String, String, String, String)> = records
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap().to_owned();
            (s("action"), s("actorKeyId"), s("target"), s("requestId"))
        })
        .collect();
    assert_eq!(got, expected);
    for r in &records {
        assert_eq!(r["tenantId"], tid);
        let at = r["createdAt"].as_str().unwrap();
        assert!(
            at.len() == 20 && at.ends_with('Z'),
            "RFC 3339 createdAt {at}"
        );
        assert!(r["detail"].is_object(), "{r}");
        let mut names: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "action",
                "actorKeyId",
                "createdAt",
                "detail",
                "requestId",
                "seq",
                "target",
                "tenantId"
            ]
        );
    }
    assert_no_secret(&serde_json::to_string(&records).unwrap(), &secrets);

    // The socket saw every record after it connected, in order, as the log holds them.
    let mut pushed = Vec::new();
    for _ in 1..records.len() {
        pushed.push(ws.next_event().await);
    }
    assert_eq!(pushed, records[1..].to_vec());
    assert_no_secret(&serde_json::to_string(&pushed).unwrap(), &secrets);

    // Paging: after and limit.
    let n = records.len() as i64;
    let r = svc
        .call(Some(&sk), "GET", "/v1/audit-log?after=2&limit=3", None)
        .await;
    let page = r.ok(200);
    assert_eq!(
        page["records"].as_array().unwrap().to_vec(),
        records[2..5].to_vec()
    );
    assert_eq!(page["nextAfter"], 5);
    let r = svc
        .call(Some(&sk), "GET", &format!("/v1/audit-log?after={n}"), None)
        .await;
    assert_eq!(r.ok(200)["records"], json!([]));
    assert!(r.body["nextAfter"].is_null());
    let r = svc.call(Some(&sk), "GET", "/v1/audit-log", None).await;
    assert_eq!(r.ok(200)["records"].as_array().unwrap().len() as i64, n);
    for q in ["after=-1", "after=x", "limit=0", "limit=1001", "since=3"] {
        let r = svc
            .call(Some(&sk), "GET", &format!("/v1/audit-log?{q}"), None)
            .await;
        r.expect(400, "invalid_query");
        assert_eq!(r.body["field"], q.split('=').next().unwrap(), "{}", r.text);
    }

    // Who may read it.
    svc.call(Some(&pk), "GET", "/v1/audit-log", None)
        .await
        .expect(403, "forbidden");
    let (_, rk_without) = svc.restricted_key(&sk, &["read:api_keys"]).await;
    svc.call(Some(&rk_without), "GET", "/v1/audit-log", None)
        .await
        .expect(403, "forbidden");
    let (_, rk_with) = svc.restricted_key(&sk, &["read:audit_log"]).await;
    svc.call(Some(&rk_with), "GET", "/v1/audit-log", None)
        .await
        .ok(200);
    ws.close().await;
}

// 4 -------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_invalidating_write_is_seen_by_the_very_next_request() {
    let svc = Svc::start().await;
    let t = svc.tenant("cache").await;

    // Revoke: warm the cache with the key, revoke, use it at once.
    let (k, secret) = svc.secret_key(&t.sk, "to-revoke").await;
    svc.use_key(&secret).await.ok(200);
    svc.call(
        Some(&t.sk),
        "DELETE",
        &format!("/v1/api-keys/{}", enc(k["id"].as_str().unwrap())),
        None,
    )
    .await
    .ok(200);
    svc.use_key(&secret).await.expect(401, "unauthorized");
    // A revoked key may not revoke or rotate either.
    svc.call(
        Some(&secret),
        "POST",
        "/v1/api-keys",
        Some(json!({"name":"x","type":"secret","environment":"live"})),
    )
    .await
    .expect(401, "unauthorized");

    // A key revoking itself is refused on its next request.
    let (k, secret) = svc.secret_key(&t.sk, "self").await;
    svc.call(
        Some(&secret),
        "DELETE",
        &format!("/v1/api-keys/{}", enc(k["id"].as_str().unwrap())),
        None,
    )
    .await
    .ok(200);
    svc.use_key(&secret).await.expect(401, "unauthorized");

    // Rotate without grace: the old key is refused at once, the new one works.
    let (k, old) = svc.secret_key(&t.sk, "to-rotate").await;
    svc.use_key(&old).await.ok(200);
    let r = svc
        .call(
            Some(&t.sk),
            "POST",
            &format!("/v1/api-keys/{}/rotate", enc(k["id"].as_str().unwrap())),
            None,
        )
        .await;
    let new = r.ok(201)["credentials"]["keySecret"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(r.body["previousKey"]["revokedAt"].is_string());
    svc.use_key(&old).await.expect(401, "unauthorized");
    svc.use_key(&new).await.ok(200);

    // Suspend, then resume.
    let path = format!("/admin/tenants/{}", enc(&t.id));
    svc.use_key(&t.pk).await.ok(200);
    svc.admin("PATCH", &path, Some(json!({"status": "suspended"})))
        .await
        .ok(200);
    svc.use_key(&t.sk).await.expect(403, "tenant_suspended");
    svc.use_key(&t.pk).await.expect(403, "tenant_suspended");
    svc.use_key(&new).await.expect(403, "tenant_suspended");
    svc.admin("PATCH", &path, Some(json!({"status": "active"})))
        .await
        .ok(200);
    svc.use_key(&t.sk).await.ok(200);

    // Delete: every key is refused with the one 401.
    svc.admin("DELETE", &path, None).await.ok(200);
    let a = svc.use_key(&t.sk).await;
    a.expect(401, "unauthorized");
    let b = svc.use_key(&new).await;
    b.expect(401, "unauthorized");
    svc.call(Some(&t.pk), "GET", "/v1/rate-limit", None)
        .await
        .expect(401, "unauthorized");

    // Under a burst, a revocation splits the requests cleanly: nothing after it passes.
    let u = svc.tenant("cache-burst").await;
    let (k, secret) = svc.secret_key(&u.sk, "burst").await;
    let revoke_path = format!("/v1/api-keys/{}", enc(k["id"].as_str().unwrap()));
    let before = join_all((0..20).map(|_| svc.use_key(&secret))).await;
    assert!(before.iter().all(|r| r.status == 200));
    svc.call(Some(&u.sk), "DELETE", &revoke_path, None)
        .await
        .ok(200);
    let after = join_all((0..20).map(|_| svc.use_key(&secret))).await;
    assert!(after.iter().all(|r| r.status == 401));
}

// 5 -------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_and_audit_log_survive_a_restart() {
    let mut svc = Svc::start().await;
    // The longest window (a day, aligned to UTC midnight), so the restart stays inside it;
    // the clock offset of the test controls does not survive a restart, the real clock does.
    let t = svc.tenant_with_limit("durable", 20, 86_400).await;
    let first = svc.use_key(&t.sk).await;
    first.ok(200);
    let (_, _, reset) = first.rate_headers();
    if reset < 15 {
        // Too close to the end of the window: wait for the next one (at most 15 s, near
        // midnight UTC only).
        tokio::time::sleep(Duration::from_secs(reset + 1)).await;
    }
    for _ in 0..3 {
        svc.use_key(&t.sk).await.ok(200);
    }
    svc.secret_key(&t.sk, "one").await;
    let (_, two) = svc.secret_key(&t.sk, "two").await;
    let audit_before = svc.audit(&t.sk, 100).await;
    let r = svc.call(Some(&t.sk), "GET", "/v1/rate-limit", None).await;
    let remaining = r.ok(200)["remaining"].as_u64().unwrap();
    assert!(remaining <= 11, "at least 9 requests counted: {remaining}");
    assert_eq!(
        actions(&audit_before),
        ["tenant.created", "api_key.created", "api_key.created"]
    );

    svc.restart().await;

    let r = svc.call(Some(&t.sk), "GET", "/v1/rate-limit", None).await;
    assert_eq!(
        r.ok(200)["remaining"].as_u64().unwrap(),
        remaining - 1,
        "{}",
        r.text
    );
    assert_eq!(r.body["limit"], 20);
    assert_eq!(svc.audit(&t.sk, 100).await, audit_before);
    svc.use_key(&two).await.ok(200);
    // New records continue the sequence.
    svc.secret_key(&t.sk, "three").await;
    let after = svc.audit(&t.sk, 100).await;
    assert_gapless(&after);
    assert_eq!(after.len(), 4);
}

// 6 -------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_rebuilds_memory_from_storage_and_keeps_sockets() {
    let svc = Svc::start().await;
    let t = svc.tenant_with_limit("evicted", 1000, 3600).await;
    let other = svc.tenant("evicted-other").await;
    svc.start_of_next_window(3600).await;
    let mut ws = svc.ws_connected(&t.sk, &t.id).await;
    let (k, secret) = svc.secret_key(&t.sk, "before").await;
    assert_eq!(ws.next_event().await["action"], "api_key.created");
    let r = svc.call(Some(&t.sk), "GET", "/v1/rate-limit", None).await;
    let remaining = r.ok(200)["remaining"].as_u64().unwrap();
    assert_eq!(remaining, 1000 - 3, "socket, creation, this read");
    let audit_before = svc.audit(&t.sk, 100).await;

    // Warm the other tenant's object too; evict one tenant, then all.
    svc.use_key(&other.sk).await.ok(200);
    assert!(svc.evict(Some(&t.id)).await >= 1);
    let r = svc.call(Some(&t.sk), "GET", "/v1/rate-limit", None).await;
    // The audit read took two requests (a page and the empty end), this read one more.
    assert_eq!(
        r.ok(200)["remaining"].as_u64().unwrap(),
        remaining - 3,
        "count rebuilt"
    );
    assert!(svc.evict(None).await >= 2);
    assert_eq!(svc.audit(&t.sk, 100).await, audit_before);
    svc.use_key(&secret).await.ok(200);

    // The socket accepted before the eviction still gets events and answers pings.
    ws.ping_pong().await;
    assert!(svc.evict(None).await >= 1);
    svc.call(
        Some(&t.sk),
        "DELETE",
        &format!("/v1/api-keys/{}", enc(k["id"].as_str().unwrap())),
        None,
    )
    .await
    .ok(200);
    let rec = ws.next_event().await;
    assert_eq!(rec["action"], "api_key.revoked");
    assert_eq!(rec["seq"], audit_before.len() as i64 + 1, "no seq reused");
    // The revocation, made in a rebuilt object, holds.
    svc.use_key(&secret).await.expect(401, "unauthorized");
    // A socket of the revoked key opened before an eviction is still closed on revocation.
    let (k2, secret2) = svc.secret_key(&t.sk, "socket-key").await;
    ws.next_event().await;
    let mut ws2 = svc.ws_connected(&secret2, &t.id).await;
    assert!(svc.evict(None).await >= 1);
    svc.call(
        Some(&t.sk),
        "DELETE",
        &format!("/v1/api-keys/{}", enc(k2["id"].as_str().unwrap())),
        None,
    )
    .await
    .ok(200);
    assert_eq!(ws2.closed_with().await, Some(CLOSE_CREDENTIAL_ENDED));
    assert_eq!(ws.next_event().await["action"], "api_key.revoked");

    // Eviction of an unknown tenant evicts nothing.
    assert_eq!(svc.evict(Some("tenant:nobody")).await, 0);
    ws.close().await;
}

// 7 -------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grace_periods_end_by_alarm() {
    let svc = Svc::start().await;
    let t = svc.tenant("alarm").await;
    let mut ws = svc.ws_connected(&t.sk, &t.id).await;
    let (k, old) = svc.secret_key(&t.sk, "graced").await;
    let old_id = k["id"].as_str().unwrap().to_owned();
    let r = svc
        .call(
            Some(&t.sk),
            "POST",
            &format!("/v1/api-keys/{}/rotate", enc(&old_id)),
            Some(json!({"expiresInSeconds": 3600})),
        )
        .await;
    let b = r.ok(201).clone();
    let new = b["credentials"]["keySecret"].as_str().unwrap().to_owned();
    assert!(b["previousKey"]["expiresAt"].is_string());
    assert!(b["previousKey"]["revokedAt"].is_null());
    svc.use_key(&old).await.ok(200);
    svc.use_key(&new).await.ok(200);

    // Firing the alarm early ends nothing and keeps it scheduled.
    assert!(svc.fire_alarms(Some(&t.id)).await >= 1);
    svc.use_key(&old).await.ok(200);
    // Not yet due.
    svc.advance(3_590_000).await;
    svc.use_key(&old).await.ok(200);
    // Due: the alarm fires, the old key is refused, the end is audited.
    svc.advance(11_000).await;
    svc.use_key(&old).await.expect(401, "unauthorized");
    svc.use_key(&new).await.ok(200);
    let records = svc.audit(&t.sk, 100).await;
    let expired: Vec<&Value> = records
        .iter()
        .filter(|r| r["action"] == "api_key.expired")
        .collect();
    assert_eq!(expired.len(), 1, "{records:?}");
    assert_eq!(expired[0]["actorKeyId"], "system");
    assert_eq!(expired[0]["target"], old_id);
    let r = svc
        .call(
            Some(&t.sk),
            "GET",
            &format!("/v1/api-keys/{}", enc(&old_id)),
            None,
        )
        .await;
    assert!(r.ok(200)["apiKey"]["revokedAt"].is_string(), "{}", r.text);
    // The event was pushed too.
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(ws.next_event().await["action"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        seen,
        ["api_key.created", "api_key.rotated", "api_key.expired"]
    );
    // Firing again changes nothing.
    svc.fire_alarms(None).await;
    let again = svc.audit(&t.sk, 100).await;
    assert_eq!(again.len(), records.len());
    ws.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_alarms_survive_a_restart() {
    let mut svc = Svc::start().await;
    let t = svc.tenant("alarm-restart").await;
    let (k, old) = svc.secret_key(&t.sk, "graced").await;
    let old_id = k["id"].as_str().unwrap().to_owned();
    svc.call(
        Some(&t.sk),
        "POST",
        &format!("/v1/api-keys/{}/rotate", enc(&old_id)),
        Some(json!({"expiresInSeconds": 3600})),
    )
    .await
    .ok(201);

    svc.restart().await;

    svc.use_key(&old).await.ok(200);
    svc.advance(3_601_000).await;
    svc.use_key(&old).await.expect(401, "unauthorized");
    let records = svc.audit(&t.sk, 100).await;
    let last = records.last().unwrap();
    assert_eq!(last["action"], "api_key.expired", "{records:?}");
    assert_eq!(last["target"], old_id);
    assert_eq!(last["actorKeyId"], "system");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alarm_scheduler_fires_on_time_also_after_a_restart() {
    // Real time, no test clock: the scheduler itself must fire.
    let mut svc = Svc::start_with(false).await;
    let t = svc.tenant("alarm-real").await;
    let mut ws = svc.ws_connected(&t.sk, &t.id).await;
    let mut ids = Vec::new();
    for grace in [1, 2] {
        let (k, _) = svc.secret_key(&t.sk, "short").await;
        let id = k["id"].as_str().unwrap().to_owned();
        svc.call(
            Some(&t.sk),
            "POST",
            &format!("/v1/api-keys/{}/rotate", enc(&id)),
            Some(json!({"expiresInSeconds": grace})),
        )
        .await
        .ok(201);
        ids.push(id);
    }
    // The first grace period ends while the service runs.
    let mut seen = Vec::new();
    while seen.len() < 5 {
        let rec = ws.next_event().await;
        seen.push((
            rec["action"].as_str().unwrap().to_owned(),
            rec["target"].clone(),
        ));
    }
    assert_eq!(
        seen[4],
        ("api_key.expired".to_owned(), json!(ids[0])),
        "{seen:?}"
    );
    // The second ends while it is down: it fires after the restart. Shutting down with a
    // socket open finishes.
    svc.restart().await;
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let mut expired = Vec::new();
    for _ in 0..40 {
        expired = svc
            .audit(&t.sk, 100)
            .await
            .into_iter()
            .filter(|r| r["action"] == "api_key.expired")
            .map(|r| r["target"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>();
        if expired.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(expired, ids, "each grace period ended once, in order");
    drop(ws);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_open_websockets() {
    let mut svc = Svc::start().await;
    let t = svc.tenant("ws-shutdown").await;
    let mut ws = svc.ws_connected(&t.sk, &t.id).await;
    svc.restart().await;
    // The old service is gone: its socket is closed (1001 going away, or at least ended),
    // and nothing answers on it any more.
    match ws.next_frame(Duration::from_secs(2)).await {
        Frame::Close(_) | Frame::Ended => {}
        Frame::Silent => {
            ws.send_text(r#"{"type":"ping"}"#).await;
            let after = ws.next_frame(Duration::from_secs(1)).await;
            panic!("the socket outlived shutdown(); a ping got {after:?}");
        }
        Frame::Json(v) => panic!("the socket outlived shutdown(): {v}"),
    }
}

/// Enough frames to fill the kernel's buffers on loopback (up to 4 MiB of send buffer) and
/// then the socket's queue of 256 frames: about 11,000 events, 3 to 4 s here.
const SLOW_ROUNDS: usize = 220;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_closed_with_1013() {
    let svc = Svc::start().await;
    let t = svc.tenant("slow").await;
    let mut slow = svc.ws_slow_reader(&t.sk).await;
    let mut fast = svc.ws_connected(&t.sk, &t.id).await;
    // Generate events while the slow socket reads nothing; the fast one keeps up.
    let started = std::time::Instant::now();
    let mut made = 0;
    let path = format!("/admin/tenants/{}", enc(&t.id));
    for round in 0..SLOW_ROUNDS {
        let batch = join_all((0..50).map(|i| {
            svc.admin(
                "PATCH",
                &path,
                Some(json!({"name": format!("{round}-{i}-{}", "x".repeat(190))})),
            )
        }))
        .await;
        assert!(batch.iter().all(|r| r.status == 200));
        made += 50;
        for _ in 0..50 {
            assert_eq!(fast.next_event().await["action"], "tenant.updated");
        }
    }
    eprintln!("{made} events in {:?}", started.elapsed());
    // Now read: some events, then the close with 1013.
    let mut events = 0;
    let end = loop {
        match slow.next_frame(Duration::from_secs(5)).await {
            Frame::Json(v) if v["type"] == "event" || v["type"] == "connected" => events += 1,
            Frame::Json(v) => panic!("unexpected {v}"),
            other => break other,
        }
    };
    assert!(
        matches!(end, Frame::Close(Some(1013))),
        "closed with 1013, got {end:?} after {made} events, {events} read"
    );
    assert!(
        events < made,
        "dropped rather than buffered: {events} of {made}"
    );
    fast.ping_pong().await;
}

// 8 -------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_events_protocol_and_tenant_isolation() {
    let svc = Svc::start().await;
    let a = svc.tenant("ws-a").await;
    let b = svc.tenant("ws-b").await;
    let a_sk_id = svc.key_id_of(&a.sk, &a.sk).await;

    let mut wa = svc.ws(Some(&a.sk)).await.expect("upgrade");
    let hello = wa.next_json().await;
    assert_eq!(hello["type"], "connected");
    assert_eq!(hello["tenantId"], a.id);
    assert_eq!(hello["keyId"], a_sk_id);
    assert!(hello["timestamp"].as_i64().unwrap() > 1_600_000_000_000);
    let mut wb = svc.ws_connected(&b.sk, &b.id).await;

    // Protocol.
    wa.ping_pong().await;
    wa.send_text("not json").await;
    assert_eq!(
        wa.next_json().await,
        json!({"type":"error","error":"Invalid message format"})
    );
    wa.send_binary(&[0x7b, 0x7d]).await;
    assert_eq!(
        wa.next_json().await,
        json!({"type":"error","error":"Invalid message format"})
    );
    wa.send_text(r#"{"type":"subscribe"}"#).await;
    assert_eq!(
        wa.next_json().await,
        json!({"type":"error","error":"Unknown message type"})
    );
    wa.send_text(r#"{"kind":"ping"}"#).await;
    let e = wa.next_json().await;
    assert_eq!(e["type"], "error", "{e}");
    assert!(e["error"].is_string());
    wa.ping_pong().await;

    // An event in A reaches A's sockets only.
    let (k, secret) = svc.secret_key(&a.sk, "evented").await;
    let rec = wa.next_event().await;
    assert_eq!(rec["action"], "api_key.created");
    assert_eq!(rec["tenantId"], a.id);
    assert_eq!(rec["target"], k["id"]);
    assert_eq!(rec["actorKeyId"], a_sk_id);
    assert_no_secret(&rec.to_string(), std::slice::from_ref(&secret));
    svc.admin(
        "PATCH",
        &format!("/admin/tenants/{}", enc(&a.id)),
        Some(json!({"name": "A2"})),
    )
    .await
    .ok(200);
    assert_eq!(wa.next_event().await["action"], "tenant.updated");
    assert!(matches!(
        wb.next_frame(Duration::from_millis(300)).await,
        Frame::Silent
    ));
    wb.ping_pong().await;

    // A socket opened with a key closes with 1008 when that key is revoked; the others stay.
    let mut wk = svc.ws_connected(&secret, &a.id).await;
    let (rk, rk_secret) = svc.restricted_key(&a.sk, &["read:events"]).await;
    assert_eq!(wa.next_event().await["action"], "api_key.created");
    let mut wr = svc.ws_connected(&rk_secret, &a.id).await;
    svc.call(
        Some(&a.sk),
        "DELETE",
        &format!("/v1/api-keys/{}", enc(k["id"].as_str().unwrap())),
        None,
    )
    .await
    .ok(200);
    assert_eq!(wk.closed_with().await, Some(CLOSE_CREDENTIAL_ENDED));
    assert_eq!(wa.next_event().await["action"], "api_key.revoked");
    assert_eq!(wr.next_event().await["action"], "api_key.revoked");
    // ... or rotated without grace.
    svc.call(
        Some(&a.sk),
        "POST",
        &format!("/v1/api-keys/{}/rotate", enc(rk["id"].as_str().unwrap())),
        None,
    )
    .await
    .ok(201);
    assert_eq!(wr.closed_with().await, Some(CLOSE_CREDENTIAL_ENDED));
    assert_eq!(wa.next_event().await["action"], "api_key.rotated");
    wa.ping_pong().await;
    // A revoked key cannot open one.
    assert_eq!(svc.ws_refused(Some(&secret)).await, 401);

    // Permissions and refusals.
    let (_, no_events) = svc.restricted_key(&a.sk, &["read:api_keys"]).await;
    assert_eq!(svc.ws_refused(Some(&no_events)).await, 403);
    assert_eq!(svc.ws_refused(Some(&a.pk)).await, 403);
    assert_eq!(svc.ws_refused(None).await, 401);
    assert_eq!(svc.ws_refused(Some("sk_live_notakey")).await, 401);
    assert_eq!(svc.ws_refused(Some(ADMIN_KEY)).await, 403);
    let r = svc.call(Some(&a.sk), "GET", "/v1/events", None).await;
    assert_eq!(r.status, 426, "{}", r.text);
    assert_eq!(r.header("upgrade"), "websocket");
    svc.call(None, "GET", "/v1/events", None)
        .await
        .expect(401, "unauthorized");

    // Suspending the tenant closes all its sockets, and only its.
    let mut wa2 = svc.ws_connected(&a.sk, &a.id).await;
    svc.admin(
        "PATCH",
        &format!("/admin/tenants/{}", enc(&a.id)),
        Some(json!({"status": "suspended"})),
    )
    .await
    .ok(200);
    assert_eq!(wa2.next_event().await["action"], "tenant.updated");
    assert_eq!(wa.closed_with().await, Some(CLOSE_CREDENTIAL_ENDED));
    assert_eq!(wa2.closed_with().await, Some(CLOSE_CREDENTIAL_ENDED));
    wb.ping_pong().await;
    // Deleting closes them too.
    svc.admin("DELETE", &format!("/admin/tenants/{}", enc(&b.id)), None)
        .await
        .ok(200);
    let rec = wb.next_event().await;
    assert_eq!(
        (&rec["action"], &rec["actorKeyId"], &rec["target"]),
        (
            &json!("tenant.deleted"),
            &json!("platform_admin"),
            &json!(b.id)
        )
    );
    assert_eq!(wb.closed_with().await, Some(CLOSE_CREDENTIAL_ENDED));
    // Closed for good: the deleted tenant's key cannot open another.
    assert_eq!(svc.ws_refused(Some(&b.sk)).await, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_of_a_key_rotated_with_grace_lives_until_the_grace_ends() {
    let svc = Svc::start().await;
    let t = svc.tenant("ws-grace").await;
    let (k, secret) = svc.secret_key(&t.sk, "graced").await;
    let mut ws = svc.ws_connected(&secret, &t.id).await;
    svc.call(
        Some(&t.sk),
        "POST",
        &format!("/v1/api-keys/{}/rotate", enc(k["id"].as_str().unwrap())),
        Some(json!({"expiresInSeconds": 600})),
    )
    .await
    .ok(201);
    // The key still works, so its socket stays open and gets the event.
    svc.use_key(&secret).await.ok(200);
    assert_eq!(ws.next_event().await["action"], "api_key.rotated");
    ws.ping_pong().await;
    svc.advance(601_000).await;
    assert_eq!(ws.closed_with().await, Some(CLOSE_CREDENTIAL_ENDED));
}

// 9 -------------------------------------------------------------------------------------------

const CSV: &str = "subject_type,subject_id,relation,object_type,object_id\r\n\
user,alice,member,group,eng\r\n\
group,eng,viewer,doc,readme\r\n\
user,\"bob, jr\",owner,doc,\"plan \"\"x\"\"\"\r\n";

async fn put_csv(svc: &Svc, key: &str, csv: &str) -> do_support::Resp {
    svc.send(
        svc.req("PUT", "/v1/graph/csv")
            .bearer_auth(key)
            .header("content-type", "text/csv")
            .body(csv.to_owned()),
    )
    .await
}

async fn check(svc: &Svc, key: &str, subject: &str, relation: &str, object: &str) -> bool {
    let r = svc
        .call(
            Some(key),
            "POST",
            "/v1/graph/check",
            Some(json!({"subject": subject, "relation": relation, "object": object})),
        )
        .await;
    r.ok(200)["allowed"].as_bool().expect("allowed")
}

async fn validate(svc: &Svc, key: &str, edges: &[&str], user: &str, resource: &str) -> Value {
    let r = svc
        .call(
            Some(key),
            "POST",
            "/v1/graph/validate",
            Some(json!({"edgeIds": edges, "userId": user, "resourceId": resource})),
        )
        .await;
    r.ok(200).clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_upload_reload_check_validate_and_mutate() {
    let svc = Svc::start().await;
    let t = svc.tenant("graph").await;
    let other = svc.tenant("graph-other").await;
    let sk = t.sk.as_str();
    let sk_id = svc.key_id_of(sk, sk).await;
    let mut ws = svc.ws_connected(sk, &t.id).await;

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
    let r = put_csv(&svc, sk, CSV).await;
    let b = r.ok(200);
    assert_eq!(b["edgeCount"], 3);
    assert_eq!(b["key"], format!("tenants/{}/graph.csv", t.id));
    assert!(r.headers.contains_key("ratelimit-remaining"));
    // Uploading does not load.
    assert_eq!(
        svc.call(Some(sk), "GET", "/v1/graph/state", None)
            .await
            .ok(200)["version"],
        0
    );

    let r = svc.call(Some(sk), "POST", "/v1/graph/reload", None).await;
    let b = r.ok(200);
    assert_eq!(b["success"], true);
    assert_eq!(b["tenantId"], t.id);
    assert_eq!(
        (b["edgeCount"].as_i64(), b["version"].as_i64()),
        (Some(3), Some(1))
    );
    let s = svc
        .call(Some(sk), "GET", "/v1/graph/state", None)
        .await
        .ok(200)
        .clone();
    assert_eq!(s["tenantId"], t.id);
    assert_eq!(
        (s["version"].as_i64(), s["edgeCount"].as_i64()),
        (Some(1), Some(3))
    );
    assert!(s["loadedAt"].is_string());

    // Check: direct, through membership, quoted fields, and no.
    assert!(check(&svc, sk, "group:eng", "viewer", "doc:readme").await);
    assert!(check(&svc, sk, "user:alice", "viewer", "doc:readme").await);
    assert!(check(&svc, sk, "user:bob, jr", "owner", "doc:plan \"x\"").await);
    assert!(!check(&svc, sk, "user:alice", "owner", "doc:readme").await);
    assert!(!check(&svc, sk, "user:mallory", "viewer", "doc:readme").await);

    // Validate.
    let e1 = "user:alice:member:group:eng";
    let e2 = "group:eng:viewer:doc:readme";
    assert_eq!(
        validate(&svc, sk, &[e1, e2], "user:alice", "doc:readme").await,
        json!({"valid": true})
    );
    let reason = |v: Value| {
        v["reason"]
            .as_str()
            .unwrap_or_else(|| panic!("a reason: {v}"))
            .to_owned()
    };
    assert_eq!(
        reason(validate(&svc, sk, &[], "user:alice", "doc:readme").await),
        "Empty edge chain"
    );
    assert_eq!(
        reason(
            validate(
                &svc,
                sk,
                &[e1, "user:x:member:group:y"],
                "user:alice",
                "doc:readme"
            )
            .await
        ),
        "Edge not found: user:x:member:group:y"
    );
    assert!(
        reason(validate(&svc, sk, &[e2, e1], "group:eng", "group:eng").await)
            .starts_with("Chain break: ")
    );
    assert!(
        reason(validate(&svc, sk, &[e1, e2], "user:bob", "doc:readme").await)
            .starts_with("Chain start mismatch: ")
    );
    assert!(
        reason(validate(&svc, sk, &[e1, e2], "user:alice", "doc:other").await)
            .starts_with("Chain end mismatch: ")
    );

    // Mutations: each call is one new version, seen by the very next check.
    let r = svc
        .call(
            Some(sk),
            "POST",
            "/v1/graph/mutations",
            Some(json!({"mutations": [{"op": "add", "edge": {"subject_type": "user", "subject_id": "carol",
                "relation": "member", "object_type": "group", "object_id": "eng"}}]})),
        )
        .await;
    assert_eq!(r.ok(200)["version"], 2);
    assert_eq!(r.body["applied"], 1);
    assert!(check(&svc, sk, "user:carol", "viewer", "doc:readme").await);
    let r = svc
        .call(
            Some(sk),
            "POST",
            "/v1/graph/mutations",
            Some(json!({"mutations": [{"op": "revoke", "edgeId": e1}]})),
        )
        .await;
    assert_eq!(r.ok(200)["version"], 3);
    assert!(!check(&svc, sk, "user:alice", "viewer", "doc:readme").await);
    assert_eq!(
        reason(validate(&svc, sk, &[e1, e2], "user:alice", "doc:readme").await),
        format!("Edge revoked: {e1}")
    );
    let s = svc
        .call(Some(sk), "GET", "/v1/graph/state", None)
        .await
        .ok(200)
        .clone();
    assert_eq!(
        (s["version"].as_i64(), s["edgeCount"].as_i64()),
        (Some(3), Some(3))
    );
    // Revoking an unknown edge refuses the whole batch, naming it; nothing changes.
    let r = svc
        .call(
            Some(sk),
            "POST",
            "/v1/graph/mutations",
            Some(json!({"mutations": [{"op": "revoke", "edgeId": e2}, {"op": "revoke", "edgeId": "a:b:c:d:e"}]})),
        )
        .await;
    r.expect(400, "invalid_field");
    assert_eq!(r.body["field"], "mutations[1].edgeId");
    assert!(check(&svc, sk, "group:eng", "viewer", "doc:readme").await);

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
                sk_id.clone()
            ),
            (3, "revoke".into(), e1.into(), sk_id.clone()),
        ]
    );
    let r = svc
        .call(Some(sk), "GET", "/v1/graph/mutations?since=0", None)
        .await;
    let all = r.ok(200)["mutations"].as_array().unwrap().clone();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0]["op"], "reload");
    assert!(all[0]["edgeId"].is_null());
    let r = svc
        .call(Some(sk), "GET", "/v1/graph/mutations?since=3", None)
        .await;
    assert_eq!(r.ok(200)["mutations"], json!([]));
    svc.call(Some(sk), "GET", "/v1/graph/mutations?since=4", None)
        .await
        .expect(400, "invalid_query");

    // A bad CSV: 400 naming line and column; the graph and the stored file stay as they were.
    let bad = "subject_type,subject_id,relation,object_type,object_id\n\
               user,dave,member,group,eng\n\
               user,erin,bad relation,doc,readme\n";
    let r = put_csv(&svc, sk, bad).await;
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
        &svc,
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
        .send(
            svc.req("PUT", "/v1/graph/csv")
                .bearer_auth(sk)
                .header("content-type", "application/json")
                .body(CSV),
        )
        .await;
    assert_eq!(r.status, 415, "{}", r.text);
    let s2 = svc
        .call(Some(sk), "GET", "/v1/graph/state", None)
        .await
        .ok(200)
        .clone();
    assert_eq!(s2, s);
    assert!(!check(&svc, sk, "user:dave", "viewer", "doc:readme").await);
    // Reloading reads the last good file: a whole new graph, as the file says.
    let r = svc.call(Some(sk), "POST", "/v1/graph/reload", None).await;
    assert_eq!(
        (r.ok(200)["version"].as_i64(), r.body["edgeCount"].as_i64()),
        (Some(4), Some(3))
    );
    assert!(check(&svc, sk, "user:alice", "viewer", "doc:readme").await);
    assert!(!check(&svc, sk, "user:carol", "viewer", "doc:readme").await);

    // Audited.
    let records = svc.audit(sk, 100).await;
    let graph: Vec<(&str, &str, &str)> = records
        .iter()
        .filter(|r| r["target"] == "graph")
        .map(|r| {
            (
                r["action"].as_str().unwrap(),
                r["actorKeyId"].as_str().unwrap(),
                r["requestId"].as_str().unwrap(),
            )
        })
        .collect();
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

    // Size limits: 8 MiB for the graph file, 64 KiB for JSON bodies.
    let mut big = String::from("subject_type,subject_id,relation,object_type,object_id\n");
    while big.len() <= 8 * 1024 * 1024 {
        big.push_str("user,someone-with-a-rather-long-name,member,group,some-group-name\n");
    }
    put_csv(&svc, sk, &big)
        .await
        .expect(413, "payload_too_large");
    let r = svc
        .call(
            Some(sk),
            "POST",
            "/v1/graph/check",
            Some(json!({"subject": "x".repeat(70_000)})),
        )
        .await;
    r.expect(413, "payload_too_large");
    assert_eq!(
        svc.call(Some(sk), "GET", "/v1/graph/state", None)
            .await
            .ok(200)["version"],
        4
    );

    // Another tenant's key sees its own empty graph, never this one.
    let o = other.sk.as_str();
    let s = svc
        .call(Some(o), "GET", "/v1/graph/state", None)
        .await
        .ok(200)
        .clone();
    assert_eq!(s["tenantId"], other.id);
    assert_eq!(
        (s["version"].as_i64(), s["edgeCount"].as_i64()),
        (Some(0), Some(0))
    );
    assert!(!check(&svc, o, "user:alice", "viewer", "doc:readme").await);
    assert_eq!(
        reason(validate(&svc, o, &[e1, e2], "user:alice", "doc:readme").await),
        format!("Edge not found: {e1}")
    );
    let r = svc
        .call(Some(o), "GET", "/v1/graph/mutations?since=0", None)
        .await;
    assert_eq!(r.ok(200)["mutations"], json!([]));
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

    // Permissions.
    let (_, reader) = svc.restricted_key(sk, &["read:graph"]).await;
    let (_, writer) = svc.restricted_key(sk, &["write:graph"]).await;
    svc.call(Some(&reader), "GET", "/v1/graph/state", None)
        .await
        .ok(200);
    assert!(check(&svc, &reader, "user:alice", "viewer", "doc:readme").await);
    assert_eq!(
        validate(&svc, &reader, &[e1, e2], "user:alice", "doc:readme").await["valid"],
        true
    );
    svc.call(Some(&reader), "GET", "/v1/graph/mutations?since=0", None)
        .await
        .ok(200);
    svc.call(
        Some(&reader),
        "POST",
        "/v1/graph/mutations",
        Some(json!({"mutations": [{"op": "revoke", "edgeId": e1}]})),
    )
    .await
    .expect(403, "forbidden");
    svc.call(
        Some(&writer),
        "POST",
        "/v1/graph/check",
        Some(json!({"subject": "user:alice", "relation": "viewer", "object": "doc:readme"})),
    )
    .await
    .expect(403, "forbidden");
    put_csv(&svc, &reader, CSV).await.expect(403, "forbidden");
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
async fn graph_survives_eviction_and_restart() {
    let mut svc = Svc::start().await;
    let t = svc.tenant("graph-durable").await;
    put_csv(&svc, &t.sk, CSV).await.ok(200);
    svc.call(Some(&t.sk), "POST", "/v1/graph/reload", None)
        .await
        .ok(200);
    svc.call(
        Some(&t.sk),
        "POST",
        "/v1/graph/mutations",
        Some(json!({"mutations": [{"op": "revoke", "edgeId": "group:eng:viewer:doc:readme"}]})),
    )
    .await
    .ok(200);
    let state = svc
        .call(Some(&t.sk), "GET", "/v1/graph/state", None)
        .await
        .ok(200)
        .clone();
    assert!(svc.evict(None).await >= 2);
    assert_eq!(
        svc.call(Some(&t.sk), "GET", "/v1/graph/state", None)
            .await
            .ok(200),
        &state
    );
    assert!(!check(&svc, &t.sk, "user:alice", "viewer", "doc:readme").await);
    svc.restart().await;
    assert_eq!(
        svc.call(Some(&t.sk), "GET", "/v1/graph/state", None)
            .await
            .ok(200),
        &state
    );
    assert!(!check(&svc, &t.sk, "user:alice", "viewer", "doc:readme").await);
    assert!(check(&svc, &t.sk, "user:bob, jr", "owner", "doc:plan \"x\"").await);
    // The stored file survived the restart too: reloading it brings the revoked edge back.
    svc.call(Some(&t.sk), "POST", "/v1/graph/reload", None)
        .await
        .ok(200);
    assert!(check(&svc, &t.sk, "user:alice", "viewer", "doc:readme").await);
}

// 10 ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_object_state_is_reachable_without_a_key() {
    let svc = Svc::start().await;
    let t = svc.tenant("locked").await;
    let mut checked = 0;
    for (method, path) in auth_core::ROUTES {
        if !path.starts_with("/v1/") {
            continue;
        }
        let path = path.replace("{id}", "key%3A0123456789abcdef");
        let mut rb = svc.req(method, &path);
        if *method != "GET" {
            rb = rb.header("content-type", "application/json").body("{}");
        }
        let r = svc.send(rb).await;
        r.expect(401, "unauthorized");
        // A key of the wrong kind or a broken one gets the same.
        let r = svc
            .send(svc.req(method, &path).bearer_auth("sk_live_short"))
            .await;
        r.expect(401, "unauthorized");
        // The admin key is not a tenant key.
        let r = svc
            .send(svc.req(method, &path).bearer_auth(ADMIN_KEY))
            .await;
        r.expect(403, "forbidden");
        checked += 1;
    }
    assert!(checked >= 16, "every /v1 route: {checked}");
    // The upgrade path too.
    assert_eq!(svc.ws_refused(None).await, 401);

    // Test controls: the admin key only.
    for path in ["/_test/clock", "/_test/evict", "/_test/alarms/fire"] {
        let body = json!({"advanceMs": 0});
        svc.call(None, "POST", path, Some(body.clone()))
            .await
            .expect(401, "unauthorized");
        svc.call(
            Some("sk_live_Wrong0123456789abcdefghijklmnopqrstuvwxyz"),
            "POST",
            path,
            Some(body.clone()),
        )
        .await
        .expect(401, "unauthorized");
        svc.call(Some(&t.sk), "POST", path, Some(body.clone()))
            .await
            .expect(403, "forbidden");
    }
    svc.admin("GET", "/_test/clock", None)
        .await
        .expect(405, "method_not_allowed");
    svc.admin("POST", "/_test/nothing", Some(json!({})))
        .await
        .expect(404, "not_found");
    svc.admin("POST", "/_test/clock", Some(json!({"advanceMs": -1})))
        .await
        .expect(400, "invalid_field");
    let caps = svc.call(None, "GET", "/.well-known/authconf", None).await;
    let tc = &caps.ok(200)["testControls"];
    assert_eq!(
        (&tc["enabled"], &tc["clock"], &tc["evict"], &tc["alarms"]),
        (&json!(true), &json!(true), &json!(true), &json!(true))
    );
    assert_eq!(caps.body["rateLimit"]["algorithm"], "fixed-window");
    assert_eq!(caps.body["rateLimit"]["exact"], true);
    assert_eq!(caps.body["features"]["events"], true);
    assert_eq!(caps.body["features"]["auditLog"], true);
    assert_eq!(caps.body["features"]["graph"], true);

    // Without test hooks, they do not exist.
    let off = Svc::start_with(false).await;
    for path in ["/_test/clock", "/_test/evict", "/_test/alarms/fire"] {
        off.admin("POST", path, Some(json!({"advanceMs": 1000})))
            .await
            .expect(404, "not_found");
        off.call(None, "POST", path, Some(json!({})))
            .await
            .expect(404, "not_found");
    }
    let caps = off.call(None, "GET", "/.well-known/authconf", None).await;
    let tc = &caps.ok(200)["testControls"];
    assert_eq!(
        (&tc["enabled"], &tc["clock"], &tc["evict"], &tc["alarms"]),
        (&json!(false), &json!(false), &json!(false), &json!(false))
    );
}

/// Concurrent uploads of one tenant's graph file all succeed (each write has a temporary file
/// of its own), and an 8 MiB file whose header is one field of control bytes gets a small 400
/// that quotes a short prefix of it, not the whole input escaped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_uploads_succeed_and_a_huge_bad_header_gets_a_small_400() {
    let svc = Svc::start().await;
    let t = svc.tenant("uploads").await;
    let answers = join_all((0..32).map(|_| put_csv(&svc, &t.sk, CSV))).await;
    for r in &answers {
        assert_eq!(r.ok(200)["edgeCount"], 3);
    }
    let bad = vec![0x01u8; 8 * 1024 * 1024];
    let r = svc
        .send(
            svc.req("PUT", "/v1/graph/csv")
                .bearer_auth(&t.sk)
                .header("content-type", "text/csv")
                .body(bad),
        )
        .await;
    r.expect(400, "invalid_field");
    assert!(r.text.len() < 2048, "a {}-byte error", r.text.len());
}
