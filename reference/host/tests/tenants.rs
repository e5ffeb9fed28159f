//! Tenants (docs/contract.md, "Admin routes (platform admin key)"): creation, validation
//! field by field, ids in paths, listing, partial updates, suspension, soft deletion, and the
//! admin's view of a tenant's keys.
//!
//! Every answer also passes the checks of `support::Service::send` (no 5xx, always
//! `X-Request-Id`, errors as problem documents).

mod support;

use std::collections::BTreeSet;

use serde_json::{json, Value};

use support::*;

#[tokio::test]
async fn creating_a_tenant() {
    let h = Service::start().await;
    let r = h.new_tenant(json!({"slug":"acme","name":"Acme"})).await;
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
            .new_tenant(
                json!({"slug": format!("p{i}"), "name":"  P  ", "plan": plan,
                            "rateLimit": {"requests": 10, "windowSeconds": 60}}),
            )
            .await;
        let t = &r.ok(201)["tenant"];
        assert_eq!(t["plan"], *plan);
        assert_eq!(t["name"], "P");
        assert_eq!(t["rateLimit"], json!({"requests":10,"windowSeconds":60}));
    }
    let long = format!("a{}z", "-".repeat(61));
    let r = h.new_tenant(json!({"slug": long, "name":"L"})).await;
    assert_eq!(r.ok(201)["tenant"]["id"], format!("tenant:{long}"));
    let r = h
        .new_tenant(json!({"slug":"n200","name": "é".repeat(200)}))
        .await;
    r.ok(201);

    // Duplicates, also of a deleted tenant's slug.
    h.new_tenant(json!({"slug":"acme","name":"Again"}))
        .await
        .expect(409, "conflict");
    h.admin("DELETE", "/admin/tenants/tenant:p0", None)
        .await
        .ok(200);
    h.new_tenant(json!({"slug":"p0","name":"Again"}))
        .await
        .expect(409, "conflict");
}

#[tokio::test]
async fn tenant_creation_is_validated_field_by_field() {
    let h = Service::start().await;
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
        h.new_tenant(body)
            .await
            .expect_field("invalid_field", field);
    }
    // Nothing was created by the refused requests.
    let r = h.admin("GET", "/admin/tenants", None).await;
    assert_eq!(r.ok(200)["pagination"]["total"], 0);
}

/// The path of the tenant `tenant:acme`, its ':' encoded in upper and lower case, and raw.
const ACME_PATHS: [&str; 3] = [
    "/admin/tenants/tenant%3Aacme",
    "/admin/tenants/tenant%3aacme",
    "/admin/tenants/tenant:acme",
];

#[tokio::test]
async fn tenant_ids_in_paths_may_be_percent_encoded() {
    let (h, t) = Service::start_with_tenant("acme").await;
    for path in ACME_PATHS {
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
        Some(key_body("k", "secret", None)),
    )
    .await
    .expect(404, "not_found");
}

#[tokio::test]
async fn listing_tenants_filters_and_paginates() {
    let h = Service::start().await;
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
    let h = Service::start().await;
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
    let (h, t) = Service::start_with_tenant("acme").await;
    let reader = restricted_body("r", json!(["read:api_keys"]));
    let (_, rk) = h.create_key(&t.sk, reader).await;
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
    h.post(&t.sk, "/v1/api-keys", key_body("n", "secret", None))
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
    let (h, t) = Service::start_with_tenant("acme").await;
    let other = h.create_tenant("other").await;
    let (_, extra) = h.create_key(&t.sk, key_body("e", "secret", None)).await;
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
        Some(key_body("k", "secret", None)),
    )
    .await
    .expect(409, "conflict");
    h.new_tenant(json!({"slug":"acme","name":"A"}))
        .await
        .expect(409, "conflict");
    // Other tenants are untouched.
    assert!(h.works(&other.sk).await);
}

#[tokio::test]
async fn the_admin_lists_and_mints_a_tenants_keys() {
    let (h, t) = Service::start_with_tenant("acme").await;
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
