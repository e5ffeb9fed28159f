//! Integration tests of `auth-service`: each test starts the service on an ephemeral port with
//! a data dir of its own and checks the rules of `docs/contract.md` over real HTTP, bad inputs
//! included. Every answer also passes the checks in `common::Harness::send` (never a 500,
//! always `X-Request-Id`, errors as problem documents).

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

// ---------------------------------------------------------------- meta

#[tokio::test]
async fn meta_routes_answer_without_auth() {
    let h = Harness::start().await;
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
    conforms(
        &doc,
        &json!({"$ref":"#/components/schemas/Capabilities"}),
        &caps,
        "capabilities",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let health = h.call(None, "GET", "/health", None).await.body;
    conforms(
        &doc,
        &json!({"$ref":"#/components/schemas/Health"}),
        &health,
        "health",
    )
    .unwrap_or_else(|e| panic!("{e}"));

    // HEAD answers like GET, without a body; request ids differ per request.
    let r = h.send(h.req("HEAD", "/health")).await;
    assert_eq!(r.status, 200);
    assert!(r.text.is_empty());
    let a = h.call(None, "GET", "/health", None).await;
    let b = h.call(None, "GET", "/health", None).await;
    assert_ne!(a.header("x-request-id"), b.header("x-request-id"));
}

// ---------------------------------------------------------------- admin authentication

#[tokio::test]
async fn admin_routes_need_the_platform_admin_key() {
    let h = Harness::start().await;
    let t = h.create_tenant("acme").await;
    let (_, rk) = h
        .create_key(
            &t.sk,
            json!({"name":"r","type":"restricted","permissions":["*"]}),
        )
        .await;
    let (_, sk_test) = h
        .create_key(
            &t.sk,
            json!({"name":"t","type":"secret","environment":"test"}),
        )
        .await;
    let (revoked, revoked_secret) = h
        .create_key(&t.sk, json!({"name":"x","type":"secret"}))
        .await;
    h.call(
        Some(&t.sk),
        "DELETE",
        &format!("/v1/api-keys/{}", enc(revoked["id"].as_str().unwrap())),
        None,
    )
    .await
    .ok(200);

    let id = enc(&t.id);
    let routes: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", "/admin/tenants".into(), None),
        (
            "POST",
            "/admin/tenants".into(),
            Some(json!({"slug":"other","name":"O"})),
        ),
        ("GET", format!("/admin/tenants/{id}"), None),
        (
            "PUT",
            format!("/admin/tenants/{id}"),
            Some(json!({"name":"N"})),
        ),
        (
            "PATCH",
            format!("/admin/tenants/{id}"),
            Some(json!({"name":"N"})),
        ),
        ("DELETE", format!("/admin/tenants/{id}"), None),
        ("GET", format!("/admin/tenants/{id}/keys"), None),
        (
            "POST",
            format!("/admin/tenants/{id}/keys"),
            Some(json!({"name":"k","type":"secret"})),
        ),
    ];
    let mut unauthorized_bodies = BTreeSet::new();
    for (method, path, body) in &routes {
        // No key, an unknown key, a malformed one, another scheme, a revoked tenant key: 401.
        let bad_admin = format!("{ADMIN_KEY}x");
        for key in [
            None,
            Some("sk_live_unknown"),
            Some(bad_admin.as_str()),
            Some(revoked_secret.as_str()),
        ] {
            let r = h.call(key, method, path, body.clone()).await;
            r.expect(401, "unauthorized");
            unauthorized_bodies.insert(r.text.clone());
        }
        let r = h
            .send(
                h.req(method, path)
                    .header("authorization", format!("Basic {ADMIN_KEY}")),
            )
            .await;
        r.expect(401, "unauthorized");
        unauthorized_bodies.insert(r.text.clone());
        // Any key of a tenant: 403.
        for key in [&t.sk, &t.pk, &rk, &sk_test] {
            h.call(Some(key), method, path, body.clone())
                .await
                .expect(403, "forbidden");
        }
    }
    assert_eq!(unauthorized_bodies.len(), 1, "one identical 401 body");
    // The admin key passes (case-insensitive scheme), and it is no tenant key.
    let r = h
        .send(
            h.req("GET", "/admin/tenants")
                .header("authorization", format!("bearer {ADMIN_KEY}")),
        )
        .await;
    r.ok(200);
    h.admin("GET", "/v1/tenant", None)
        .await
        .expect(403, "forbidden");
    h.admin("GET", "/v1/api-keys", None)
        .await
        .expect(403, "forbidden");
}

// ---------------------------------------------------------------- tenants

#[tokio::test]
async fn creating_a_tenant() {
    let h = Harness::start().await;
    let r = h
        .admin(
            "POST",
            "/admin/tenants",
            Some(json!({"slug":"acme","name":"Acme"})),
        )
        .await;
    let b = r.ok(201).clone();
    let t = &b["tenant"];
    assert_eq!(t["id"], "tenant:acme");
    assert_eq!(t["slug"], "acme");
    assert_eq!(t["name"], "Acme");
    assert_eq!(t["plan"], "free", "plan defaults to free");
    assert_eq!(t["status"], "active");
    assert_eq!(t["rateLimit"], Value::Null);
    assert!(is_rfc3339_utc(t["createdAt"].as_str().unwrap()));
    assert!(is_rfc3339_utc(t["updatedAt"].as_str().unwrap()));
    assert!(t.get("deletedAt").is_none());
    let pk = b["credentials"]["publicKey"].as_str().unwrap();
    let sk = b["credentials"]["secretKey"].as_str().unwrap();
    assert!(is_key_format(pk) && pk.starts_with("pk_live_"), "{pk}");
    assert!(is_key_format(sk) && sk.starts_with("sk_live_"), "{sk}");
    assert!(h.works(pk).await && h.works(sk).await);

    // Plans, a rate limit, a 63-character slug, surrounding spaces in the name.
    for (i, plan) in ["free", "pro", "enterprise"].iter().enumerate() {
        let r = h
            .admin(
                "POST",
                "/admin/tenants",
                Some(
                    json!({"slug": format!("p{i}"), "name":"  P  ", "plan": plan,
                            "rateLimit": {"requests": 10, "windowSeconds": 60}}),
                ),
            )
            .await;
        let t = &r.ok(201)["tenant"];
        assert_eq!(t["plan"], *plan);
        assert_eq!(t["name"], "P");
        assert_eq!(t["rateLimit"], json!({"requests":10,"windowSeconds":60}));
    }
    let long = format!("a{}z", "-".repeat(61));
    let r = h
        .admin(
            "POST",
            "/admin/tenants",
            Some(json!({"slug": long, "name":"L"})),
        )
        .await;
    assert_eq!(r.ok(201)["tenant"]["id"], format!("tenant:{long}"));
    let r = h
        .admin(
            "POST",
            "/admin/tenants",
            Some(json!({"slug":"n200","name": "é".repeat(200)})),
        )
        .await;
    r.ok(201);

    // Duplicates, also of a deleted tenant's slug.
    h.admin(
        "POST",
        "/admin/tenants",
        Some(json!({"slug":"acme","name":"Again"})),
    )
    .await
    .expect(409, "conflict");
    h.admin("DELETE", "/admin/tenants/tenant:p0", None)
        .await
        .ok(200);
    h.admin(
        "POST",
        "/admin/tenants",
        Some(json!({"slug":"p0","name":"Again"})),
    )
    .await
    .expect(409, "conflict");
}

#[tokio::test]
async fn tenant_creation_is_validated_field_by_field() {
    let h = Harness::start().await;
    let cases: Vec<(Value, &str)> = vec![
        (json!({"name":"A"}), "slug"),
        (json!({"slug":"","name":"A"}), "slug"),
        (json!({"slug":"Acme","name":"A"}), "slug"),
        (json!({"slug":"-acme","name":"A"}), "slug"),
        (json!({"slug":"acme-","name":"A"}), "slug"),
        (json!({"slug":"ac_me","name":"A"}), "slug"),
        (json!({"slug":"ac.me","name":"A"}), "slug"),
        (json!({"slug":"tenant:acme","name":"A"}), "slug"),
        (json!({"slug": "a".repeat(64),"name":"A"}), "slug"),
        (json!({"slug": 5,"name":"A"}), "slug"),
        (json!({"slug": null,"name":"A"}), "slug"),
        (json!({"slug":"acme"}), "name"),
        (json!({"slug":"acme","name":""}), "name"),
        (json!({"slug":"acme","name":"   "}), "name"),
        (json!({"slug":"acme","name": "x".repeat(201)}), "name"),
        (json!({"slug":"acme","name": ["A"]}), "name"),
        (json!({"slug":"acme","name":"A","plan":"gold"}), "plan"),
        (json!({"slug":"acme","name":"A","plan":1}), "plan"),
        (json!({"slug":"acme","name":"A","plan":"Free"}), "plan"),
        (
            json!({"slug":"acme","name":"A","status":"active"}),
            "status",
        ),
        (
            json!({"slug":"acme","name":"A","parent_id":"x"}),
            "parent_id",
        ),
        (json!({"slug":"acme","name":"A","rateLimit":5}), "rateLimit"),
        (
            json!({"slug":"acme","name":"A","rateLimit":{"requests":0,"windowSeconds":1}}),
            "rateLimit.requests",
        ),
    ];
    for (body, field) in cases {
        h.admin("POST", "/admin/tenants", Some(body))
            .await
            .expect_field("invalid_field", field);
    }
    // Nothing was created by the refused requests.
    let r = h.admin("GET", "/admin/tenants", None).await;
    assert_eq!(r.ok(200)["pagination"]["total"], 0);
}

