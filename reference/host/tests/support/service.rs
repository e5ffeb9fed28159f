//! Starting the service: its settings ([`Setup`]) and a running instance with its data dir
//! ([`Service`]), which sends the tests' requests.

use std::path::Path;
use std::time::Duration;

use auth_service::{Config, Extras, Limits, RunningService};
use reqwest::{Client, Method, RequestBuilder};
use serde_json::Value;
use tempfile::TempDir;

use super::http::{send_checked, Resp};

/// The platform admin key of every test service: `sk_live_` plus 40 alphanumeric characters.
pub const ADMIN_KEY: &str = "sk_live_HostIntegrationTests0123456789abcdefABCD";
pub const BASE_DOMAIN: &str = "auth.test";

/// How a test service is started. The default: [`ADMIN_KEY`], base domain [`BASE_DOMAIN`], no
/// test controls, a fresh random JWT secret, no mail API, the default limits.
#[derive(Clone)]
pub struct Setup {
    /// `None`: the service generates one (and writes it to the data dir).
    pub admin_key: Option<String>,
    pub base_domain: Option<String>,
    /// `--test-hooks`: the clock, eviction and alarm controls under `/_test`.
    pub test_hooks: bool,
    /// JWT secrets and mail API; `None`: a random secret and no mail API.
    pub extras: Option<Extras>,
    /// `None`: the default limits (only with `extras`).
    pub limits: Option<Limits>,
    /// A 503 `service_busy` is an accepted answer (the load tests); a 500 never is.
    pub busy_ok: bool,
    /// How long one request may take before the test fails.
    pub timeout: Duration,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            admin_key: Some(ADMIN_KEY.into()),
            base_domain: Some(BASE_DOMAIN.into()),
            test_hooks: false,
            extras: None,
            limits: None,
            busy_ok: false,
            timeout: Duration::from_secs(15),
        }
    }
}

impl Setup {
    /// The default setup with the test controls on.
    pub fn hooks() -> Self {
        Self {
            test_hooks: true,
            ..Self::default()
        }
    }

    /// The default setup with `extras` (JWT secrets, mail), the test controls as given and no
    /// base domain.
    pub fn local(extras: Extras, test_hooks: bool) -> Self {
        Self {
            base_domain: None,
            test_hooks,
            extras: Some(extras),
            ..Self::default()
        }
    }

    pub fn config(&self, dir: &Path) -> Config {
        Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.to_path_buf(),
            base_domain: self.base_domain.clone(),
            admin_key: self.admin_key.clone(),
            test_hooks: self.test_hooks,
        }
    }

    /// Starts a service on `dir`, or says why it did not start.
    pub async fn try_spawn(&self, dir: &Path) -> anyhow::Result<RunningService> {
        let config = self.config(dir);
        match (&self.extras, &self.limits) {
            (None, None) => auth_service::spawn(config).await,
            (Some(extras), limits) => {
                let limits = limits.clone().unwrap_or_default();
                auth_service::spawn_limited(config, extras.clone(), limits).await
            }
            (None, Some(_)) => panic!("limits go with extras"),
        }
    }

    pub async fn spawn(&self, dir: &Path) -> RunningService {
        self.try_spawn(dir).await.expect("service starts")
    }

    /// A service on a new data dir.
    pub async fn start(self) -> Service {
        let dir = tempfile::tempdir().unwrap();
        let running = self.spawn(dir.path()).await;
        Service {
            base: running.base_url(),
            client: client_with(self.timeout),
            running: Some(running),
            setup: self,
            dir,
        }
    }
}

/// The HTTP client of the tests: no proxy, a bounded time per request.
pub fn client() -> Client {
    client_with(Setup::default().timeout)
}

fn client_with(timeout: Duration) -> Client {
    Client::builder()
        .no_proxy()
        .timeout(timeout)
        .build()
        .unwrap()
}

/// A running service plus its data dir. Dropping it stops the service with the test's runtime.
pub struct Service {
    running: Option<RunningService>,
    /// What [`Service::restart`] starts again.
    pub setup: Setup,
    pub dir: TempDir,
    pub client: Client,
    pub base: String,
}

impl Service {
    /// The default service (see [`Setup`]).
    pub async fn start() -> Self {
        Setup::default().start().await
    }

    /// The default service with the test controls on.
    pub async fn with_hooks() -> Self {
        Setup::hooks().start().await
    }

    pub fn running(&self) -> &RunningService {
        self.running.as_ref().expect("the service runs")
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        self.base.trim_start_matches("http://").to_owned()
    }

    /// Shuts the service down (waiting for requests in flight) and starts a new one on the
    /// same data dir with `self.setup`.
    pub async fn restart(&mut self) {
        if let Some(s) = self.running.take() {
            tokio::time::timeout(Duration::from_secs(10), s.shutdown())
                .await
                .expect("shutdown finishes");
        }
        let running = self.setup.spawn(self.dir.path()).await;
        self.base = running.base_url();
        self.client = client_with(self.setup.timeout);
        self.running = Some(running);
    }

    /// The service's database, read-only.
    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open_with_flags(
            self.dir.path().join("auth.sqlite3"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap()
    }

    /// A request to this service's `path`, nothing set yet.
    pub fn req(&self, method: &str, path: &str) -> RequestBuilder {
        self.client.request(
            Method::from_bytes(method.as_bytes()).unwrap(),
            format!("{}{}", self.base, path),
        )
    }

    /// Sends and checks what every answer must satisfy (see [`send_checked`]).
    pub async fn send(&self, rb: RequestBuilder) -> Resp {
        send_checked(rb, self.setup.busy_ok).await
    }

    /// A request with an optional bearer key and an optional JSON body.
    pub async fn call(
        &self,
        key: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Resp {
        self.call_with(method, path, key, &[], body).await
    }

    /// A request with an optional bearer key, extra headers and an optional JSON body.
    pub async fn call_with(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Resp {
        let mut rb = self.req(method, path);
        if let Some(k) = bearer {
            rb = rb.bearer_auth(k);
        }
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        self.send(rb).await
    }

    /// The status of a request with an optional bearer key and an optional JSON body.
    pub async fn status(
        &self,
        key: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> u16 {
        self.call(key, method, path, body).await.status
    }

    /// A request with the platform admin key.
    pub async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> Resp {
        let key = self
            .setup
            .admin_key
            .clone()
            .expect("a configured admin key");
        self.call(Some(&key), method, path, body).await
    }
}
