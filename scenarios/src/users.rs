//! Steps of end-user auth (`/v1/auth/*`), email tokens, onboarding and JWT rotation.
//!
//! Users are named in the features (`"ann"`); each name gets one address of this run, and an
//! account per tenant it signs up in. Tokens are read from the target's answers, and mail
//! from the run's mail capture (never from a database). JWTs are decoded and forged here with
//! `hmac`, `sha2` and `base64` alone, independently of any implementation under test.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use cucumber::gherkin::Step;
use cucumber::{given, then, when};
use hmac::{Hmac, Mac};
use rand::Rng as _;
use serde_json::{json, Value};
use sha2::{Sha256, Sha512};

use crate::context::CapturedMail;
use crate::extract;
use crate::verdict::FailureClass;
use crate::world::{excerpt, AuthWorld, Cred, KeyRef, Req, TenantRef};

/// One user's account in one tenant.
#[derive(Debug, Clone, Default)]
pub struct Account {
    /// The tenant's name in the scenario.
    pub tenant: String,
    /// The current password (empty until set, for an onboarded admin).
    pub password: String,
    /// Passwords the account had before.
    pub old_passwords: Vec<String>,
}

/// The end-user state of one scenario.
#[derive(Debug, Clone, Default)]
pub struct Users {
    /// Address of each user name.
    pub emails: BTreeMap<String, String>,
    /// Accounts by `user@tenant`.
    pub accounts: BTreeMap<String, Account>,
    /// The tenant of each user's last session answer.
    pub last_tenant: BTreeMap<String, String>,
    /// Access tokens issued to each user, oldest first.
    pub access: BTreeMap<String, Vec<String>>,
    /// Refresh tokens issued to each user, oldest first.
    pub refresh: BTreeMap<String, Vec<String>>,
    /// Tokens named by the scenario (remembered or forged).
    pub named: BTreeMap<String, String>,
    /// Mail tokens by `user:kind`, oldest first.
    pub mail_tokens: BTreeMap<String, Vec<String>>,
    /// Mail tokens already taken from the capture (a "new" mail carries another one).
    pub seen_mail_tokens: Vec<String>,
    /// The last mail read, by `user:kind`.
    pub mails: BTreeMap<String, CapturedMail>,
    /// A password sent in a reset or change that is not confirmed yet, by `user@tenant`.
    pub pending_password: BTreeMap<String, String>,
}

