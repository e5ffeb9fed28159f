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

#[tokio::test]
async fn publishable_keys_reach_public_routes_only() {
    let h = Service::start().await;
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
        h.post(
            pk,
            "/v1/api-keys",
            json!({"name":"x","type":"publishable","environment":"test"}),
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
    let h = Service::start().await;
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
            .post(
                key,
                "/v1/api-keys",
                json!({"name":"p","type":"publishable"}),
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
    h.post(&all, "/v1/api-keys", json!({"name":"s","type":"secret"}))
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
    let h = Service::start().await;
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
        h.post(&t.sk, "/v1/api-keys", body)
            .await
            .expect_field("invalid_field", field);
    }
}

#[tokio::test]
async fn test_keys_see_and_manage_test_keys_only() {
    let h = Service::start().await;
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
    h.post(
        &test_sk,
        "/v1/api-keys",
        json!({"name":"x","type":"secret","environment":"live"}),
    )
    .await
    .expect(403, "forbidden");
    h.post(
        &test_sk,
        "/v1/api-keys",
        json!({"name":"x","type":"secret"}),
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

#[tokio::test]
async fn rotation_replaces_a_key_at_once() {
    let h = Service::start().await;
    let t = h.create_tenant("acme").await;
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
    let h = Service::start().await;
    let t = h.create_tenant("acme").await;
    let (old, old_secret) = h
        .create_key(&t.sk, json!({"name":"g","type":"secret"}))
        .await;
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

#[tokio::test]
async fn revocation_is_immediate_and_idempotent() {
    let h = Service::start().await;
    let t = h.create_tenant("acme").await;
    let (k, s) = h
        .create_key(&t.sk, json!({"name":"k","type":"secret"}))
        .await;
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
    h.revoke(&me_secret, me["id"].as_str().unwrap())
        .await
        .ok(200);
    assert!(!h.works(&me_secret).await);
}
