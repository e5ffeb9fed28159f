//! The cucumber World: one per scenario, holding the scenario's tenants, keys and the last
//! exchanges, and the HTTP plumbing every step goes through (so that every response is
//! checked for leaked secrets and timed, whichever step sent it).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::Value;

use crate::context::RunContext;
use crate::extract;
use crate::verdict::{Deviation, FailureClass};

/// Characters left as they are in a percent-encoded path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.');

/// A tenant created by the scenario.
#[derive(Debug, Clone)]
pub struct TenantRef {
    /// `tenant:<slug>` (or whatever id the target gave).
    pub id: String,
    /// The slug.
    pub slug: String,
}

/// A key known to the scenario (`A:secret`, `A:ci`).
#[derive(Debug, Clone, Default)]
pub struct KeyRef {
    /// The key id, when known.
    pub id: Option<String>,
    /// The bearer token.
    pub secret: Option<String>,
    /// The tenant's name in the scenario.
    pub tenant: String,
}

/// How a request authenticates.
#[derive(Debug, Clone)]
pub enum Cred {
    /// No `Authorization` header.
    None,
    /// `Authorization: Bearer <value>`; the label appears in reports instead of the value.
    Bearer {
        /// Report label.
        label: String,
        /// The token.
        value: String,
    },
    /// A literal `Authorization` header value.
    Raw(String),
}

/// A request body.
#[derive(Debug, Clone)]
pub enum Body {
    /// No body.
    None,
    /// A JSON text sent as `application/json`.
    Json(String),
    /// Bytes with an optional content type.
    Raw {
        /// `Content-Type`, if any.
        content_type: Option<String>,
        /// The bytes.
        bytes: Vec<u8>,
    },
}

/// A request as a step describes it.
#[derive(Debug, Clone)]
pub struct Req {
    /// HTTP method.
    pub method: String,
    /// Path template, placeholders expanded by [`AuthWorld::send`].
    pub path: String,
    /// Credential.
    pub cred: Cred,
    /// Extra headers (values expanded).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Body,
    /// `Host` override (subdomain routing).
    pub host: Option<String>,
    /// The path before expansion (for endpoint names), set by [`AuthWorld::prepare`].
    pub template: Option<String>,
}

impl Req {
    /// A request without body or extra headers.
    pub fn new(method: &str, path: &str, cred: Cred) -> Self {
        Req {
            method: method.to_ascii_uppercase(),
            path: path.to_owned(),
            cred,
            headers: Vec::new(),
            body: Body::None,
            host: None,
            template: None,
        }
    }

    /// Adds a JSON body.
    pub fn json(mut self, body: &str) -> Self {
        self.body = Body::Json(body.to_owned());
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// One request and its response, as the target saw and answered it.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// Run-wide sequence number.
    pub id: u64,
    /// Method.
    pub method: String,
    /// Endpoint template (`GET /v1/api-keys/{id}`), for latency figures.
    pub endpoint: String,
    /// Path and query as sent.
    pub path: String,
    /// Request headers as sent, `Authorization` shown by label.
    pub request_headers: Vec<(String, String)>,
    /// Request body (first 2 KiB).
    pub request_body: Option<String>,
    /// Status code (0: no response).
    pub status: u16,
    /// Response headers.
    pub headers: Vec<(String, String)>,
    /// Response body as text.
    pub body: String,
    /// Response body as JSON, if it is.
    pub json: Option<Value>,
    /// Time to the full response.
    pub elapsed: Duration,
}

impl Exchange {
    /// A response header, case-insensitive.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The JSON body or `null`.
    pub fn json(&self) -> &Value {
        static NULL: Value = Value::Null;
        self.json.as_ref().unwrap_or(&NULL)
    }

    /// The exchange as text for a report (not yet redacted).
    pub fn describe(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "> {} {}", self.method, self.path);
        for (k, v) in &self.request_headers {
            let _ = writeln!(s, "> {k}: {v}");
        }
        if let Some(b) = &self.request_body {
            let _ = writeln!(s, ">\n> {b}");
        }
        let _ = writeln!(s, "< {} ({} ms)", self.status, self.elapsed.as_millis());
        for (k, v) in &self.headers {
            let _ = writeln!(s, "< {k}: {v}");
        }
        let body: String = self.body.chars().take(2048).collect();
        let _ = writeln!(s, "<\n< {body}");
        s
    }
}

/// Raised when a world is built outside [`crate::with_context`].
#[derive(Debug, thiserror::Error)]
#[error("authconf scenarios need a run context (run them through authconf::run_suite)")]
pub struct ContextMissing;

tokio::task_local! {
    static CONTEXT: Arc<RunContext>;
}

/// Runs `fut` (the cucumber run) with `ctx` as the context of every world it builds.
pub async fn with_context<F: std::future::Future>(ctx: Arc<RunContext>, fut: F) -> F::Output {
    CONTEXT.scope(ctx, fut).await
}