fn random_alnum(n: usize) -> String {
    rand::thread_rng()
        .sample_iter(rand::distributions::Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

/// A strong password (upper, lower, digit, 24 characters), never used before.
fn strong_password() -> String {
    format!("Pw9-{}-xY", random_alnum(18))
}

fn mail_kind(kind: &str) -> &'static str {
    match kind {
        "verification" => "verify_email",
        "password reset" | "reset" => "reset_password",
        _ => "welcome",
    }
}

/// The single-use token in a mail: a word starting `ev_` or `pr_` (docs/contract.md), or the
/// value of a `token=` parameter in a link.
fn token_in_text(text: &str) -> Option<String> {
    for word in text.split(|c: char| c.is_whitespace() || c == '"' || c == '<' || c == '>') {
        let w = word.trim_end_matches(['.', ',', ')', ';']);
        if (w.starts_with("ev_") || w.starts_with("pr_")) && w.len() > 8 {
            return Some(w.to_owned());
        }
        if let Some(i) = w.find("token=") {
            let t: String = w[i + 6..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
                .collect();
            if t.len() > 8 {
                return Some(t);
            }
        }
    }
    None
}

impl AuthWorld {
    /// The address of a user name: one per name and scenario, unique in the run.
    pub fn email_of(&mut self, user: &str) -> String {
        if let Some(e) = self.users.emails.get(user) {
            return e.clone();
        }
        let e = format!(
            "{user}.{}{}@example.com",
            self.ctx.run_id,
            random_alnum(6).to_ascii_lowercase()
        );
        self.users.emails.insert(user.to_owned(), e.clone());
        e
    }

    fn account(&self, user: &str, tenant: &str) -> Account {
        match self.users.accounts.get(&format!("{user}@{tenant}")) {
            Some(a) => a.clone(),
            None => self.harness_error(format!("{user:?} has no account in tenant {tenant:?}")),
        }
    }

    /// The tenant a user signed up in (the latest).
    fn tenant_of(&self, user: &str) -> String {
        match self.users.last_tenant.get(user) {
            Some(t) => t.clone(),
            None => self.harness_error(format!("{user:?} has no account yet")),
        }
    }

    /// The `X-Tenant-ID` value naming a tenant of the scenario, or a fresh slug of this run
    /// that no tenant has (for a name the scenario did not create).
    fn tenant_header(&mut self, tenant: &str) -> String {
        match self.tenants.get(tenant) {
            Some(t) => t.id.clone(),
            None => {
                let slug = self.expand(&format!("{{slug:{tenant}}}"), false);
                format!("tenant:{slug}")
            }
        }
    }

    fn latest_access(&self, user: &str) -> String {
        match self.users.access.get(user).and_then(|v| v.last()) {
            Some(t) => t.clone(),
            None => self.harness_error(format!("{user:?} holds no access token")),
        }
    }

    fn named_token(&self, name: &str) -> String {
        match self.users.named.get(name) {
            Some(t) => t.clone(),
            None => self.harness_error(format!("no token named {name:?}")),
        }
    }

    /// Remembers the tokens of a session answer for `user` in `tenant`.
    fn take_session(&mut self, user: &str, tenant: &str) {
        let ex = self.last().clone();
        if !(200..300).contains(&ex.status) {
            return;
        }
        let j = ex.json();
        // The legacy upstream router answered `token` where the contract has `accessToken`.
        let access = extract::first(j, &["accessToken", "token"]).and_then(Value::as_str);
        let refresh = extract::field(j, "refreshToken").and_then(Value::as_str);
        let Some(access) = access else {
            self.fail_as(
                FailureClass::Conformance,
                format!(
                    "{} {}: expected a session answer with accessToken, got {}",
                    ex.method,
                    ex.path,
                    excerpt(&ex.body)
                ),
            )
        };
        self.relabel(access, &format!("{user}:access"));
        self.users
            .access
            .entry(user.to_owned())
            .or_default()
            .push(access.to_owned());
        if let Some(r) = refresh {
            self.relabel(r, &format!("{user}:refresh"));
            self.users
                .refresh
                .entry(user.to_owned())
                .or_default()
                .push(r.to_owned());
        }
        self.users
            .last_tenant
            .insert(user.to_owned(), tenant.to_owned());
    }

    /// POSTs to `/v1/auth/<leaf>` naming `tenant` with `X-Tenant-ID`.
    async fn post_auth(&mut self, tenant: &str, leaf: &str, body: Value) {
        let header = self.tenant_header(tenant);
        let req = Req::new("POST", &format!("/v1/auth/{leaf}"), Cred::None)
            .header("X-Tenant-ID", &header)
            .json(&body.to_string());
        let req = self.prepare_literal(req);
        self.send_prepared(req).await;
    }

    /// A request whose path and body are sent as they are (they hold user data, not
    /// placeholders).
    fn prepare_literal(&self, mut req: Req) -> Req {
        req.template = Some(req.path.clone());
        req
    }

    /// Sends a request with an access token.
    async fn send_with_token(
        &mut self,
        method: &str,
        path: &str,
        label: &str,
        token: String,
        tenant_header: Option<&str>,
        body: Option<String>,
    ) {
        let mut req = Req::new(
            method,
            path,
            Cred::Bearer {
                label: label.to_owned(),
                value: token,
            },
        );
        if let Some(t) = tenant_header {
            let h = self.tenant_header(t);
            req = req.header("X-Tenant-ID", &h);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        self.send(req).await;
    }

    async fn register(&mut self, user: &str, tenant: &str, password: String) {
        let email = self.email_of(user);
        self.ctx
            .secrets
            .remember(&password, &format!("{user}:password"), 0);
        self.post_auth(
            tenant,
            "register",
            json!({"email": email, "password": password, "name": user}),
        )
        .await;
        if self.last().status == 201 {
            let key = format!("{user}@{tenant}");
            self.users.accounts.insert(
                key,
                Account {
                    tenant: tenant.to_owned(),
                    password,
                    old_passwords: Vec::new(),
                },
            );
            self.take_session(user, tenant);
        }
    }

    /// A new mail of `kind` to `user`: polls the capture for a token not seen before.
    async fn wait_mail(&mut self, user: &str, kind: &str) -> CapturedMail {
        let Some(capture) = self.ctx.mail.get().cloned() else {
            self.harness_error(
                "the run has no mail capture (the scenario should be tagged @needs-mail)",
            )
        };
        let to = self.email_of(user).to_ascii_lowercase();
        let template = mail_kind(kind);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let all = capture.messages().await;
            let found = all.into_iter().find(|m| {
                m.to == to
                    && m.template == template
                    && token_in_text(&m.text)
                        .is_some_and(|t| !self.users.seen_mail_tokens.contains(&t))
            });
            if let Some(m) = found {
                let token = token_in_text(&m.text).unwrap_or_default();
                self.users.seen_mail_tokens.push(token.clone());
                // A mail token is a secret too: no answer may show it.
                self.ctx
                    .secrets
                    .remember(&token, &format!("{user}:{kind} token"), 0);
                self.users
                    .mail_tokens
                    .entry(format!("{user}:{kind}"))
                    .or_default()
                    .push(token);
                self.users.mails.insert(format!("{user}:{kind}"), m.clone());
                return m;
            }
            if Instant::now() > deadline {
                let msg = format!(
                    "{}: expected a new {kind} mail ({template}) to {user:?} within 10 s, got none",
                    self.last_request_line()
                );
                self.fail(msg);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The latest (or, with `earlier`, the one before) mail token of a kind.
    fn mail_token(&self, user: &str, kind: &str, earlier: bool) -> String {
        let all = self
            .users
            .mail_tokens
            .get(&format!("{user}:{kind}"))
            .cloned()
            .unwrap_or_default();
        let n = all.len();
        let pick = if earlier {
            n.checked_sub(2)
        } else {
            n.checked_sub(1)
        };
        match pick.and_then(|i| all.get(i)) {
            Some(t) => t.clone(),
            None => self.harness_error(format!(
                "{user:?} has not received {} {kind} mail",
                if earlier { "two" } else { "a" }
            )),
        }
    }
}

// ---------------------------------------------------------------------------------------
// JWTs, decoded and forged independently
// ---------------------------------------------------------------------------------------

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn decode_part(part: &str) -> Option<Value> {
    let bytes = URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The header and claims of a JWT.
fn jwt_parts(token: &str) -> Option<(Value, Value)> {
    let mut it = token.split('.');
    let h = decode_part(it.next()?)?;
    let c = decode_part(it.next()?)?;
    Some((h, c))
}

fn hmac256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

fn hmac512(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha512>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// A JWT with this header and claims, signed with `key` by the header's `alg` (HS256 or
/// HS512; anything else gets an empty signature).
fn sign(header: &Value, claims: &Value, key: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = match header.get("alg").and_then(Value::as_str) {
        Some("HS256") => hmac256(key, input.as_bytes()),
        Some("HS512") => hmac512(key, input.as_bytes()),
        _ => Vec::new(),
    };
    format!("{input}.{}", b64(&sig))
}

/// The signing secret of a key id per docs/contract.md: `JWT_SECRET` itself for the base key,
/// `HMAC-SHA256(JWT_SECRET, kid)` for a rotated key (`r-...`).
fn signing_key(secret: &str, kid: &str) -> Vec<u8> {
    if kid.starts_with("r-") {
        hmac256(secret.as_bytes(), kid.as_bytes())
    } else {
        secret.as_bytes().to_vec()
    }
}

fn parts_or_fail(w: &AuthWorld, token: &str) -> (Value, Value) {
    match jwt_parts(token) {
        Some(p) => p,
        None => w.fail_as(
            FailureClass::Conformance,
            "the access token: expected a JWT with a JSON header and payload, got another format",
        ),
    }
}

// ---------------------------------------------------------------------------------------
// Given / When: accounts and sessions
// ---------------------------------------------------------------------------------------

#[given(regex = r#"^"(\w+)" has signed up in tenant "([^"]+)"(?: with another password)?$"#)]
async fn has_signed_up(w: &mut AuthWorld, user: String, tenant: String) {
    w.register(&user, &tenant, strong_password()).await;
    let ex = w.last().clone();
    w.expect_setup(&ex, &[201], &format!("signing {user:?} up in {tenant:?}"));
}

#[when(regex = r#"^"(\w+)" signs up in tenant "([^"]+)"$"#)]
async fn signs_up(w: &mut AuthWorld, user: String, tenant: String) {
    w.register(&user, &tenant, strong_password()).await;
}

#[when(regex = r#"^"(\w+)" signs up in tenant "([^"]+)" with the password "([^"]*)"$"#)]
async fn signs_up_with(w: &mut AuthWorld, user: String, tenant: String, password: String) {
    w.register(&user, &tenant, password).await;
}

#[when(regex = r#"^"(\w+)" logs in to tenant "([^"]+)" with the password "([^"]*)"$"#)]
async fn logs_in_with(w: &mut AuthWorld, user: String, tenant: String, password: String) {
    let email = w.email_of(&user);
    w.post_auth(
        &tenant,
        "login",
        json!({"email": email, "password": password}),
    )
    .await;
    if w.last().status == 200 {
        w.take_session(&user, &tenant);
    }
}

#[when(
    regex = r#"^"(\w+)" logs in to tenant "([^"]+)"(?: (with a wrong password|with her address in upper case|with her old password|with the password she uses in tenant "[^"]+"))?$"#
)]
async fn logs_in(w: &mut AuthWorld, user: String, tenant: String, how: String) {
    let email = w.email_of(&user);
    let own = w
        .users
        .accounts
        .get(&format!("{user}@{tenant}"))
        .map(|a| a.password.clone());
    let (email, password) = match how.as_str() {
        "" => (email, own.unwrap_or_else(strong_password)),
        "with a wrong password" => (email, strong_password()),
        "with her address in upper case" => (
            email.to_ascii_uppercase(),
            own.unwrap_or_else(strong_password),
        ),
        "with her old password" => {
            let a = w.account(&user, &tenant);
            match a.old_passwords.last() {
                Some(p) => (email, p.clone()),
                None => w.harness_error(format!("{user:?} has no old password in {tenant:?}")),
            }
        }
        other => {
            let from = other
                .trim_start_matches("with the password she uses in tenant \"")
                .trim_end_matches('"')
                .to_owned();
            (email, w.account(&user, &from).password)
        }
    };
    w.post_auth(
        &tenant,
        "login",
        json!({"email": email, "password": password}),
    )
    .await;
    if w.last().status == 200 {
        w.take_session(&user, &tenant);
    }
}

#[when(regex = r#"^"(\w+)" tries to log in to tenant "([^"]+)" (\d+) times one after another$"#)]
async fn logs_in_n(w: &mut AuthWorld, user: String, tenant: String, n: usize) {
    let mut all = Vec::new();
    for _ in 0..n {
        logs_in(w, user.clone(), tenant.clone(), String::new()).await;
        all.push(w.last().clone());
    }
    w.batch = all;
}

/// A user's session answers carried no token of this kind. When the user has sessions, the
/// target issues no such token (upstream has no refresh token): the contract's session answer
/// is not met. Without any session, the feature used the step wrongly.
fn no_token(w: &AuthWorld, user: &str, kind: &str) -> ! {
    if w.users.access.contains_key(user) {
        w.fail_as(
            FailureClass::Conformance,
            format!(
                "{user:?}'s session answers (POST /v1/auth/register, /v1/auth/login): expected a {kind}Token, got none"
            ),
        );
    }
    w.harness_error(format!("{user:?} holds no {kind} token: no session yet"))
}

#[when(regex = r#"^I remember "(\w+)"'s (access|refresh) token as "([^"]+)"$"#)]
#[given(regex = r#"^I remember "(\w+)"'s (access|refresh) token as "([^"]+)"$"#)]
#[then(regex = r#"^I remember "(\w+)"'s (access|refresh) token as "([^"]+)"$"#)]
async fn remember_token(w: &mut AuthWorld, user: String, kind: String, name: String) {
    let list = if kind == "access" {
        w.users.access.get(&user)
    } else {
        w.users.refresh.get(&user)
    };
    let Some(t) = list.and_then(|v| v.last()).cloned() else {
        no_token(w, &user, &kind)
    };
    w.users.named.insert(name, t);
}

#[when(
    regex = r#"^"(\w+)" sends (GET|POST) "([^"]+)" with her access token(?: and the tenant header of "([^"]+)")?$"#
)]
async fn user_sends(
    w: &mut AuthWorld,
    step: &Step,
    user: String,
    method: String,
    path: String,
    tenant: String,
) {
    let token = w.latest_access(&user);
    let body = step.docstring().map(|d| d.trim().to_owned());
    let tenant = (!tenant.is_empty()).then_some(tenant);
    w.send_with_token(
        &method,
        &path,
        &format!("{user}:access"),
        token,
        tenant.as_deref(),
        body,
    )
    .await;
}

#[when(
    regex = r#"^I send (GET|POST) "([^"]+)" with the access token "([^"]+)"(?: and the tenant header of "([^"]+)")?$"#
)]
async fn send_named_token(
    w: &mut AuthWorld,
    method: String,
    path: String,
    name: String,
    tenant: String,
) {
    let token = w.named_token(&name);
    let tenant = (!tenant.is_empty()).then_some(tenant);
    w.send_with_token(&method, &path, &name, token, tenant.as_deref(), None)
        .await;
}

#[when(regex = r#"^"(\w+)" logs out$"#)]
async fn logs_out(w: &mut AuthWorld, user: String) {
    let token = w.latest_access(&user);
    w.send_with_token(
        "POST",
        "/v1/auth/logout",
        &format!("{user}:access"),
        token,
        None,
        None,
    )
    .await;
}

#[when(regex = r#"^"(\w+)" changes her password(?: to "([^"]*)")?$"#)]
async fn changes_password(w: &mut AuthWorld, user: String, new: String) {
    let tenant = w.tenant_of(&user);
    let account = w.account(&user, &tenant);
    let new = if new.is_empty() {
        strong_password()
    } else {
        new
    };
    w.ctx
        .secrets
        .remember(&new, &format!("{user}:new password"), 0);
    let token = w.latest_access(&user);
    let body = json!({"currentPassword": account.password, "newPassword": new}).to_string();
    w.send_with_token(
        "POST",
        "/v1/auth/change-password",
        &format!("{user}:access"),
        token,
        None,
        Some(body),
    )
    .await;
    if w.last().status == 200 {
        let key = format!("{user}@{tenant}");
        if let Some(a) = w.users.accounts.get_mut(&key) {
            a.old_passwords
                .push(std::mem::replace(&mut a.password, new));
        }
    }
}

#[when(regex = r#"^"(\w+)" refreshes her session(?: with the refresh token "([^"]+)")?$"#)]
async fn refreshes(w: &mut AuthWorld, user: String, name: String) {
    let tenant = w.tenant_of(&user);
    let token = if name.is_empty() {
        match w.users.refresh.get(&user).and_then(|v| v.last()) {
            Some(t) => t.clone(),
            None => no_token(w, &user, "refresh"),
        }
    } else {
        w.named_token(&name)
    };
    w.post_auth(&tenant, "refresh", json!({"refreshToken": token}))
        .await;
    if w.last().status == 200 {
        w.take_session(&user, &tenant);
    }
}

// ---------------------------------------------------------------------------------------
// Given: forged tokens
// ---------------------------------------------------------------------------------------

#[given(regex = r#"^a token "([^"]+)" made from "(\w+)"'s access token by (.+)$"#)]
#[when(regex = r#"^a token "([^"]+)" made from "(\w+)"'s access token by (.+)$"#)]
async fn forged(w: &mut AuthWorld, name: String, user: String, how: String) {
    let token = w.latest_access(&user);
    let (header, claims) = parts_or_fail(w, &token);
    let made_up = format!("made-up-secret-{}", random_alnum(32));
    let real_key = |w: &AuthWorld| -> Vec<u8> {
        let Some(secret) = w.ctx.jwt_secret.get() else {
            w.harness_error(
                "the harness does not know the target's JWT secret (tag @needs-jwt-secret)",
            )
        };
        let kid = header.get("kid").and_then(Value::as_str).unwrap_or("");
        signing_key(secret, kid)
    };
    let with_alg = |alg: &str| {
        let mut h = header.clone();
        h["alg"] = json!(alg);
        h
    };
    let claim_re = regex::Regex::new(
        r#"^setting the claim "(\w+)" to (?:(\d+) seconds (ago|from now)|(.+)) and re-signing it with the target's secret$"#,
    )
    .expect("static regex");
    let out = match how.as_str() {
        "setting alg to none" => sign(&with_alg("none"), &claims, b""),
        "setting alg to none and dropping the signature" => sign(&with_alg("none"), &claims, b"")
            .trim_end_matches('.')
            .to_owned(),
        "re-signing it with a made-up secret" => sign(&header, &claims, made_up.as_bytes()),
        "re-signing it with HS512 and a made-up secret" => {
            sign(&with_alg("HS512"), &claims, made_up.as_bytes())
        }
        "changing the user in the payload" => {
            let mut c = claims.clone();
            // The claim the target names its user with (`sub`, or upstream's `userId`).
            let k = extract::claim_user(&claims).map_or("sub", |(k, _)| k);
            c[k] = json!(format!("user:{}", random_alnum(12)));
            let mut p = token.split('.');
            let (h, _, s) = (p.next(), p.next(), p.next());
            format!(
                "{}.{}.{}",
                h.unwrap_or(""),
                b64(c.to_string().as_bytes()),
                s.unwrap_or("")
            )
        }
        "changing one character of the signature" => {
            let (input, sig) = token.rsplit_once('.').unwrap_or((&token, ""));
            let mut s: Vec<char> = sig.chars().collect();
            if s.len() < 10 {
                w.fail_as(
                    FailureClass::Conformance,
                    "the access token: expected an HS256 signature, got none to change",
                );
            }
            // A character in the middle: every bit of it is signature (the last one may be
            // padding bits).
            let i = s.len() / 2;
            s[i] = if s[i] == 'A' { 'B' } else { 'A' };
            format!("{input}.{}", s.into_iter().collect::<String>())
        }
        "re-signing it unchanged with the target's secret" => sign(&header, &claims, &real_key(w)),
        "re-signing it with HS512 and the target's secret" => {
            sign(&with_alg("HS512"), &claims, &real_key(w))
        }
        "removing its key id and re-signing it with the target's secret" => {
            let mut h = header.clone();
            if let Some(o) = h.as_object_mut() {
                o.remove("kid");
            }
            sign(&h, &claims, &real_key(w))
        }
        other => {
            let Some(c) = claim_re.captures(other) else {
                w.harness_error(format!("unknown token forgery {other:?}"))
            };
            let claim = c[1].to_owned();
            let value = if let Some(n) = c.get(2) {
                let n: i64 = n.as_str().parse().unwrap_or(0);
                let iat = claims.get("iat").and_then(Value::as_i64).unwrap_or(0);
                if &c[3] == "ago" {
                    json!(iat - n)
                } else {
                    json!(iat + n)
                }
            } else {
                let text = c[4].to_owned();
                let text = w.expand(&text, false);
                match serde_json::from_str::<Value>(&text) {
                    Ok(v) => v,
                    Err(_) => w.harness_error(format!("not a JSON value: {text}")),
                }
            };
            let mut cl = claims.clone();
            cl[claim.as_str()] = value;
            sign(&header, &cl, &real_key(w))
        }
    };
    if out == token {
        w.harness_error(format!("the forgery {how:?} did not change the token"));
    }
    w.users.named.insert(name, out);
}

// ---------------------------------------------------------------------------------------
// Then: sessions and tokens
// ---------------------------------------------------------------------------------------

/// A session answer. What makes it a session of this user in this tenant is judged (the
/// address, the tenant, a token whose claims name the same user and tenant, no password in
/// it); how it is written (`expiresAt` as epoch milliseconds, `userId` for `sub`, no
/// `tokenType`, no refresh token) is a deviation outside `@contract` scenarios.
#[then(regex = r#"^the answer is a session of "(\w+)" in tenant "([^"]+)"$"#)]
async fn is_session(w: &mut AuthWorld, user: String, tenant: String) {
    let email = w.email_of(&user).to_ascii_lowercase();
    let tenant_id = w.tenant(&tenant).id.clone();
    let j = w.last().json().clone();
    let s = |p: &str| {
        extract::field(&j, p)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let mut wrong: Vec<String> = Vec::new();
    let mut security = false;
    let mut format: Vec<String> = Vec::new();
    if s("user.email").as_deref() != Some(email.as_str()) {
        wrong.push(format!("user.email {:?}", s("user.email")));
    }
    match s("user.tenantId") {
        Some(t) if t != tenant_id => {
            wrong.push(format!("user.tenantId {t:?}"));
            security = true;
        }
        Some(_) => {}
        None => format.push("no user.tenantId".into()),
    }
    for p in ["user.id", "accessToken"] {
        if s(p).is_none_or(|v| v.is_empty()) {
            wrong.push(format!("no {p}"));
        }
    }
    for p in ["refreshToken", "session.id"] {
        if s(p).is_none_or(|v| v.is_empty()) {
            format.push(format!("no {p}"));
        }
    }
    match extract::field(&j, "session.expiresAt").map(|v| (extract::time_form(v), v)) {
        None => format.push("no session.expiresAt".into()),
        Some((Some(extract::TimeForm::Rfc3339), _)) => {}
        Some((Some(f), v)) => format.push(format!("session.expiresAt as {} ({v})", f.describe())),
        Some((None, v)) => format.push(format!("session.expiresAt {v}, not a time")),
    }
    if extract::field(&j, "tokenType") != Some(&json!("Bearer")) {
        format.push(format!("tokenType {:?}", extract::field(&j, "tokenType")));
    }
    if extract::field(&j, "expiresIn")
        .and_then(Value::as_i64)
        .is_none_or(|n| n <= 0)
    {
        format.push(format!("expiresIn {:?}", extract::field(&j, "expiresIn")));
    }
    if extract::field(&j, "user.password").is_some()
        || extract::field(&j, "user.passwordHash").is_some()
    {
        wrong.push("a password field in the user object".into());
        security = true;
    }
    if let Some(t) = s("accessToken") {
        match jwt_parts(&t) {
            Some((h, c)) => {
                let alg = h.get("alg").and_then(Value::as_str).unwrap_or("");
                if alg.eq_ignore_ascii_case("none") || alg.is_empty() {
                    wrong.push(format!("an unsigned token (alg {alg:?})"));
                    security = true;
                } else if alg != "HS256" {
                    format.push(format!("the token's alg {alg:?}"));
                }
                match c.get("tenantId") {
                    Some(x) if x != &json!(tenant_id) => {
                        wrong.push(format!("the token's tenantId {x}"));
                        security = true;
                    }
                    Some(_) => {}
                    None => format.push("no tenantId claim".into()),
                }
                let user_id = extract::field(&j, "user.id");
                match extract::claim_user(&c) {
                    Some((k, v)) if Some(v) != user_id => {
                        wrong.push(format!("the token's {k} {v} (user.id is {user_id:?})"));
                        security = true;
                    }
                    Some(("userId", _)) => format.push("the user claim is userId, not sub".into()),
                    Some(_) => {}
                    None => wrong.push("no sub (or userId) claim in the token".into()),
                }
            }
            None => format.push("accessToken is not a JWT".into()),
        }
    }
    if !format.is_empty() {
        w.deviate(format!(
            "expected the contract's session answer, got {}",
            format.join("; ")
        ));
    }
    if !wrong.is_empty() {
        let msg = format!(
            "{}: expected a session of {user:?} in tenant {tenant:?}, got {}",
            w.last_request_line(),
            wrong.join("; ")
        );
        if security {
            w.fail_as(FailureClass::Security, msg);
        }
        w.fail(msg);
    }
}

/// `GET /v1/auth/me` with a token: 200 and the user's address, or the uniform 401.
async fn me_with(w: &mut AuthWorld, label: &str, token: String) -> u16 {
    w.send_with_token("GET", "/v1/auth/me", label, token, None, None)
        .await;
    w.last().status
}

async fn expect_works(w: &mut AuthWorld, label: &str, token: String, user: Option<&str>) {
    let s = me_with(w, label, token).await;
    if s != 200 {
        let msg = format!(
            "GET /v1/auth/me as {label}: expected 200, got {s}: {}",
            excerpt(&w.last().body)
        );
        w.fail(msg);
    }
    if let Some(u) = user {
        let email = w.email_of(u).to_ascii_lowercase();
        let got = extract::field(w.last().json(), "user.email").cloned();
        if got != Some(json!(email)) {
            // The token opens another account than its own.
            w.fail_as(
                FailureClass::Security,
                format!("GET /v1/auth/me as {label}: expected user.email {email:?}, got {got:?}"),
            );
        }
    }
}

#[then(regex = r#"^"(\w+)"'s access token (works|is refused)$"#)]
async fn user_token_works(w: &mut AuthWorld, user: String, how: String) {
    let token = w.latest_access(&user);
    let label = format!("{user}:access");
    if how == "works" {
        expect_works(w, &label, token, Some(&user)).await;
    } else {
        me_with(w, &label, token).await;
        uniform_401(w).await;
    }
}

#[then(regex = r#"^the access token "([^"]+)" (works|is refused)$"#)]
async fn named_token_works(w: &mut AuthWorld, name: String, how: String) {
    let token = w.named_token(&name);
    if how == "works" {
        expect_works(w, &name, token, None).await;
    } else {
        me_with(w, &name, token).await;
        uniform_401(w).await;
    }
}

#[then(regex = r#"^every access token "(\w+)" was given is refused$"#)]
async fn all_refused(w: &mut AuthWorld, user: String) {
    let all = w.users.access.get(&user).cloned().unwrap_or_default();
    if all.is_empty() {
        w.harness_error(format!("{user:?} was given no access token"));
    }
    for (i, t) in all.into_iter().enumerate() {
        me_with(w, &format!("{user}:access#{}", i + 1), t).await;
        uniform_401(w).await;
    }
}

/// The last answer must be the one uniform 401: status 401, `WWW-Authenticate: Bearer`, and
/// the same body as `GET /v1/auth/me` without any token.
///
/// A success is a security failure (the bad token was accepted); another refusal status is
/// conformance. The header is a format deviation. The body comparison is the rule (an answer
/// that differs by the reason tells an attacker which part of a forgery was right), but it
/// only means something when the answer without a token is itself a 401: otherwise the
/// target's no-token answer differs for another reason (upstream: 400 from a validator) and
/// that is recorded as a deviation instead.
#[then(regex = r#"^the answer is the uniform 401$"#)]
async fn uniform_401(w: &mut AuthWorld) {
    let ex = w.last().clone();
    if refused_as_invalid(&ex) {
        // `validate` answering 200 `{"valid": false}` refuses the token, in another form than
        // the contract's 401: a format deviation, not a token accepted.
        w.deviate(format!(
            "expected the uniform 401, got {} with \"valid\": false",
            ex.status
        ));
        return;
    }
    if ex.status != 401 {
        crate::steps::judge_status(w, &[401]);
    }
    if !ex
        .header("www-authenticate")
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("bearer"))
    {
        w.deviate("expected WWW-Authenticate: Bearer on the 401, got none");
    }
    let reference = send_raw_me(w).await;
    // The answer under test stays the last one.
    w.last = Some(ex.clone());
    if reference.status != 401 {
        w.deviate(format!(
            "expected GET /v1/auth/me without a token to be the uniform 401, got {}: {}",
            reference.status,
            excerpt(&reference.body)
        ));
        return;
    }
    if crate::steps::normalized(&reference, &[]) != crate::steps::normalized(&ex, &[]) {
        w.fail(format!(
            "{} {}: expected the body of the answer without a token {:?}, got {:?}",
            ex.method,
            ex.path,
            excerpt(&reference.body),
            excerpt(&ex.body)
        ));
    }
}

/// A 2xx from `GET /v1/auth/validate` whose body says the token is not valid.
fn refused_as_invalid(ex: &crate::world::Exchange) -> bool {
    (200..300).contains(&ex.status)
        && ex.path.starts_with("/v1/auth/validate")
        && ex.json().get("valid") == Some(&Value::Bool(false))
}

async fn send_raw_me(w: &mut AuthWorld) -> crate::world::Exchange {
    let req = Req::new("GET", "/v1/auth/me", Cred::None);
    w.send(req).await.clone()
}

#[then(
    regex = r#"^the access token "([^"]+)" carries a different key id than "(\w+)"'s access token$"#
)]
async fn different_kid(w: &mut AuthWorld, name: String, user: String) {
    let a = w.named_token(&name);
    let b = w.latest_access(&user);
    let (ha, _) = parts_or_fail(w, &a);
    let (hb, _) = parts_or_fail(w, &b);
    if ha.get("kid").is_none() || ha.get("kid") == hb.get("kid") {
        w.fail(format!(
            "the token {name:?}: expected a key id other than {user:?}'s, got {:?} and {:?}",
            ha.get("kid"),
            hb.get("kid")
        ));
    }
}

