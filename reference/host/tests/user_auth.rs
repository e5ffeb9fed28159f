//! End-user auth over real HTTP (docs/contract.md, "End-user auth"): `/v1/auth/*` routes,
//! the one uniform 401, tokens of one tenant only, revocation on logout and password change
//! (also across a restart), refresh rotation and reuse, password rules, inactive tenants, and
//! the audit of user changes. Mail and email tokens are in `user_mail.rs`, signing secrets in
//! `jwt.rs`, onboarding in `onboarding.rs`. Every test starts its own service.

mod support;

use serde_json::{json, Value};

use support::users::*;
use support::{record_fields, ADMIN_KEY};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_login_me_and_validate() {
    let (s, (tid, pk, _), r) = UserSvc::with_user("Ann@Example.com").await;
    assert_eq!(r["user"]["email"], "ann@example.com");
    assert_eq!(r["user"]["emailVerified"], false);
    assert_eq!(r["user"]["name"], "Ann");
    assert!(r["user"]["id"].as_str().unwrap().starts_with("user:"));
    assert!(r["session"]["id"].as_str().unwrap().starts_with("session:"));
    assert!(r["session"]["expiresAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(r["expiresIn"], 900);
    let token = access(&r);
    s.conforms_to("UserSession", &r).await;
    s.conforms_to("EndUser", &r["user"]).await;
    let me = s.me(&token).await;
    assert_eq!(me.ok(200)["user"]["id"], r["user"]["id"]);
    s.conforms_to("UserMe", &me.body).await;
    assert_eq!(me.body["user"]["tenantId"], tid.as_str());
    let v = s
        .call_with("GET", "/v1/auth/validate", Some(&token), &[], None)
        .await;
    assert_eq!(v.ok(200)["valid"], true);
    assert_eq!(v.body["user"]["email"], "ann@example.com");
    s.conforms_to("UserValidation", &v.body).await;
    // Login: same shape, email case does not matter.
    let l = s.login(&tid, "ANN@example.COM", PASSWORD).await;
    let l = l.ok(200);
    assert_eq!(l["user"]["id"], r["user"]["id"]);
    assert!(l["accessToken"].is_string() && l["refreshToken"].is_string());
    assert_ne!(l["session"]["id"], r["session"]["id"]);
    // The same address twice in one tenant: 409; in another tenant it is another account.
    s.post_user(
        &tid,
        "register",
        json!({"email": "ann@example.com", "password": PASSWORD}),
    )
    .await
    .expect(409, "conflict");
    let (other, _, _) = s.tenant("other").await;
    let o = s.register(&other, "ann@example.com").await;
    assert_ne!(o["user"]["id"], r["user"]["id"]);
    // A publishable key names the tenant as well as X-Tenant-ID does.
    let k = s
        .call_with(
            "POST",
            "/v1/auth/login",
            Some(&pk),
            &[],
            Some(json!({"email": "ann@example.com", "password": PASSWORD})),
        )
        .await;
    assert_eq!(k.ok(200)["user"]["id"], r["user"]["id"]);
    // A key and a header naming different tenants: refused.
    s.call_with(
        "POST",
        "/v1/auth/login",
        Some(&pk),
        &[("x-tenant-id", other.as_str())],
        Some(json!({"email": "ann@example.com", "password": PASSWORD})),
    )
    .await
    .expect(403, "tenant_mismatch");
    // No tenant named at all: 401.
    s.call_with(
        "POST",
        "/v1/auth/login",
        None,
        &[],
        Some(json!({"email": "a@b.co", "password": PASSWORD})),
    )
    .await
    .expect(401, "unauthorized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_and_bad_tokens_get_one_uniform_401() {
    let (s, (tid, _, _)) = UserSvc::with_tenant("acme").await;
    let (other, _, _) = s.tenant("other").await;
    let r = s.register(&tid, "ann@example.com").await;
    let token = access(&r);
    let (header, claims) = parts(&token);
    let key = derived_or_base(&s.secret, header["kid"].as_str().unwrap());
    // The forging itself is right: the same claims re-signed independently are accepted.
    s.me(&forge(&header, &claims, &key)).await.ok(200);

    let unknown = s.login(&tid, "nobody@example.com", PASSWORD).await;
    let wrong = s.login(&tid, "ann@example.com", "Wrong-password-1").await;
    let in_other_tenant = s.login(&other, "ann@example.com", PASSWORD).await;
    let reference = unknown.text.clone();
    for r in [&unknown, &wrong, &in_other_tenant] {
        r.expect(401, "unauthorized");
        assert_eq!(r.text, reference, "one identical body");
    }

    let now = claims["iat"].as_i64().unwrap();
    let with = |k: &str, v: Value| {
        let mut c = claims.clone();
        c[k] = v;
        forge(&header, &c, &key)
    };
    let mut hs512_header = header.clone();
    hs512_header["alg"] = json!("HS512");
    let mut none_header = header.clone();
    none_header["alg"] = json!("none");
    let mut no_kid = header.clone();
    no_kid.as_object_mut().unwrap().remove("kid");
    let mut tampered = token.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let (h64, rest) = token.split_once('.').unwrap();
    let (_, sig) = rest.split_once('.').unwrap();
    let mut c2 = claims.clone();
    c2["sub"] = json!("user:someoneelse");
    let payload_swapped = format!("{h64}.{}.{sig}", b64(c2.to_string().as_bytes()));
    let bad_tokens = vec![
        ("alg none", forge(&none_header, &claims, &key)),
        ("alg none, no signature", {
            let t = forge(&none_header, &claims, &key);
            t.trim_end_matches('.').to_owned()
        }),
        (
            "HS512 with the same secret",
            forge(&hs512_header, &claims, &key),
        ),
        ("no kid", forge(&no_kid, &claims, &key)),
        ("unknown kid", {
            let mut h = header.clone();
            h["kid"] = json!("e-000000000000");
            forge(&h, &claims, &key)
        }),
        ("other secret", forge(&header, &claims, b"not-the-secret")),
        ("wrong aud", with("aud", json!(other.clone()))),
        ("wrong iss", with("iss", json!("someone-else"))),
        ("wrong type", with("type", json!("refresh"))),
        ("aud as a list", with("aud", json!([tid.clone()]))),
        ("expired", with("exp", json!(now - 1))),
        ("not yet valid", with("nbf", json!(now + 600))),
        ("issued in the future", with("iat", json!(now + 600))),
        ("tampered signature", tampered),
        ("tampered payload", payload_swapped),
        ("unknown session", with("sid", json!("session:nope"))),
        ("garbage", "not.a.jwt".into()),
        ("an API key", "sk_live_short".into()),
    ];
    for (what, t) in &bad_tokens {
        let r = s.me(t).await;
        r.expect(401, "unauthorized");
        assert_eq!(r.text, reference, "{what}: one identical body");
        let v = s
            .call_with("GET", "/v1/auth/validate", Some(t), &[], None)
            .await;
        assert_eq!(
            (v.status, v.text.as_str()),
            (401, reference.as_str()),
            "validate, {what}"
        );
    }
    // No token at all: 401 too (never 400).
    for p in ["/v1/auth/me", "/v1/auth/validate"] {
        s.call_with("GET", p, None, &[], None)
            .await
            .expect(401, "unauthorized");
    }
    // Expiry is checked against the service clock: 15 minutes.
    s.me(&token).await.ok(200);
    s.advance(14 * 60 * 1000).await;
    s.me(&token).await.ok(200);
    s.advance(61 * 1000).await;
    let r = s.me(&token).await;
    assert_eq!(
        (r.status, r.text.as_str()),
        (401, reference.as_str()),
        "expired"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_of_one_tenant_is_refused_for_another() {
    let (s, (a, _, _)) = UserSvc::with_tenant("alpha").await;
    let (b, _, _) = s.tenant("beta").await;
    let ra = s.register(&a, "ann@example.com").await;
    let rb = s.register(&b, "ann@example.com").await;
    let ta = access(&ra);
    s.me(&ta).await.ok(200);
    // Naming the other tenant beside the token.
    s.call_with(
        "GET",
        "/v1/auth/me",
        Some(&ta),
        &[("x-tenant-id", b.as_str())],
        None,
    )
    .await
    .expect(401, "unauthorized");
    // A token re-signed with the real secret but claiming tenant B (aud and tenantId): the
    // user and session of tenant A are not found in B.
    let (header, claims) = parts(&ta);
    let key = derived_or_base(&s.secret, header["kid"].as_str().unwrap());
    let mut c = claims.clone();
    c["tenantId"] = json!(b.clone());
    c["aud"] = json!(b.clone());
    s.me(&forge(&header, &c, &key))
        .await
        .expect(401, "unauthorized");
    // B's own user with A's session id: refused as well.
    let (_, cb) = parts(&access(&rb));
    let mut c = cb.clone();
    c["sid"] = claims["sid"].clone();
    s.me(&forge(&header, &c, &key))
        .await
        .expect(401, "unauthorized");
    // tenantId and aud disagreeing.
    let mut c = claims.clone();
    c["tenantId"] = json!(b.clone());
    s.me(&forge(&header, &c, &key))
        .await
        .expect(401, "unauthorized");
    // A refresh token of tenant A does nothing in tenant B.
    s.post_user(&b, "refresh", json!({"refreshToken": refresh_token(&ra)}))
        .await
        .expect(401, "unauthorized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_and_password_change_revoke_at_once_and_after_a_restart() {
    let (mut s, (tid, _, _), r) = UserSvc::with_user("ann@example.com").await;
    let t1 = access(&r);
    let second = s.log_in(&tid, "ann@example.com").await;
    let t2 = access(&second);
    s.me(&t1).await.ok(200);
    // Logout ends this token and its session at once; the other session lives on.
    let out = s
        .call_with("POST", "/v1/auth/logout", Some(&t1), &[], None)
        .await;
    assert_eq!(out.ok(200)["success"], true);
    s.me(&t1).await.expect(401, "unauthorized");
    s.post_user(&tid, "refresh", json!({"refreshToken": refresh_token(&r)}))
        .await
        .expect(401, "unauthorized");
    s.me(&t2).await.ok(200);
    s.restart(SECRET, None, None).await;
    s.me(&t1).await.expect(401, "unauthorized");
    s.me(&t2).await.ok(200);
    // Password change: every session of the user ends, this token first.
    let third = s.log_in(&tid, "ann@example.com").await;
    let t3 = access(&third);
    let c = s
        .call_with(
            "POST",
            "/v1/auth/change-password",
            Some(&t2),
            &[],
            Some(json!({"currentPassword": PASSWORD, "newPassword": "Battery-staple-77"})),
        )
        .await;
    assert_eq!(c.ok(200)["success"], true);
    s.me(&t2).await.expect(401, "unauthorized");
    s.me(&t3).await.expect(401, "unauthorized");
    s.post_user(
        &tid,
        "refresh",
        json!({"refreshToken": refresh_token(&third)}),
    )
    .await
    .expect(401, "unauthorized");
    s.restart(SECRET, None, None).await;
    s.me(&t2).await.expect(401, "unauthorized");
    s.me(&t3).await.expect(401, "unauthorized");
    s.login(&tid, "ann@example.com", PASSWORD)
        .await
        .expect(401, "unauthorized");
    let fresh = s.login(&tid, "ann@example.com", "Battery-staple-77").await;
    s.me(&access(fresh.ok(200))).await.ok(200);
    // A wrong current password changes nothing.
    let t = access(&fresh.body);
    s.call_with(
        "POST",
        "/v1/auth/change-password",
        Some(&t),
        &[],
        Some(json!({"currentPassword": "Not-the-one-1", "newPassword": "Another-pass-99"})),
    )
    .await
    .expect_field("invalid_field", "currentPassword");
    s.me(&t).await.ok(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_rotates_and_reuse_revokes_the_family() {
    let (s, (tid, _, _), r) = UserSvc::with_user("ann@example.com").await;
    let other = s.log_in(&tid, "ann@example.com").await;
    let r1 = refresh_token(&r);
    let n1 = s
        .post_user(&tid, "refresh", json!({"refreshToken": r1}))
        .await;
    let n1 = n1.ok(200).clone();
    let (a2, r2) = (access(&n1), refresh_token(&n1));
    assert_ne!(r2, r1);
    assert_eq!(n1["session"]["id"], r["session"]["id"], "same session");
    s.me(&a2).await.ok(200);
    // The next rotation works with the new token...
    let n2 = s
        .post_user(&tid, "refresh", json!({"refreshToken": r2}))
        .await
        .ok(200)
        .clone();
    let (a3, r3) = (access(&n2), refresh_token(&n2));
    s.me(&a3).await.ok(200);
    // ...and presenting a consumed one again revokes the whole family.
    s.post_user(&tid, "refresh", json!({"refreshToken": r1}))
        .await
        .expect(401, "unauthorized");
    s.post_user(&tid, "refresh", json!({"refreshToken": r3}))
        .await
        .expect(401, "unauthorized");
    s.me(&a2).await.expect(401, "unauthorized");
    s.me(&a3).await.expect(401, "unauthorized");
    s.me(&access(&r)).await.expect(401, "unauthorized");
    // Another login's family is untouched.
    s.me(&access(&other)).await.ok(200);
    s.post_user(
        &tid,
        "refresh",
        json!({"refreshToken": refresh_token(&other)}),
    )
    .await
    .ok(200);
    // Unknown and malformed refresh tokens.
    s.post_user(&tid, "refresh", json!({"refreshToken": "rt_nope"}))
        .await
        .expect(401, "unauthorized");
    s.post_user(&tid, "refresh", json!({}))
        .await
        .expect_field("invalid_field", "refreshToken");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weak_passwords_are_refused_on_register_reset_and_change() {
    let server = mail_server().await;
    let s = UserSvc::start(Some(&server)).await;
    let (tid, _, _) = s.tenant("acme").await;
    let weak = [
        "Short1a",
        "alllowercase1",
        "ALLUPPERCASE1",
        "NoDigitsAtAll",
        "",
    ];
    // On register, also one over the 128-character cap.
    let long = format!("Aa1{}", "x".repeat(126));
    for w in weak.iter().copied().chain([long.as_str()]) {
        s.post_user(
            &tid,
            "register",
            json!({"email": "w@example.com", "password": w}),
        )
        .await
        .expect_field("invalid_field", "password");
    }
    let r = s.register(&tid, "ann@example.com").await;
    let t = access(&r);
    for w in weak {
        s.call_with(
            "POST",
            "/v1/auth/change-password",
            Some(&t),
            &[],
            Some(json!({"currentPassword": PASSWORD, "newPassword": w})),
        )
        .await
        .expect_field("invalid_field", "newPassword");
    }
    s.email_only(&tid, "forgot-password", "ann@example.com")
        .await
        .ok(200);
    let all = wait_mails(&server, 2).await;
    let reset = token_in(last_mail(&all, "ann@example.com", "reset_password"));
    for w in weak {
        s.reset_password(&tid, &reset, w)
            .await
            .expect_field("invalid_field", "newPassword");
    }
    // The weak attempts did not use the token up, and nothing changed.
    s.me(&t).await.ok(200);
    s.reset_and_log_in(&tid, &reset, "ann@example.com", "Strong-enough-1")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_suspended_and_deleted_tenants_are_refused_and_never_created() {
    let s = UserSvc::start(None).await;
    let body = json!({"email": "ann@example.com", "password": PASSWORD});
    for unknown in ["tenant:zzz", "zzz", "tenant_zzz", ""] {
        let r = s.post_user(unknown, "register", body.clone()).await;
        assert_eq!(r.status, 401, "{unknown}: {}", r.text);
    }
    let (sus, _, _) = s.tenant("sus").await;
    s.admin(
        "PATCH",
        &format!("/admin/tenants/{sus}"),
        Some(json!({"status": "suspended"})),
    )
    .await
    .ok(200);
    s.post_user(&sus, "register", body.clone())
        .await
        .expect(403, "tenant_suspended");
    let (del, _, sk) = s.tenant("del").await;
    let before = s.register(&del, "bob@example.com").await;
    s.admin("DELETE", &format!("/admin/tenants/{del}"), None)
        .await
        .ok(200);
    s.post_user(&del, "register", body.clone())
        .await
        .expect(401, "unauthorized");
    s.call_with(
        "POST",
        "/v1/auth/register",
        Some(&sk),
        &[],
        Some(body.clone()),
    )
    .await
    .expect(401, "unauthorized");
    s.me(&access(&before)).await.expect(401, "unauthorized");
    // Nothing was created.
    let list = s.admin("GET", "/admin/tenants?limit=100", None).await;
    let ids: Vec<&str> = list.ok(200)["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![sus.as_str(), del.as_str()]);
    // The platform admin key is not a tenant, and restricted keys are not for end-user auth.
    s.call_with(
        "POST",
        "/v1/auth/register",
        Some(ADMIN_KEY),
        &[],
        Some(body.clone()),
    )
    .await
    .expect(403, "forbidden");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_changes_are_audited_without_secrets() {
    let (s, (tid, _, sk), r) = UserSvc::with_user("ann@example.com").await;
    let user_id = r["user"]["id"].as_str().unwrap().to_owned();
    let r1 = refresh_token(&r);
    s.post_user(&tid, "refresh", json!({"refreshToken": r1}))
        .await
        .ok(200);
    s.post_user(&tid, "refresh", json!({"refreshToken": r1}))
        .await
        .expect(401, "unauthorized");
    let l = s.login(&tid, "ann@example.com", PASSWORD).await;
    let t = access(l.ok(200));
    s.call_with(
        "POST",
        "/v1/auth/change-password",
        Some(&t),
        &[],
        Some(json!({"currentPassword": PASSWORD, "newPassword": "Battery-staple-77"})),
    )
    .await
    .ok(200);
    let log = s
        .call_with("GET", "/v1/audit-log", Some(&sk), &[], None)
        .await;
    let records = log.ok(200)["records"].as_array().unwrap().clone();
    let user_records = record_fields(
        &records,
        |r| r["action"].as_str().unwrap().starts_with("user."),
        ["action", "target", "actorKeyId"],
    );
    assert_eq!(
        user_records,
        vec![
            ("user.registered", user_id.as_str(), "end_user"),
            ("user.refresh_reuse_detected", user_id.as_str(), "end_user"),
            ("user.password_changed", user_id.as_str(), "end_user"),
        ]
    );
    let text = log.text;
    for secret in [PASSWORD, "Battery-staple-77", r1.as_str(), t.as_str()] {
        assert!(!text.contains(secret));
    }
}
