//! The data a benchmark needs, made through the target's admin API: tenants whose limit never
//! refuses (one secret key each), a tenant whose limit is used up, a permission graph.

use anyhow::{bail, Context as _};
use futures::{StreamExt as _, TryStreamExt as _};
use serde_json::{json, Value};

/// Setup requests in flight at once: the setup is not measured, it only has to be quick.
const SETUP_CONCURRENCY: usize = 16;

/// The admin API of a target, with the platform admin key.
#[derive(Clone)]
pub struct Admin {
    pub http: reqwest::Client,
    pub base: String,
    key: String,
}

/// A tenant made for the benchmark: its id and one secret key.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: String,
    pub secret_key: String,
}

impl Admin {
    pub fn new(base: &str, key: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: base.trim_end_matches('/').to_owned(),
            key: key.to_owned(),
        }
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(&self.key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await?;
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{method} {path}: expected a 2xx answer, got {status}");
        }
        Ok(v)
    }

    /// Creates a tenant with `rate_limit` (`None`: the plan's) and answers it.
    pub async fn tenant(&self, slug: &str, rate_limit: Option<Value>) -> anyhow::Result<Tenant> {
        let mut body = json!({"slug": slug, "name": "bench", "plan": "enterprise"});
        if let Some(limit) = rate_limit {
            body["rateLimit"] = limit;
        }
        let v = self
            .call(reqwest::Method::POST, "/admin/tenants", Some(body))
            .await?;
        Ok(Tenant {
            id: v["tenant"]["id"]
                .as_str()
                .context("POST /admin/tenants: no tenant.id in the answer")?
                .to_owned(),
            secret_key: v["credentials"]["secretKey"]
                .as_str()
                .context("POST /admin/tenants: no credentials.secretKey in the answer")?
                .to_owned(),
        })
    }

    /// `n` tenants whose limit never refuses (a million requests a second), made
    /// [`SETUP_CONCURRENCY`] at a time.
    pub async fn roomy_tenants(&self, run: &str, n: usize) -> anyhow::Result<Vec<Tenant>> {
        futures::stream::iter(0..n)
            .map(|i| async move {
                self.tenant(
                    &format!("authconf-{run}-b{i}"),
                    Some(json!({"requests": 1_000_000, "windowSeconds": 1})),
                )
                .await
            })
            .buffered(SETUP_CONCURRENCY)
            .try_collect()
            .await
    }

    /// A tenant whose one request a day is used up: every later request is a 429.
    pub async fn limited_tenant(&self, run: &str) -> anyhow::Result<Tenant> {
        let t = self
            .tenant(
                &format!("authconf-{run}-limited"),
                Some(json!({"requests": 1, "windowSeconds": 86400})),
            )
            .await?;
        self.http
            .get(format!("{}/v1/rate-limit", self.base))
            .bearer_auth(&t.secret_key)
            .send()
            .await?;
        Ok(t)
    }

    /// Loads a 2,000-edge graph (50 groups) into `tenant` for the graph check probe.
    pub async fn graph(&self, tenant: &Tenant) -> anyhow::Result<()> {
        let mut csv = String::from("subject_type,subject_id,relation,object_type,object_id\n");
        for i in 0..1000 {
            let g = i % 50;
            csv.push_str(&format!(
                "user,u{i},member,group,g{g}\ngroup,g{g},read,doc,d{g}\n"
            ));
        }
        self.http
            .put(format!("{}/v1/graph/csv", self.base))
            .bearer_auth(&tenant.secret_key)
            .header("content-type", "text/csv")
            .body(csv)
            .send()
            .await?
            .error_for_status()?;
        self.http
            .post(format!("{}/v1/graph/reload", self.base))
            .bearer_auth(&tenant.secret_key)
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    /// Deletes the tenants (best effort: a leftover is found by `authconf cleanup`).
    pub async fn delete(&self, tenants: &[Tenant]) {
        futures::stream::iter(tenants)
            .for_each_concurrent(SETUP_CONCURRENCY, |t| async move {
                let path = format!("/admin/tenants/{}", t.id.replace(':', "%3A"));
                let _ = self.call(reqwest::Method::DELETE, &path, None).await;
            })
            .await;
    }
}

/// A random id for this run's tenant slugs (`authconf-<run>-...`, which `authconf cleanup`
/// recognises).
pub fn run_id() -> String {
    use rand::Rng as _;
    rand::thread_rng()
        .sample_iter(rand::distributions::Alphanumeric)
        .take(10)
        .map(|b| char::from(b).to_ascii_lowercase())
        .collect()
}

/// A fresh platform admin key for a reference started here.
pub fn admin_key() -> String {
    use rand::Rng as _;
    let r: String = rand::thread_rng()
        .sample_iter(rand::distributions::Alphanumeric)
        .take(40)
        .map(char::from)
        .collect();
    format!("sk_live_{r}")
}