#[then(regex = r#"^"(\w+)"'s access token carries the "currentKid" of the response "([^"]+)"$"#)]
async fn carries_current_kid(w: &mut AuthWorld, user: String, saved: String) {
    let t = w.latest_access(&user);
    let (h, _) = parts_or_fail(w, &t);
    let Some(ex) = w.saved.get(&saved).cloned() else {
        w.harness_error(format!("no saved response {saved:?}"))
    };
    let current = ex.json().get("currentKid").cloned();
    if current.is_none() || h.get("kid") != current.as_ref() {
        w.fail(format!(
            "{user:?}'s access token: expected the kid {current:?} ({} {}'s currentKid), got {:?}",
            ex.method,
            ex.path,
            h.get("kid")
        ));
    }
}

#[then(
    regex = r#"^the keyring lists the key id of the access token "([^"]+)" as "(current|previous|retired)"$"#
)]
async fn keyring_lists(w: &mut AuthWorld, name: String, status: String) {
    let t = w.named_token(&name);
    let (h, _) = parts_or_fail(w, &t);
    let kid = h.get("kid").cloned().unwrap_or(Value::Null);
    let keys = w
        .last()
        .json()
        .get("keys")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let found = keys.iter().find(|k| k.get("kid") == Some(&kid));
    match found {
        Some(k) if k.get("status") == Some(&json!(status)) => {}
        other => {
            let msg = format!(
                "{}: expected the key id {kid} listed as {status:?}, got {:?}",
                w.last_request_line(),
                other.and_then(|k| k.get("status"))
            );
            w.fail(msg)
        }
    }
}

