//! The tenants, keys and graphs the tests make, through the API.

use serde_json::{json, Value};

use super::{Answer, Stack, ADMIN_KEY};

/// A tenant the platform admin created: its id as the API spells it, its secret key, and the
/// whole creation answer.
#[derive(Debug)]
pub struct Tenant {
    pub id: String,
    pub sk: String,
    pub created: Value,
}

impl Tenant {
    /// The id as it stands in a path (`:` escaped).
    pub fn url_id(&self) -> String {
        self.id.replace(':', "%3A")
    }

    pub fn public_key(&self) -> String {
        self.created["credentials"]["publicKey"]
            .as_str()
            .expect("public key")
            .to_owned()
    }
}

impl Stack {
    /// A started stack with one tenant per slug, made in order ([`Stack::create_tenant`]).
    pub async fn with_tenants<const N: usize>(slugs: [&str; N]) -> (Stack, [Tenant; N]) {
        let stack = Stack::start().await;
        let mut tenants = Vec::with_capacity(N);
        for slug in slugs {
            tenants.push(stack.create_tenant(slug).await);
        }
        let tenants = tenants.try_into().expect("one tenant per slug");
        (stack, tenants)
    }

    /// `POST /admin/tenants` with `{"slug": slug, "name": slug}`, answered 201.
    pub async fn create_tenant(&self, slug: &str) -> Tenant {
        self.create_tenant_from(json!({"slug": slug, "name": slug}))
            .await
    }

    /// `POST /admin/tenants` with `body`, answered 201.
    pub async fn create_tenant_from(&self, body: Value) -> Tenant {
        let created = self
            .post(ADMIN_KEY, "/admin/tenants", body)
            .await
            .expect(201);
        Tenant {
            id: created.body["tenant"]["id"]
                .as_str()
                .expect("id")
                .to_owned(),
            sk: created.body["credentials"]["secretKey"]
                .as_str()
                .expect("secret key")
                .to_owned(),
            created: created.body,
        }
    }

    /// A secret key the tenant makes with its own key (`POST /v1/api-keys`): its id and secret.
    pub async fn create_secret_key(&self, key: &str, name: &str) -> (String, String) {
        let made = self
            .post(key, "/v1/api-keys", json!({"name": name, "type": "secret"}))
            .await
            .expect(201);
        let id = made.body["apiKey"]["id"]
            .as_str()
            .expect("key id")
            .to_owned();
        let secret = made.body["credentials"]["keySecret"]
            .as_str()
            .expect("key secret")
            .to_owned();
        (id, secret)
    }

    /// Puts `csv` as the tenant's graph and reloads it, both checked to answer 200: the
    /// reload's answer.
    pub async fn upload_and_reload(&self, sk: &str, csv: impl Into<reqwest::Body>) -> Answer {
        let r = self
            .client
            .put(self.url("/v1/graph/csv"))
            .bearer_auth(sk)
            .header("content-type", "text/csv")
            .body(csv)
            .send()
            .await
            .expect("upload");
        let status = r.status();
        assert_eq!(
            status,
            200,
            "PUT /v1/graph/csv: expected 200, got {status}: {}",
            r.text().await.unwrap_or_default()
        );
        self.reload(sk).await.expect(200)
    }

    /// `POST /v1/graph/reload` with `{}`.
    pub async fn reload(&self, sk: &str) -> Answer {
        self.post(sk, "/v1/graph/reload", json!({})).await
    }

    /// `POST /v1/graph/check` of `subject relation object`.
    pub async fn check(&self, sk: &str, subject: &str, relation: &str, object: &str) -> Answer {
        let body = json!({"subject": subject, "relation": relation, "object": object});
        self.post(sk, "/v1/graph/check", body).await
    }

    /// `GET /admin/tenants/{id}/metrics?days=1`, answered 200.
    pub async fn metrics_of_the_day(&self, tenant: &Tenant) -> Answer {
        let path = format!("/admin/tenants/{}/metrics?days=1", tenant.url_id());
        self.get(ADMIN_KEY, &path).await.expect(200)
    }
}
