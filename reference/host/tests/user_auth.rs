//! End-user auth over real HTTP: `/v1/auth/*`, access tokens, revocation, refresh rotation,
//! email tokens through a `wiremock` mail API, the mail outbox, and JWT secret rotation.
//! Self-contained: every test starts its own service with `auth_service::spawn_with`.

mod support;

use std::ops::Deref;
use std::path::Path;
use std::time::{Duration, Instant};

use auth_service::{Extras, MailConfig};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::{Sha256, Sha512};
use tempfile::TempDir;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use support::{files_under, Resp, Service, Setup, ADMIN_KEY};

const SECRET: &str = "user-auth-test-secret-0123456789-abcdefghijklmnop";
const OTHER_SECRET: &str = "another-user-auth-secret-0123456789-abcdefghijk";
const MAIL_KEY: &str = "mail-api-key-for-tests-0123456789";
const PASSWORD: &str = "Correct-horse-42";

/// The service with this file's JWT secret and mail API, and what the tests need to know of
/// them.
struct Svc {
    svc: Service,
    secret: String,
    mail: Option<String>,
}

impl Deref for Svc {
    type Target = Service;

    fn deref(&self) -> &Service {
        &self.svc
    }
}

fn mail_config(server: &MockServer, timeout: Duration) -> MailConfig {
    let mut m = MailConfig::new(format!("{}/send", server.uri()), MAIL_KEY);
    m.timeout = timeout;
    m.poll_interval = Duration::from_millis(50);
    m
}

fn extras(secret: &str, previous: Option<&str>, mail: Option<MailConfig>) -> Extras {
    Extras {
        jwt_secret: secret.into(),
        jwt_secret_previous: previous.map(str::to_owned),
        mail,
    }
}

impl Svc {
    async fn start(mail: Option<&MockServer>) -> Self {
        let mail_cfg = mail.map(|m| mail_config(m, Duration::from_secs(2)));
        Self::start_with(mail_cfg, mail.map(|m| m.uri())).await
    }

    /// A service with test controls, [`SECRET`] and the mail API `mail` (at `uri`).
    async fn start_with(mail: Option<MailConfig>, uri: Option<String>) -> Self {
        let svc = Setup::local(extras(SECRET, None, mail), true).start().await;
        Self {
            svc,
            secret: SECRET.into(),
            mail: uri,
        }
    }

    /// Stops the service and starts it again on the same data dir.
    async fn restart(&mut self, secret: &str, previous: Option<&str>, mail: Option<&MockServer>) {
        let mail_cfg = mail.map(|m| mail_config(m, Duration::from_secs(2)));
        self.svc.setup.extras = Some(extras(secret, previous, mail_cfg));
        self.svc.restart().await;
        self.secret = secret.into();
    }

    /// A tenant: its id, publishable key and secret key.
    async fn tenant(&self, slug: &str) -> (String, String, String) {
        let r = self.new_tenant(json!({"slug": slug, "name": slug})).await;
        let b = r.ok(201);
        (
            b["tenant"]["id"].as_str().unwrap().to_owned(),
            b["credentials"]["publicKey"].as_str().unwrap().to_owned(),
            b["credentials"]["secretKey"].as_str().unwrap().to_owned(),
        )
    }

    async fn post_tenant(&self, tenant: &str, leaf: &str, body: Value) -> Resp {
        self.call_with(
            "POST",
            &format!("/v1/auth/{leaf}"),
            None,
            &[("x-tenant-id", tenant)],
            Some(body),
        )
        .await
    }

    async fn reset_password(&self, tenant: &str, token: &str, new_password: &str) -> Resp {
        let body = json!({"token": token, "newPassword": new_password});
        self.post_tenant(tenant, "reset-password", body).await
    }

    async fn register(&self, tenant: &str, email: &str) -> Value {
        self.post_tenant(
            tenant,
            "register",
            json!({"email": email, "password": PASSWORD, "name": "Ann"}),
        )
        .await
        .ok(201)
        .clone()
    }

    async fn login(&self, tenant: &str, email: &str, password: &str) -> Resp {
        self.post_tenant(
            tenant,
            "login",
            json!({"email": email, "password": password}),
        )
        .await
    }

