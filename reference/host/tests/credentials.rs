//! Credentials (docs/contract.md, "Credentials" and "Admin routes"): the platform admin
//! key's scope, the key format and checksum checked with an independent CRC-32, one identical
//! 401 for every altered key, secrets never shown again, keys never in the query string.
//!
//! Every answer also passes the checks of `support::Service::send` (no 5xx, always
//! `X-Request-Id`, errors as problem documents).

mod support;

use std::collections::BTreeSet;

use serde_json::{json, Value};

use support::*;

#[tokio::test]
async fn admin_routes_need_the_platform_admin_key() {
    let (h, t) = Service::start_with_tenant("acme").await;
    let (_, rk) = h
        .create_key(&t.sk, restricted_body("r", json!(["*"])))
        .await;
    let (_, sk_test) = h.test_key(&t.sk, "t", "secret").await;
    let (revoked, revoked_secret) = h.create_key(&t.sk, key_body("x", "secret", None)).await;
    h.revoke(&t.sk, revoked["id"].as_str().unwrap())
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
            Some(key_body("k", "secret", None)),
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

#[tokio::test]
async fn keys_have_the_contract_format_and_checksum() {
    let (h, t) = Service::start_with_tenant("acme").await;
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
    let (h, t) = Service::start_with_tenant("acme").await;
    let (k, s) = h.create_key(&t.sk, key_body("k", "secret", None)).await;
    let (_, rs) = h.create_key(&t.sk, restricted_body("r", json!([]))).await;
    let all = [t.pk.as_str(), t.sk.as_str(), s.as_str(), rs.as_str()];
    let id = enc(k["id"].as_str().unwrap());
    let mut texts = vec![];
    texts.push(h.call(Some(&t.sk), "GET", "/v1/api-keys", None).await);
    texts.push(
        h.call(Some(&t.sk), "GET", &format!("/v1/api-keys/{id}"), None)
            .await,
    );
    texts.push(h.use_key(&t.sk).await);
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
        h.post(&t.sk, "/v1/api-keys", json!({"name": s, "type": s}))
            .await,
    );
    texts.push(
        h.post(
            &t.sk,
            "/v1/api-keys",
            json!({"name": "n", "type": "restricted", "permissions": ["read:api_keys", s]}),
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
    let (h, t) = Service::start_with_tenant("acme").await;
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
    h.expect_post(
        &t.sk,
        &format!("/v1/api-keys?api_key={}", t.sk),
        key_body("n", "secret", None),
        400,
        "credentials_in_query",
    )
    .await;
    // Nothing was created.
    let r = h.call(Some(&t.sk), "GET", "/v1/api-keys", None).await;
    assert_eq!(r.ok(200)["apiKeys"].as_array().unwrap().len(), 2);
}