#[then(regex = r#"^the keyring shows key ids and statuses only$"#)]
async fn keyring_no_secret(w: &mut AuthWorld) {
    let j = w.last().json().clone();
    let line = w.last_request_line();
    if let Some(secret) = w.ctx.jwt_secret.get() {
        if w.last().body.contains(secret.as_str()) {
            w.fail_as(
                FailureClass::Security,
                format!("SECRET LEAK: {line}: expected key ids and statuses only, got JWT_SECRET"),
            );
        }
    }
    if !j.get("currentKid").is_some_and(Value::is_string) {
        w.fail(format!("{line}: expected a currentKid, got none"));
    }
    let keys = j.get("keys").and_then(Value::as_array).cloned();
    let Some(keys) = keys.filter(|k| !k.is_empty()) else {
        w.fail(format!("{line}: expected a list of keys, got none"))
    };
    let allowed = ["kid", "status", "createdAt", "retiredAt"];
    for k in &keys {
        let Some(o) = k.as_object() else {
            w.fail(format!(
                "{line}: expected keyring entries as objects, got {k}"
            ))
        };
        if let Some(f) = o.keys().find(|f| !allowed.contains(&f.as_str())) {
            // Whatever else an entry carries may be key material.
            w.fail_as(
                FailureClass::Security,
                format!(
                    "{line}: expected only kid, status, createdAt, retiredAt in a keyring entry, got the field {f:?}"
                ),
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Mail
// ---------------------------------------------------------------------------------------

#[then(regex = r#"^"(\w+)" receives an? (verification|password reset|welcome) mail$"#)]
#[when(regex = r#"^"(\w+)" receives an? (verification|password reset|welcome) mail$"#)]
async fn receives(w: &mut AuthWorld, user: String, kind: String) {
    let m = w.wait_mail(&user, &kind).await;
    // The mail names a tenant the user belongs to.
    let mut theirs: Vec<String> = w
        .users
        .accounts
        .keys()
        .filter_map(|k| k.strip_prefix(&format!("{user}@")).map(str::to_owned))
        .collect();
    theirs.extend(w.users.last_tenant.get(&user).cloned());
    let ids: Vec<String> = theirs
        .iter()
        .filter_map(|t| w.tenants.get(t).map(|x| x.id.clone()))
        .collect();
    if !m.tenant_id.as_ref().is_some_and(|t| ids.contains(t)) {
        w.fail(format!(
            "the {kind} mail names the tenant {:?}, not one of {user:?}'s ({ids:?})",
            m.tenant_id
        ));
    }
}

#[then(regex = r#"^the (verification|password reset|welcome) mail to "(\w+)" mentions "([^"]+)"$"#)]
async fn mail_mentions(w: &mut AuthWorld, kind: String, user: String, text: String) {
    let text = w.expand(&text, false);
    let Some(m) = w.users.mails.get(&format!("{user}:{kind}")).cloned() else {
        w.harness_error(format!("{user:?} has received no {kind} mail"))
    };
    if !m.text.contains(&text) && !m.subject.contains(&text) {
        w.fail(format!(
            "the {kind} mail to {user:?}: expected it to mention {text:?}, got no mention"
        ));
    }
}

#[then(regex = r#"^within (\d+) seconds? no (?:new )?mail has gone to "(\w+)"$"#)]
async fn no_mail(w: &mut AuthWorld, secs: u64, user: String) {
    let Some(capture) = w.ctx.mail.get().cloned() else {
        w.harness_error("the run has no mail capture")
    };
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let to = w.email_of(&user).to_ascii_lowercase();
    let seen = w.users.seen_mail_tokens.clone();
    let new = capture
        .messages()
        .await
        .into_iter()
        .find(|m| m.to == to && token_in_text(&m.text).is_none_or(|t| !seen.contains(&t)));
    if let Some(m) = new {
        let msg = format!(
            "{}: expected no mail to {user:?} within {secs} s, got a {} mail",
            w.last_request_line(),
            m.template
        );
        w.fail(msg);
    }
}

#[then(regex = r#"^no captured mail contains a secret of this run$"#)]
async fn no_secret_in_mail(w: &mut AuthWorld) {
    let Some(capture) = w.ctx.mail.get().cloned() else {
        w.harness_error("the run has no mail capture")
    };
    let all = capture.messages().await;
    if all.is_empty() {
        w.harness_error("no mail has been captured at all: nothing to judge");
    }
    if w.ctx.secrets.is_empty() {
        w.harness_error("the run has seen no secret to look for");
    }
    for m in &all {
        // A mail may carry its own single-use token, nothing else secret.
        let own = token_in_text(&m.text).unwrap_or_default();
        if let Some(s) = w.ctx.secrets.any_in(&m.raw, &[own.as_str()]) {
            w.fail_as(
                FailureClass::Security,
                format!(
                    "SECRET LEAK: a {} mail to {}: expected no secret but its own token, got the secret {:?}",
                    m.template, m.to, s.label
                ),
            );
        }
        if let Some(k) = extract::credential_pattern()
            .find_iter(&m.raw)
            .find(|k| !w.ctx.secrets.is_identifier(k.as_str()))
        {
            w.fail_as(
                FailureClass::Security,
                format!(
                    "SECRET LEAK: a {} mail to {}: expected no credential, got a key-shaped one ({}…)",
                    m.template,
                    m.to,
                    &k.as_str()[..8.min(k.as_str().len())]
                ),
            );
        }
    }
}

#[when(
    regex = r#"^"(\w+)" sends her (earlier )?(verification|password reset|welcome) token to "(verify-email|reset-password)"(?: of tenant "([^"]+)")?(?: with the new password "([^"]*)")?$"#
)]
async fn sends_mail_token(
    w: &mut AuthWorld,
    user: String,
    earlier: String,
    kind: String,
    route: String,
    tenant: String,
    new_password: String,
) {
    let token = w.mail_token(&user, &kind, !earlier.is_empty());
    let tenant = if tenant.is_empty() {
        w.tenant_of(&user)
    } else {
        tenant
    };
    let body = if route == "verify-email" {
        json!({"token": token})
    } else {
        let p = if new_password.is_empty() {
            strong_password()
        } else {
            new_password
        };
        w.ctx
            .secrets
            .remember(&p, &format!("{user}:new password"), 0);
        w.users
            .pending_password
            .insert(format!("{user}@{tenant}"), p.clone());
        json!({"token": token, "newPassword": p})
    };
    w.post_auth(&tenant, &route, body).await;
    let key = format!("{user}@{tenant}");
    if route == "reset-password" && w.last().status == 200 {
        if let Some(p) = w.users.pending_password.remove(&key) {
            let a = w.users.accounts.entry(key).or_insert_with(|| Account {
                tenant: tenant.clone(),
                ..Account::default()
            });
            let old = std::mem::replace(&mut a.password, p);
            if !old.is_empty() {
                a.old_passwords.push(old);
            }
        }
    }
}

#[when(
    regex = r#"^"(\w+)" asks for a (password reset|new verification mail) in tenant "([^"]+)"$"#
)]
async fn asks_for_mail(w: &mut AuthWorld, user: String, what: String, tenant: String) {
    let email = w.email_of(&user);
    let leaf = if what == "password reset" {
        "forgot-password"
    } else {
        "resend-verification"
    };
    w.post_auth(&tenant, leaf, json!({"email": email})).await;
}

