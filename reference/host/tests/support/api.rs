//! The tenant and key calls the tests share.

use serde_json::{json, Value};

use super::formats::enc;
use super::http::Resp;
use super::service::{Service, ADMIN_KEY};

/// A tenant made through the admin API, with its first two keys.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: String,
    pub slug: String,
    pub pk: String,
    pub sk: String,
}

impl Tenant {
    /// The tenant and keys in the 201 body of `POST /admin/tenants`.
    pub fn from_created(b: &Value) -> Tenant {
        Tenant {
            id: b["tenant"]["id"].as_str().unwrap().into(),
            slug: b["tenant"]["slug"].as_str().unwrap().into(),
            pk: b["credentials"]["publicKey"].as_str().unwrap().into(),
            sk: b["credentials"]["secretKey"].as_str().unwrap().into(),
        }
    }
}

impl Service {
    /// A service and one tenant `slug` on it ([`Service::create_tenant`]).
    pub async fn start_with_tenant(slug: &str) -> (Service, Tenant) {
        let svc = Service::start().await;
        let t = svc.create_tenant(slug).await;
        (svc, t)
    }

    /// A service with test controls and one tenant `slug` on it.
    pub async fn hooks_with_tenant(slug: &str) -> (Service, Tenant) {
        let svc = Service::with_hooks().await;
        let t = svc.create_tenant(slug).await;
        (svc, t)
    }

    /// A service with test controls, a tenant `slug` with `requests` per hour whose window
    /// has just begun, and another tenant (`{slug}-other`) beside it.
    pub async fn hooks_with_hourly_tenant(slug: &str, requests: u32) -> (Service, Tenant, Tenant) {
        let svc = Service::with_hooks().await;
        let t = svc.tenant_with_limit(slug, requests, 3600).await;
        let other = svc.create_tenant(&format!("{slug}-other")).await;
        svc.start_of_next_window(3600).await;
        (svc, t, other)
    }

    /// `POST /admin/tenants` with `body`, which must succeed.
    pub async fn create_tenant_with(&self, body: Value) -> Tenant {
        let r = self.admin("POST", "/admin/tenants", Some(body)).await;
        Tenant::from_created(r.ok(201))
    }

    /// `PATCH /admin/tenants/{id}` with `body`, whatever the answer.
    pub async fn patch_tenant(&self, id: &str, body: Value) -> Resp {
        let path = format!("/admin/tenants/{}", enc(id));
        self.admin("PATCH", &path, Some(body)).await
    }

    /// `POST /admin/tenants` with the admin key and a raw JSON `body` (for bodies `json!`
    /// cannot build: malformed, or of an exact size).
    pub async fn post_tenant_raw(&self, body: impl Into<reqwest::Body>) -> Resp {
        self.send_body(
            "POST",
            "/admin/tenants",
            ADMIN_KEY,
            "application/json",
            body,
        )
        .await
    }

    /// Sends each `(method, path)` without a body with `key`: each must answer `status` with
    /// the problem `code`.
    pub async fn expect_each(
        &self,
        key: Option<&str>,
        calls: &[(&str, String)],
        status: u16,
        code: &str,
    ) {
        for (method, path) in calls {
            self.call(key, method, path, None)
                .await
                .expect(status, code);
        }
    }

    /// Sends each `(method, path, body, status)` with `key`: each must answer its `status`.
    pub async fn expect_status_each<const N: usize>(
        &self,
        key: Option<&str>,
        calls: [(&str, &str, Option<Value>, u16); N],
    ) {
        for (method, path, body, status) in calls {
            let r = self.call(key, method, path, body).await;
            assert_eq!(r.status, status, "{method} {path}: {}", r.text);
        }
    }

    /// `POST /v1/auth/{leaf}` for the end users of `tenant` (named by `X-Tenant-Id`, no key).
    pub async fn post_user(&self, tenant: &str, leaf: &str, body: Value) -> Resp {
        let path = format!("/v1/auth/{leaf}");
        self.call_with("POST", &path, None, &[("x-tenant-id", tenant)], Some(body))
            .await
    }