    async fn me(&self, token: &str) -> Resp {
        self.call_with("GET", "/v1/auth/me", Some(token), &[], None)
            .await
    }
}

fn access(v: &Value) -> String {
    v["accessToken"].as_str().unwrap().to_owned()
}

fn refresh_token(v: &Value) -> String {
    v["refreshToken"].as_str().unwrap().to_owned()
}

// ---- forging tokens with an independent HS256/HS512 implementation ----

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn hs256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

fn hs512(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha512>::new_from_slice(key).unwrap();
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

fn parts(token: &str) -> (Value, Value) {
    let mut it = token.split('.');
    let h = URL_SAFE_NO_PAD.decode(it.next().unwrap()).unwrap();
    let c = URL_SAFE_NO_PAD.decode(it.next().unwrap()).unwrap();
    (
        serde_json::from_slice(&h).unwrap(),
        serde_json::from_slice(&c).unwrap(),
    )
}

fn forge(header: &Value, claims: &Value, key: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = match header["alg"].as_str() {
        Some("HS256") => hs256(key, input.as_bytes()),
        Some("HS512") => hs512(key, input.as_bytes()),
        _ => Vec::new(),
    };
    format!("{input}.{}", b64(&sig))
}

/// The secret behind a rotated key id: HMAC-SHA256(JWT_SECRET, kid).
fn derived(secret: &str, kid: &str) -> Vec<u8> {
    hs256(secret.as_bytes(), kid.as_bytes())
}

// ---- mail captured by wiremock ----

async fn mail_server() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/send"))
        .respond_with(ResponseTemplate::new(202))
        .mount(&server)
        .await;
    server
}

/// A mail API that answers the first request with `first`, then 200.
async fn mail_server_after(first: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/send"))
        .respond_with(first)
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/send"))
        .respond_with(ResponseTemplate::new(200))
        .with_priority(2)
        .mount(&server)
        .await;
    server
}

/// The JSON bodies of the mail requests received so far.
async fn mails(server: &MockServer) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap_or(Value::Null))
        .collect()
}

/// Waits until `n` mail requests have arrived.
async fn wait_mails(server: &MockServer, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let got = mails(server).await;
        if got.len() >= n {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "waited for {n} mails, got {}: {got:?}",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The single-use token in a mail's text (`ev_...` or `pr_...`).
fn token_in(mail: &Value) -> String {
    let text = mail["text"].as_str().unwrap();
    text.split_whitespace()
        .find(|w| w.starts_with("ev_") || w.starts_with("pr_"))
        .unwrap_or_else(|| panic!("no token in {text}"))
        .to_owned()
}

fn last_mail<'a>(all: &'a [Value], to: &str, template: &str) -> &'a Value {
    all.iter()
        .rev()
        .find(|m| m["to"] == to && m["template"] == template)
        .unwrap_or_else(|| panic!("no {template} mail to {to} in {all:?}"))
}