// ---------------------------------------------------------------------------------------
// Onboarding and tenants
// ---------------------------------------------------------------------------------------

#[when(
    regex = r#"^the platform admin creates tenant "([^"]+)" with onboarding for "(\w+)"(?: and the template "([^"]+)")?$"#
)]
async fn onboard(w: &mut AuthWorld, name: String, user: String, template: String) {
    let email = w.email_of(&user);
    let mut onboarding = json!({"adminEmail": email});
    if !template.is_empty() {
        onboarding["template"] = json!(template);
    }
    create_onboarded(w, &name, onboarding).await;
    let ex = w.last().clone();
    if ex.status == 201 {
        let j = ex.json();
        let slug = w.expand(&format!("{{slug:{name}}}"), false);
        let id = extract::tenant_id(j).unwrap_or_else(|| format!("tenant:{slug}"));
        let (secret, public) = extract::tenant_credentials(j);
        w.tenants.insert(name.clone(), TenantRef { id, slug });
        for (kind, s) in [("secret", secret), ("public", public)] {
            if let Some(v) = &s {
                w.relabel(v, &format!("{name}:{kind}"));
            }
            w.keys.insert(
                format!("{name}:{kind}"),
                KeyRef {
                    id: None,
                    secret: s,
                    tenant: name.clone(),
                },
            );
        }
        w.users.last_tenant.insert(user, name);
    }
}