#[tokio::test]
async fn tenant_ids_in_paths_may_be_percent_encoded() {
    let h = Harness::start().await;
    let t = h.create_tenant("acme").await;
    for path in [
        "/admin/tenants/tenant%3Aacme",
        "/admin/tenants/tenant%3aacme",
        "/admin/tenants/tenant:acme",
    ] {
        let r = h.admin("GET", path, None).await;
        assert_eq!(r.ok(200)["tenant"]["id"], t.id, "{path}");
        let r = h.admin("GET", &format!("{path}/keys"), None).await;
        assert_eq!(r.ok(200)["apiKeys"].as_array().unwrap().len(), 2);
    }
    let unknown = h.admin("GET", "/admin/tenants/tenant%3Anope", None).await;
    unknown.expect(404, "not_found");
    for path in [
        "/admin/tenants/acme",
        "/admin/tenants/tenant%3AACME",
        "/admin/tenants/tenant%253Aacme",
        "/admin/tenants/%FF",
        "/admin/tenants/",
    ] {
        let r = h.admin("GET", path, None).await;
        r.expect(404, "not_found");
        assert_eq!(r.text, unknown.text, "{path}");
    }
    for (m, b) in [
        ("PUT", Some(json!({"name":"x"}))),
        ("PATCH", Some(json!({"name":"x"}))),
        ("DELETE", None),
    ] {
        h.admin(m, "/admin/tenants/tenant%3Anope", b)
            .await
            .expect(404, "not_found");
    }
    h.admin("GET", "/admin/tenants/tenant%3Anope/keys", None)
        .await
        .expect(404, "not_found");
    h.admin(
        "POST",
        "/admin/tenants/tenant%3Anope/keys",
        Some(json!({"name":"k","type":"secret"})),
    )
    .await
    .expect(404, "not_found");
}

