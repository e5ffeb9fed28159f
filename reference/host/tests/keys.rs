//! The tenant's keys (docs/contract.md, "Tenant routes (the tenant's keys)"): what each
//! key type reaches, creation validated field by field, test keys, rotation with and without
//! a grace period, and revocation.
//!
//! Every answer also passes the checks of `support::Service::send` (no 5xx, always
//! `X-Request-Id`, errors as problem documents).

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use support::*;

/// A well-formed key id that names no key.
const UNKNOWN_KEY: &str = "key:0123456789abcdef";

#[tokio::test]
async fn publishable_keys_reach_public_routes_only() {
    let (h, t) = Service::start_with_tenant("acme").await;
    let (k, pk_test) = h.test_key(&t.sk, "p", "publishable").await;
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
        h.expect_post(
            pk,
            "/v1/api-keys",
            key_body("x", "publishable", Some("test")),
            403,
            "forbidden",
        )
        .await;
        let by_id = [
            ("GET", format!("/v1/api-keys/{id}")),
            ("POST", format!("/v1/api-keys/{id}/rotate")),
            ("DELETE", format!("/v1/api-keys/{id}")),
        ];
        h.expect_each(Some(pk), &by_id, 403, "forbidden").await;
    }
    assert!(h.works(&pk_test).await, "nothing was revoked");
}

#[tokio::test]
async fn restricted_keys_reach_what_their_permissions_name() {
    let (h, t) = Service::start_with_tenant("acme").await;
    let mk = |perms: Value| json!({"name":"r","type":"restricted","permissions":perms});
    let (_, none) = h.create_key(&t.sk, mk(json!([]))).await;
    let (_, read) = h.create_key(&t.sk, mk(json!(["read:api_keys"]))).await;
    let (_, write) = h.create_key(&t.sk, mk(json!(["write:api_keys"]))).await;
    let (_, read_all) = h.create_key(&t.sk, mk(json!(["read:*"]))).await;
    let (_, all) = h.create_key(&t.sk, mk(json!(["*"]))).await;
    let (victim, _) = h.create_key(&t.sk, key_body("v", "secret", None)).await;
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
            .post(key, "/v1/api-keys", key_body("p", "publishable", None))
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
        key_body("s", "secret", None),
    ] {
        h.post(&write, "/v1/api-keys", body)
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
    h.post(&all, "/v1/api-keys", key_body("s", "secret", None))
        .await
        .expect(403, "forbidden");
    // Rotation of a key the caller could not create: 403; of one it could: 201.
    let rotations = [
        ("POST", format!("/v1/api-keys/{vid}/rotate")),
        ("POST", format!("/v1/api-keys/{rvid}/rotate")),
    ];
    h.expect_each(Some(&write), &rotations, 403, "forbidden")
        .await;
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
    let (h, t) = Service::start_with_tenant("acme").await;
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
        (restricted_body("n", json!(["read:users"])), "permissions"),
        (restricted_body("n", json!(["delete:*"])), "permissions"),
        (
            json!({"name":"n","type":"restricted","permissions":"read:api_keys"}),
            "permissions",
        ),
        (restricted_body("n", json!([1])), "permissions"),
        (
            json!({"name":"n","type":"secret","expiresAt":null}),
            "expiresAt",
        ),
    ];
    for (body, field) in cases {
        h.post(&t.sk, "/v1/api-keys", body)
            .await
            .expect_field("invalid_field", field);
    }
}