    /// A tenant with `rateLimit` `requests` per `window_seconds`.
    pub async fn tenant_with_limit(
        &self,
        slug: &str,
        requests: u32,
        window_seconds: u32,
    ) -> Tenant {
        self.create_tenant_with(json!({"slug": slug, "name": format!("Tenant {slug}"),
                                       "rateLimit": {"requests": requests,
                                                     "windowSeconds": window_seconds}}))
            .await
    }

    /// A tenant with a quota high enough that no test reaches it by accident.
    pub async fn create_tenant(&self, slug: &str) -> Tenant {
        self.tenant_with_limit(slug, 1_000_000, 60).await
    }

    /// `POST /admin/tenants` with `body`, whatever the answer.
    pub async fn new_tenant(&self, body: Value) -> Resp {
        self.admin("POST", "/admin/tenants", Some(body)).await
    }

    /// A POST of the JSON `body` to `path` with `key`.
    pub async fn post(&self, key: &str, path: &str, body: Value) -> Resp {
        self.call(Some(key), "POST", path, Some(body)).await
    }

    /// A POST of the JSON `body` to `path` with `key`, which must answer `status` with the
    /// problem `code`.
    pub async fn expect_post(&self, key: &str, path: &str, body: Value, status: u16, code: &str) {
        self.post(key, path, body).await.expect(status, code);
    }

    /// `n` POSTs to `path` with `key` sent at once, the `i`th with the body `body(i)`: their
    /// answers, in that order.
    pub async fn post_concurrently(
        &self,
        key: &str,
        path: &str,
        n: usize,
        body: impl Fn(usize) -> Value,
    ) -> Vec<Resp> {
        futures::future::join_all((0..n).map(|i| self.post(key, path, body(i)))).await
    }

