//! binding-services and workerd on a fresh data dir: start, restart, stop.

use std::path::Path;

use super::workerd::Workerd;

/// binding-services and workerd on a fresh data dir, answering `/health`; [`Stack::stop`]
/// stops both.
pub struct Stack {
    data: tempfile::TempDir,
    bindings: String,
    workerd: Workerd,
    /// Settings given in place of the test defaults, kept for a restart.
    overrides: Vec<(&'static str, &'static str)>,
    pub client: reqwest::Client,
    stop_tx: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Stack {
    pub async fn start() -> Stack {
        Stack::start_with(&[]).await
    }

    /// The stack with each of `overrides` (setting, value) in place of the test default.
    pub async fn start_with(overrides: &[(&'static str, &'static str)]) -> Stack {
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
        let workerd = Workerd::start(data.path(), &bindings, overrides);
        let client = reqwest::Client::new();
        let health = workerd.ready(&client).await;
        assert!(
            health == 200 || !overrides.is_empty(),
            "/health answered {health}"
        );
        Stack {
            data,
            bindings,
            workerd,
            overrides: overrides.to_vec(),
            client,
            stop_tx,
            server,
        }
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
        self.workerd = Workerd::start(self.data.path(), &self.bindings, &self.overrides);
        let health = self.workerd.ready(&self.client).await;
        assert!(
            health == 200 || !self.overrides.is_empty(),
            "/health answered {health}"
        );
    }

    pub async fn stop(self) {
        drop(self.workerd);
        let _ = self.stop_tx.send(());
        let _ = self.server.await;
    }
}