#[tokio::test]
async fn listing_tenants_filters_and_paginates() {
    let h = Harness::start().await;
    let plans = ["free", "pro", "enterprise", "pro", "free"];
    for (i, plan) in plans.iter().enumerate() {
        h.create_tenant_with(json!({"slug": format!("t{i}"), "name":"T", "plan": plan}))
            .await;
    }
    h.admin(
        "PATCH",
        "/admin/tenants/tenant:t1",
        Some(json!({"status":"suspended"})),
    )
    .await
    .ok(200);
    h.admin("DELETE", "/admin/tenants/tenant:t2", None)
        .await
        .ok(200);

    let slugs = |b: &Value| -> Vec<String> {
        b["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["slug"].as_str().unwrap().to_owned())
            .collect()
    };
    let r = h.admin("GET", "/admin/tenants", None).await;
    let b = r.ok(200);
    assert_eq!(slugs(b), ["t0", "t1", "t2", "t3", "t4"], "oldest first");
    assert_eq!(
        b["pagination"],
        json!({"page":1,"limit":20,"total":5,"pages":1})
    );
    assert_eq!(b["tenants"][2]["status"], "deleted");
    assert!(b["tenants"][2]["deletedAt"].is_string());

    let mut seen = Vec::new();
    for page in 1..=3 {
        let r = h
            .admin("GET", &format!("/admin/tenants?page={page}&limit=2"), None)
            .await;
        let b = r.ok(200);
        assert_eq!(
            b["pagination"],
            json!({"page":page,"limit":2,"total":5,"pages":3})
        );
        seen.extend(slugs(b));
    }
    assert_eq!(seen, ["t0", "t1", "t2", "t3", "t4"]);
    let r = h.admin("GET", "/admin/tenants?page=4&limit=2", None).await;
    assert!(slugs(r.ok(200)).is_empty());
    let r = h.admin("GET", "/admin/tenants?limit=100", None).await;
    assert_eq!(slugs(r.ok(200)).len(), 5);

    for (q, want) in [
        ("status=active", vec!["t0", "t3", "t4"]),
        ("status=suspended", vec!["t1"]),
        ("status=deleted", vec!["t2"]),
        ("plan=pro", vec!["t1", "t3"]),
        ("plan=free&status=active", vec!["t0", "t4"]),
        ("plan=enterprise&status=active", vec![]),
    ] {
        let r = h.admin("GET", &format!("/admin/tenants?{q}"), None).await;
        let b = r.ok(200);
        assert_eq!(slugs(b), want, "{q}");
        assert_eq!(b["pagination"]["total"], want.len(), "{q}");
    }
    let r = h
        .admin("GET", "/admin/tenants?plan=pro&limit=1&page=2", None)
        .await;
    let b = r.ok(200);
    assert_eq!(slugs(b), ["t3"]);
    assert_eq!(
        b["pagination"],
        json!({"page":2,"limit":1,"total":2,"pages":2})
    );

    for (q, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=abc", "limit"),
        ("limit=-1", "limit"),
        ("limit=", "limit"),
        ("page=0", "page"),
        ("page=1.5", "page"),
        ("page=x", "page"),
        ("status=gone", "status"),
        ("status=ACTIVE", "status"),
        ("plan=gold", "plan"),
        ("sort=name", "sort"),
    ] {
        h.admin("GET", &format!("/admin/tenants?{q}"), None)
            .await
            .expect_field("invalid_query", field);
    }
}

#[tokio::test]
async fn updating_a_tenant_is_partial_and_validated() {
    let h = Harness::start().await;
    let t = h
        .create_tenant_with(json!({"slug":"acme","name":"Acme","plan":"pro"}))
        .await;
    let path = format!("/admin/tenants/{}", enc(&t.id));
    let r = h
        .admin("PUT", &path, Some(json!({"name":"Acme Inc"})))
        .await;
    let tenant = r.ok(200)["tenant"].clone();
    assert_eq!(tenant["name"], "Acme Inc");
    assert_eq!(tenant["plan"], "pro", "absent fields keep their value");
    assert_eq!(tenant["status"], "active");
    let r = h
        .admin("PATCH", &path, Some(json!({"plan":"enterprise"})))
        .await;
    let t2 = &r.ok(200)["tenant"];
    assert_eq!(
        (t2["name"].as_str(), t2["plan"].as_str()),
        (Some("Acme Inc"), Some("enterprise"))
    );
    assert_eq!(t2["createdAt"], tenant["createdAt"]);
    let r = h
        .admin(
            "PATCH",
            &path,
            Some(json!({"rateLimit":{"requests":1_000_000,"windowSeconds":86_400}})),
        )
        .await;
    assert_eq!(
        r.ok(200)["tenant"]["rateLimit"],
        json!({"requests":1_000_000,"windowSeconds":86_400})
    );
    // Stored: a read shows it; `{}` changes nothing; null restores the plan default.
    let r = h.admin("GET", &path, None).await;
    assert_eq!(r.ok(200)["tenant"]["rateLimit"]["requests"], 1_000_000);
    let r = h.admin("PUT", &path, Some(json!({}))).await;
    assert_eq!(r.ok(200)["tenant"]["rateLimit"]["windowSeconds"], 86_400);
    let r = h.admin("PUT", &path, Some(json!({"rateLimit":null}))).await;
    assert_eq!(r.ok(200)["tenant"]["rateLimit"], Value::Null);

    // Suspension and reactivation.
    let r = h
        .admin("PUT", &path, Some(json!({"status":"suspended"})))
        .await;
    assert_eq!(r.ok(200)["tenant"]["status"], "suspended");
    let r = h
        .admin("PUT", &path, Some(json!({"status":"active"})))
        .await;
    assert_eq!(r.ok(200)["tenant"]["status"], "active");

    let cases: Vec<(Value, &str)> = vec![
        (json!({"name":""}), "name"),
        (json!({"name":"x".repeat(201)}), "name"),
        (json!({"name":null}), "name"),
        (json!({"name":42}), "name"),
        (json!({"plan":"gold"}), "plan"),
        (json!({"plan":true}), "plan"),
        (json!({"status":"deleted"}), "status"),
        (json!({"status":"paused"}), "status"),
        (json!({"status":1}), "status"),
        (json!({"slug":"new"}), "slug"),
        (json!({"id":"tenant:x"}), "id"),
        (json!({"rateLimit":"100/min"}), "rateLimit"),
        (json!({"rateLimit":[100, 60]}), "rateLimit"),
        (
            json!({"rateLimit":{"requests":10,"windowSeconds":60,"burst":5}}),
            "rateLimit",
        ),
        (
            json!({"rateLimit":{"requests":0,"windowSeconds":60}}),
            "rateLimit.requests",
        ),
        (
            json!({"rateLimit":{"requests":1_000_001,"windowSeconds":60}}),
            "rateLimit.requests",
        ),
        (
            json!({"rateLimit":{"requests":-5,"windowSeconds":60}}),
            "rateLimit.requests",
        ),
        (
            json!({"rateLimit":{"requests":2.5,"windowSeconds":60}}),
            "rateLimit.requests",
        ),
        (
            json!({"rateLimit":{"requests":"10","windowSeconds":60}}),
            "rateLimit.requests",
        ),
        (
            json!({"rateLimit":{"windowSeconds":60}}),
            "rateLimit.requests",
        ),
        (
            json!({"rateLimit":{"requests":10,"windowSeconds":0}}),
            "rateLimit.windowSeconds",
        ),
        (
            json!({"rateLimit":{"requests":10,"windowSeconds":86_401}}),
            "rateLimit.windowSeconds",
        ),
        (
            json!({"rateLimit":{"requests":10}}),
            "rateLimit.windowSeconds",
        ),
    ];
    for (body, field) in cases {
        for m in ["PUT", "PATCH"] {
            h.admin(m, &path, Some(body.clone()))
                .await
                .expect_field("invalid_field", field);
        }
    }
    // A refused update changes nothing, not even partly.
    h.admin("PUT", &path, Some(json!({"name":"Half","plan":"gold"})))
        .await
        .expect_field("invalid_field", "plan");
    let r = h.admin("GET", &path, None).await;
    let now = &r.ok(200)["tenant"];
    assert_eq!(
        (now["name"].as_str(), now["plan"].as_str()),
        (Some("Acme Inc"), Some("enterprise"))
    );
}

#[tokio::test]
async fn a_suspended_tenant_keys_are_refused_with_403() {
    let h = Harness::start().await;
    let t = h.create_tenant("acme").await;
    let (_, rk) = h
        .create_key(
            &t.sk,
            json!({"name":"r","type":"restricted","permissions":["read:api_keys"]}),
        )
        .await;
    let path = format!("/admin/tenants/{}", enc(&t.id));
    h.admin("PATCH", &path, Some(json!({"status":"suspended"})))
        .await
        .ok(200);
    for key in [&t.sk, &t.pk, &rk] {
        for (m, p) in [("GET", "/v1/tenant"), ("GET", "/v1/api-keys")] {
            h.call(Some(key), m, p, None)
                .await
                .expect(403, "tenant_suspended");
        }
    }
    h.call(
        Some(&t.sk),
        "POST",
        "/v1/api-keys",
        Some(json!({"name":"n","type":"secret"})),
    )
    .await
    .expect(403, "tenant_suspended");
    // The admin still manages it, and reactivation restores its keys at once.
    h.admin("GET", &format!("{path}/keys"), None).await.ok(200);
    h.admin("PATCH", &path, Some(json!({"status":"active"})))
        .await
        .ok(200);
    assert!(h.works(&t.sk).await && h.works(&t.pk).await && h.works(&rk).await);
}

#[tokio::test]
async fn deleting_a_tenant_is_soft_and_refuses_its_keys_at_once() {
    let h = Harness::start().await;
    let t = h.create_tenant("acme").await;
    let other = h.create_tenant("other").await;
    let (_, extra) = h
        .create_key(&t.sk, json!({"name":"e","type":"secret"}))
        .await;
    assert!(h.works(&t.sk).await);
    let before_401 = h
        .call(Some("sk_live_nope"), "GET", "/v1/tenant", None)
        .await;

    let path = format!("/admin/tenants/{}", enc(&t.id));
    let r = h.admin("DELETE", &path, None).await;
    let deleted = r.ok(200)["tenant"].clone();
    assert_eq!(deleted["status"], "deleted");
    assert!(is_rfc3339_utc(deleted["deletedAt"].as_str().unwrap()));
    for key in [&t.sk, &t.pk, &extra] {
        let r = h.call(Some(key), "GET", "/v1/tenant", None).await;
        r.expect(401, "unauthorized");
        assert_eq!(r.text, before_401.text, "one identical 401 body");
        h.call(Some(key), "GET", "/v1/api-keys", None)
            .await
            .expect(401, "unauthorized");
    }
    // Soft: still readable, deletion repeatable, the slug stays reserved.
    let r = h.admin("GET", &path, None).await;
    assert_eq!(r.ok(200)["tenant"]["status"], "deleted");
    let r = h.admin("DELETE", &path, None).await;
    assert_eq!(r.ok(200)["tenant"]["deletedAt"], deleted["deletedAt"]);
    // Changes and key routes refused with 409.
    for (m, b) in [
        ("PUT", json!({"name":"x"})),
        ("PATCH", json!({"status":"active"})),
        ("PATCH", json!({})),
    ] {
        h.admin(m, &path, Some(b)).await.expect(409, "conflict");
    }
    h.admin("GET", &format!("{path}/keys"), None)
        .await
        .expect(409, "conflict");
    h.admin(
        "POST",
        &format!("{path}/keys"),
        Some(json!({"name":"k","type":"secret"})),
    )
    .await
    .expect(409, "conflict");
    h.admin(
        "POST",
        "/admin/tenants",
        Some(json!({"slug":"acme","name":"A"})),
    )
    .await
    .expect(409, "conflict");
    // Other tenants are untouched.
    assert!(h.works(&other.sk).await);
}

#[tokio::test]
async fn the_admin_lists_and_mints_a_tenants_keys() {
    let h = Harness::start().await;
    let t = h.create_tenant("acme").await;
    let other = h.create_tenant("other").await;
    let path = format!("/admin/tenants/{}/keys", enc(&t.id));
    let r = h.admin("GET", &path, None).await;
    let keys = r.ok(200)["apiKeys"].as_array().unwrap().clone();
    assert_eq!(keys.len(), 2);
    let types: BTreeSet<_> = keys.iter().map(|k| k["type"].as_str().unwrap()).collect();
    assert_eq!(types, BTreeSet::from(["publishable", "secret"]));
    for k in &keys {
        assert_key_object(k);
        assert_eq!(k["environment"], "live");
    }
    assert_eq!(keys[0]["displayPrefix"], t.pk[..12]);
    assert_eq!(keys[1]["displayPrefix"], t.sk[..12]);
    assert_no_secret(&r.text, &[t.pk.as_str(), t.sk.as_str(), other.sk.as_str()]);

    let r = h
        .admin(
            "POST",
            &path,
            Some(json!({"name":"CI","type":"restricted","environment":"test",
                        "permissions":["read:api_keys"]})),
        )
        .await;
    let b = r.ok(201).clone();
    assert_key_object(&b["apiKey"]);
    assert_eq!(b["apiKey"]["permissions"], json!(["read:api_keys"]));
    let secret = b["credentials"]["keySecret"].as_str().unwrap();
    assert!(secret.starts_with("rk_test_") && is_key_format(secret));
    let r = h.call(Some(secret), "GET", "/v1/tenant", None).await;
    assert_eq!(r.ok(200)["tenant"]["id"], t.id);
    // Admin lists include every environment and no secret; the other tenant sees none of it.
    let r = h.admin("GET", &path, None).await;
    assert_eq!(r.ok(200)["apiKeys"].as_array().unwrap().len(), 3);
    assert_no_secret(&r.text, &[secret]);
    let r = h
        .admin(
            "GET",
            &format!("/admin/tenants/{}/keys", enc(&other.id)),
            None,
        )
        .await;
    assert_eq!(r.ok(200)["apiKeys"].as_array().unwrap().len(), 2);
    // Bodies are validated as on POST /v1/api-keys.
    h.admin("POST", &path, Some(json!({"name":"x","type":"root"})))
        .await
        .expect_field("invalid_field", "type");
    h.admin(
        "POST",
        &path,
        Some(json!({"name":"x","type":"secret","scopes":[]})),
    )
    .await
    .expect_field("invalid_field", "scopes");
}

// ---------------------------------------------------------------- key format

#[tokio::test]
async fn keys_have_the_contract_format_and_checksum() {
    let h = Harness::start().await;
    let t = h.create_tenant("acme").await;
    let mut secrets = vec![t.pk.clone(), t.sk.clone()];
    for (ty, env, p) in [
        ("publishable", "test", "pk_test_"),
        ("public", "live", "pk_live_"),
        ("secret", "test", "sk_test_"),
        ("restricted", "live", "rk_live_"),
    ] {
        let (k, s) = h
            .create_key(&t.sk, json!({"name":"k","type":ty,"environment":env}))
            .await;
        assert!(s.starts_with(p), "{s}");
        assert_eq!(k["displayPrefix"], s[..12]);
        secrets.push(s);
    }
    let mut randoms = BTreeSet::new();
    for s in &secrets {
        assert!(is_key_format(s), "{s}");
        assert_eq!(
            &s[40..],
            checksum(&s[..40]),
            "CRC-32 checksum of {}",
            &s[..12]
        );
        randoms.insert(s[8..40].to_owned());
    }
    assert_eq!(randoms.len(), secrets.len(), "random parts differ");

    // Every alteration is refused with the one identical 401.
    let sk = &t.sk;
    let mut flipped = sk.clone().into_bytes();
    flipped[20] = if flipped[20] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    let mut bad_check = sk.clone();
    bad_check.replace_range(45.., if sk.ends_with('0') { "1" } else { "0" });
    let forged_head = format!("sk_live_{}", "A".repeat(32));
    let forged = format!("{forged_head}{}", checksum(&forged_head));
    let variants = vec![
        sk[..sk.len() - 1].to_owned(),
        sk[..40].to_owned(),
        sk[..12].to_owned(),
        format!("{sk}0"),
        format!("{sk}{sk}"),
        format!(" {sk}x"),
        flipped,
        bad_check,
        sk.replacen("sk_", "pk_", 1),
        sk.replacen("_live_", "_test_", 1),
        sk.to_uppercase(),
        forged, // well formed, right checksum, unknown
        "sk_live_".into(),
        "x".into(),
        "ünïcödé".into(),
    ];
    let reference = h
        .call(Some("sk_live_nope"), "GET", "/v1/api-keys", None)
        .await;
    reference.expect(401, "unauthorized");
    for v in &variants {
        let r = h
            .send(
                h.req("GET", "/v1/api-keys")
                    .header("authorization", format!("Bearer {v}")),
            )
            .await;
        r.expect(401, "unauthorized");
        assert_eq!(r.text, reference.text, "identical 401 for {v:?}");
        assert!(!r.text.contains(&sk[8..20]), "no echo of the key");
    }
    for auth in [
        None,
        Some(String::new()),
        Some("Bearer".into()),
        Some("Bearer ".into()),
        Some(sk.clone()),
        Some(format!("Token {sk}")),
        Some(format!("Basic {sk}")),
    ] {
        let mut rb = h.req("GET", "/v1/api-keys");
        if let Some(a) = auth {
            rb = rb.header("authorization", a);
        }
        let r = h.send(rb).await;
        r.expect(401, "unauthorized");
        assert_eq!(r.text, reference.text);
    }
    assert!(h.works(sk).await, "the real key still works");
}

#[tokio::test]
async fn secrets_never_appear_in_lists_reads_or_errors() {
    let h = Harness::start().await;
    let t = h.create_tenant("acme").await;
    let (k, s) = h
        .create_key(&t.sk, json!({"name":"k","type":"secret"}))
        .await;
    let (_, rs) = h
        .create_key(
            &t.sk,
            json!({"name":"r","type":"restricted","permissions":[]}),
        )
        .await;
    let all = [t.pk.as_str(), t.sk.as_str(), s.as_str(), rs.as_str()];
    let id = enc(k["id"].as_str().unwrap());
    let mut texts = vec![];
    texts.push(h.call(Some(&t.sk), "GET", "/v1/api-keys", None).await);
    texts.push(
        h.call(Some(&t.sk), "GET", &format!("/v1/api-keys/{id}"), None)
            .await,
    );
    texts.push(h.call(Some(&t.sk), "GET", "/v1/tenant", None).await);
    texts.push(
        h.admin("GET", &format!("/admin/tenants/{}/keys", enc(&t.id)), None)
            .await,
    );
    texts.push(
        h.admin("GET", &format!("/admin/tenants/{}", enc(&t.id)), None)
            .await,
    );
    texts.push(h.admin("GET", "/admin/tenants", None).await);
    // Errors: forbidden, mismatch, validation with a key as a value, keys in the query.
    texts.push(h.call(Some(&rs), "GET", "/v1/api-keys", None).await);
    texts.push(
        h.send(
            h.req("GET", "/v1/tenant")
                .bearer_auth(&t.sk)
                .header("x-tenant-id", s.as_str()),
        )
        .await,
    );
    texts.push(
        h.call(
            Some(&t.sk),
            "POST",
            "/v1/api-keys",
            Some(json!({"name": s, "type": s})),
        )
        .await,
    );
    texts.push(
        h.call(
            Some(&t.sk),
            "POST",
            "/v1/api-keys",
            Some(json!({"name": "n", "type": "restricted", "permissions": ["read:api_keys", s]})),
        )
        .await,
    );
    texts.push(
        h.call(None, "GET", &format!("/v1/tenant?api_key={s}"), None)
            .await,
    );
    texts.push(h.call(Some(&s[..45]), "GET", "/v1/tenant", None).await);
    texts.push(
        h.call(Some(&t.sk), "GET", &format!("/v1/nope/{s}"), None)
            .await,
    );
    for r in &texts {
        assert_no_secret(&r.text, &all);
        for (name, value) in r.headers.iter() {
            let v = value.to_str().unwrap_or("");
            assert!(
                !all.iter().any(|s| v.contains(&s[8..])),
                "header {name} leaks"
            );
        }
    }
    for k in texts[0].body["apiKeys"].as_array().unwrap() {
        assert_key_object(k);
    }
    assert_eq!(texts[2].body["tenant"].as_object().unwrap().len(), 5);
}

#[tokio::test]
async fn keys_in_the_query_are_refused_and_never_authenticate() {
    let h = Harness::start().await;
    let t = h.create_tenant("acme").await;
    for name in ["api_key", "apiKey", "key", "access_token"] {
        for path in ["/v1/tenant", "/v1/api-keys", "/admin/tenants"] {
            let key = if path.starts_with("/admin") {
                ADMIN_KEY
            } else {
                t.sk.as_str()
            };
            // Alone, it does not authenticate.
            h.call(None, "GET", &format!("{path}?{name}={key}"), None)
                .await
                .expect(400, "credentials_in_query");
            // Even next to a good header the request is refused.
            h.call(Some(key), "GET", &format!("{path}?{name}={key}"), None)
                .await
                .expect(400, "credentials_in_query");
            // Also with an empty value, or percent-encoded name.
            h.call(Some(key), "GET", &format!("{path}?x=1&{name}="), None)
                .await
                .expect(400, "credentials_in_query");
        }
    }
    h.call(Some(&t.sk), "GET", "/v1/tenant?api%5Fkey=x", None)
        .await
        .expect(400, "credentials_in_query");
    h.call(
        Some(&t.sk),
        "POST",
        &format!("/v1/api-keys?api_key={}", t.sk),
        Some(json!({"name":"n","type":"secret"})),
    )
    .await
    .expect(400, "credentials_in_query");
    // Nothing was created.
    let r = h.call(Some(&t.sk), "GET", "/v1/api-keys", None).await;
    assert_eq!(r.ok(200)["apiKeys"].as_array().unwrap().len(), 2);
}

// ---------------------------------------------------------------- key types

#[tokio::test]
async fn publishable_keys_reach_public_routes_only() {
    let h = Harness::start().await;
    let t = h.create_tenant("acme").await;
    let (k, pk_test) = h
        .create_key(
            &t.sk,
            json!({"name":"p","type":"publishable","environment":"test"}),
        )
        .await;
    let id = enc(k["id"].as_str().unwrap());
    for pk in [&t.pk, &pk_test] {
        let r = h.call(Some(pk), "GET", "/v1/tenant", None).await;
        assert_eq!(
            r.ok(200)["tenant"],
            json!({"id":"tenant:acme","slug":"acme","name":"Tenant acme","plan":"free","status":"active"})
        );
        h.call(Some(pk), "GET", "/v1/api-keys", None)
            .await
            .expect(403, "forbidden");
        h.call(
            Some(pk),
            "POST",
            "/v1/api-keys",
            Some(json!({"name":"x","type":"publishable","environment":"test"})),
        )
        .await
        .expect(403, "forbidden");
        h.call(Some(pk), "GET", &format!("/v1/api-keys/{id}"), None)
            .await
            .expect(403, "forbidden");
        h.call(Some(pk), "POST", &format!("/v1/api-keys/{id}/rotate"), None)
            .await
            .expect(403, "forbidden");
        h.call(Some(pk), "DELETE", &format!("/v1/api-keys/{id}"), None)
            .await
            .expect(403, "forbidden");
    }
    assert!(h.works(&pk_test).await, "nothing was revoked");
}

#[tokio::test]
async fn restricted_keys_reach_what_their_permissions_name() {
    let h = Harness::start().await;
    let t = h.create_tenant("acme").await;
    let mk = |perms: Value| json!({"name":"r","type":"restricted","permissions":perms});
    let (_, none) = h.create_key(&t.sk, mk(json!([]))).await;
    let (_, read) = h.create_key(&t.sk, mk(json!(["read:api_keys"]))).await;
    let (_, write) = h.create_key(&t.sk, mk(json!(["write:api_keys"]))).await;
    let (_, read_all) = h.create_key(&t.sk, mk(json!(["read:*"]))).await;
    let (_, all) = h.create_key(&t.sk, mk(json!(["*"]))).await;
    let (victim, _) = h
        .create_key(&t.sk, json!({"name":"v","type":"secret"}))
        .await;
    let (rvictim, _) = h.create_key(&t.sk, mk(json!(["read:api_keys"]))).await;
    let vid = enc(victim["id"].as_str().unwrap());
    let rvid = enc(rvictim["id"].as_str().unwrap());

    // (key, can read, can write)
    for (key, r, w) in [
        (&none, false, false),
        (&read, true, false),
        (&write, false, true),
        (&read_all, true, false),
        (&all, true, true),
    ] {
        h.call(Some(key), "GET", "/v1/tenant", None).await.ok(200);
        let want = |ok: bool, status: u16| if ok { status } else { 403 };
        let list = h.call(Some(key), "GET", "/v1/api-keys", None).await;
        assert_eq!(list.status, want(r, 200), "{}", list.text);
        let get = h
            .call(Some(key), "GET", &format!("/v1/api-keys/{vid}"), None)
            .await;
        assert_eq!(get.status, want(r, 200));
        let create = h
            .call(
                Some(key),
                "POST",
                "/v1/api-keys",
                Some(json!({"name":"p","type":"publishable"})),
            )
            .await;
        assert_eq!(create.status, want(w, 201), "{}", create.text);
        if !w {
            create.expect(403, "forbidden");
            h.call(
                Some(key),
                "POST",
                &format!("/v1/api-keys/{rvid}/rotate"),
                None,
            )
            .await
            .expect(403, "forbidden");
            h.call(Some(key), "DELETE", &format!("/v1/api-keys/{rvid}"), None)
                .await
                .expect(403, "forbidden");
        }
    }
    // No escalation: more permissions than its own, or a secret key, are refused.
    for body in [
        mk(json!(["read:api_keys"])),
        mk(json!(["write:api_keys", "read:api_keys"])),
        mk(json!(["*"])),
        mk(json!(["write:*"])),
        json!({"name":"s","type":"secret"}),
    ] {
        h.call(Some(&write), "POST", "/v1/api-keys", Some(body))
            .await
            .expect(403, "forbidden");
    }
    let (k, _) = h.create_key(&write, mk(json!(["write:api_keys"]))).await;
    assert_eq!(k["permissions"], json!(["write:api_keys"]));
    let (k, _) = h.create_key(&write, mk(json!([]))).await;
    assert_eq!(k["permissions"], json!([]));
    let (k, _) = h
        .create_key(&all, mk(json!(["read:graph", "write:api_keys"])))
        .await;
    assert_eq!(k["permissions"], json!(["read:graph", "write:api_keys"]));
    h.call(
        Some(&all),
        "POST",
        "/v1/api-keys",
        Some(json!({"name":"s","type":"secret"})),
    )
    .await
    .expect(403, "forbidden");
    // Rotation of a key the caller could not create: 403; of one it could: 201.
    h.call(
        Some(&write),
        "POST",
        &format!("/v1/api-keys/{vid}/rotate"),
        None,
    )
    .await
    .expect(403, "forbidden");
    h.call(
        Some(&write),
        "POST",
        &format!("/v1/api-keys/{rvid}/rotate"),
        None,
    )
    .await
    .expect(403, "forbidden");
    let r = h
        .call(
            Some(&all),
            "POST",
            &format!("/v1/api-keys/{rvid}/rotate"),
            None,
        )
        .await;
    assert_eq!(r.ok(201)["apiKey"]["permissions"], json!(["read:api_keys"]));
    assert!(h.works(&t.sk).await);
}

#[tokio::test]
async fn key_creation_is_validated_field_by_field() {
    let h = Harness::start().await;
    let t = h.create_tenant("acme").await;
    let (k, _) = h
        .create_key(&t.sk, json!({"name":"  CI  ","type":"public"}))
        .await;
    assert_eq!(
        (k["name"].as_str(), k["type"].as_str()),
        (Some("CI"), Some("publishable"))
    );
    assert_eq!(k["environment"], "live");
    assert_eq!(
        (k["revokedAt"].clone(), k["expiresAt"].clone()),
        (Value::Null, Value::Null)
    );
    let (k, _) = h
        .create_key(
            &t.sk,
            json!({"name":"x".repeat(100),"type":"secret","permissions":[]}),
        )
        .await;
    assert_eq!(k["permissions"], json!([]));
    let cases: Vec<(Value, &str)> = vec![
        (json!({"type":"secret"}), "name"),
        (json!({"name":"","type":"secret"}), "name"),
        (json!({"name":"x".repeat(101),"type":"secret"}), "name"),
        (json!({"name":7,"type":"secret"}), "name"),
        (json!({"name":"n"}), "type"),
        (json!({"name":"n","type":"admin"}), "type"),
        (json!({"name":"n","type":"Secret"}), "type"),
        (json!({"name":"n","type":["secret"]}), "type"),
        (
            json!({"name":"n","type":"secret","environment":"prod"}),
            "environment",
        ),
        (
            json!({"name":"n","type":"secret","environment":false}),
            "environment",
        ),
        (
            json!({"name":"n","type":"secret","permissions":["read:api_keys"]}),
            "permissions",
        ),
        (
            json!({"name":"n","type":"publishable","permissions":["read:api_keys"]}),
            "permissions",
        ),
        (
            json!({"name":"n","type":"restricted","permissions":["read:users"]}),
            "permissions",
        ),
        (
            json!({"name":"n","type":"restricted","permissions":["delete:*"]}),
            "permissions",
        ),
        (
            json!({"name":"n","type":"restricted","permissions":"read:api_keys"}),
            "permissions",
        ),
        (
            json!({"name":"n","type":"restricted","permissions":[1]}),
            "permissions",
        ),
        (
            json!({"name":"n","type":"secret","expiresAt":null}),
            "expiresAt",
        ),
    ];
    for (body, field) in cases {
        h.call(Some(&t.sk), "POST", "/v1/api-keys", Some(body))
            .await
            .expect_field("invalid_field", field);
    }
}

#[tokio::test]
async fn test_keys_see_and_manage_test_keys_only() {
    let h = Harness::start().await;
    let t = h.create_tenant("acme").await;
    let (test_sk_obj, test_sk) = h
        .create_key(
            &t.sk,
            json!({"name":"t","type":"secret","environment":"test"}),
        )
        .await;
    let (live, _) = h
        .create_key(&t.sk, json!({"name":"l","type":"secret"}))
        .await;
    let lid = enc(live["id"].as_str().unwrap());
    let unknown = h
        .call(
            Some(&test_sk),
            "GET",
            "/v1/api-keys/key%3A0000000000000000",
            None,
        )
        .await;
    unknown.expect(404, "not_found");

    let r = h.call(Some(&test_sk), "GET", "/v1/api-keys", None).await;
    let ids: Vec<_> = r.ok(200)["apiKeys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            assert_eq!(k["environment"], "test");
            k["id"].clone()
        })
        .collect();
    assert_eq!(ids, vec![test_sk_obj["id"].clone()]);
    for (m, p) in [
        ("GET", format!("/v1/api-keys/{lid}")),
        ("DELETE", format!("/v1/api-keys/{lid}")),
        ("POST", format!("/v1/api-keys/{lid}/rotate")),
    ] {
        let r = h.call(Some(&test_sk), m, &p, None).await;
        r.expect(404, "not_found");
        assert_eq!(
            r.text, unknown.text,
            "a live key looks unknown to a test key"
        );
    }
    h.call(
        Some(&test_sk),
        "POST",
        "/v1/api-keys",
        Some(json!({"name":"x","type":"secret","environment":"live"})),
    )
    .await
    .expect(403, "forbidden");
    h.call(
        Some(&test_sk),
        "POST",
        "/v1/api-keys",
        Some(json!({"name":"x","type":"secret"})),
    )
    .await
    .expect(403, "forbidden");
    let (k, s) = h
        .create_key(
            &test_sk,
            json!({"name":"x","type":"restricted","environment":"test","permissions":["*"]}),
        )
        .await;
    assert_eq!(k["environment"], "test");
    assert!(s.starts_with("rk_test_"));
    // Live keys see both environments; the live key survived.
    let r = h.call(Some(&t.sk), "GET", "/v1/api-keys", None).await;
    assert_eq!(r.ok(200)["apiKeys"].as_array().unwrap().len(), 5);
    h.call(Some(&t.sk), "GET", &format!("/v1/api-keys/{lid}"), None)
        .await
        .ok(200);
}