    /// `method path` with `key`, the content type `content_type` and the raw `body`.
    pub async fn send_body(
        &self,
        method: &str,
        path: &str,
        key: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> Resp {
        let rb = self.req(method, path).bearer_auth(key);
        self.send(rb.header("content-type", content_type).body(body))
            .await
    }

    /// `DELETE /v1/api-keys/{id}` with `key`.
    pub async fn revoke(&self, key: &str, id: &str) -> Resp {
        let path = format!("/v1/api-keys/{}", enc(id));
        self.call(Some(key), "DELETE", &path, None).await
    }

    /// `POST /v1/api-keys/{id}/rotate` with `key` and an optional body.
    pub async fn rotate(&self, key: &str, id: &str, body: Option<Value>) -> Resp {
        let path = format!("/v1/api-keys/{}/rotate", enc(id));
        self.call(Some(key), "POST", &path, body).await
    }

    /// Creates a key with `key` through `POST /v1/api-keys`: `(apiKey, keySecret)`.
    pub async fn create_key(&self, key: &str, body: Value) -> (Value, String) {
        let r = self
            .call(Some(key), "POST", "/v1/api-keys", Some(body))
            .await;
        let b = r.ok(201);
        (
            b["apiKey"].clone(),
            b["credentials"]["keySecret"].as_str().unwrap().to_owned(),
        )
    }

    /// A key `name` of `kind` in the test environment.
    pub async fn test_key(&self, key: &str, name: &str, kind: &str) -> (Value, String) {
        self.create_key(key, key_body(name, kind, Some("test")))
            .await
    }

    /// A live secret key named `name`.
    pub async fn secret_key(&self, key: &str, name: &str) -> (Value, String) {
        self.create_key(
            key,
            json!({"name": name, "type": "secret", "environment": "live"}),
        )
        .await
    }

    /// A live restricted key with `perms`.
    pub async fn restricted_key(&self, key: &str, perms: &[&str]) -> (Value, String) {
        self.create_key(
            key,
            json!({"name": "restricted", "type": "restricted", "environment": "live",
                   "permissions": perms}),
        )
        .await
    }

    /// The id of the key `secret` among the tenant's keys (found by its display prefix).
    pub async fn key_id_of(&self, sk: &str, secret: &str) -> String {
        let r = self.call(Some(sk), "GET", "/v1/api-keys", None).await;
        let keys = r.ok(200)["apiKeys"].as_array().unwrap().clone();
        let found: Vec<&Value> = keys
            .iter()
            .filter(|k| k["displayPrefix"] == secret[..12])
            .collect();
        assert_eq!(found.len(), 1, "one key with the prefix of the secret");
        found[0]["id"].as_str().unwrap().to_owned()
    }

    /// The answer of `GET /v1/tenant` with `key`.
    pub async fn use_key(&self, key: &str) -> Resp {
        self.call(Some(key), "GET", "/v1/tenant", None).await
    }

    /// Whether `key` authenticates on `GET /v1/tenant` (200, or 401; anything else fails).
    pub async fn works(&self, key: &str) -> bool {
        let r = self.use_key(key).await;
        match r.status {
            200 => true,
            401 => false,
            other => panic!("unexpected {other}: {}", r.text),
        }
    }

    /// Every audit record, read in pages of `page`.
    pub async fn audit(&self, key: &str, page: u32) -> Vec<Value> {
        let mut out = Vec::new();
        let mut after = 0i64;
        for _ in 0..10_000 {
            let path = format!("/v1/audit-log?after={after}&limit={page}");
            let r = self.call(Some(key), "GET", &path, None).await;
            let b = r.ok(200);
            let records = b["records"].as_array().unwrap();
            assert!(records.len() <= page as usize);
            if records.is_empty() {
                assert!(b["nextAfter"].is_null(), "no records, no nextAfter: {b}");
                return out;
            }
            let last = records.last().unwrap()["seq"].as_i64().unwrap();
            assert_eq!(b["nextAfter"], last, "nextAfter is the last seq");
            out.extend(records.iter().cloned());
            after = last;
        }
        panic!("the audit log does not end");
    }
}

/// Seqs are 1, 2, 3, ... with no gap.
#[track_caller]
pub fn assert_gapless(records: &[Value]) {
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r["seq"], i as i64 + 1, "seq without gaps: {records:?}");
    }
}

/// The `action` of each audit record.
pub fn actions(records: &[Value]) -> Vec<&str> {
    records
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect()
}

/// The key that may call a route of `template`: the platform admin key on `/admin/*`, the
/// tenant's key `tenant_key` on `/v1/*`, none elsewhere.
pub fn route_key<'a>(template: &str, tenant_key: &'a str) -> Option<&'a str> {
    if template.starts_with("/admin/") {
        Some(ADMIN_KEY)
    } else if template.starts_with("/v1/") {
        Some(tenant_key)
    } else {
        None
    }
}

/// For each record `keep` selects, the values of the three fields `names` (all strings).
pub fn record_fields<'a>(
    records: &'a [Value],
    keep: impl Fn(&Value) -> bool,
    names: [&str; 3],
) -> Vec<(&'a str, &'a str, &'a str)> {
    let text = |r: &'a Value, name: &str| r[name].as_str().unwrap();
    records
        .iter()
        .filter(|r| keep(r))
        .map(|r| (text(r, names[0]), text(r, names[1]), text(r, names[2])))
        .collect()
}

/// The body of `POST /v1/api-keys` for a key `name` of `kind`, in `environment` if given.
pub fn key_body(name: &str, kind: &str, environment: Option<&str>) -> Value {
    let mut body = json!({"name": name, "type": kind});
    if let Some(env) = environment {
        body["environment"] = json!(env);
    }
    body
}

/// The body of `POST /v1/api-keys` for a restricted key `name` with `permissions`.
pub fn restricted_body(name: &str, permissions: Value) -> Value {
    json!({"name": name, "type": "restricted", "permissions": permissions})
}