// ------------------------------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_login_me_and_validate() {
    let s = Svc::start(None).await;
    let (tid, pk, _) = s.tenant("acme").await;
    let r = s.register(&tid, "Ann@Example.com").await;
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
    s.post_tenant(
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
    let s = Svc::start(None).await;
    let (tid, _, _) = s.tenant("acme").await;
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

/// The signing secret of a key id: the base secret, or the derived one of a rotated key.
fn derived_or_base(secret: &str, kid: &str) -> Vec<u8> {
    if kid.starts_with("r-") {
        derived(secret, kid)
    } else {
        secret.as_bytes().to_vec()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_of_one_tenant_is_refused_for_another() {
    let s = Svc::start(None).await;
    let (a, _, _) = s.tenant("alpha").await;
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
    s.post_tenant(&b, "refresh", json!({"refreshToken": refresh_token(&ra)}))
        .await
        .expect(401, "unauthorized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_and_password_change_revoke_at_once_and_after_a_restart() {
    let mut s = Svc::start(None).await;
    let (tid, _, _) = s.tenant("acme").await;
    let r = s.register(&tid, "ann@example.com").await;
    let t1 = access(&r);
    let second = s
        .login(&tid, "ann@example.com", PASSWORD)
        .await
        .ok(200)
        .clone();
    let t2 = access(&second);
    s.me(&t1).await.ok(200);
    // Logout ends this token and its session at once; the other session lives on.
    let out = s
        .call_with("POST", "/v1/auth/logout", Some(&t1), &[], None)
        .await;
    assert_eq!(out.ok(200)["success"], true);
    s.me(&t1).await.expect(401, "unauthorized");
    s.post_tenant(&tid, "refresh", json!({"refreshToken": refresh_token(&r)}))
        .await
        .expect(401, "unauthorized");
    s.me(&t2).await.ok(200);
    s.restart(SECRET, None, None).await;
    s.me(&t1).await.expect(401, "unauthorized");
    s.me(&t2).await.ok(200);
    // Password change: every session of the user ends, this token first.
    let third = s
        .login(&tid, "ann@example.com", PASSWORD)
        .await
        .ok(200)
        .clone();
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
    s.post_tenant(
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
    let s = Svc::start(None).await;
    let (tid, _, _) = s.tenant("acme").await;
    let r = s.register(&tid, "ann@example.com").await;
    let other = s
        .login(&tid, "ann@example.com", PASSWORD)
        .await
        .ok(200)
        .clone();
    let r1 = refresh_token(&r);
    let n1 = s
        .post_tenant(&tid, "refresh", json!({"refreshToken": r1}))
        .await;
    let n1 = n1.ok(200).clone();
    let (a2, r2) = (access(&n1), refresh_token(&n1));
    assert_ne!(r2, r1);
    assert_eq!(n1["session"]["id"], r["session"]["id"], "same session");
    s.me(&a2).await.ok(200);
    // The next rotation works with the new token...
    let n2 = s
        .post_tenant(&tid, "refresh", json!({"refreshToken": r2}))
        .await
        .ok(200)
        .clone();
    let (a3, r3) = (access(&n2), refresh_token(&n2));
    s.me(&a3).await.ok(200);
    // ...and presenting a consumed one again revokes the whole family.
    s.post_tenant(&tid, "refresh", json!({"refreshToken": r1}))
        .await
        .expect(401, "unauthorized");
    s.post_tenant(&tid, "refresh", json!({"refreshToken": r3}))
        .await
        .expect(401, "unauthorized");
    s.me(&a2).await.expect(401, "unauthorized");
    s.me(&a3).await.expect(401, "unauthorized");
    s.me(&access(&r)).await.expect(401, "unauthorized");
    // Another login's family is untouched.
    s.me(&access(&other)).await.ok(200);
    s.post_tenant(
        &tid,
        "refresh",
        json!({"refreshToken": refresh_token(&other)}),
    )
    .await
    .ok(200);
    // Unknown and malformed refresh tokens.
    s.post_tenant(&tid, "refresh", json!({"refreshToken": "rt_nope"}))
        .await
        .expect(401, "unauthorized");
    s.post_tenant(&tid, "refresh", json!({}))
        .await
        .expect_field("invalid_field", "refreshToken");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_and_reset_tokens_come_by_mail_and_are_distinct_single_use_kinds() {
    let server = mail_server().await;
    let mut s = Svc::start(Some(&server)).await;
    let (tid, _, _) = s.tenant("acme").await;
    let r = s.register(&tid, "ann@example.com").await;
    let login_token = access(&r);
    let all = wait_mails(&server, 1).await;
    let verify = token_in(last_mail(&all, "ann@example.com", "verify_email"));
    assert_eq!(all[0]["tenantId"], tid.as_str());
    assert_eq!(all[0]["subject"], "Verify your email address");
    // Forgot-password: a reset mail; the pending verification token stays valid.
    let f = s
        .post_tenant(&tid, "forgot-password", json!({"email": "ANN@example.com"}))
        .await;
    let forgot_body = f.ok(200).clone();
    let all = wait_mails(&server, 2).await;
    let reset = token_in(last_mail(&all, "ann@example.com", "reset_password"));
    assert_ne!(reset, verify);
    // Kinds do not stand in for each other.
    s.post_tenant(&tid, "verify-email", json!({"token": reset}))
        .await
        .expect_field("invalid_field", "token");
    s.reset_password(&tid, &verify, "Battery-staple-77")
        .await
        .expect_field("invalid_field", "token");
    // A token of this tenant does nothing in another.
    let (other, _, _) = s.tenant("other").await;
    s.post_tenant(&other, "verify-email", json!({"token": verify}))
        .await
        .expect_field("invalid_field", "token");
    // Verification: once.
    s.post_tenant(&tid, "verify-email", json!({"token": verify}))
        .await
        .ok(200);
    s.post_tenant(&tid, "verify-email", json!({"token": verify}))
        .await
        .expect_field("invalid_field", "token");
    assert_eq!(
        s.me(&login_token).await.ok(200)["user"]["emailVerified"],
        true
    );
    // Reset: once; it revokes every session; the old password stops working.
    s.reset_password(&tid, &reset, "Battery-staple-77")
        .await
        .ok(200);
    s.me(&login_token).await.expect(401, "unauthorized");
    s.reset_password(&tid, &reset, "Other-staple-78")
        .await
        .expect_field("invalid_field", "token");
    s.login(&tid, "ann@example.com", PASSWORD)
        .await
        .expect(401, "unauthorized");
    s.restart(SECRET, None, Some(&server)).await;
    s.me(&login_token).await.expect(401, "unauthorized");
    let after = s.login(&tid, "ann@example.com", "Battery-staple-77").await;
    let after_token = access(after.ok(200));
    // A reset token expires after an hour.
    s.post_tenant(&tid, "forgot-password", json!({"email": "ann@example.com"}))
        .await
        .ok(200);
    let all = wait_mails(&server, 3).await;
    let late = token_in(last_mail(&all, "ann@example.com", "reset_password"));
    s.advance(3600 * 1000 + 1000).await;
    s.reset_password(&tid, &late, "Third-staple-79")
        .await
        .expect_field("invalid_field", "token");
    let _ = after_token;
    // No enumeration: unknown, verified and case-variant addresses get the same answers.
    let n = mails(&server).await.len();
    let unknown = s
        .post_tenant(
            &tid,
            "forgot-password",
            json!({"email": "nobody@example.com"}),
        )
        .await;
    assert_eq!(unknown.ok(200), &forgot_body);
    let resend_verified = s
        .post_tenant(
            &tid,
            "resend-verification",
            json!({"email": "ann@example.com"}),
        )
        .await;
    let resend_unknown = s
        .post_tenant(
            &tid,
            "resend-verification",
            json!({"email": "nobody@example.com"}),
        )
        .await;
    assert_eq!(resend_verified.ok(200), resend_unknown.ok(200));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        mails(&server).await.len(),
        n,
        "no mail for unknown or verified accounts"
    );
    // Resend for an unverified account: a new token, the older one ends.
    s.register(&tid, "bob@example.com").await;
    let all = wait_mails(&server, n + 1).await;
    let first = token_in(last_mail(&all, "bob@example.com", "verify_email"));
    let again = s
        .post_tenant(
            &tid,
            "resend-verification",
            json!({"email": "BOB@example.com"}),
        )
        .await;
    assert_eq!(again.ok(200), resend_unknown.ok(200));
    let all = wait_mails(&server, n + 2).await;
    let second = token_in(last_mail(&all, "bob@example.com", "verify_email"));
    assert_ne!(first, second);
    s.post_tenant(&tid, "verify-email", json!({"token": first}))
        .await
        .expect_field("invalid_field", "token");
    s.post_tenant(&tid, "verify-email", json!({"token": second}))
        .await
        .ok(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weak_passwords_are_refused_on_register_reset_and_change() {
    let server = mail_server().await;
    let s = Svc::start(Some(&server)).await;
    let (tid, _, _) = s.tenant("acme").await;
    let weak = [
        "Short1a",
        "alllowercase1",
        "ALLUPPERCASE1",
        "NoDigitsAtAll",
        "",
    ];
    for w in weak {
        s.post_tenant(
            &tid,
            "register",
            json!({"email": "w@example.com", "password": w}),
        )
        .await
        .expect_field("invalid_field", "password");
    }
    let long = format!("Aa1{}", "x".repeat(126));
    s.post_tenant(
        &tid,
        "register",
        json!({"email": "w@example.com", "password": long}),
    )
    .await
    .expect_field("invalid_field", "password");
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
    s.post_tenant(&tid, "forgot-password", json!({"email": "ann@example.com"}))
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
    s.reset_password(&tid, &reset, "Strong-enough-1")
        .await
        .ok(200);
    s.login(&tid, "ann@example.com", "Strong-enough-1")
        .await
        .ok(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_suspended_and_deleted_tenants_are_refused_and_never_created() {
    let s = Svc::start(None).await;
    let body = json!({"email": "ann@example.com", "password": PASSWORD});
    for unknown in ["tenant:zzz", "zzz", "tenant_zzz", ""] {
        let r = s.post_tenant(unknown, "register", body.clone()).await;
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
    s.post_tenant(&sus, "register", body.clone())
        .await
        .expect(403, "tenant_suspended");
    let (del, _, sk) = s.tenant("del").await;
    let before = s.register(&del, "bob@example.com").await;
    s.admin("DELETE", &format!("/admin/tenants/{del}"), None)
        .await
        .ok(200);
    s.post_tenant(&del, "register", body.clone())
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
async fn mail_api_500_then_success_delivers_exactly_once_without_secrets() {
    let server = mail_server_after(ResponseTemplate::new(500)).await;
    let s = Svc::start(Some(&server)).await;
    let (tid, pk, sk) = s.tenant("acme").await;
    // The request succeeds although the mail API fails.
    let r = s.register(&tid, "ann@example.com").await;
    let got = wait_mails(&server, 2).await;
    assert_eq!(got[0], got[1], "the same mail, retried");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let requests = server.received_requests().await.unwrap();
    assert_eq!(
        requests.len(),
        2,
        "sent once more after the 500, then never again"
    );
    let key0 = requests[0].headers.get("idempotency-key").unwrap();
    assert_eq!(Some(key0), requests[1].headers.get("idempotency-key"));
    assert_eq!(
        requests[0].headers.get("authorization").unwrap(),
        &format!("Bearer {MAIL_KEY}")
    );
    // No secret in any mail request: not the password, keys or tokens.
    s.post_tenant(&tid, "forgot-password", json!({"email": "ann@example.com"}))
        .await
        .ok(200);
    wait_mails(&server, 3).await;
    for req in server.received_requests().await.unwrap() {
        let body = String::from_utf8_lossy(&req.body).to_string();
        for secret in [
            PASSWORD,
            ADMIN_KEY,
            pk.as_str(),
            sk.as_str(),
            SECRET,
            r["accessToken"].as_str().unwrap(),
            r["refreshToken"].as_str().unwrap(),
            MAIL_KEY,
        ] {
            assert!(!body.contains(secret), "a secret in a mail: {body}");
        }
        for h in req.headers.iter() {
            if h.0 != "authorization" {
                assert!(!h.1.to_str().unwrap_or("").contains(SECRET));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_api_timeouts_are_retried() {
    let server =
        mail_server_after(ResponseTemplate::new(200).set_delay(Duration::from_secs(3))).await;
    let s = Svc::start_with(
        Some(mail_config(&server, Duration::from_millis(500))),
        Some(server.uri()),
    )
    .await;
    let (tid, _, _) = s.tenant("acme").await;
    s.register(&tid, "ann@example.com").await;
    let got = wait_mails(&server, 2).await;
    assert_eq!(got[0], got[1]);
    tokio::time::sleep(Duration::from_millis(4000)).await;
    assert_eq!(
        mails(&server).await.len(),
        2,
        "delivered by the retry, then never again"
    );
    assert!(s.mail.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_stays_queued_without_a_mail_api_and_goes_out_once_one_is_configured() {
    let mut s = Svc::start(None).await;
    let (tid, _, _) = s.tenant("acme").await;
    s.register(&tid, "ann@example.com").await;
    let server = mail_server().await;
    s.restart(SECRET, None, Some(&server)).await;
    let got = wait_mails(&server, 1).await;
    assert_eq!(got[0]["template"], "verify_email");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(mails(&server).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_rotation_overlaps_then_retires_and_persists() {
    let mut s = Svc::start(None).await;
    let (tid, _, _) = s.tenant("acme").await;
    let r = s.register(&tid, "ann@example.com").await;
    let old = access(&r);
    let (h_old, _) = parts(&old);
    let ring = s.admin("GET", "/admin/jwt", None).await;
    let ring = ring.ok(200).clone();
    s.conforms_to("JwtKeyring", &ring).await;
    assert_eq!(ring["currentKid"], h_old["kid"]);
    assert!(!ring.to_string().contains(SECRET));
    // Rotate: new tokens carry the new kid; old ones still verify.
    let rotated = s
        .admin("POST", "/admin/jwt/rotate", None)
        .await
        .ok(200)
        .clone();
    let new_kid = rotated["currentKid"].as_str().unwrap().to_owned();
    assert_ne!(new_kid, h_old["kid"].as_str().unwrap());
    assert!(rotated["keys"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k["kid"] == h_old["kid"] && k["status"] == "previous"));
    let fresh = s
        .login(&tid, "ann@example.com", PASSWORD)
        .await
        .ok(200)
        .clone();
    let new = access(&fresh);
    assert_eq!(parts(&new).0["kid"], new_kid.as_str());
    s.me(&old).await.ok(200);
    s.me(&new).await.ok(200);
    // The state persists across a restart.
    s.restart(SECRET, None, None).await;
    assert_eq!(
        s.admin("GET", "/admin/jwt", None).await.ok(200)["currentKid"],
        new_kid.as_str()
    );
    s.me(&old).await.ok(200);
    s.me(&new).await.ok(200);
    // Retire the previous key: old tokens are refused, new ones work, also after a restart.
    s.admin("POST", "/admin/jwt/retire-previous", None)
        .await
        .ok(200);
    s.me(&old).await.expect(401, "unauthorized");
    s.me(&new).await.ok(200);
    s.restart(SECRET, None, None).await;
    s.me(&old).await.expect(401, "unauthorized");
    s.me(&new).await.ok(200);
    // Tokens of a rotated key verify independently with HMAC-SHA256(JWT_SECRET, kid).
    let (h, c) = parts(&new);
    assert_eq!(
        forge(&h, &c, &derived(SECRET, &new_kid)).split('.').count(),
        3
    );
    s.me(&forge(&h, &c, &derived(SECRET, &new_kid)))
        .await
        .ok(200);
    // Changing JWT_SECRET (the old one as JWT_SECRET_PREVIOUS) keeps the rotated key verifying
    // until the previous keys are retired.
    s.restart(OTHER_SECRET, Some(SECRET), None).await;
    s.me(&new).await.ok(200);
    let newest = access(s.login(&tid, "ann@example.com", PASSWORD).await.ok(200));
    let newest_kid = parts(&newest).0["kid"].as_str().unwrap().to_owned();
    assert!(
        newest_kid.starts_with("e-") && newest_kid != h_old["kid"],
        "signed with the new JWT_SECRET"
    );
    s.me(&newest).await.ok(200);
    // Without the old secret at all, its keys cannot be derived: refused.
    s.restart(OTHER_SECRET, None, None).await;
    s.me(&new).await.expect(401, "unauthorized");
    s.me(&newest).await.ok(200);
    // Tenant keys are refused on the keyring routes.
    let (_, _, sk) = s.tenant("other").await;
    s.call_with("POST", "/admin/jwt/rotate", Some(&sk), &[], None)
        .await
        .expect(403, "forbidden");
    s.call_with("GET", "/admin/jwt", None, &[], None)
        .await
        .expect(401, "unauthorized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_verify_with_an_independent_hs256_implementation() {
    let s = Svc::start(None).await;
    let (tid, _, _) = s.tenant("acme").await;
    let r = s.register(&tid, "ann@example.com").await;
    let token = access(&r);
    let (header, claims) = parts(&token);
    assert_eq!(header["alg"], "HS256");
    assert_eq!(header["typ"], "JWT");
    assert!(header["kid"].as_str().unwrap().starts_with("e-"));
    for c in [
        "sub", "tenantId", "jti", "iat", "exp", "nbf", "iss", "aud", "type", "sid",
    ] {
        assert!(!claims[c].is_null(), "claim {c}");
    }
    assert_eq!(claims["iss"], "auth-service");
    assert_eq!(claims["aud"], tid.as_str());
    assert_eq!(claims["tenantId"], tid.as_str());
    assert_eq!(claims["type"], "access");
    assert_eq!(claims["sub"], r["user"]["id"]);
    assert_eq!(claims["sid"], r["session"]["id"]);
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        900
    );
    // HMAC-SHA256 over `header.payload` with the same secret gives the same signature.
    let (input, sig) = token.rsplit_once('.').unwrap();
    assert_eq!(b64(&hs256(SECRET.as_bytes(), input.as_bytes())), sig);
    assert_ne!(b64(&hs256(OTHER_SECRET.as_bytes(), input.as_bytes())), sig);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_refuses_to_start_without_a_jwt_secret() {
    let dir = TempDir::new().unwrap();
    for bad in ["", "   ", "too-short"] {
        let r = Setup::local(extras(bad, None, None), false)
            .try_spawn(dir.path())
            .await;
        let e = r.err().expect("refused");
        assert!(e.to_string().contains("JWT_SECRET"), "{e}");
    }
    // The binary says so and exits non-zero.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_auth-service"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env_remove("JWT_SECRET")
        .env("PLATFORM_ADMIN_KEY", ADMIN_KEY)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("JWT_SECRET is not set"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onboarding_makes_the_schema_the_first_admin_and_a_welcome_mail() {
    let server = mail_server().await;
    let s = Svc::start(Some(&server)).await;
    // Bad onboarding specs: 400 naming the field, nothing created.
    for (onboarding, field) in [
        (
            json!({"adminEmail": "not-an-address"}),
            "onboarding.adminEmail",
        ),
        (
            json!({"adminEmail": "a@acme.io", "template": "nope"}),
            "onboarding.template",
        ),
        (
            json!({"adminEmail": "a@acme.io", "other": 1}),
            "onboarding.other",
        ),
        (json!("admin@acme.io"), "onboarding"),
    ] {
        s.new_tenant(json!({"slug": "acme", "name": "Acme", "onboarding": onboarding}))
            .await
            .expect_field("invalid_field", field);
    }
    s.admin("GET", "/admin/tenants/tenant:acme", None)
        .await
        .expect(404, "not_found");
    let created = s
        .new_tenant(json!({"slug": "acme", "name": "Acme",
                        "onboarding": {"adminEmail": "Admin@Acme.io", "template": "rbac"}}))
        .await;
    let created = created.ok(201).clone();
    let tid = created["tenant"]["id"].as_str().unwrap().to_owned();
    let sk = created["credentials"]["secretKey"]
        .as_str()
        .unwrap()
        .to_owned();
    let pk = created["credentials"]["publicKey"]
        .as_str()
        .unwrap()
        .to_owned();
    let o = &created["onboarding"];
    s.conforms_to("OnboardingState", o).await;
    assert_eq!(o["adminEmail"], "admin@acme.io");
    assert_eq!(o["template"], "rbac");
    assert_eq!(o["adminPasswordSet"], false);
    // The welcome mail: documentation link and a set-password code, no API key.
    let all = wait_mails(&server, 1).await;
    let welcome = last_mail(&all, "admin@acme.io", "welcome");
    assert_eq!(welcome["tenantId"], tid.as_str());
    let text = welcome["text"].as_str().unwrap();
    assert!(text.contains("docs/contract.md"), "{text}");
    assert!(!text.contains(&sk) && !text.contains(&pk) && !text.contains("sk_live_"));
    let token = token_in(welcome);
    // The admin has no usable password until it sets one with the code.
    s.login(&tid, "admin@acme.io", PASSWORD)
        .await
        .expect(401, "unauthorized");
    s.reset_password(&tid, &token, PASSWORD).await.ok(200);
    let l = s.login(&tid, "admin@acme.io", PASSWORD).await;
    let me = s.me(&access(l.ok(200))).await;
    assert_eq!(me.ok(200)["user"]["emailVerified"], true);
    // The onboarding state shows the mail sent and the password set.
    let t = s.admin("GET", &format!("/admin/tenants/{tid}"), None).await;
    let t = t.ok(200);
    assert_eq!(t["onboarding"]["welcomeEmail"], "sent");
    assert_eq!(t["onboarding"]["adminPasswordSet"], true);
    assert_eq!(t["onboarding"]["adminUserId"], me.body["user"]["id"]);
    // The data schema came from the template shipped in the repo.
    let db = rusqlite::Connection::open_with_flags(
        s.dir.path().join("auth.sqlite3"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let (version, active, yaml): (String, i64, String) = db
        .query_row(
            "SELECT version, is_active, yaml_content FROM tenant_data_schemas WHERE tenant_id = ?1",
            [&tid],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((version.as_str(), active), ("1.0.0", 1));
    assert_eq!(yaml, include_str!("../../templates/rbac.yaml"));
    // A tenant made without onboarding answers as before and gets no mail.
    let plain = s
        .new_tenant(json!({"slug": "plain", "name": "Plain"}))
        .await;
    assert!(plain.ok(201).get("onboarding").is_none());
    let t = s.admin("GET", "/admin/tenants/tenant:plain", None).await;
    assert!(t.ok(200).get("onboarding").is_none());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(mails(&server).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_changes_are_audited_without_secrets() {
    let s = Svc::start(None).await;
    let (tid, _, sk) = s.tenant("acme").await;
    let r = s.register(&tid, "ann@example.com").await;
    let user_id = r["user"]["id"].as_str().unwrap().to_owned();
    let r1 = refresh_token(&r);
    s.post_tenant(&tid, "refresh", json!({"refreshToken": r1}))
        .await
        .ok(200);
    s.post_tenant(&tid, "refresh", json!({"refreshToken": r1}))
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
    let user_records: Vec<(&str, &str, &str)> = records
        .iter()
        .filter(|r| r["action"].as_str().unwrap().starts_with("user."))
        .map(|r| {
            (
                r["action"].as_str().unwrap(),
                r["target"].as_str().unwrap(),
                r["actorKeyId"].as_str().unwrap(),
            )
        })
        .collect();
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

/// Panics if the bytes of any file of the data dir hold one of `codes` (or the random part of
/// one, without its `ev_`/`pr_` prefix).
fn assert_no_code_at_rest(dir: &Path, codes: &[String]) {
    let files = files_under(dir);
    assert!(
        files.iter().any(|f| f.ends_with("auth.sqlite3")),
        "{files:?}"
    );
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        for code in codes {
            for needle in [code.as_str(), &code[3..]] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                    "the code {code} rests in {}",
                    f.display()
                );
            }
        }
    }
}

/// Single-use codes never rest in plaintext: after welcome, verification and reset mail went
/// out (and while the service still runs, its WAL files unmerged), no file of the data dir
/// holds any of their codes, and the codes still work.
#[tokio::test]
async fn no_code_of_a_mail_rests_in_any_file_of_the_data_dir() {
    let server = mail_server().await;
    let s = Svc::start(Some(&server)).await;
    let created = s
        .new_tenant(json!({"slug": "rest", "name": "Rest",
                        "onboarding": {"adminEmail": "admin@rest.io", "template": "rbac"}}))
        .await;
    let tid = created.ok(201)["tenant"]["id"].as_str().unwrap().to_owned();
    s.register(&tid, "ann@rest.io").await;
    s.post_tenant(&tid, "resend-verification", json!({"email": "ann@rest.io"}))
        .await
        .ok(200);
    s.post_tenant(&tid, "forgot-password", json!({"email": "ann@rest.io"}))
        .await
        .ok(200);
    let all = wait_mails(&server, 4).await;
    let codes: Vec<String> = all.iter().map(token_in).collect();
    assert_eq!(codes.len(), 4);
    assert_no_code_at_rest(s.dir.path(), &codes);

    // The codes are the real ones: the reset code sets a password that logs in, the welcome
    // code the admin's.
    let reset = token_in(last_mail(&all, "ann@rest.io", "reset_password"));
    s.reset_password(&tid, &reset, "Another-horse-43")
        .await
        .ok(200);
    s.login(&tid, "ann@rest.io", "Another-horse-43")
        .await
        .ok(200);
    let welcome = token_in(last_mail(&all, "admin@rest.io", "welcome"));
    s.reset_password(&tid, &welcome, "Admin-horse-44")
        .await
        .ok(200);
    assert_no_code_at_rest(s.dir.path(), &codes);
}