/// The World of one scenario.
#[derive(Debug, cucumber::World)]
#[world(init = Self::new)]
pub struct AuthWorld {
    /// The run's shared context.
    pub ctx: Arc<RunContext>,
    /// Tenants by scenario name (`A`, `B`).
    pub tenants: BTreeMap<String, TenantRef>,
    /// Keys by reference (`A:secret`, `A:ci`).
    pub keys: BTreeMap<String, KeyRef>,
    /// Literal credentials built by steps (truncated keys and the like).
    pub raw_creds: BTreeMap<String, String>,
    /// Named values for placeholders (`{slug:x}`).
    pub values: BTreeMap<String, String>,
    /// The last exchange.
    pub last: Option<Exchange>,
    /// The last request, expanded (for re-sending it with a change).
    pub last_req: Option<Req>,
    /// Exchanges saved by name.
    pub saved: BTreeMap<String, Exchange>,
    /// Responses of the last batch of concurrent requests.
    pub batch: Vec<Exchange>,
    /// Secrets issued to this scenario, in order (for entropy checks).
    pub issued: Vec<String>,
    /// Open event streams by name.
    pub streams: BTreeMap<String, crate::events::Stream>,
    /// End users, their tokens and their mail.
    pub users: crate::users::Users,
    /// `<feature path>:<scenario line>`, set by the harness's `before` hook; deviations are
    /// recorded under it.
    pub scenario_key: Option<String>,
    /// The scenario's tags (with or without the leading `@`), set by the harness's `before`
    /// hook; `@contract` makes format deviations fail the step.
    pub scenario_tags: Vec<String>,
}

impl AuthWorld {
    fn new() -> Result<Self, ContextMissing> {
        let ctx = CONTEXT.try_with(Arc::clone).map_err(|_| ContextMissing)?;
        Ok(AuthWorld {
            ctx,
            tenants: BTreeMap::new(),
            keys: BTreeMap::new(),
            raw_creds: BTreeMap::new(),
            values: BTreeMap::new(),
            last: None,
            last_req: None,
            saved: BTreeMap::new(),
            batch: Vec::new(),
            issued: Vec::new(),
            streams: BTreeMap::new(),
            users: crate::users::Users::default(),
            scenario_key: None,
            scenario_tags: Vec::new(),
        })
    }

    /// Whether the scenario carries `tag` (given without `@`).
    pub fn has_tag(&self, tag: &str) -> bool {
        self.scenario_tags
            .iter()
            .any(|t| t.trim_start_matches('@') == tag)
    }

    /// Whether the scenario judges shapes (`@contract`): there a format deviation is the
    /// subject and fails the step.
    pub fn is_contract(&self) -> bool {
        self.has_tag("contract")
    }

    /// `METHOD path` of the last exchange (`(no request)` before the first one).
    pub fn last_request_line(&self) -> String {
        match &self.last {
            Some(e) => format!("{} {}", e.method, e.path),
            None => "(no request)".to_owned(),
        }
    }

    /// Records a format deviation of the last exchange and lets the scenario go on; inside
    /// a `@contract` scenario the format is the subject, so the step fails as conformance.
    #[track_caller]
    pub fn deviate(&mut self, message: impl AsRef<str>) {
        let request = self.last_request_line();
        let message = self.ctx.secrets.redact(message.as_ref());
        if self.is_contract() {
            self.fail_as(FailureClass::Conformance, format!("{request}: {message}"));
        }
        let key = self.scenario_key.clone().unwrap_or_default();
        self.ctx
            .record_deviation(&key, Deviation { request, message });
    }

    /// Panics with a redacted message starting with the marker of `class`.
    #[track_caller]
    pub fn fail_as(&self, class: FailureClass, msg: impl AsRef<str>) -> ! {
        panic!(
            "{}{}",
            class.marker(),
            self.ctx.secrets.redact(msg.as_ref())
        )
    }

    /// Fails naming the last exchange: `METHOD path: expected X, got Y`, with the class's
    /// marker (`None`: unmarked, the harness decides from the scenario's tags).
    #[track_caller]
    pub fn fail_expect(
        &self,
        class: Option<FailureClass>,
        expected: impl std::fmt::Display,
        got: impl std::fmt::Display,
    ) -> ! {
        let msg = format!(
            "{}: expected {expected}, got {got}",
            self.last_request_line()
        );
        match class {
            Some(c) => self.fail_as(c, msg),
            None => self.fail(msg),
        }
    }

    /// A setup step cannot run because `METHOD path_template` answered `status` (404, 405,
    /// 501: the route or capability is missing). The first line is the harness's grouping
    /// key, so it carries the path TEMPLATE (ids as `{...}`), never concrete ids.
    #[track_caller]
    pub fn blocked(&self, method: &str, path_template: &str, status: u16) -> ! {
        self.fail_as(
            FailureClass::Blocked,
            format!("{method} {path_template} answered {status}"),
        )
    }

    /// Fails as the harness's own problem: a step used wrongly by a feature, or a value the
    /// scenario never set up.
    #[track_caller]
    pub fn harness_error(&self, msg: impl AsRef<str>) -> ! {
        self.fail_as(FailureClass::Harness, msg)
    }

    /// Checks the answer of a SETUP request (`what`: "creating tenant \"A\"") against the
    /// statuses that let the scenario go on. No answer is the harness's problem (it could
    /// not reach the target); 404, 405 or 501 mean the route is missing, so the scenario is
    /// blocked (first line `METHOD template answered N`, grouped by the harness); any other
    /// status is the target answering otherwise than the contract.
    #[track_caller]
    pub fn expect_setup(&self, ex: &Exchange, ok: &[u16], what: &str) {
        if ok.contains(&ex.status) {
            return;
        }
        let (method, template) = ex
            .endpoint
            .split_once(' ')
            .unwrap_or((ex.method.as_str(), ex.path.as_str()));
        match ex.status {
            0 => self.harness_error(format!(
                "{what}: {} {}: no answer from the target: {}",
                ex.method, ex.path, ex.body
            )),
            404 | 405 | 501 => self.blocked_with(
                method,
                template,
                ex.status,
                format!("{what} needs {} {}", ex.method, ex.path),
            ),
            s => self.fail_as(
                FailureClass::Conformance,
                format!(
                    "{what}: {} {}: expected {}, got {s}: {}",
                    ex.method,
                    ex.path,
                    statuses(ok),
                    excerpt(&ex.body)
                ),
            ),
        }
    }

