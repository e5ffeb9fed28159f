//! The admin dashboard, usage metrics and platform admins over real HTTP: counts per endpoint
//! and day (429s included) written in batches, the dashboard's figures, the cross-tenant key
//! list, and admins limited by role and tenant.

mod support;

use serde_json::{json, Value};

use support::{column, Service, Tenant, ADMIN_KEY};

/// A tenant on `plan` with `requests` per minute.
async fn tenant(svc: &Service, slug: &str, plan: &str, requests: u32) -> Tenant {
    svc.create_tenant_with(json!({"slug": slug, "name": slug, "plan": plan,
                                  "rateLimit": {"requests": requests, "windowSeconds": 60}}))
        .await
}

/// Creates a platform admin with the root key: `(admin, adminKey)`.
async fn platform_admin(
    svc: &Service,
    email: &str,
    role: &str,
    tenants: Option<Vec<&str>>,
) -> (Value, String) {
    let mut body = json!({"email": email, "name": "Ops", "role": role});
    if let Some(t) = tenants {
        body["tenants"] = json!(t);
    }
    let r = svc.admin("POST", "/admin/admins", Some(body)).await;
    let b = r.ok(201).clone();
    let key = b["credentials"]["adminKey"].as_str().unwrap().to_owned();
    (b["admin"].clone(), key)
}

/// Rows of the shared usage_metrics table, read straight from the database file.
fn usage_rows(svc: &Service) -> Vec<(String, String, String, i64, i64)> {
    let conn = svc.db();
    let mut stmt = conn
        .prepare(
            "SELECT tenant_id, day, endpoint, count, rate_limited FROM usage_metrics \
             ORDER BY tenant_id, day, endpoint",
        )
        .unwrap();
    let rows = stmt
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    rows
}