// ---------------------------------------------------------------- rotation and revocation

#[tokio::test]
async fn rotation_replaces_a_key_at_once() {
    let h = Harness::start().await;
    let t = h.create_tenant("acme").await;
    let (old, old_secret) = h
        .create_key(&t.sk, json!({"name":"CI","type":"restricted","environment":"test","permissions":["read:api_keys","write:api_keys"]}))
        .await;
    let oid = old["id"].as_str().unwrap().to_owned();
    let r = h
        .call(
            Some(&t.sk),
            "POST",
            &format!("/v1/api-keys/{}/rotate", enc(&oid)),
            None,
        )
        .await;
    let b = r.ok(201).clone();
    let new = &b["apiKey"];
    assert_key_object(new);
    assert_ne!(new["id"], old["id"]);
    for f in ["name", "type", "environment", "permissions"] {
        assert_eq!(new[f], old[f], "{f} carries over");
    }
    let new_secret = b["credentials"]["keySecret"].as_str().unwrap();
    assert!(new_secret.starts_with("rk_test_") && new_secret != old_secret);
    assert_eq!(new["displayPrefix"], new_secret[..12]);
    let prev = &b["previousKey"];
    assert_key_object(prev);
    assert_eq!(prev["id"], old["id"]);
    assert!(is_rfc3339_utc(prev["revokedAt"].as_str().unwrap()));
    assert_no_secret(&prev.to_string(), &[old_secret.as_str()]);
    // The old key is refused at once; the new one works.
    assert!(!h.works(&old_secret).await);
    assert!(h.works(new_secret).await);
    let r = h
        .call(Some(&t.sk), "GET", &format!("/v1/api-keys/{oid}"), None)
        .await;
    assert!(r.ok(200)["apiKey"]["revokedAt"].is_string());
    // Rotating it again, or a revoked key: 409.
    h.call(
        Some(&t.sk),
        "POST",
        &format!("/v1/api-keys/{oid}/rotate"),
        None,
    )
    .await
    .expect(409, "conflict");
    let (rev, _) = h
        .create_key(&t.sk, json!({"name":"r","type":"secret"}))
        .await;
    let rid = enc(rev["id"].as_str().unwrap());
    h.call(Some(&t.sk), "DELETE", &format!("/v1/api-keys/{rid}"), None)
        .await
        .ok(200);
    h.call(
        Some(&t.sk),
        "POST",
        &format!("/v1/api-keys/{rid}/rotate"),
        Some(json!({})),
    )
    .await
    .expect(409, "conflict");
    // A caller may rotate its own key: it stops working, its successor works.
    let r = h
        .call(
            Some(new_secret),
            "POST",
            &format!("/v1/api-keys/{}/rotate", enc(new["id"].as_str().unwrap())),
            Some(json!({"expiresInSeconds":0})),
        )
        .await;
    let third = r.ok(201)["credentials"]["keySecret"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!h.works(new_secret).await && h.works(&third).await);
    // Unknown keys and bad bodies.
    h.call(
        Some(&t.sk),
        "POST",
        "/v1/api-keys/key%3A0123456789abcdef/rotate",
        None,
    )
    .await
    .expect(404, "not_found");
    let (k, _) = h
        .create_key(&t.sk, json!({"name":"k","type":"secret"}))
        .await;
    let kp = format!("/v1/api-keys/{}/rotate", enc(k["id"].as_str().unwrap()));
    for (body, field) in [
        (json!({"expiresInSeconds":-1}), "expiresInSeconds"),
        (json!({"expiresInSeconds":604_801}), "expiresInSeconds"),
        (json!({"expiresInSeconds":"60"}), "expiresInSeconds"),
        (json!({"expiresInSeconds":1.5}), "expiresInSeconds"),
        (json!({"expiresInSeconds":null}), "expiresInSeconds"),
        (json!({"expiresIn":60}), "expiresIn"),
    ] {
        h.call(Some(&t.sk), "POST", &kp, Some(body))
            .await
            .expect_field("invalid_field", field);
    }
    let r = h
        .send(
            h.req("POST", &kp)
                .bearer_auth(&t.sk)
                .header("content-type", "text/plain")
                .body("{}"),
        )
        .await;
    r.expect(415, "unsupported_media_type");
    let r = h
        .send(
            h.req("POST", &kp)
                .bearer_auth(&t.sk)
                .header("content-type", "application/json")
                .body("{"),
        )
        .await;
    r.expect(400, "invalid_json");
    // None of the refused rotations rotated it.
    let r = h
        .call(
            Some(&t.sk),
            "POST",
            &kp,
            Some(json!({"expiresInSeconds":604_800})),
        )
        .await;
    let prev = &r.ok(201)["previousKey"];
    assert_eq!(prev["revokedAt"], Value::Null);
    assert!(is_rfc3339_utc(prev["expiresAt"].as_str().unwrap()));
}