    /// [`Self::blocked`] with details on a second line.
    #[track_caller]
    pub fn blocked_with(
        &self,
        method: &str,
        path_template: &str,
        status: u16,
        details: impl AsRef<str>,
    ) -> ! {
        self.fail_as(
            FailureClass::Blocked,
            format!(
                "{method} {path_template} answered {status}\n{}",
                details.as_ref()
            ),
        )
    }

    /// Text for a failure report: the last exchange, redacted.
    pub fn failure_context(&self) -> Option<String> {
        self.last
            .as_ref()
            .map(|e| self.ctx.secrets.redact(&e.describe()))
    }

    /// Panics with a redacted message (a failed step).
    #[track_caller]
    pub fn fail(&self, msg: impl AsRef<str>) -> ! {
        panic!("{}", self.ctx.secrets.redact(msg.as_ref()))
    }

    /// The last exchange; a step that needs one before any request is a bug in the feature.
    pub fn last(&self) -> &Exchange {
        match &self.last {
            Some(e) => e,
            None => self.harness_error("no request has been sent yet in this scenario"),
        }
    }

    /// A tenant of the scenario.
    pub fn tenant(&self, name: &str) -> &TenantRef {
        match self.tenants.get(name) {
            Some(t) => t,
            None => self.harness_error(format!("the scenario has no tenant {name:?}")),
        }
    }

    /// Resolves a credential reference: `admin`, `none`, a literal built by a step, `A`
    /// (tenant A's secret key) or `A:name`.
    pub fn cred(&self, reference: &str) -> Cred {
        match reference {
            "none" | "nobody" => Cred::None,
            "admin" => match &self.ctx.admin_key {
                Some(k) => Cred::Bearer {
                    label: "admin".into(),
                    value: k.clone(),
                },
                None => self.harness_error("no platform admin key (set AUTHCONF_ADMIN_KEY)"),
            },
            r => {
                if let Some(v) = self.raw_creds.get(r) {
                    return Cred::Bearer {
                        label: r.to_owned(),
                        value: v.clone(),
                    };
                }
                let full = if r.contains(':') {
                    r.to_owned()
                } else {
                    format!("{r}:secret")
                };
                match self.keys.get(&full).and_then(|k| k.secret.clone()) {
                    Some(value) => Cred::Bearer { label: full, value },
                    None => self.harness_error(format!("the scenario has no key {full:?}")),
                }
            }
        }
    }

    /// The bearer token of a key reference.
    pub fn secret_of(&self, reference: &str) -> String {
        match self.cred(reference) {
            Cred::Bearer { value, .. } => value,
            _ => self.harness_error(format!("{reference:?} has no secret")),
        }
    }