#[when(regex = r#"^the platform admin creates tenant "([^"]+)" with the onboarding '(.*)'$"#)]
async fn onboard_literal(w: &mut AuthWorld, name: String, onboarding: String) {
    let text = w.expand(&onboarding, false);
    let v: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => w.harness_error(format!("the onboarding in the feature is not JSON: {e}")),
    };
    create_onboarded(w, &name, v).await;
}

async fn create_onboarded(w: &mut AuthWorld, name: &str, onboarding: Value) {
    let slug = w.expand(&format!("{{slug:{name}}}"), false);
    let body = json!({"slug": slug, "name": format!("authconf {name}"), "onboarding": onboarding});
    let req = Req::new("POST", "/admin/tenants", w.cred("admin")).json(&body.to_string());
    w.send(req).await;
}

#[then(regex = r#"^no tenant with the slug of "([^"]+)" exists$"#)]
async fn no_such_tenant(w: &mut AuthWorld, name: String) {
    let slug = match w.tenants.get(&name) {
        Some(t) => t.slug.clone(),
        None => w.expand(&format!("{{slug:{name}}}"), false),
    };
    let list = crate::steps::all_tenants(w, "").await;
    if let Some(t) = list.iter().find(|t| t.get("slug") == Some(&json!(slug))) {
        w.fail(format!(
            "GET /admin/tenants: expected no tenant with the slug {slug:?}, got {}",
            t.get("id").cloned().unwrap_or(Value::Null)
        ));
    }
    let req = Req::new(
        "GET",
        &format!("/admin/tenants/tenant%3A{slug}"),
        w.cred("admin"),
    );
    let s = w.send(req).await.status;
    if s != 404 {
        w.fail(format!(
            "GET /admin/tenants/tenant:{slug}: expected 404, got {s}"
        ));
    }
}