#[tokio::test]
async fn rotation_with_a_grace_period_ends_the_old_key_later() {
    let h = Harness::start().await;
    let t = h.create_tenant("acme").await;
    let (old, old_secret) = h
        .create_key(&t.sk, json!({"name":"g","type":"secret"}))
        .await;
    let path = format!("/v1/api-keys/{}/rotate", enc(old["id"].as_str().unwrap()));
    let started = Instant::now();
    let r = h
        .call(
            Some(&t.sk),
            "POST",
            &path,
            Some(json!({"expiresInSeconds":1})),
        )
        .await;
    let b = r.ok(201).clone();
    let prev = &b["previousKey"];
    assert_eq!(prev["revokedAt"], Value::Null);
    assert!(is_rfc3339_utc(prev["expiresAt"].as_str().unwrap()));
    let new_secret = b["credentials"]["keySecret"].as_str().unwrap();
    if started.elapsed() < Duration::from_millis(500) {
        assert!(
            h.works(&old_secret).await,
            "the old key works during its grace period"
        );
    }
    assert!(h.works(new_secret).await);
    // Already rotated: no second successor, even during the grace period.
    h.call(Some(&t.sk), "POST", &path, None)
        .await
        .expect(409, "conflict");
    let reference_401 = h
        .call(Some("sk_live_nope"), "GET", "/v1/tenant", None)
        .await;
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let r = h.call(Some(&old_secret), "GET", "/v1/tenant", None).await;
        if r.status == 401 {
            assert_eq!(
                r.text, reference_401.text,
                "an expired key gets the one 401"
            );
            break;
        }
        r.ok(200);
        assert!(
            Instant::now() < deadline,
            "the old key still works after its grace period"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(h.works(new_secret).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_rotations_of_one_key_yield_exactly_one_successor() {
    let h = Harness::start().await;
    let t = h.create_tenant("acme").await;
    let (k, _) = h
        .create_key(&t.sk, json!({"name":"c","type":"secret"}))
        .await;
    let path = format!("/v1/api-keys/{}/rotate", enc(k["id"].as_str().unwrap()));
    let url = format!("{}{}", h.base, path);
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let client = h.client.clone();
            let (url, sk) = (url.clone(), t.sk.clone());
            tokio::spawn(async move {
                let r = client.post(url).bearer_auth(sk).send().await.unwrap();
                r.status().as_u16()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    statuses.sort();
    assert_eq!(statuses, [201, 409, 409, 409, 409, 409, 409, 409, 409, 409]);
    let r = h.call(Some(&t.sk), "GET", "/v1/api-keys", None).await;
    let names = r.ok(200)["apiKeys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["name"] == "c")
        .count();
    assert_eq!(names, 2, "the old key and exactly one successor");
}

#[tokio::test]
async fn revocation_is_immediate_and_idempotent() {
    let h = Harness::start().await;
    let t = h.create_tenant("acme").await;
    let (k, s) = h
        .create_key(&t.sk, json!({"name":"k","type":"secret"}))
        .await;
    let raw = k["id"].as_str().unwrap().to_owned();
    assert!(h.works(&s).await);
    let r = h
        .call(
            Some(&t.sk),
            "DELETE",
            &format!("/v1/api-keys/{}", enc(&raw)),
            None,
        )
        .await;
    let revoked = r.ok(200)["apiKey"].clone();
    assert_key_object(&revoked);
    assert!(is_rfc3339_utc(revoked["revokedAt"].as_str().unwrap()));
    assert!(!h.works(&s).await, "refused from the next request on");
    // Repeating it (raw `:` form this time) is 200 and keeps the first revocation time.
    let r = h
        .call(Some(&t.sk), "DELETE", &format!("/v1/api-keys/{raw}"), None)
        .await;
    assert_eq!(r.ok(200)["apiKey"]["revokedAt"], revoked["revokedAt"]);
    // Still listed, with revokedAt.
    let r = h.call(Some(&t.sk), "GET", "/v1/api-keys", None).await;
    let listed: Vec<_> = r.ok(200)["apiKeys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["id"] == raw.as_str())
        .cloned()
        .collect();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["revokedAt"], revoked["revokedAt"]);
    h.call(
        Some(&t.sk),
        "DELETE",
        "/v1/api-keys/key%3A0123456789abcdef",
        None,
    )
    .await
    .expect(404, "not_found");
    // A key may revoke itself; the next request is refused.
    let (me, me_secret) = h
        .create_key(&t.sk, json!({"name":"me","type":"secret"}))
        .await;
    h.call(
        Some(&me_secret),
        "DELETE",
        &format!("/v1/api-keys/{}", enc(me["id"].as_str().unwrap())),
        None,
    )
    .await
    .ok(200);
    assert!(!h.works(&me_secret).await);
}

#[tokio::test]
async fn another_tenants_keys_answer_404_like_unknown_ones() {
    let h = Harness::start().await;
    let a = h.create_tenant("alpha").await;
    let b = h.create_tenant("beta").await;
    let (bk, bs) = h
        .create_key(&b.sk, json!({"name":"b","type":"secret"}))
        .await;
    let bid = enc(bk["id"].as_str().unwrap());
    let unknown = h
        .call(
            Some(&a.sk),
            "GET",
            "/v1/api-keys/key%3Affffffffffffffff",
            None,
        )
        .await;
    unknown.expect(404, "not_found");
    for (m, p) in [
        ("GET", format!("/v1/api-keys/{bid}")),
        ("DELETE", format!("/v1/api-keys/{bid}")),
        ("POST", format!("/v1/api-keys/{bid}/rotate")),
    ] {
        let r = h.call(Some(&a.sk), m, &p, None).await;
        r.expect(404, "not_found");
        assert_eq!(r.text, unknown.text, "{m} {p}");
    }
    assert!(h.works(&bs).await, "beta's key was not touched");
    let r = h.call(Some(&a.sk), "GET", "/v1/api-keys", None).await;
    assert!(!r.text.contains(bk["id"].as_str().unwrap()));
    assert_eq!(r.ok(200)["apiKeys"].as_array().unwrap().len(), 2);
    let r = h.call(Some(&b.pk), "GET", "/v1/tenant", None).await;
    assert_eq!(r.ok(200)["tenant"]["id"], "tenant:beta");
}

// ---------------------------------------------------------------- tenant routing

#[tokio::test]
async fn routing_sources_must_all_name_the_keys_tenant() {
    let h = Harness::start().await;
    let a = h.create_tenant("alpha").await;
    h.create_tenant("beta").await;
    let port = h.base.rsplit(':').next().unwrap().to_owned();
    // (X-Tenant-ID, Host, ?tenant_id=, expected status)
    type Case<'a> = (Option<&'a str>, Option<String>, Option<&'a str>, u16);
    let cases: Vec<Case> = vec![
        (None, None, None, 200),
        (Some("tenant:alpha"), None, None, 200),
        (Some("alpha"), None, None, 200),
        (Some("tenant:beta"), None, None, 403),
        (Some("beta"), None, None, 403),
        (Some("tenant:nope"), None, None, 403),
        (Some(""), None, None, 403),
        (Some("tenant:ALPHA"), None, None, 403),
        (None, Some(format!("alpha.{BASE_DOMAIN}")), None, 200),
        (None, Some(format!("alpha.{BASE_DOMAIN}:{port}")), None, 200),
        (None, Some(format!("ALPHA.AUTH.TEST:{port}")), None, 200),
        (None, Some(format!("beta.{BASE_DOMAIN}")), None, 403),
        (None, Some(format!("nope.{BASE_DOMAIN}")), None, 403),
        (None, Some(format!("x.alpha.{BASE_DOMAIN}")), None, 403),
        (None, Some(BASE_DOMAIN.to_owned()), None, 200),
        (None, Some("alpha.example.com".to_owned()), None, 200),
        (None, None, Some("tenant:alpha"), 200),
        (None, None, Some("tenant%3Aalpha"), 200),
        (None, None, Some("tenant:beta"), 403),
        (None, None, Some("tenant:nope"), 403),
        (
            Some("tenant:alpha"),
            Some(format!("alpha.{BASE_DOMAIN}")),
            Some("tenant:alpha"),
            200,
        ),
        (
            Some("tenant:alpha"),
            Some(format!("beta.{BASE_DOMAIN}")),
            None,
            403,
        ),
        (
            Some("tenant:beta"),
            Some(format!("alpha.{BASE_DOMAIN}")),
            None,
            403,
        ),
        (Some("tenant:alpha"), None, Some("tenant:beta"), 403),
        (
            None,
            Some(format!("alpha.{BASE_DOMAIN}")),
            Some("tenant:beta"),
            403,
        ),
    ];
    for (header, host, query, want) in cases {
        for (method, path) in [("GET", "/v1/tenant"), ("GET", "/v1/api-keys")] {
            let path = match query {
                Some(q) => format!("{path}?tenant_id={q}"),
                None => path.to_owned(),
            };
            let mut rb = h.req(method, &path).bearer_auth(&a.sk);
            if let Some(x) = header {
                rb = rb.header("x-tenant-id", x);
            }
            if let Some(host) = &host {
                rb = rb.header("host", host.as_str());
            }
            let r = h.send(rb).await;
            let ctx = format!("{header:?} {host:?} {query:?} {path}");
            if want == 200 {
                r.ok(200);
            } else {
                r.expect(403, "tenant_mismatch");
                assert!(
                    !r.text.contains("beta") && !r.text.contains("nope"),
                    "{ctx}: no echo"
                );
            }
        }
    }
    // A mismatch on a write changes nothing.
    let r = h
        .send(
            h.req("POST", "/v1/api-keys")
                .bearer_auth(&a.sk)
                .header("x-tenant-id", "tenant:beta")
                .json(&json!({"name":"n","type":"secret"})),
        )
        .await;
    r.expect(403, "tenant_mismatch");
    let r = h.call(Some(&a.sk), "GET", "/v1/api-keys", None).await;
    assert_eq!(r.ok(200)["apiKeys"].as_array().unwrap().len(), 2);
    // A bad key is 401 whatever the other sources say.
    h.send(
        h.req("GET", "/v1/tenant")
            .bearer_auth("sk_live_bad")
            .header("x-tenant-id", "tenant:alpha"),
    )
    .await
    .expect(401, "unauthorized");
}

// ---------------------------------------------------------------- errors

#[tokio::test]
async fn bodies_are_checked_for_size_media_type_and_syntax() {
    let h = Harness::start().await;
    let t = h.create_tenant("acme").await;
    let big = format!(
        "{{\"slug\":\"big\",\"name\":\"{}\"}}",
        "x".repeat(65 * 1024)
    );
    let r = h
        .send(
            h.req("POST", "/admin/tenants")
                .bearer_auth(ADMIN_KEY)
                .header("content-type", "application/json")
                .body(big.clone()),
        )
        .await;
    r.expect(413, "payload_too_large");
    let r = h
        .send(
            h.req("POST", "/v1/api-keys")
                .bearer_auth(&t.sk)
                .header("content-type", "application/json")
                .body(big.clone()),
        )
        .await;
    r.expect(413, "payload_too_large");
    let r = h
        .send(
            h.req("PATCH", &format!("/admin/tenants/{}", enc(&t.id)))
                .bearer_auth(ADMIN_KEY)
                .header("content-type", "text/plain")
                .body(big),
        )
        .await;
    r.expect(413, "payload_too_large");
    // Just under the limit is read (and then judged on its fields).
    let name_len = 64 * 1024 - "{\"slug\":\"big\",\"name\":\"\"}".len();
    let at_limit = format!("{{\"slug\":\"big\",\"name\":\"{}\"}}", "x".repeat(name_len));
    assert_eq!(at_limit.len(), 64 * 1024);
    let r = h
        .send(
            h.req("POST", "/admin/tenants")
                .bearer_auth(ADMIN_KEY)
                .header("content-type", "application/json")
                .body(at_limit),
        )
        .await;
    r.expect_field("invalid_field", "name");

    for ct in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data"),
    ] {
        let mut rb = h
            .req("POST", "/admin/tenants")
            .bearer_auth(ADMIN_KEY)
            .body(r#"{"slug":"ct","name":"C"}"#);
        if let Some(ct) = ct {
            rb = rb.header("content-type", ct);
        }
        h.send(rb).await.expect(415, "unsupported_media_type");
    }
    let r = h
        .send(
            h.req("POST", "/admin/tenants")
                .bearer_auth(ADMIN_KEY)
                .header("content-type", "application/json; charset=utf-8")
                .body(r#"{"slug":"ct","name":"C"}"#),
        )
        .await;
    r.ok(201);

    for (body, what) in [
        ("{", "truncated"),
        ("{\"slug\":\"x\",}", "trailing comma"),
        ("not json", "text"),
        ("", "empty"),
        ("[]", "an array"),
        ("\"slug\"", "a string"),
        ("null", "null"),
        ("{\"slug\":\"x\"}{}", "two values"),
    ] {
        for (m, p, key) in [
            ("POST", "/admin/tenants".to_owned(), ADMIN_KEY),
            ("PUT", format!("/admin/tenants/{}", enc(&t.id)), ADMIN_KEY),
            ("POST", "/v1/api-keys".to_owned(), t.sk.as_str()),
        ] {
            let r = h
                .send(
                    h.req(m, &p)
                        .bearer_auth(key)
                        .header("content-type", "application/json")
                        .body(body),
                )
                .await;
            r.expect(400, "invalid_json");
            assert!(!r.text.contains(&t.sk[8..]), "{what}");
        }
    }
    let r = h
        .send(
            h.req("POST", "/admin/tenants")
                .bearer_auth(ADMIN_KEY)
                .header("content-type", "application/json")
                .body("{\n  \"slug\": \"x\",\n  \"name\": }"),
        )
        .await;
    r.expect(400, "invalid_json");
    let detail = r.body["detail"].as_str().unwrap();
    assert!(
        detail.contains("line 3") && detail.contains("column"),
        "{detail}"
    );
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405_with_allow() {
    let h = Harness::start().await;
    let t = h.create_tenant("acme").await;
    for path in [
        "/",
        "/nope",
        "/admin",
        "/admin/tenant",
        "/admin/tenants/tenant:acme/keys/x",
        "/admin/tenants/tenant:acme/users",
        "/v1",
        "/v1/tenants",
        "/v1/api-keys/x/revoke",
        "/v2/api-keys",
        "/health/",
        "/.well-known",
        "/%FF%FE",
    ] {
        for key in [None, Some(ADMIN_KEY), Some(t.sk.as_str())] {
            for m in ["GET", "POST", "DELETE"] {
                h.call(key, m, path, None).await.expect(404, "not_found");
            }
        }
    }
    for (m, path, allow) in [
        ("POST", "/health", "GET, HEAD"),
        ("DELETE", "/openapi.json", "GET, HEAD"),
        ("PUT", "/.well-known/authconf", "GET, HEAD"),
        ("DELETE", "/admin/tenants", "GET, HEAD, POST"),
        ("PATCH", "/admin/tenants", "GET, HEAD, POST"),
        (
            "POST",
            "/admin/tenants/tenant:acme",
            "GET, HEAD, PUT, PATCH, DELETE",
        ),
        ("PUT", "/admin/tenants/tenant:acme/keys", "GET, HEAD, POST"),
        ("POST", "/v1/tenant", "GET, HEAD"),
        ("DELETE", "/v1/api-keys", "GET, HEAD, POST"),
        (
            "PUT",
            "/v1/api-keys/key:0123456789abcdef",
            "GET, HEAD, DELETE",
        ),
        ("GET", "/v1/api-keys/key:0123456789abcdef/rotate", "POST"),
        ("OPTIONS", "/v1/tenant", "GET, HEAD"),
    ] {
        // Before authentication, and the same with a key.
        for key in [None, Some(t.sk.as_str())] {
            let r = h.call(key, m, path, None).await;
            r.expect(405, "method_not_allowed");
            assert_eq!(r.header("allow"), allow, "{m} {path}");
        }
    }
}

// ---------------------------------------------------------------- persistence and setup

#[tokio::test]
async fn data_survives_a_restart_on_the_same_data_dir() {
    let mut h = Harness::start().await;
    let t = h.create_tenant("acme").await;
    let (k, s) = h
        .create_key(
            &t.sk,
            json!({"name":"kept","type":"restricted","permissions":["read:api_keys"]}),
        )
        .await;
    let (gone, gone_secret) = h
        .create_key(&t.sk, json!({"name":"gone","type":"secret"}))
        .await;
    h.call(
        Some(&t.sk),
        "DELETE",
        &format!("/v1/api-keys/{}", enc(gone["id"].as_str().unwrap())),
        None,
    )
    .await
    .ok(200);
    h.admin(
        "PATCH",
        "/admin/tenants/tenant:acme",
        Some(json!({"plan":"pro","rateLimit":{"requests":5,"windowSeconds":10}})),
    )
    .await
    .ok(200);
    let before = h
        .admin("GET", "/admin/tenants/tenant:acme", None)
        .await
        .body;
    let old_base = h.base.clone();

    h.restart().await;
    assert_ne!(h.base, old_base, "a new listener");
    let after = h.admin("GET", "/admin/tenants/tenant:acme", None).await;
    assert_eq!(after.ok(200), &before);
    for key in [&t.sk, &t.pk, &s] {
        assert!(
            h.works(key).await,
            "keys still authenticate (the pepper persisted)"
        );
    }
    assert!(!h.works(&gone_secret).await, "revocations persisted");
    let r = h
        .call(
            Some(&s),
            "GET",
            &format!("/v1/api-keys/{}", enc(k["id"].as_str().unwrap())),
            None,
        )
        .await;
    assert_eq!(r.ok(200)["apiKey"], k);
    h.admin(
        "POST",
        "/admin/tenants",
        Some(json!({"slug":"acme","name":"A"})),
    )
    .await
    .expect(409, "conflict");
}

#[tokio::test]
async fn a_generated_admin_key_is_written_once_with_mode_0600() {
    let dir = tempfile::tempdir().unwrap();
    let service = spawn_in(dir.path(), None).await;
    let key = service.admin_key.clone();
    assert!(
        key.starts_with("sk_live_") && key.len() >= 8 + 32,
        "admin key shape"
    );
    let file = dir.path().join("platform-admin.key");
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), key);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "mode {mode:o}");
    }
    let c = client();
    let r = c
        .get(format!("{}/admin/tenants", service.base_url()))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    service.shutdown().await;
    // The second start reads the same key back.
    let again = spawn_in(dir.path(), None).await;
    assert_eq!(again.admin_key, key);
    again.shutdown().await;
    // A configured key that breaks the contract's shape is refused at start.
    for bad in [
        "sk_live_short",
        "pk_live_0123456789012345678901234567890123",
    ] {
        let other = tempfile::tempdir().unwrap();
        let res = auth_service::spawn(auth_service::Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: other.path().to_path_buf(),
            base_domain: None,
            admin_key: Some(bad.into()),
            test_hooks: false,
        })
        .await;
        assert!(res.is_err(), "{bad} refused");
    }
}

// ---------------------------------------------------------------- OpenAPI both ways

/// Checks `value` against a JSON schema of the document: `$ref`, `type`, `required`,
/// `properties`, `additionalProperties: false`, `items`, `enum`, `const`, `oneOf`, `allOf`.
fn conforms(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.trim_start_matches("#/components/schemas/");
        return conforms(doc, &doc["components"]["schemas"][name], value, at);
    }
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        for s in all {
            conforms(doc, s, value, at)?;
        }
    }
    if let Some(one) = schema.get("oneOf").and_then(Value::as_array) {
        let n = one
            .iter()
            .filter(|s| conforms(doc, s, value, at).is_ok())
            .count();
        if n != 1 {
            return Err(format!("{at}: {n} of oneOf match {value}"));
        }
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array) {
        if !e.contains(value) {
            return Err(format!("{at}: {value} not in enum"));
        }
    }
    if let Some(c) = schema.get("const") {
        if c != value {
            return Err(format!("{at}: {value} is not {c}"));
        }
    }
    if let Some(t) = schema.get("type") {
        let types: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let actual = match value {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        if !types
            .iter()
            .any(|t| *t == actual || (*t == "number" && actual == "integer"))
        {
            return Err(format!("{at}: {actual} is not {types:?}"));
        }
    }
    if let Value::Object(map) = value {
        if let Some(req) = schema.get("required").and_then(Value::as_array) {
            for r in req {
                if !map.contains_key(r.as_str().unwrap()) {
                    return Err(format!("{at}: missing {r}"));
                }
            }
        }
        let props = schema.get("properties").and_then(Value::as_object);
        for (k, v) in map {
            match props.and_then(|p| p.get(k)) {
                Some(s) => conforms(doc, s, v, &format!("{at}.{k}"))?,
                None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    return Err(format!("{at}: {k} is not documented"))
                }
                None => {}
            }
        }
    }
    if let (Value::Array(items), Some(s)) = (value, schema.get("items")) {
        for (i, v) in items.iter().enumerate() {
            conforms(doc, s, v, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

#[tokio::test]
async fn the_openapi_document_and_the_router_agree_both_ways() {
    let h = Harness::start().await;
    let doc = h.call(None, "GET", "/openapi.json", None).await.body;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    assert_eq!(doc["info"]["title"], "auth-service");
    assert_eq!(doc["info"]["version"], "0.1.0");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));

    const METHODS: &[&str] = &[
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (m, op) in item.as_object().unwrap() {
            if METHODS.contains(&m.as_str()) {
                documented.insert((m.to_uppercase(), path.clone()));
                // Errors are problem documents; admin and tenant routes say who may call.
                let security = &op["security"];
                if path.starts_with("/admin/") {
                    assert_eq!(*security, json!([{"platformAdminKey": []}]), "{m} {path}");
                } else if path.starts_with("/v1/auth/") {
                    // End-user routes: an access token, or optionally a tenant key.
                    assert!(
                        security.as_array().is_some_and(|s| !s.is_empty()),
                        "{m} {path}"
                    );
                } else if path.starts_with("/v1/") {
                    assert_eq!(*security, json!([{"tenantKey": []}]), "{m} {path}");
                } else {
                    assert_eq!(*security, json!([]), "{m} {path}");
                }
                assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()));
            }
        }
    }
    let listed: BTreeSet<(String, String)> = auth_core::ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(
        listed.len(),
        auth_core::ROUTES.len(),
        "ROUTES has no duplicates"
    );
    let missing_in_doc: Vec<_> = listed.difference(&documented).collect();
    let missing_in_routes: Vec<_> = documented.difference(&listed).collect();
    assert!(
        missing_in_doc.is_empty(),
        "served but not documented: {missing_in_doc:?}"
    );
    assert!(
        missing_in_routes.is_empty(),
        "documented but not served: {missing_in_routes:?}"
    );
    for (name, r) in doc["components"]["responses"].as_object().unwrap() {
        assert!(
            r["content"].get("application/problem+json").is_some(),
            "{name} is a problem document"
        );
    }
    for scheme in ["platformAdminKey", "tenantKey"] {
        let s = &doc["components"]["securitySchemes"][scheme];
        assert_eq!(
            (s["type"].as_str(), s["scheme"].as_str()),
            (Some("http"), Some("bearer"))
        );
    }

    // Each route is really routed. The routes of this part of the contract (tenants and API
    // keys), called with real ids, answer their documented success status with a body that
    // conforms to the documented schema; later parts' routes are only checked to be routed.
    let strict = |template: &str| {
        !template.starts_with("/v1/") && !template.starts_with("/admin/")
            || template.starts_with("/admin/tenants")
            || template == "/v1/tenant"
            || template.starts_with("/v1/api-keys")
    };
    let mut n = 0;
    for (method, template) in auth_core::ROUTES {
        n += 1;
        let t = h.create_tenant(&format!("route{n}")).await;
        let (k, _) = h
            .create_key(&t.sk, json!({"name":"k","type":"secret"}))
            .await;
        let id = if *template == "/admin/admins/{id}" {
            let r = h
                .admin(
                    "POST",
                    "/admin/admins",
                    Some(json!({"email": format!("route{n}@example.com")})),
                )
                .await;
            r.ok(201)["admin"]["id"].as_str().unwrap().to_owned()
        } else if template.starts_with("/admin/") {
            enc(&t.id)
        } else {
            enc(k["id"].as_str().unwrap())
        };
        let path = template.replace("{id}", &id);
        let key = if template.starts_with("/admin/") {
            Some(ADMIN_KEY)
        } else if template.starts_with("/v1/") {
            Some(t.sk.as_str())
        } else {
            None
        };
        let body = match (*method, *template) {
            ("POST", "/admin/tenants") => Some(json!({"slug": format!("new{n}"), "name":"N"})),
            ("POST", "/admin/admins") => Some(json!({"email": format!("new{n}@example.com")})),
            ("PUT" | "PATCH", _) => Some(json!({"name":"Renamed"})),
            ("POST", "/admin/tenants/{id}/keys" | "/v1/api-keys") => {
                Some(json!({"name":"n","type":"restricted","permissions":["read:api_keys"]}))
            }
            _ => None,
        };
        let op = &doc["paths"][*template][method.to_lowercase()];
        let r = h.call(key, method, &path, body.clone()).await;
        assert!(
            !["not_found", "method_not_allowed"].contains(&r.code()),
            "{method} {template} is not routed: {}",
            r.text
        );
        if !strict(template) {
            continue;
        }
        let success: Vec<&String> = op["responses"]
            .as_object()
            .unwrap()
            .keys()
            .filter(|s| s.starts_with('2'))
            .collect();
        assert_eq!(success.len(), 1, "{method} {template}: one success status");
        assert_eq!(
            r.status.to_string(),
            *success[0],
            "{method} {template}: {}",
            r.text
        );
        if let Some(schema) =
            op["responses"][success[0].as_str()]["content"]["application/json"].get("schema")
        {
            conforms(&doc, schema, &r.body, &format!("{method} {template}"))
                .unwrap_or_else(|e| panic!("{e}"));
        }
        if let Some(b) = &body {
            let schema = &op["requestBody"]["content"]["application/json"]["schema"];
            conforms(&doc, schema, b, "request").unwrap_or_else(|e| panic!("{e}"));
        }
        // Errors conform to the Problem schema too.
        let wrong = h.call(key, "TRACE", &path, None).await;
        wrong.expect(405, "method_not_allowed");
        conforms(
            &doc,
            &json!({"$ref":"#/components/schemas/Problem"}),
            &wrong.body,
            "problem",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let allow: BTreeSet<String> = wrong
            .header("allow")
            .split(", ")
            .map(str::to_owned)
            .collect();
        let mut expected: BTreeSet<String> = auth_core::ROUTES
            .iter()
            .filter(|(_, p)| p == template)
            .map(|(m, _)| m.to_string())
            .collect();
        if expected.contains("GET") {
            expected.insert("HEAD".into());
        }
        assert_eq!(allow, expected, "Allow of {template} matches ROUTES");
    }
    // A validation error conforms as well, with field and errors.
    let r = h
        .admin(
            "POST",
            "/admin/tenants",
            Some(json!({"slug":"BAD","name":"x"})),
        )
        .await;
    r.expect_field("invalid_field", "slug");
    conforms(
        &doc,
        &json!({"$ref":"#/components/schemas/Problem"}),
        &r.body,
        "problem",
    )
    .unwrap_or_else(|e| panic!("{e}"));
}

// ---------------------------------------------------------------- storage at rest

#[tokio::test]
async fn keys_are_stored_only_as_keyed_hashes() {
    let h = Harness::start().await;
    let t = h.create_tenant("acme").await;
    let (_, s) = h
        .create_key(
            &t.sk,
            json!({"name":"k","type":"restricted","environment":"test"}),
        )
        .await;
    let secrets = [t.pk.as_str(), t.sk.as_str(), s.as_str(), ADMIN_KEY];
    // No file of the data dir (database, WAL, pepper) holds a key, nor its random part.
    let mut dirs = vec![h.dir.path().to_path_buf()];
    let mut files = Vec::new();
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    assert!(!files.is_empty());
    for path in files {
        let Ok(bytes) = std::fs::read(&path) else {
            continue; // removed meanwhile (a journal)
        };
        let text = String::from_utf8_lossy(&bytes);
        for secret in secrets {
            assert!(
                !text.contains(&secret[12..]),
                "{} holds a key",
                path.display()
            );
        }
    }
    // The stored hash is HMAC-SHA256 under the server pepper, for every key type.
    let pepper = std::fs::read_to_string(h.dir.path().join("key-pepper")).unwrap();
    let hasher = auth_core::keys::KeyHasher::new(pepper.trim().as_bytes());
    let db = rusqlite::Connection::open_with_flags(
        h.dir.path().join("auth.sqlite3"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    for secret in &secrets[..3] {
        let (hash, prefix): (String, String) = db
            .query_row(
                "SELECT key_hash, key_prefix FROM api_keys WHERE key_hash = ?1",
                [hasher.hash(secret)],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("found by its keyed hash");
        assert_eq!(hash.len(), 64);
        assert_eq!(prefix, secret[..12]);
    }
    // The seed's nine tables, applied as a D1 migration.
    let tables: Vec<String> = db
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for table in [
        "tenants",
        "api_keys",
        "platform_admins",
        "platform_admin_tenant_permissions",
        "tenant_data_schemas",
        "usage_metrics",
        "accounts",
        "sessions",
        "verification_tokens",
    ] {
        assert!(tables.iter().any(|t| t == table), "table {table}");
    }
    let applied: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM d1_migrations WHERE name = '0001_initial.sql'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(applied, 1);
}

// ---------------------------------------------------------------- odd inputs

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_inputs_never_yield_a_500() {
    let h = Harness::start().await;
    let t = h.create_tenant("acme").await;
    // The admin routes work on a tenant of their own, since one of them deletes it.
    let victim = h.create_tenant("victim").await;
    let (k, _) = h
        .create_key(&t.sk, json!({"name":"k","type":"secret"}))
        .await;
    let key_id = enc(k["id"].as_str().unwrap());
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let bodies: Vec<Vec<u8>> = vec![
        vec![0xff, 0xfe, 0x00, 0x7b],
        b"{\"name\":\"\\u0000\",\"slug\":\"a\\u0000\"}".to_vec(),
        b"{\"name\":\"\\ud800\"}".to_vec(),
        deep.into_bytes(),
        b"{\"expiresInSeconds\":1e400,\"rateLimit\":{\"requests\":1e400}}".to_vec(),
        b"{\"expiresInSeconds\":18446744073709551616}".to_vec(),
        b"{\"name\":{\"a\":1},\"type\":{},\"permissions\":[[]],\"plan\":[]}".to_vec(),
        b"{\"slug\":\"\xc3\xa9\",\"name\":\"\xe2\x80\xae\"}".to_vec(),
        b"{\"a\":1,\"a\":2}".to_vec(),
        b"\xef\xbb\xbf{}".to_vec(),
    ];
    let ids = [
        "x",
        "%00",
        "tenant%3A%00",
        "key%3A%F0%9F%92%A9",
        "..%2F..%2Fetc",
        "%2e%2e",
    ];
    for (method, template) in auth_core::ROUTES {
        let key = if template.starts_with("/admin/") {
            Some(ADMIN_KEY)
        } else if template.starts_with("/v1/") {
            Some(t.sk.as_str())
        } else {
            None
        };
        let real = if template.starts_with("/admin/") {
            enc(&victim.id)
        } else {
            key_id.clone()
        };
        let mut paths = vec![template.replace("{id}", &real)];
        if template.contains("{id}") {
            paths.extend(ids.iter().map(|i| template.replace("{id}", i)));
        }
        for path in paths {
            for (body, query) in bodies.iter().flat_map(|b| {
                // Each body also with an odd query (which the routing check refuses before
                // any body is read).
                [
                    (b, ""),
                    (
                        b,
                        "?page=%FF&limit=99999999999999999999&after=-1&since=x&tenant_id=%00",
                    ),
                ]
            }) {
                let mut rb = h
                    .req(method, &format!("{path}{query}"))
                    .header("content-type", "application/json")
                    .header("x-tenant-id", "tenant:acme")
                    .body(body.clone());
                if let Some(k) = key {
                    rb = rb.bearer_auth(k);
                }
                // `send` fails the test on any 500 or malformed error.
                let r = h.send(rb).await;
                assert!(r.status < 500, "{method} {path}: {}", r.text);
            }
        }
    }
    // The service is still healthy, the caller's key untouched, and nothing odd was stored.
    h.call(None, "GET", "/health", None).await.ok(200);
    assert!(h.works(&t.sk).await);
    let r = h.admin("GET", "/admin/tenants", None).await;
    assert_eq!(r.ok(200)["pagination"]["total"], 2);
}
