//! The scenario's tenants and keys, and the one path that creates tenants: each is written to
//! the run's ledger before it is created and tracked for cleanup once the target names it.

use serde_json::{json, Value};

use super::core::AuthWorld;
use super::state::{KeyRef, TenantRef};
use crate::context::RunContext;
use crate::extract;
use crate::support::http::{self, Body, Exchange, Req};
use crate::support::text::excerpt;
use crate::verdict::FailureClass;

impl AuthWorld {
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
        self.remember_tenant(name, TenantRef { id, slug }, secret, public);
    }

    /// Remembers a tenant the scenario created, and its initial keys as `<name>:secret` and
    /// `<name>:public` (ids unknown until looked up).
    pub(crate) fn remember_tenant(
        &mut self,
        name: &str,
        tenant: TenantRef,
        secret: Option<String>,
        public: Option<String>,
    ) {
        self.tenants.insert(name.to_owned(), tenant);
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
    pub(crate) async fn mint_as_admin(&mut self, tenant: &str, body: &Value) -> Exchange {
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

/// Writes a tenant to the ledger before it is created; a slug outside the run's prefix is not
/// ours to clean up.
pub(crate) fn ledger_before_create(ctx: &RunContext, body: &str) {
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

impl AuthWorld {
    /// The one path by which a tenant is created, whichever step asks (a named tenant of the
    /// setup, an onboarding, or a feature's own `POST /admin/tenants`): the slug is written
    /// to the run's ledger before the request, and the id the target answers is tracked for
    /// cleanup before the answer is judged, so a failing step never leaves a tenant behind.
    pub(crate) async fn create_tenant_exchange(&self, req: &Req) -> Exchange {
        if let Body::Json(body) = &req.body {
            ledger_before_create(&self.ctx, body);
        }
        let ex = http::send(&self.ctx, req).await;
        if (200..300).contains(&ex.status) {
            if let Some(tid) = ex.json.as_ref().and_then(extract::tenant_id) {
                self.ctx.track_tenant(&tid);
            }
        }
        ex
    }

    /// `POST /admin/tenants` with an onboarding block, for the tenant `name` of the scenario
    /// (its slug `{slug:name}`).
    pub(crate) async fn create_onboarded_tenant(&mut self, name: &str, onboarding: Value) {
        let slug = self.expand(&format!("{{slug:{name}}}"), false);
        let body =
            json!({"slug": slug, "name": format!("authconf {name}"), "onboarding": onboarding});
        let req = Req::new("POST", "/admin/tenants", self.cred("admin")).json(&body.to_string());
        self.send(req).await;
    }

    /// Every tenant the admin list shows (`query`: filters ending in `&`), page by page.
    pub(crate) async fn all_tenants(&mut self, query: &str) -> Vec<Value> {
        let mut out = Vec::new();
        for page in 1..=200 {
            let path = format!("/admin/tenants?{query}page={page}&limit=100");
            let req = Req::new("GET", &path, self.cred("admin"));
            let ex = self.send(req).await.clone();
            self.expect_setup(&ex, &[200], "listing tenants");
            let list = extract::list(ex.json(), "tenants")
                .cloned()
                .unwrap_or_default();
            let n = list.len();
            out.extend(list);
            let pages = extract::field(ex.json(), "pagination.pages")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            if n == 0 || page as u64 >= pages {
                break;
            }
        }
        out
    }
}