#[tokio::test]
async fn test_keys_see_and_manage_test_keys_only() {
    let (h, t) = Service::start_with_tenant("acme").await;
    let (test_sk_obj, test_sk) = h.test_key(&t.sk, "t", "secret").await;
    let (live, _) = h.create_key(&t.sk, key_body("l", "secret", None)).await;
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
    let live = key_body("x", "secret", Some("live"));
    h.expect_post(&test_sk, "/v1/api-keys", live, 403, "forbidden")
        .await;
    h.expect_post(
        &test_sk,
        "/v1/api-keys",
        key_body("x", "secret", None),
        403,
        "forbidden",
    )
    .await;
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

#[tokio::test]
async fn rotation_replaces_a_key_at_once() {
    let (h, t) = Service::start_with_tenant("acme").await;
    let (old, old_secret) = h
        .create_key(&t.sk, json!({"name":"CI","type":"restricted","environment":"test","permissions":["read:api_keys","write:api_keys"]}))
        .await;
    let oid = old["id"].as_str().unwrap().to_owned();
    let r = h.rotate(&t.sk, &oid, None).await;
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
    let old_path = format!("/v1/api-keys/{oid}");
    let r = h.call(Some(&t.sk), "GET", &old_path, None).await;
    assert!(r.ok(200)["apiKey"]["revokedAt"].is_string());
    // Rotating it again, or a revoked key: 409.
    let again = format!("{old_path}/rotate");
    h.call(Some(&t.sk), "POST", &again, None)
        .await
        .expect(409, "conflict");
    let (rev, _) = h.create_key(&t.sk, key_body("r", "secret", None)).await;
    let rid = enc(rev["id"].as_str().unwrap());
    h.call(Some(&t.sk), "DELETE", &format!("/v1/api-keys/{rid}"), None)
        .await
        .ok(200);
    h.post(&t.sk, &format!("/v1/api-keys/{rid}/rotate"), json!({}))
        .await
        .expect(409, "conflict");
    // A caller may rotate its own key: it stops working, its successor works.
    let r = h
        .rotate(
            new_secret,
            new["id"].as_str().unwrap(),
            Some(json!({"expiresInSeconds":0})),
        )
        .await;
    let third = r.ok(201)["credentials"]["keySecret"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!h.works(new_secret).await && h.works(&third).await);
    // Unknown keys and bad bodies.
    h.rotate(&t.sk, UNKNOWN_KEY, None)
        .await
        .expect(404, "not_found");
    let (k, _) = h.create_key(&t.sk, key_body("k", "secret", None)).await;
    let kp = format!("/v1/api-keys/{}/rotate", enc(k["id"].as_str().unwrap()));
    for (body, field) in [
        (json!({"expiresInSeconds":-1}), "expiresInSeconds"),
        (json!({"expiresInSeconds":604_801}), "expiresInSeconds"),
        (json!({"expiresInSeconds":"60"}), "expiresInSeconds"),
        (json!({"expiresInSeconds":1.5}), "expiresInSeconds"),
        (json!({"expiresInSeconds":null}), "expiresInSeconds"),
        (json!({"expiresIn":60}), "expiresIn"),
    ] {
        h.post(&t.sk, &kp, body)
            .await
            .expect_field("invalid_field", field);
    }
    let r = h.send_body("POST", &kp, &t.sk, "text/plain", "{}").await;
    r.expect(415, "unsupported_media_type");
    let r = h
        .send_body("POST", &kp, &t.sk, "application/json", "{")
        .await;
    r.expect(400, "invalid_json");
    // None of the refused rotations rotated it.
    let r = h
        .post(&t.sk, &kp, json!({"expiresInSeconds":604_800}))
        .await;
    let prev = &r.ok(201)["previousKey"];
    assert_eq!(prev["revokedAt"], Value::Null);
    assert!(is_rfc3339_utc(prev["expiresAt"].as_str().unwrap()));
}

#[tokio::test]
async fn rotation_with_a_grace_period_ends_the_old_key_later() {
    let (h, t) = Service::start_with_tenant("acme").await;
    let (old, old_secret) = h.create_key(&t.sk, key_body("g", "secret", None)).await;
    let path = format!("/v1/api-keys/{}/rotate", enc(old["id"].as_str().unwrap()));
    let started = Instant::now();
    let r = h.post(&t.sk, &path, json!({"expiresInSeconds":1})).await;
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
        let r = h.use_key(&old_secret).await;
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

#[tokio::test]
async fn revocation_is_immediate_and_idempotent() {
    let (h, t) = Service::start_with_tenant("acme").await;
    let (k, s) = h.create_key(&t.sk, key_body("k", "secret", None)).await;
    let raw = k["id"].as_str().unwrap().to_owned();
    assert!(h.works(&s).await);
    let r = h.revoke(&t.sk, &raw).await;
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
    h.revoke(&t.sk, UNKNOWN_KEY).await.expect(404, "not_found");
    // A key may revoke itself; the next request is refused.
    let (me, me_secret) = h.create_key(&t.sk, key_body("me", "secret", None)).await;
    h.revoke(&me_secret, me["id"].as_str().unwrap())
        .await
        .ok(200);
    assert!(!h.works(&me_secret).await);
}
