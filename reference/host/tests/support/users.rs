//! End-user auth for the tests of `/v1/auth/*`, mail and JWT rotation: a service with a JWT
//! secret and a mail API ([`UserSvc`]), the end-user calls, an independent HS256/HS512
//! implementation to read and forge tokens, and a `wiremock` mail API whose requests the
//! tests read back.

use std::ops::Deref;
use std::time::{Duration, Instant};

use auth_service::{Extras, MailConfig};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::{Sha256, Sha512};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::{Resp, Service, Setup, Tenant};

pub const SECRET: &str = "user-auth-test-secret-0123456789-abcdefghijklmnop";
pub const OTHER_SECRET: &str = "another-user-auth-secret-0123456789-abcdefghijk";
pub const MAIL_KEY: &str = "mail-api-key-for-tests-0123456789";
pub const PASSWORD: &str = "Correct-horse-42";

/// The service with a JWT secret ([`SECRET`] at start) and a mail API, and what the tests
/// need to know of them.
pub struct UserSvc {
    pub svc: Service,
    pub secret: String,
    pub mail: Option<String>,
}

impl Deref for UserSvc {
    type Target = Service;

    fn deref(&self) -> &Service {
        &self.svc
    }
}

pub fn mail_config(server: &MockServer, timeout: Duration) -> MailConfig {
    let mut m = MailConfig::new(format!("{}/send", server.uri()), MAIL_KEY);
    m.timeout = timeout;
    m.poll_interval = Duration::from_millis(50);
    m
}

pub fn extras(secret: &str, previous: Option<&str>, mail: Option<MailConfig>) -> Extras {
    Extras {
        jwt_secret: secret.into(),
        jwt_secret_previous: previous.map(str::to_owned),
        mail,
    }
}

impl UserSvc {
    pub async fn start(mail: Option<&MockServer>) -> Self {
        let mail_cfg = mail.map(|m| mail_config(m, Duration::from_secs(2)));
        Self::start_with(mail_cfg, mail.map(|m| m.uri())).await
    }

    /// A service with test controls, [`SECRET`] and the mail API `mail` (at `uri`).
    pub async fn start_with(mail: Option<MailConfig>, uri: Option<String>) -> Self {
        let svc = Setup::local(extras(SECRET, None, mail), true).start().await;
        Self {
            svc,
            secret: SECRET.into(),
            mail: uri,
        }
    }

    /// A service without a mail API and one tenant `slug` on it (see [`UserSvc::tenant`]).
    pub async fn with_tenant(slug: &str) -> (Self, (String, String, String)) {
        let s = Self::start(None).await;
        let tenant = s.tenant(slug).await;
        (s, tenant)
    }

    /// A service, the tenant `acme` and its end user `email` (password [`PASSWORD`]), with
    /// the body of the registration.
    pub async fn with_user(email: &str) -> (Self, (String, String, String), Value) {
        let (s, tenant) = Self::with_tenant("acme").await;
        let registered = s.register(&tenant.0, email).await;
        (s, tenant, registered)
    }

    /// Stops the service and starts it again on the same data dir.
    pub async fn restart(
        &mut self,
        secret: &str,
        previous: Option<&str>,
        mail: Option<&MockServer>,
    ) {
        let mail_cfg = mail.map(|m| mail_config(m, Duration::from_secs(2)));
        self.svc.setup.extras = Some(extras(secret, previous, mail_cfg));
        self.svc.restart().await;
        self.secret = secret.into();
    }

    /// A tenant: its id, publishable key and secret key.
    pub async fn tenant(&self, slug: &str) -> (String, String, String) {
        let r = self.new_tenant(json!({"slug": slug, "name": slug})).await;
        let t = Tenant::from_created(r.ok(201));
        (t.id, t.pk, t.sk)
    }

    /// `verify-email` with `token`.
    pub async fn verify_email(&self, tenant: &str, token: &str) -> Resp {
        self.post_user(tenant, "verify-email", json!({ "token": token }))
            .await
    }