#[then(
    regex = r#"^within (\d+) seconds GET "([^"]+)" as "([^"]+)" shows the field "([^"]+)" as (.+)$"#
)]
async fn eventually_field(
    w: &mut AuthWorld,
    secs: u64,
    path: String,
    cred: String,
    field: String,
    value: String,
) {
    let value = w.expand(&value, false);
    let want: Value = match serde_json::from_str(&value) {
        Ok(v) => v,
        Err(_) => w.harness_error(format!("not a JSON value: {value}")),
    };
    let start = Instant::now();
    loop {
        let req = Req::new("GET", &path, w.cred(&cred));
        let ex = w.send(req).await.clone();
        let got = extract::field(ex.json(), &field).cloned();
        if got.as_ref() == Some(&want) {
            return;
        }
        if start.elapsed() > Duration::from_secs(secs) {
            w.fail(format!(
                "{} {}: expected the field {field:?} = {want} within {secs} s, got {} (HTTP {})",
                ex.method,
                ex.path,
                got.map_or_else(|| "no such field".to_owned(), |g| g.to_string()),
                ex.status
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forged_tokens_round_trip() {
        let h = json!({"alg":"HS256","typ":"JWT","kid":"e-1"});
        let c = json!({"sub":"user:1","iat":1});
        let t = sign(&h, &c, b"k");
        let (h2, c2) = jwt_parts(&t).unwrap();
        assert_eq!((h2, c2), (h, c));
        // RFC 7515's HS256 example key and input give its published signature.
        let key = URL_SAFE_NO_PAD
            .decode("AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow")
            .unwrap();
        let input = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
        assert_eq!(
            b64(&hmac256(&key, input.as_bytes())),
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
        );
    }

    #[test]
    fn tokens_are_found_in_mail_text() {
        assert_eq!(
            token_in_text("Use this code:\n\nev_abcDEF123456\n\nThanks").as_deref(),
            Some("ev_abcDEF123456")
        );
        assert_eq!(
            token_in_text("https://x.test/reset?token=pr_abcdef12345&x=1").as_deref(),
            Some("pr_abcdef12345")
        );
        assert_eq!(token_in_text("nothing here"), None);
    }
}
