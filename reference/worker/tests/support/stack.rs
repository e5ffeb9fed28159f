//! binding-services and workerd on a fresh data dir, and the tenants, keys and graphs the
//! tests make on them.

use std::path::Path;

use serde_json::{json, Value};

use super::workerd::Workerd;
use super::{Answer, ADMIN_KEY};

/// binding-services and workerd on a fresh data dir, answering `/health`; [`Stack::stop`]
/// stops both.
pub struct Stack {
    data: tempfile::TempDir,
    bindings: String,
    workerd: Workerd,
    pub client: reqwest::Client,
    stop_tx: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

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
    pub async fn start() -> Stack {
        let data = tempfile::tempdir().expect("data dir");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let bindings = listener.local_addr().expect("addr").to_string();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(binding_services::serve(
            listener,
            data.path().join("bindings"),
            async move {
                let _ = stop_rx.await;
            },
        ));
        let workerd = Workerd::start(data.path(), &bindings);
        let client = reqwest::Client::new();
        workerd.ready(&client).await;
        Stack {
            data,
            bindings,
            workerd,
            client,
            stop_tx,
            server,
        }
    }

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

    /// `path` on the running workerd (a restart changes its port).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.workerd.base)
    }

    /// `127.0.0.1:<port>`, for raw TCP.
    pub fn addr(&self) -> String {
        self.workerd.base.trim_start_matches("http://").to_owned()
    }

    /// The data dir (binding-services' stores are under `bindings/`).
    pub fn data(&self) -> &Path {
        self.data.path()
    }

    /// Stops workerd and starts it again on the same data dir (on another port).
    pub async fn restart_workerd(&mut self) {
        self.workerd.stop();
        self.workerd = Workerd::start(self.data.path(), &self.bindings);
        self.workerd.ready(&self.client).await;
    }

    pub async fn stop(self) {
        drop(self.workerd);
        let _ = self.stop_tx.send(());
        let _ = self.server.await;
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