    /// `forgot-password` or `resend-verification` (`leaf`) for `email`.
    pub async fn email_only(&self, tenant: &str, leaf: &str, email: &str) -> Resp {
        self.post_user(tenant, leaf, json!({ "email": email }))
            .await
    }

    pub async fn reset_password(&self, tenant: &str, token: &str, new_password: &str) -> Resp {
        let body = json!({"token": token, "newPassword": new_password});
        self.post_user(tenant, "reset-password", body).await
    }

    /// Resets the password of `email` with the mailed `token`; both the reset and a login
    /// with the new password must succeed.
    pub async fn reset_and_log_in(&self, tenant: &str, token: &str, email: &str, password: &str) {
        self.reset_password(tenant, token, password).await.ok(200);
        self.login(tenant, email, password).await.ok(200);
    }

    pub async fn register(&self, tenant: &str, email: &str) -> Value {
        self.post_user(
            tenant,
            "register",
            json!({"email": email, "password": PASSWORD, "name": "Ann"}),
        )
        .await
        .ok(201)
        .clone()
    }

    pub async fn login(&self, tenant: &str, email: &str, password: &str) -> Resp {
        self.post_user(
            tenant,
            "login",
            json!({"email": email, "password": password}),
        )
        .await
    }

    /// Logs `email` in with [`PASSWORD`], which must succeed: the session's body.
    pub async fn log_in(&self, tenant: &str, email: &str) -> Value {
        self.login(tenant, email, PASSWORD).await.ok(200).clone()
    }

    pub async fn me(&self, token: &str) -> Resp {
        self.call_with("GET", "/v1/auth/me", Some(token), &[], None)
            .await
    }
}

pub fn access(v: &Value) -> String {
    v["accessToken"].as_str().unwrap().to_owned()
}

pub fn refresh_token(v: &Value) -> String {
    v["refreshToken"].as_str().unwrap().to_owned()
}

// ---- forging tokens with an independent HS256/HS512 implementation ----

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn hs256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

pub fn hs512(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha512>::new_from_slice(key).unwrap();
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

pub fn parts(token: &str) -> (Value, Value) {
    let mut it = token.split('.');
    let h = URL_SAFE_NO_PAD.decode(it.next().unwrap()).unwrap();
    let c = URL_SAFE_NO_PAD.decode(it.next().unwrap()).unwrap();
    (
        serde_json::from_slice(&h).unwrap(),
        serde_json::from_slice(&c).unwrap(),
    )
}

pub fn forge(header: &Value, claims: &Value, key: &[u8]) -> String {
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
pub fn derived(secret: &str, kid: &str) -> Vec<u8> {
    hs256(secret.as_bytes(), kid.as_bytes())
}

/// The signing secret of a key id: the base secret, or the derived one of a rotated key.
pub fn derived_or_base(secret: &str, kid: &str) -> Vec<u8> {
    if kid.starts_with("r-") {
        derived(secret, kid)
    } else {
        secret.as_bytes().to_vec()
    }
}

// ---- mail captured by wiremock ----

pub async fn mail_server() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/send"))
        .respond_with(ResponseTemplate::new(202))
        .mount(&server)
        .await;
    server
}

/// A mail API that answers the first request with `first`, then 200.
pub async fn mail_server_after(first: ResponseTemplate) -> MockServer {
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
pub async fn mails(server: &MockServer) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap_or(Value::Null))
        .collect()
}

/// Waits until `n` mail requests have arrived.
pub async fn wait_mails(server: &MockServer, n: usize) -> Vec<Value> {
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
pub fn token_in(mail: &Value) -> String {
    let text = mail["text"].as_str().unwrap();
    text.split_whitespace()
        .find(|w| w.starts_with("ev_") || w.starts_with("pr_"))
        .unwrap_or_else(|| panic!("no token in {text}"))
        .to_owned()
}

pub fn last_mail<'a>(all: &'a [Value], to: &str, template: &str) -> &'a Value {
    all.iter()
        .rev()
        .find(|m| m["to"] == to && m["template"] == template)
        .unwrap_or_else(|| panic!("no {template} mail to {to} in {all:?}"))
}