    /// Expands `{...}` placeholders. In paths, values are percent-encoded as one segment
    /// unless written `{raw:...}`.
    ///
    /// `{A.id}`, `{A.slug}`, `{A:k.id}`, `{A:k.secret}`, `{slug:x}` (a fresh slug, the same
    /// for the same x within the scenario), `{value:x}`.
    pub fn expand(&mut self, text: &str, in_path: bool) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find('{') {
            let Some(len) = rest[start..].find('}') else {
                break;
            };
            out.push_str(&rest[..start]);
            let inner = &rest[start + 1..start + len];
            // JSON bodies contain braces too: only expand what looks like a placeholder.
            if inner.is_empty() || inner.contains(['"', ' ', '\n', '{']) {
                out.push('{');
                rest = &rest[start + 1..];
                continue;
            }
            let (raw, name) = match inner.strip_prefix("raw:") {
                Some(n) => (true, n),
                None => (false, inner),
            };
            let value = self.placeholder(name);
            if in_path && !raw {
                out.extend(utf8_percent_encode(&value, SEGMENT));
            } else {
                out.push_str(&value);
            }
            rest = &rest[start + len + 1..];
        }
        out.push_str(rest);
        out
    }

    fn placeholder(&mut self, name: &str) -> String {
        if let Some(x) = name.strip_prefix("slug:") {
            let key = format!("slug:{x}");
            if let Some(v) = self.values.get(&key) {
                return v.clone();
            }
            let v = self.ctx.new_slug();
            self.values.insert(key, v.clone());
            return v;
        }
        for (prefix, len) in [("slug63:", 63), ("slug64:", 64)] {
            if let Some(x) = name.strip_prefix(prefix) {
                let key = format!("{prefix}{x}");
                if let Some(v) = self.values.get(&key) {
                    return v.clone();
                }
                // A fresh slug padded to an exact length (63 is the longest DNS label).
                let mut v = self.ctx.new_slug();
                v.push('-');
                while v.len() < len {
                    v.push('x');
                }
                v.truncate(len);
                self.values.insert(key, v.clone());
                return v;
            }
        }
        if let Some(x) = name.strip_prefix("value:") {
            return match self.values.get(x) {
                Some(v) => v.clone(),
                None => self.harness_error(format!("no saved value {x:?}")),
            };
        }
        if let Some(x) = name.strip_prefix("user:") {
            // `{user:ann.email}`: the address of a user name.
            return match x.strip_suffix(".email") {
                Some(u) => self.email_of(u),
                None => self.harness_error(format!("unknown user placeholder {{{name}}}")),
            };
        }
        if name == "unknown-key-id" {
            return "key:0000000000000000".into();
        }
        if name == "unknown-tenant-id" {
            return format!("tenant:{}nobody", crate::SLUG_PREFIX);
        }
        let Some((obj, attr)) = name.rsplit_once('.') else {
            self.harness_error(format!("unknown placeholder {{{name}}}"))
        };
        if obj.contains(':') {
            match attr {
                "id" => self.key_id(obj),
                "secret" => self.secret_of(obj),
                _ => self.harness_error(format!("unknown key attribute in {{{name}}}")),
            }
        } else {
            let t = self.tenant(obj).clone();
            match attr {
                "id" => t.id,
                "slug" => t.slug,
                _ => self.harness_error(format!("unknown tenant attribute in {{{name}}}")),
            }
        }
    }

    /// The id of a key reference, looked up in the tenant's key list when the creating
    /// response did not carry it (a tenant's initial keys).
    pub fn key_id(&self, reference: &str) -> String {
        let Some(k) = self.keys.get(reference) else {
            self.harness_error(format!("the scenario has no key {reference:?}"))
        };
        match &k.id {
            Some(id) => id.clone(),
            None => self.harness_error(format!(
                "the id of {reference:?} is unknown (look it up first with \"the key ids of tenant ... are known\")"
            )),
        }
    }

    /// Sends a request, records and checks the exchange, and makes it the last one.
    pub async fn send(&mut self, req: Req) -> &Exchange {
        let req = self.prepare(&req);
        self.send_prepared(req).await
    }

    /// Sends an already expanded request (a re-send of an earlier one).
    pub async fn send_prepared(&mut self, req: Req) -> &Exchange {
        let ex = send_raw(&self.ctx, &req).await;
        self.last_req = Some(req);
        self.last = Some(ex.clone());
        self.check_exchange(&ex);
        self.last.as_ref().expect("just set")
    }

    /// Expands the placeholders of a request.
    pub fn prepare(&mut self, req: &Req) -> Req {
        let mut out = req.clone();
        out.path = self.expand(&req.path, true);
        out.headers = req
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), self.expand(v, false)))
            .collect();
        if let Body::Json(s) = &req.body {
            out.body = Body::Json(self.expand(s, false));
        }
        out.host = req.host.as_ref().map(|h| self.expand(h, false));
        out.template = Some(req.path.clone());
        out
    }

    /// Sends prepared requests all at once, then checks each response; the last one becomes
    /// the last exchange and all of them the batch.
    pub async fn send_batch(&mut self, reqs: Vec<Req>) {
        let ctx = self.ctx.clone();
        let results: Vec<Exchange> =
            futures::future::join_all(reqs.iter().map(|r| send_raw(&ctx, r))).await;
        self.batch = results.clone();
        self.last_req = reqs.last().cloned();
        for ex in &results {
            self.last = Some(ex.clone());
            self.check_exchange(ex);
        }
    }

    /// The key id (`key:<hex>`) in the last request's path, if any.
    pub fn last_key_id_in_path(&self) -> Option<String> {
        let path = self
            .last_req
            .as_ref()?
            .path
            .replace("%3A", ":")
            .replace("%3a", ":");
        let re = regex::Regex::new("key:[0-9A-Za-z_-]+").expect("static regex");
        re.find(&path).map(|m| m.as_str().to_owned())
    }

    /// Learns what the response issues (secrets, tokens, key prefixes), then fails the step
    /// if it shows a secret that another exchange issued, or a whole credential nobody
    /// issued. Learning comes first so that a response is never flagged for what it issues
    /// itself, whatever the credential's shape or length.
    fn check_exchange(&mut self, ex: &Exchange) {
        self.register_issued(ex);
        crate::strict::check_internals(self, ex);
        if let Some(leak) = self.ctx.secrets.leaked_in(&ex_text(ex), ex.id) {
            let origin = if leak.issued_by.is_empty() {
                "which the target must never show".to_owned()
            } else {
                format!("which {} issued earlier", leak.issued_by)
            };
            self.fail_as(
                FailureClass::Security,
                format!(
                    "SECRET LEAK: {} {}: expected no secret shown again, got the secret {:?} ({origin})",
                    ex.method, ex.path, leak.label
                ),
            );
        }
        if let Some(stray) = stray_key(&self.ctx, ex) {
            self.fail_as(
                FailureClass::Security,
                format!(
                    "SECRET LEAK: {} {}: expected no credential the response did not issue, got a whole key-shaped credential ({}…)",
                    ex.method,
                    ex.path,
                    &stray[..8.min(stray.len())]
                ),
            );
        }
    }

    /// Remembers the credentials a successful response issues. A token already issued by
    /// another exchange is not a leak but a finding (`non-unique token`): a target without
    /// `jti` signs identical claims in the same second into the same JWT.
    fn register_issued(&mut self, ex: &Exchange) {
        if !(200..300).contains(&ex.status) {
            return;
        }
        let Some(j) = &ex.json else {
            return;
        };
        let issued = extract::issued_credentials(j);
        for p in &issued.identifiers {
            self.ctx.secrets.remember_identifier(p);
        }
        for (s, label) in &issued.secrets {
            self.ctx
                .secrets
                .remember_issued(s, &format!("{label}#{}", ex.id), ex.id, &ex.endpoint);
        }
        self.issued.extend(issued.bearers.iter().cloned());
        for (t, field) in &issued.tokens {
            let earlier = self.ctx.secrets.remember_issued(
                t,
                &format!("{field}#{}", ex.id),
                ex.id,
                &ex.endpoint,
            );
            if let Some(e) = earlier {
                self.ctx.secrets.allow_in(t, ex.id);
                self.ctx.record_finding(
                    FailureClass::Security,
                    format!(
                        "non-unique token: {} issued the same {field} as earlier {}",
                        ex.endpoint,
                        if e.issued_by.is_empty() {
                            "(unknown)"
                        } else {
                            &e.issued_by
                        }
                    ),
                );
            }
        }
    }

    /// Creates a tenant through the admin API (slug `authconf-<run>-...`, written to the
    /// ledger first) and remembers its keys as `<name>:secret` and `<name>:public`.
    pub async fn create_tenant(&mut self, name: &str, plan: Option<&str>) {
        let slug = self.ctx.new_slug();
        let body = match plan {
            Some(p) => {
                serde_json::json!({"slug": slug, "name": format!("authconf {name}"), "plan": p})
            }
            None => serde_json::json!({"slug": slug, "name": format!("authconf {name}")}),
        };
        let req = Req::new("POST", "/admin/tenants", self.cred("admin")).json(&body.to_string());
        let ex = self.send(req).await.clone();
        self.expect_setup(&ex, &[200, 201], &format!("creating tenant {name:?}"));
        let j = ex.json();
        let id = extract::tenant_id(j).unwrap_or_else(|| format!("tenant:{slug}"));
        if extract::path(j, "tenant.id").is_none() && extract::path(j, "data.tenant.id").is_some() {
            self.ctx
                .note_fallback("tenant id read at data.tenant.id (upstream envelope)");
        }
        let (secret, public) = extract::tenant_credentials(j);
        if secret.is_none() {
            self.fail_as(
                FailureClass::Conformance,
                format!(
                    "creating tenant {name:?}: POST /admin/tenants: expected a secret key in credentials.secretKey, got none: {}",
                    excerpt(&ex.body)
                ),
            );
        }
        self.tenants.insert(name.to_owned(), TenantRef { id, slug });
        for (kind, s) in [("secret", secret), ("public", public)] {
            if let Some(v) = &s {
                self.relabel(v, &format!("{name}:{kind}"));
            }
            self.keys.insert(
                format!("{name}:{kind}"),
                KeyRef {
                    id: None,
                    secret: s,
                    tenant: name.to_owned(),
                },
            );
        }
    }

    /// Creates a key for tenant `tenant` with the credential `as_cred`, stored as
    /// `<tenant>:<key>`; the response must be 201.
    /// With `as_cred` = `admin`, the platform admin mints it through
    /// `POST /admin/tenants/{id}/keys`. When the tenant makes its own key and the target has
    /// no `POST /v1/api-keys` (404, 405, 501), the key is minted through the admin twin
    /// instead (a setup fallback, noted once in the run).
    pub async fn create_key(&mut self, tenant: &str, key: &str, body: Value, as_cred: &str) {
        let what = format!("creating key {key:?} for {tenant:?}");
        let path = if as_cred == "admin" {
            format!("/admin/tenants/{{{tenant}.id}}/keys")
        } else {
            "/v1/api-keys".to_owned()
        };
        let req = Req::new("POST", &path, self.cred(as_cred)).json(&body.to_string());
        let mut ex = self.send(req).await.clone();
        if as_cred == tenant && matches!(ex.status, 404 | 405 | 501) && self.ctx.admin_key.is_some()
        {
            let first = ex.clone();
            ex = self.mint_as_admin(tenant, &body).await;
            if !(200..300).contains(&ex.status) {
                self.blocked_with(
                    "POST",
                    "/v1/api-keys",
                    first.status,
                    format!(
                        "{what}: the admin twin POST /admin/tenants/{{id}}/keys answered {} too",
                        ex.status
                    ),
                );
            }
        }
        self.expect_setup(&ex, &[200, 201], &what);
        let id = extract::key_id(ex.json());
        let secret = extract::key_secret(ex.json());
        if id.is_none() || secret.is_none() {
            self.fail_as(
                FailureClass::Conformance,
                format!(
                    "{what}: {} {}: expected a key id and a secret in the answer, got {}",
                    ex.method,
                    ex.path,
                    excerpt(&ex.body)
                ),
            );
        }
        if let Some(v) = &secret {
            self.relabel(v, &format!("{tenant}:{key}"));
        }
        self.keys.insert(
            format!("{tenant}:{key}"),
            KeyRef {
                id,
                secret,
                tenant: tenant.to_owned(),
            },
        );
    }

    /// The admin twin of `POST /v1/api-keys` (upstream): `POST /admin/tenants/{id}/keys` with
    /// `{type, environment, name, permissions}`, types `secret|public|restricted`.
    async fn mint_as_admin(&mut self, tenant: &str, body: &Value) -> Exchange {
        self.ctx.note_fallback(
            "key creation: POST /v1/api-keys is missing; keys are minted with POST /admin/tenants/{id}/keys",
        );
        let mut twin = body.clone();
        if twin.get("type").and_then(Value::as_str) == Some("publishable") {
            twin["type"] = Value::from("public");
        }
        let req = Req::new(
            "POST",
            &format!("/admin/tenants/{{{tenant}.id}}/keys"),
            self.cred("admin"),
        )
        .json(&twin.to_string());
        self.send(req).await.clone()
    }

    /// Names a secret after its key reference in reports; for upstream `prefix:secret`
    /// tokens the registry holds the secret part.
    pub fn relabel(&self, bearer: &str, label: &str) {
        self.ctx.secrets.relabel(bearer, label);
        if let Some((_, secret)) = bearer.split_once(':') {
            self.ctx.secrets.relabel(secret, label);
        }
    }

    /// Learns the ids of a tenant's initial keys from its key list (by display prefix). A
    /// target without `GET /v1/api-keys` is asked through the admin twin
    /// `GET /admin/tenants/{id}/keys` (a setup fallback, noted once).
    pub async fn learn_key_ids(&mut self, tenant: &str) {
        let what = format!("listing the keys of {tenant:?}");
        let req = Req::new("GET", "/v1/api-keys", self.cred(tenant));
        let mut ex = self.send(req).await.clone();
        if matches!(ex.status, 404 | 405 | 501) && self.ctx.admin_key.is_some() {
            self.ctx.note_fallback(
                "key list: GET /v1/api-keys is missing; key ids read from GET /admin/tenants/{id}/keys",
            );
            let req = Req::new(
                "GET",
                &format!("/admin/tenants/{{{tenant}.id}}/keys"),
                self.cred("admin"),
            );
            let twin = self.send(req).await.clone();
            if (200..300).contains(&twin.status) {
                ex = twin;
            }
        }
        self.expect_setup(&ex, &[200], &what);
        let list = extract::list(ex.json(), "apiKeys")
            .cloned()
            .unwrap_or_default();
        let refs: Vec<String> = self
            .keys
            .iter()
            .filter(|(_, k)| k.tenant == tenant && k.id.is_none())
            .map(|(r, _)| r.clone())
            .collect();
        for r in refs {
            let secret = self.keys[&r].secret.clone().unwrap_or_default();
            let found = list.iter().find(|k| {
                let p = k
                    .get("displayPrefix")
                    .or_else(|| k.get("keyPrefix"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                p.len() >= 8 && secret.starts_with(p)
            });
            if let Some(id) = found.and_then(|k| k.get("id")).and_then(Value::as_str) {
                if let Some(k) = self.keys.get_mut(&r) {
                    k.id = Some(id.to_owned());
                }
            }
        }
    }
}

fn ex_text(ex: &Exchange) -> String {
    let mut t = ex.body.clone();
    for (k, v) in &ex.headers {
        t.push('\n');
        t.push_str(k);
        t.push_str(": ");
        t.push_str(v);
    }
    t
}

/// A whole credential in a response that the response did not issue (a leak even when the
/// harness never saw that key, e.g. another tenant's): a full contract key or a
/// `prefix:secret` bearer. Key prefixes alone are identifiers (key lists show them) and are
/// never matched; issued identifiers are skipped as well.
fn stray_key(ctx: &RunContext, ex: &Exchange) -> Option<String> {
    let text = ex_text(ex);
    let issued = ex
        .json
        .as_ref()
        .filter(|_| (200..300).contains(&ex.status))
        .map(extract::issued_credentials)
        .unwrap_or_default();
    extract::credential_pattern()
        .find_iter(&text)
        .map(|m| m.as_str().to_owned())
        // A known secret is handled by the registry check (with its first-exchange rule).
        .find(|k| {
            !issued.all_secrets().any(|i| i.contains(k.as_str()))
                && !ctx.secrets.knows(k)
                && !ctx.secrets.is_identifier(k)
        })
}

fn endpoint_of(method: &str, template: &str) -> String {
    let path = template.split('?').next().unwrap_or("");
    let mut out = String::new();
    let mut in_ph = false;
    for c in path.chars() {
        match c {
            '{' => {
                in_ph = true;
                out.push_str("{id}");
            }
            '}' => in_ph = false,
            c if !in_ph => out.push(c),
            _ => {}
        }
    }
    format!("{method} {out}")
}

async fn send_raw(ctx: &RunContext, req: &Req) -> Exchange {
    let path = req.path.as_str();
    let headers = &req.headers;
    let body = &req.body;
    let host = req.host.as_deref();
    let template = req.template.as_deref().unwrap_or(&req.path);
    let id = ctx.next_exchange();
    let url = format!("{}{}", ctx.base_url, path);
    let method = reqwest::Method::from_bytes(req.method.as_bytes()).unwrap_or(reqwest::Method::GET);
    let mut rb = ctx.client.request(method, &url);
    let mut shown: Vec<(String, String)> = Vec::new();
    for (k, v) in &ctx.extra_headers {
        rb = rb.header(k, v);
        shown.push((k.clone(), "‹from --header›".into()));
    }
    match &req.cred {
        Cred::None => {}
        Cred::Bearer { label, value } => {
            rb = rb.header("Authorization", format!("Bearer {value}"));
            shown.push(("Authorization".into(), format!("Bearer ‹{label}›")));
        }
        Cred::Raw(v) => {
            rb = rb.header("Authorization", v);
            shown.push(("Authorization".into(), v.clone()));
        }
    }
    if let Some(h) = host {
        rb = rb.header("Host", h);
        shown.push(("Host".into(), h.to_owned()));
    }
    for (k, v) in headers {
        rb = rb.header(k, v);
        shown.push((k.clone(), v.clone()));
    }
    let mut request_body = None;
    match body {
        Body::None => {}
        Body::Json(s) => {
            if req.method == "POST" && template == "/admin/tenants" {
                ledger_before_create(ctx, s);
            }
            rb = rb
                .header("Content-Type", "application/json")
                .body(s.clone());
            shown.push(("Content-Type".into(), "application/json".into()));
            request_body = Some(s.chars().take(2048).collect());
        }
        Body::Raw {
            content_type,
            bytes,
        } => {
            if let Some(ct) = content_type {
                rb = rb.header("Content-Type", ct);
                shown.push(("Content-Type".into(), ct.clone()));
            }
            request_body = Some(format!(
                "{}{}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(256)]),
                if bytes.len() > 256 {
                    format!("… ({} bytes)", bytes.len())
                } else {
                    String::new()
                }
            ));
            rb = rb.body(bytes.clone());
        }
    }
    let start = Instant::now();
    let endpoint = endpoint_of(&req.method, template);
    let result = rb.send().await;
    let mut ex = Exchange {
        id,
        method: req.method.clone(),
        endpoint: endpoint.clone(),
        path: path.to_owned(),
        request_headers: shown,
        request_body,
        status: 0,
        headers: Vec::new(),
        body: String::new(),
        json: None,
        elapsed: Duration::ZERO,
    };
    match result {
        Ok(resp) => {
            ex.status = resp.status().as_u16();
            ex.headers = resp
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
                .collect();
            let bytes = resp.bytes().await.unwrap_or_default();
            ex.elapsed = start.elapsed();
            ex.body = String::from_utf8_lossy(&bytes).into_owned();
            ex.json = serde_json::from_slice(&bytes).ok();
            ctx.record_latency(&endpoint, ex.elapsed);
            if req.method == "POST"
                && template == "/admin/tenants"
                && (200..300).contains(&ex.status)
            {
                if let Some(tid) = ex.json.as_ref().and_then(extract::tenant_id) {
                    ctx.track_tenant(&tid);
                }
            }
        }
        Err(e) => {
            ex.elapsed = start.elapsed();
            ex.body = format!("(no response: {e})");
        }
    }
    ex
}

/// Writes a tenant to the ledger before it is created; a slug outside the run's prefix is not
/// ours to clean up.
fn ledger_before_create(ctx: &RunContext, body: &str) {
    let slug = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get("slug").and_then(Value::as_str).map(str::to_owned));
    if let Some(slug) = slug {
        if slug.starts_with(crate::SLUG_PREFIX) {
            if let Err(e) = ctx.ledger.append(&slug, "create") {
                panic!("cannot write the tenant ledger: {e}");
            }
            // Tracked now as well, so the tenant is deleted at the end even if the create
            // response is lost.
            ctx.track_tenant(&format!("tenant:{slug}"));
        }
    }
}