fn endpoint<'a>(day: &'a Value, name: &str) -> Option<&'a Value> {
    day["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["endpoint"] == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_is_counted_per_endpoint_and_day_in_batches_429s_included() {
    let svc = Service::with_hooks().await;
    let t = tenant(&svc, "metered", "pro", 4).await;
    let other = tenant(&svc, "other", "free", 100).await;
    let started = std::time::Instant::now();
    // 4 allowed, then 2 refused with 429, on two endpoints.
    for _ in 0..3 {
        svc.call(Some(&t.sk), "GET", "/v1/api-keys", None)
            .await
            .ok(200);
    }
    svc.use_key(&t.sk).await.ok(200);
    for _ in 0..2 {
        let r = svc.call(Some(&t.sk), "GET", "/v1/api-keys", None).await;
        assert_eq!(r.status, 429, "{}", r.text);
    }
    svc.call(Some(&other.sk), "GET", "/v1/rate-limit", None)
        .await
        .ok(200);

    // Batched: nothing reached the shared table yet (the alarm flushes 5 s after the first
    // counted request; on a machine too loaded to send 8 requests in 4 s this is not checked).
    if started.elapsed() < std::time::Duration::from_secs(4) {
        assert!(usage_rows(&svc).is_empty(), "{:?}", usage_rows(&svc));
    }
    // The alarm flushes.
    svc.fire_alarms(None).await;
    let rows = usage_rows(&svc);
    let row = |tenant: &str, ep: &str| {
        rows.iter()
            .find(|r| r.0 == tenant && r.2 == ep)
            .map(|r| (r.3, r.4))
    };
    assert_eq!(row(&t.id, "GET /v1/api-keys"), Some((5, 2)), "{rows:?}");
    assert_eq!(row(&t.id, "GET /v1/tenant"), Some((1, 0)), "{rows:?}");
    assert_eq!(
        row(&other.id, "GET /v1/rate-limit"),
        Some((1, 0)),
        "{rows:?}"
    );
    // Flushed counts are not counted twice.
    svc.fire_alarms(None).await;
    assert_eq!(usage_rows(&svc), rows);

    // The next day: the rate window is over too.
    svc.advance(86_400_000).await;
    svc.call(Some(&t.sk), "GET", "/v1/api-keys", None)
        .await
        .ok(200);
    svc.call(Some(&t.sk), "DELETE", "/v1/api-keys/key_unknown", None)
        .await;
    // Reading metrics flushes first: no wait for the alarm.
    let path = format!("/admin/tenants/{}/metrics?days=2", t.id);
    let r = svc.admin("GET", &path, None).await;
    let b = r.ok(200);
    assert_eq!(b["tenantId"], t.id);
    let daily = b["daily"].as_array().unwrap();
    assert_eq!(daily.len(), 2, "{b}");
    assert_eq!(daily[0]["requests"], 6);
    assert_eq!(daily[0]["rateLimited"], 2);
    assert_eq!(
        endpoint(&daily[0], "GET /v1/api-keys").unwrap()["requests"],
        5
    );
    assert_eq!(
        endpoint(&daily[0], "GET /v1/api-keys").unwrap()["rateLimited"],
        2
    );
    assert_eq!(
        endpoint(&daily[0], "GET /v1/tenant").unwrap()["requests"],
        1
    );
    assert_eq!(daily[1]["requests"], 2);
    assert_eq!(
        endpoint(&daily[1], "GET /v1/api-keys").unwrap()["requests"],
        1
    );
    assert_eq!(
        endpoint(&daily[1], "DELETE /v1/api-keys/{id}").unwrap()["requests"],
        1
    );
    assert_ne!(daily[0]["date"], daily[1]["date"]);
    assert_eq!(b["totals"]["requests"], 8);
    assert_eq!(usage_rows(&svc).len(), 5, "{:?}", usage_rows(&svc));

    // Across tenants, per day.
    let b = svc.admin("GET", "/admin/metrics?days=3", None).await;
    let b = b.ok(200);
    let daily = b["daily"].as_array().unwrap();
    assert_eq!(daily.len(), 3);
    assert_eq!(daily[0]["requests"], 0);
    assert_eq!(daily[1]["requests"], 7);
    assert_eq!(daily[1]["rateLimited"], 2);
    assert_eq!(daily[1]["tenants"], 2);
    assert_eq!(daily[2]["requests"], 2);
    assert_eq!(b["totals"]["requests"], 9);

    // Unknown tenant 404; bad days 400.
    svc.admin("GET", "/admin/tenants/tenant:nope/metrics", None)
        .await
        .ok(404);
    svc.admin("GET", "/admin/metrics?days=0", None)
        .await
        .ok(400);
    svc.admin("GET", "/admin/metrics?days=91", None)
        .await
        .ok(400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_counts_tenants_keys_and_requests() {
    let svc = Service::with_hooks().await;
    let a = tenant(&svc, "dash-a", "pro", 2).await;
    let b = tenant(&svc, "dash-b", "free", 100).await;
    let c = tenant(&svc, "dash-c", "enterprise", 100).await;
    svc.admin(
        "PATCH",
        &format!("/admin/tenants/{}", b.id),
        Some(json!({"status": "suspended"})),
    )
    .await
    .ok(200);
    svc.admin("DELETE", &format!("/admin/tenants/{}", c.id), None)
        .await
        .ok(200);
    // One more key for a (3 keys; b and c have 2 each), then a's quota of 2 runs out.
    let r = svc
        .post(
            &a.sk,
            "/v1/api-keys",
            json!({"name": "x", "type": "secret"}),
        )
        .await;
    let id = r.ok(201)["apiKey"]["id"].as_str().unwrap().to_owned();
    svc.use_key(&a.sk).await.ok(200);
    assert_eq!(
        svc.status(Some(&a.sk), "GET", "/v1/tenant", None).await,
        429
    );
    // Admin requests are not tenant usage.
    svc.admin("GET", "/admin/tenants", None).await.ok(200);

    let r = svc.admin("GET", "/admin/dashboard", None).await;
    let d = r.ok(200);
    assert_eq!(d["tenants"]["total"], 3, "{d}");
    assert_eq!(
        d["tenants"]["byStatus"],
        json!({"active": 1, "suspended": 1, "deleted": 1})
    );
    assert_eq!(
        d["tenants"]["byPlan"],
        json!({"free": 1, "pro": 1, "enterprise": 1})
    );
    assert!(d["generatedAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(d["requests"]["last24h"], 3, "{d}");
    assert_eq!(d["requests"]["rateLimitedLast24h"], 1, "{d}");
    assert_eq!(d["apiKeys"]["active"], 7, "{d}");
    assert_eq!(d["apiKeys"]["revoked"], 0, "{d}");

    // Revoke the new key once a's window is over.
    svc.advance(61_000).await;
    svc.call(Some(&a.sk), "DELETE", &format!("/v1/api-keys/{id}"), None)
        .await
        .ok(200);
    let d = svc.admin("GET", "/admin/dashboard", None).await;
    let d = d.ok(200);
    assert_eq!(d["apiKeys"]["active"], 6, "{d}");
    assert_eq!(d["apiKeys"]["revoked"], 1, "{d}");
    assert_eq!(d["requests"]["last24h"], 4, "{d}");
    // A day later the requests are out of the 24-hour window.
    svc.advance(25 * 3_600_000).await;
    let d = svc.admin("GET", "/admin/dashboard", None).await;
    assert_eq!(d.ok(200)["requests"]["last24h"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_keys_filter_and_paginate_and_never_show_a_secret() {
    let svc = Service::with_hooks().await;
    let a = tenant(&svc, "keys-a", "pro", 1000).await;
    let b = tenant(&svc, "keys-b", "pro", 1000).await;
    let mut secrets = vec![a.sk.clone(), b.sk.clone()];
    let mut revoked = String::new();
    for i in 0..3 {
        let r = svc.post(&a.sk, "/v1/api-keys", json!({"name": format!("r{i}"), "type": "restricted", "permissions": ["read:api_keys"]}))
            .await;
        let body = r.ok(201);
        secrets.push(
            body["credentials"]["keySecret"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
        revoked = body["apiKey"]["id"].as_str().unwrap().to_owned();
    }
    svc.call(
        Some(&a.sk),
        "DELETE",
        &format!("/v1/api-keys/{revoked}"),
        None,
    )
    .await
    .ok(200);

    let sv = &svc;
    let list = |q: &str| {
        let path = format!("/admin/api-keys{q}");
        async move { sv.admin("GET", &path, None).await }
    };
    let r = list("").await;
    let all = r.ok(200);
    assert_eq!(
        all["pagination"],
        json!({"page": 1, "limit": 20, "total": 7, "pages": 1})
    );
    for k in all["apiKeys"].as_array().unwrap() {
        assert!(k["tenantId"] == a.id || k["tenantId"] == b.id, "{k}");
        assert!(k["id"].is_string() && k["displayPrefix"].is_string());
        assert!(k.get("keyHash").is_none() && k.get("secret").is_none());
    }
    let r = list(&format!("?tenantId={}", b.id)).await;
    assert_eq!(r.ok(200)["pagination"]["total"], 2);
    let r = list("?type=restricted").await;
    assert_eq!(r.ok(200)["pagination"]["total"], 3);
    let r = list("?type=restricted&status=active").await;
    assert_eq!(r.ok(200)["pagination"]["total"], 2);
    let r = list("?status=revoked").await;
    let body = r.ok(200);
    assert_eq!(body["pagination"]["total"], 1);
    assert_eq!(body["apiKeys"][0]["id"], revoked);
    assert!(body["apiKeys"][0]["revokedAt"].is_string());
    let r = list("?status=expired").await;
    assert_eq!(r.ok(200)["pagination"]["total"], 0);
    // Pages.
    let p1 = list("?limit=3&page=1").await;
    let p3 = list("?limit=3&page=3").await;
    assert_eq!(
        p1.ok(200)["pagination"],
        json!({"page": 1, "limit": 3, "total": 7, "pages": 3})
    );
    assert_eq!(p1.body["apiKeys"].as_array().unwrap().len(), 3);
    assert_eq!(p3.ok(200)["apiKeys"].as_array().unwrap().len(), 1);
    assert_ne!(p1.body["apiKeys"][0]["id"], p3.body["apiKeys"][0]["id"]);
    // Bad filters are 400.
    for q in [
        "?status=gone",
        "?type=admin",
        "?limit=0",
        "?limit=101",
        "?page=0",
        "?secret=1",
    ] {
        assert_eq!(list(q).await.status, 400, "{q}");
    }
    // No secret anywhere in any answer.
    for q in ["", "?limit=100", "?status=revoked", "?type=secret"] {
        let r = list(q).await;
        for s in &secrets {
            assert!(
                !r.text.contains(s.as_str()) && !r.text.contains(&s[12..]),
                "{}",
                r.text
            );
        }
    }
    // Tenant keys on admin routes stay 403; unknown keys 401.
    assert_eq!(
        svc.status(Some(&a.sk), "GET", "/admin/api-keys", None)
            .await,
        403
    );
    assert_eq!(
        svc.status(
            Some("sk_live_nobodyknowsthiskey000000000000000"),
            "GET",
            "/admin/api-keys",
            None
        )
        .await,
        401
    );
    assert_eq!(svc.status(None, "GET", "/admin/dashboard", None).await, 401);
}

/// A limited admin's (key `k`) lists and figures cover only its tenant `mine`.
async fn lists_cover_only(svc: &Service, k: Option<&str>, mine: &Tenant, theirs: &Tenant) {
    // Lists and figures only cover its tenant.
    let r = svc.call(k, "GET", "/admin/tenants", None).await;
    let b = r.ok(200);
    assert_eq!(b["pagination"]["total"], 1);
    assert_eq!(b["tenants"][0]["id"], mine.id);
    let r = svc.call(k, "GET", "/admin/api-keys", None).await;
    let b = r.ok(200);
    assert_eq!(b["pagination"]["total"], 2);
    assert!(b["apiKeys"]
        .as_array()
        .unwrap()
        .iter()
        .all(|x| x["tenantId"] == mine.id));
    let path = format!("/admin/api-keys?tenantId={}", theirs.id);
    let r = svc.call(k, "GET", &path, None).await;
    assert_eq!(r.ok(200)["pagination"]["total"], 0);
    let r = svc.call(k, "GET", "/admin/dashboard", None).await;
    let d = r.ok(200);
    assert_eq!(d["tenants"]["total"], 1);
    assert_eq!(d["apiKeys"]["active"], 2);
    assert_eq!(d["requests"]["last24h"], 1);
    let r = svc.call(k, "GET", "/admin/metrics?days=1", None).await;
    assert_eq!(r.ok(200)["totals"]["requests"], 1);
    let r = svc.admin("GET", "/admin/metrics?days=1", None).await;
    assert_eq!(r.ok(200)["totals"]["requests"], 3);
}

/// Admin keys (`keys`) never appear in any list or figure, read with the root key or `s`.
async fn assert_no_admin_key_shown(svc: &Service, s: Option<&str>, keys: &[&String]) {
    // Admin keys never appear in any list or figure.
    let mut texts = Vec::new();
    for p in [
        "/admin/admins",
        "/admin/tenants",
        "/admin/api-keys",
        "/admin/dashboard",
        "/admin/metrics",
    ] {
        texts.push(svc.admin("GET", p, None).await.text);
    }
    texts.push(svc.call(s, "GET", "/admin/admins", None).await.text);
    for text in &texts {
        for key in keys {
            assert!(
                !text.contains(key.as_str()) && !text.contains(&key[8..]),
                "{text}"
            );
        }
        assert!(
            !text.contains("keyHash") && !text.contains("key_hash"),
            "{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limited_admins_see_and_change_only_their_tenants() {
    let svc = Service::with_hooks().await;
    let mine = tenant(&svc, "mine", "pro", 1000).await;
    let theirs = tenant(&svc, "theirs", "free", 1000).await;
    svc.use_key(&mine.sk).await.ok(200);
    svc.use_key(&theirs.sk).await.ok(200);
    svc.use_key(&theirs.sk).await.ok(200);
    let (admin, key) =
        platform_admin(&svc, "support@example.com", "support", Some(vec![&mine.id])).await;
    assert_eq!(admin["tenants"], json!([mine.id]));
    assert_eq!(admin["role"], "support");
    assert_eq!(admin["status"], "active");
    let k = Some(key.as_str());

    // Its own tenant: readable and changeable.
    let mine_path = format!("/admin/tenants/{}", mine.id);
    svc.call(k, "GET", &mine_path, None).await.ok(200);
    let rename = json!({"name": "Mine"});
    svc.call(k, "PATCH", &mine_path, Some(rename)).await.ok(200);
    let keys_path = format!("{mine_path}/keys");
    svc.call(k, "GET", &keys_path, None).await.ok(200);
    svc.call(
        k,
        "GET",
        &format!("/admin/tenants/{}/metrics", mine.id),
        None,
    )
    .await
    .ok(200);

    // Another tenant: exactly an unknown one.
    let unknown = svc
        .call(k, "GET", "/admin/tenants/tenant:nobody", None)
        .await;
    assert_eq!(unknown.status, 404);
    for (m, p, body) in [
        ("GET", format!("/admin/tenants/{}", theirs.id), None),
        (
            "PUT",
            format!("/admin/tenants/{}", theirs.id),
            Some(json!({"name": "x"})),
        ),
        (
            "PATCH",
            format!("/admin/tenants/{}", theirs.id),
            Some(json!({"name": "x"})),
        ),
        ("DELETE", format!("/admin/tenants/{}", theirs.id), None),
        ("GET", format!("/admin/tenants/{}/keys", theirs.id), None),
        (
            "POST",
            format!("/admin/tenants/{}/keys", theirs.id),
            Some(json!({"name": "x", "type": "secret"})),
        ),
        ("GET", format!("/admin/tenants/{}/metrics", theirs.id), None),
        (
            "GET",
            format!("/admin/tenants/{}", theirs.id.replace(':', "%3A")),
            None,
        ),
    ] {
        let r = svc.call(k, m, &p, body).await;
        assert_eq!(r.status, 404, "{m} {p}: {}", r.text);
        assert_eq!(r.body["code"], unknown.body["code"]);
    }
    let r = svc
        .admin("GET", &format!("/admin/tenants/{}", theirs.id), None)
        .await;
    assert_eq!(r.ok(200)["tenant"]["name"], "theirs", "unchanged");

    lists_cover_only(&svc, k, &mine, &theirs).await;

    // No creating tenants or admins, no reading admins, no keyring.
    let refused = [
        (
            "POST",
            "/admin/tenants",
            Some(json!({"slug": "new", "name": "n"})),
        ),
        (
            "POST",
            "/admin/admins",
            Some(json!({"email": "x@example.com"})),
        ),
        ("GET", "/admin/admins", None),
        ("GET", "/admin/jwt", None),
    ]
    .map(|(method, path, body)| (method, path, body, 403));
    svc.expect_status_each(k, refused).await;
    // Its key is no tenant key.
    assert_eq!(svc.status(k, "GET", "/v1/tenant", None).await, 401);
    // Unknown tenants in the list are refused at creation.
    let r = svc
        .admin(
            "POST",
            "/admin/admins",
            Some(json!({"email": "y@example.com", "tenants": ["tenant:ghost"]})),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readonly_admins_only_read_and_revoked_admin_keys_are_refused() {
    let svc = Service::with_hooks().await;
    let t = tenant(&svc, "ro", "free", 1000).await;
    let (ro, ro_key) = platform_admin(&svc, "ro@example.com", "readonly", None).await;
    assert!(ro["tenants"].is_null());
    let (sup, sup_key) = platform_admin(&svc, "super@example.com", "superadmin", None).await;
    let k = Some(ro_key.as_str());
    for p in [
        "/admin/tenants",
        "/admin/dashboard",
        "/admin/metrics",
        "/admin/api-keys",
    ] {
        svc.call(k, "GET", p, None).await.ok(200);
    }
    svc.call(k, "GET", &format!("/admin/tenants/{}", t.id), None)
        .await
        .ok(200);
    for (m, p, body) in [
        (
            "POST",
            "/admin/tenants".to_owned(),
            Some(json!({"slug": "x", "name": "x"})),
        ),
        (
            "PATCH",
            format!("/admin/tenants/{}", t.id),
            Some(json!({"name": "x"})),
        ),
        ("DELETE", format!("/admin/tenants/{}", t.id), None),
        (
            "POST",
            format!("/admin/tenants/{}/keys", t.id),
            Some(json!({"name": "x", "type": "secret"})),
        ),
        ("POST", "/admin/jwt/rotate".to_owned(), Some(json!({}))),
    ] {
        let r = svc.call(k, m, &p, body).await;
        assert_eq!(r.status, 403, "{m} {p}: {}", r.text);
    }

    // An unlimited superadmin creates tenants and lists admins, but only the root key
    // creates or revokes admins.
    let s = Some(sup_key.as_str());
    svc.call(
        s,
        "POST",
        "/admin/tenants",
        Some(json!({"slug": "by-super", "name": "s"})),
    )
    .await
    .ok(201);
    let r = svc.call(s, "GET", "/admin/admins", None).await;
    let listed = r.ok(200).clone();
    assert_eq!(listed["admins"].as_array().unwrap().len(), 2);
    let path = format!("/admin/admins/{}", ro["id"].as_str().unwrap());
    let by_super = [
        (
            "POST",
            "/admin/admins",
            Some(json!({"email": "z@example.com"})),
            403,
        ),
        ("DELETE", path.as_str(), None, 403),
    ];
    svc.expect_status_each(s, by_super).await;
    // Duplicate email 409; bad role 400.
    let bad = json!({"email": "q@example.com", "role": "root"});
    let by_platform = [
        (
            "POST",
            "/admin/admins",
            Some(json!({"email": "RO@example.com"})),
            409,
        ),
        ("POST", "/admin/admins", Some(bad), 400),
    ];
    svc.expect_status_each(Some(ADMIN_KEY), by_platform).await;

    // Revoke: the key is refused with 401 at once; revoking again is the same answer.
    let r = svc.admin("DELETE", &path, None).await;
    assert_eq!(r.ok(200)["admin"]["status"], "revoked");
    assert!(r.body["admin"]["revokedAt"].is_string());
    let r = svc.call(k, "GET", "/admin/tenants", None).await;
    assert_eq!(r.status, 401, "{}", r.text);
    svc.admin("DELETE", &path, None).await.ok(200);
    svc.admin("DELETE", "/admin/admins/admin_nobody", None)
        .await
        .ok(404);

    assert_no_admin_key_shown(&svc, s, &[&ro_key, &sup_key]).await;
    let admins = svc.admin("GET", "/admin/admins", None).await;
    let ids: Vec<&Value> = admins.body["admins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["id"])
        .collect();
    assert!(ids.contains(&&sup["id"]));
    // The stored form is a keyed hash, not the key.
    let conn = svc.db();
    let hashes = column(&conn, "SELECT key_hash FROM platform_admins");
    assert_eq!(hashes.len(), 2);
    for h in &hashes {
        assert!(!h.contains(&ro_key[8..]) && !h.contains(&sup_key[8..]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_reach_the_shared_table_by_the_alarm_alone() {
    // Real time: the object's alarm flushes within 5 s of the first counted request, with no
    // metrics read and no test control.
    let svc = Service::with_hooks().await;
    let t = tenant(&svc, "by-alarm", "free", 100).await;
    for _ in 0..3 {
        svc.call(Some(&t.sk), "GET", "/v1/rate-limit", None)
            .await
            .ok(200);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let rows = usage_rows(&svc);
        if !rows.is_empty() {
            assert_eq!(rows.len(), 1, "{rows:?}");
            assert_eq!(
                (rows[0].2.as_str(), rows[0].3, rows[0].4),
                ("GET /v1/rate-limit", 3, 0)
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no flush within 15 s");
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}
