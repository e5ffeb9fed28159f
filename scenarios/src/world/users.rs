//! End users of one scenario: a name gets one address of this run and an account per tenant
//! it signs up in; tokens are read from the target's answers and mail from the run's capture
//! (never from a database).

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::core::AuthWorld;
use super::state::Account;
use crate::context::CapturedMail;
use crate::extract;
use crate::support::http::{Cred, Req};
use crate::support::jwt::jwt_parts;
use crate::support::mail::{mail_kind, token_in_text};
use crate::support::text::{excerpt, random_alnum};
use crate::verdict::FailureClass;

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

    pub(crate) fn account(&self, user: &str, tenant: &str) -> Account {
        match self.users.accounts.get(&format!("{user}@{tenant}")) {
            Some(a) => a.clone(),
            None => self.harness_error(format!("{user:?} has no account in tenant {tenant:?}")),
        }
    }

    /// The tenant a user signed up in (the latest).
    pub(crate) fn tenant_of(&self, user: &str) -> String {
        match self.users.last_tenant.get(user) {
            Some(t) => t.clone(),
            None => self.harness_error(format!("{user:?} has no account yet")),
        }
    }

    /// The `X-Tenant-ID` value naming a tenant of the scenario, or a fresh slug of this run
    /// that no tenant has (for a name the scenario did not create).
    pub(crate) fn tenant_header(&mut self, tenant: &str) -> String {
        match self.tenants.get(tenant) {
            Some(t) => t.id.clone(),
            None => {
                let slug = self.expand(&format!("{{slug:{tenant}}}"), false);
                format!("tenant:{slug}")
            }
        }
    }

    pub(crate) fn latest_access(&self, user: &str) -> String {
        match self.users.access.get(user).and_then(|v| v.last()) {
            Some(t) => t.clone(),
            None => self.harness_error(format!("{user:?} holds no access token")),
        }
    }

    pub(crate) fn named_token(&self, name: &str) -> String {
        match self.users.named.get(name) {
            Some(t) => t.clone(),
            None => self.harness_error(format!("no token named {name:?}")),
        }
    }

    /// Remembers the tokens of a session answer for `user` in `tenant`.
    pub(crate) fn take_session(&mut self, user: &str, tenant: &str) {
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
    pub(crate) async fn post_auth(&mut self, tenant: &str, leaf: &str, body: Value) {
        let header = self.tenant_header(tenant);
        let req = Req::new("POST", &format!("/v1/auth/{leaf}"), Cred::None)
            .header("X-Tenant-ID", &header)
            .json(&body.to_string());
        let req = self.prepare_literal(req);
        self.send_prepared(req).await;
    }

    /// A request whose path and body are sent as they are (they hold user data, not
    /// placeholders).
    pub(crate) fn prepare_literal(&self, mut req: Req) -> Req {
        req.template = Some(req.path.clone());
        req
    }

    /// Sends a request with an access token.
    pub(crate) async fn send_with_token(
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

    pub(crate) async fn register(&mut self, user: &str, tenant: &str, password: String) {
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
    pub(crate) async fn wait_mail(&mut self, user: &str, kind: &str) -> CapturedMail {
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
    pub(crate) fn mail_token(&self, user: &str, kind: &str, earlier: bool) -> String {
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

pub(crate) fn parts_or_fail(w: &AuthWorld, token: &str) -> (Value, Value) {
    match jwt_parts(token) {
        Some(p) => p,
        None => w.fail_as(
            FailureClass::Conformance,
            "the access token: expected a JWT with a JSON header and payload, got another format",
        ),
    }
}