/// `201`, `200 or 201`, `401, 403 or 404` for messages.
pub fn statuses(list: &[u16]) -> String {
    let all: Vec<String> = list.iter().map(u16::to_string).collect();
    match all.split_last() {
        None => "nothing".into(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

/// The first 300 characters of a body, for a failure message.
pub fn excerpt(body: &str) -> String {
    const MAX: usize = 300;
    let chars: Vec<char> = body.chars().collect();
    if chars.len() <= MAX {
        return body.to_owned();
    }
    // Never cut inside a token-like run (a key, a secret, a JWT): a cut secret no longer
    // matches what the redactor learned, and its first part would reach the report. Back off
    // to the start of the run, so a secret is either whole (and redacted) or absent.
    let token_char = |c: char| c.is_ascii_alphanumeric() || "_-.:+/=".contains(c);
    let mut cut = MAX;
    if token_char(chars[cut]) {
        while cut > 0 && token_char(chars[cut - 1]) {
            cut -= 1;
        }
    }
    let mut s: String = chars[..cut].iter().collect();
    s.push('…');
    s
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;
    use std::panic::{catch_unwind, AssertUnwindSafe};

    #[test]
    fn an_excerpt_never_ends_inside_a_secret() {
        let secret = "a".repeat(20) + &"0123456789abcdef".repeat(4);
        let body = format!(
            "{{\"note\":\"{}\",\"secret\":\"{secret}\"}}",
            "x ".repeat(130)
        );
        let cut = excerpt(&body);
        assert!(cut.ends_with('…'), "{cut}");
        assert!(
            !cut.contains("aaaa"),
            "a part of the secret reached the excerpt: {cut}"
        );
        assert_eq!(excerpt("short"), "short");
    }

    /// A world over a context whose target is never contacted.
    pub(crate) fn world() -> AuthWorld {
        let ctx = RunContext::new(
            "http://127.0.0.1:9".into(),
            Some("sk_live_adminadminadminadminadminadminadmin00".into()),
            None,
            Vec::new(),
            "test".into(),
            crate::Capabilities::basic(),
            false,
            reqwest::Client::new(),
            None,
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(with_context(ctx, async { AuthWorld::new() }))
            .expect("a world")
    }

    /// An exchange answering `method path` with `status` and the JSON `body`.
    pub(crate) fn exchange(method: &str, path: &str, status: u16, body: Value) -> Exchange {
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1000);
        Exchange {
            id: SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            method: method.into(),
            endpoint: endpoint_of(method, path),
            path: path.into(),
            request_headers: Vec::new(),
            request_body: None,
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string(),
            json: Some(body),
            elapsed: Duration::ZERO,
        }
    }

    /// Checks `ex` as if the target had just answered it; the panic message, if any.
    pub(crate) fn check(w: &mut AuthWorld, ex: &Exchange) -> Option<String> {
        let ex = ex.clone();
        catch_unwind(AssertUnwindSafe(|| {
            w.last = Some(ex.clone());
            w.check_exchange(&ex);
        }))
        .err()
        .map(|p| {
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default()
        })
    }

    /// A prefix of 29 characters in all, and upstream's real ones: 29 and 32 characters
    /// after `pk_live_`/`sk_live_`, and one as long as a contract key's body (38).
    const PK29: &str = "pk_live_AbCdEfGhIjKlMnOpQrStU";
    const PK_UP: &str = "pk_live_AbCdEfGhIjKlMnOpQrStUvWxYz012";
    const SK_UP: &str = "sk_live_AbCdEfGhIjKlMnOpQrStUvWxYz012345";
    const RK_LONG: &str = "rk_live_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789ab";
    const SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn an_issued_prefix_is_never_flagged() {
        assert_eq!(
            (
                PK29.len(),
                PK_UP.len() - 8,
                SK_UP.len() - 8,
                RK_LONG.len() - 8
            ),
            (29, 29, 32, 38)
        );
        let mut w = world();
        let tenant = |pk: &str, secret: &str| {
            json!({"status":"success","data":{"tenant":{"id":"tenant:a","status":"active"},
                "credentials":{"publicKey":{"prefix":pk},"secretKey":{"prefix":SK_UP,"secret":secret}}}})
        };
        for (pk, secret) in [(PK29, "feedfacefeedface"), (PK_UP, SECRET)] {
            let created = exchange("POST", "/admin/tenants", 201, tenant(pk, secret));
            assert_eq!(
                check(&mut w, &created),
                None,
                "the issuing answer is not a leak"
            );
        }
        let minted =
            json!({"status":"success","data":{"id":"key:3","prefix":RK_LONG,"type":"restricted"}});
        let minted = exchange("POST", "/admin/tenants/tenant%3Aa/keys", 201, minted);
        assert_eq!(check(&mut w, &minted), None);
        // Lists and rows show prefixes legitimately, in later answers.
        let row = json!({"status":"success","data":{"id":"tenant:a","publicKey":PK_UP,"secretKey":SK_UP}});
        let row = exchange("GET", "/admin/tenants/tenant%3Aa", 200, row);
        assert_eq!(check(&mut w, &row), None);
        let keys = json!({"status":"success","data":[
            {"id":"key:1","keyPrefix":PK29},{"id":"key:2","keyPrefix":SK_UP},{"id":"key:3","keyPrefix":RK_LONG}]});
        let keys = exchange("GET", "/admin/tenants/tenant%3Aa/keys", 200, keys);
        assert_eq!(check(&mut w, &keys), None);
        // The secret part shown again is a leak, of class security, and never printed.
        let leak = json!({"data":[{"id":"key:2","keyPrefix":SK_UP,"secret":SECRET}]});
        let leak = exchange("GET", "/admin/tenants/tenant%3Aa/keys", 200, leak);
        let msg = check(&mut w, &leak).expect("a leak");
        assert!(
            msg.starts_with("[authconf:security] SECRET LEAK: GET /admin/tenants/tenant%3Aa/keys"),
            "{msg}"
        );
        assert!(!msg.contains(SECRET), "{msg}");
    }

    #[test]
    fn a_whole_credential_nobody_issued_is_flagged() {
        let mut w = world();
        let foreign = format!("{SK_UP}:{SECRET}");
        let ex = exchange("GET", "/v1/tenant", 200, json!({"key": foreign}));
        let msg = check(&mut w, &ex).expect("a stray credential");
        assert!(msg.contains("did not issue"), "{msg}");
    }

    #[test]
    fn a_token_issued_twice_is_a_finding_not_a_leak() {
        let mut w = world();
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJ1c2VySWQiOiJ1MSJ9.c2lnbmF0dXJlc2lnbmF0dXJl";
        let first = exchange(
            "POST",
            "/v1/auth/register",
            201,
            json!({"accessToken": jwt}),
        );
        let second = exchange("POST", "/v1/auth/login", 200, json!({"accessToken": jwt}));
        assert_eq!(check(&mut w, &first), None);
        assert_eq!(check(&mut w, &second), None, "issued again: no leak");
        assert_eq!(
            w.ctx.findings(),
            vec![(
                FailureClass::Security,
                "non-unique token: POST /v1/auth/login issued the same accessToken as earlier POST /v1/auth/register".to_owned()
            )]
        );
        // Shown by an answer that does not issue it, the token is still a leak.
        let shown = exchange("GET", "/v1/auth/me", 200, json!({"echo": jwt}));
        let msg = check(&mut w, &shown).expect("a leak");
        assert!(msg.contains("SECRET LEAK: GET /v1/auth/me"), "{msg}");
    }

    #[test]
    fn deviations_are_recorded_outside_contract_and_fail_inside() {
        let mut w = world();
        w.scenario_key = Some("features/x.feature:7".into());
        w.last = Some(exchange("GET", "/v1/auth/me", 401, json!({})));
        let r = catch_unwind(AssertUnwindSafe(|| {
            w.deviate("expected WWW-Authenticate: Bearer, got none")
        }));
        assert!(
            r.is_ok(),
            "a deviation does not stop a behavioural scenario"
        );
        assert_eq!(
            w.ctx.take_deviations("features/x.feature:7"),
            vec![Deviation {
                request: "GET /v1/auth/me".into(),
                message: "expected WWW-Authenticate: Bearer, got none".into()
            }]
        );
        w.scenario_tags = vec!["@contract".into()];
        let r = catch_unwind(AssertUnwindSafe(|| {
            w.deviate("expected problem+json, got json")
        }));
        let msg = r.expect_err("inside @contract the shape is the subject");
        let msg = msg.downcast_ref::<String>().cloned().unwrap_or_default();
        assert_eq!(
            msg,
            "[authconf:conformance] GET /v1/auth/me: expected problem+json, got json"
        );
        assert!(w.ctx.take_deviations("features/x.feature:7").is_empty());
    }

    #[test]
    fn blocked_names_the_route_template() {
        let w = world();
        let ex = exchange("POST", "/v1/api-keys", 404, json!({"error":"Not Found"}));
        let r = catch_unwind(AssertUnwindSafe(|| {
            w.expect_setup(&ex, &[201], "creating key \"ci\"")
        }));
        let p = r.expect_err("blocked");
        let msg = p.downcast_ref::<String>().cloned().unwrap_or_default();
        assert_eq!(
            msg.lines().next(),
            Some("[authconf:blocked] POST /v1/api-keys answered 404")
        );
        let ex = exchange("POST", "/admin/tenants/tenant%3Aa/keys", 404, json!({}));
        let mut ex = ex;
        ex.endpoint = endpoint_of("POST", "/admin/tenants/{A.id}/keys");
        let r = catch_unwind(AssertUnwindSafe(|| w.expect_setup(&ex, &[201], "minting")));
        let msg = r
            .expect_err("blocked")
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default();
        assert!(
            msg.starts_with("[authconf:blocked] POST /admin/tenants/{id}/keys answered 404"),
            "{msg}"
        );
    }
}
