//! The Worker in `workerd`, where the conformance suite cannot look: everything survives a
//! restart of workerd on the same data dir — tenants, keys, revocations, the audit log of the
//! tenant's object (its prefixed tables in `AuthPlatform`), the graph in the tenant's own
//! `GraphStateCSV` Durable Object, and the CSV in R2 through `binding-services`.
//!
//! Needs the artifact (`scripts/build-worker`) and the npm tools
//! (`scripts/install-worker-tools`); `scripts/test` runs both before the tests. A missing one
//! fails the test with the command to run, never skips it.
#![cfg(not(target_arch = "wasm32"))]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

const ADMIN_KEY: &str = "sk_test_0123456789abcdefghijABCDEFGHIJ0123456789";
const JWT_SECRET: &str = "a-jwt-secret-for-the-workerd-restart-test-0123456789";
const PEPPER: &str = "a-key-pepper-for-the-workerd-restart-test-0123456789";

/// workerd serving the Worker; stopped with SIGTERM, then SIGKILL, however the test ends.
struct Workerd {
    child: Child,
    base: String,
}

impl Workerd {
    fn start(data: &Path, bindings: &str) -> Workerd {
        let root = repo_root();
        let artifact = root.join("reference/worker/build/index_bg.wasm");
        assert!(
            artifact.exists(),
            "no Worker artifact at {}: run scripts/build-worker",
            artifact.display()
        );
        let bin = root.join("node_modules/.bin/workerd");
        assert!(
            bin.exists(),
            "no workerd at {}: run scripts/install-worker-tools",
            bin.display()
        );
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            l.local_addr().expect("its address").port()
        };
        let link = data.join("worker");
        if !link.exists() {
            std::os::unix::fs::symlink(root.join("reference/worker/build"), &link)
                .expect("link the artifact");
        }
        let config = Command::new("python3")
            .arg(root.join("scripts/workerd-config.py"))
            .args(["--port", &port.to_string(), "--bindings", bindings])
            .arg("--data")
            .arg(data)
            .env("PLATFORM_ADMIN_KEY", ADMIN_KEY)
            .env("JWT_SECRET", JWT_SECRET)
            .env("KEY_PEPPER", PEPPER)
            .env("BASE_DOMAIN", "auth.test")
            .env("TEST_HOOKS", "1")
            .output()
            .expect("python3 runs scripts/workerd-config.py");
        assert!(
            config.status.success(),
            "{}",
            String::from_utf8_lossy(&config.stderr)
        );
        std::fs::write(data.join("workerd.capnp"), &config.stdout).expect("write the config");
        std::fs::create_dir_all(data.join("do")).expect("object dir");
        let child = Command::new(bin)
            .arg("serve")
            .arg(data.join("workerd.capnp"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("workerd starts");
        Workerd {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    async fn ready(&self, client: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = client.get(format!("{}/health", self.base)).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "workerd did not answer /health");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Workerd {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Answer {
    status: u16,
    body: Value,
}

async fn call(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Answer {
    let mut rb = client
        .request(method.parse().expect("method"), format!("{base}{path}"))
        .bearer_auth(key);
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await.expect("the Worker answers");
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    Answer {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
    }
}

const CSV: &str = "subject_type,subject_id,relation,object_type,object_id\n\
                   user,alice,viewer,doc,readme\n\
                   user,bob,editor,doc,plan\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_a_restart_of_workerd() {
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
    let client = reqwest::Client::new();
    let mut workerd = Workerd::start(data.path(), &bindings);
    workerd.ready(&client).await;
    let base = workerd.base.clone();

    let created = call(
        &client,
        &base,
        ADMIN_KEY,
        "POST",
        "/admin/tenants",
        Some(json!({"slug": "acme", "name": "Acme",
                    "rateLimit": {"requests": 1_000_000, "windowSeconds": 60}})),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let tenant_id = created.body["tenant"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let sk = created.body["credentials"]["secretKey"]
        .as_str()
        .expect("secret key")
        .to_owned();
    let gone = call(
        &client,
        &base,
        &sk,
        "POST",
        "/v1/api-keys",
        Some(json!({"name": "gone", "type": "secret"})),
    )
    .await;
    assert_eq!(gone.status, 201, "{}", gone.body);
    let gone_secret = gone.body["credentials"]["keySecret"]
        .as_str()
        .expect("key secret")
        .to_owned();
    let gone_id = gone.body["apiKey"]["id"]
        .as_str()
        .expect("key id")
        .replace(':', "%3A");
    let revoked = call(
        &client,
        &base,
        &sk,
        "DELETE",
        &format!("/v1/api-keys/{gone_id}"),
        None,
    )
    .await;
    assert_eq!(revoked.status, 200, "{}", revoked.body);

    let r = client
        .put(format!("{base}/v1/graph/csv"))
        .bearer_auth(&sk)
        .header("content-type", "text/csv")
        .body(CSV)
        .send()
        .await
        .expect("upload");
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    let reloaded = call(
        &client,
        &base,
        &sk,
        "POST",
        "/v1/graph/reload",
        Some(json!({})),
    )
    .await;
    assert_eq!(reloaded.status, 200, "{}", reloaded.body);
    let version = reloaded.body["version"].as_i64().expect("version");
    let check = json!({"subject": "user:alice", "relation": "viewer", "object": "doc:readme"});
    let allowed = call(
        &client,
        &base,
        &sk,
        "POST",
        "/v1/graph/check",
        Some(check.clone()),
    )
    .await;
    assert_eq!(allowed.body["allowed"], true, "{}", allowed.body);

    let tenant_before = call(
        &client,
        &base,
        ADMIN_KEY,
        "GET",
        &format!("/admin/tenants/{}", tenant_id.replace(':', "%3A")),
        None,
    )
    .await;
    assert_eq!(tenant_before.status, 200);
    let audit_before = call(&client, &base, &sk, "GET", "/v1/audit-log", None).await;
    assert_eq!(audit_before.status, 200, "{}", audit_before.body);
    let records_before = audit_before.body["records"]
        .as_array()
        .expect("records")
        .clone();
    let actions: Vec<&str> = records_before
        .iter()
        .filter_map(|r| r["action"].as_str())
        .collect();
    assert!(
        actions.contains(&"graph.reloaded") && actions.len() >= 4,
        "key creation, revocation, upload and reload are audited: {actions:?}"
    );

    // Restart on the same data dir, on another port.
    workerd.stop();
    let workerd = Workerd::start(data.path(), &bindings);
    workerd.ready(&client).await;
    let base = workerd.base.clone();

    let tenant_after = call(
        &client,
        &base,
        ADMIN_KEY,
        "GET",
        &format!("/admin/tenants/{}", tenant_id.replace(':', "%3A")),
        None,
    )
    .await;
    assert_eq!(
        tenant_after.body, tenant_before.body,
        "the tenant record is unchanged"
    );
    assert_eq!(
        call(&client, &base, &sk, "GET", "/v1/tenant", None)
            .await
            .status,
        200,
        "keys still authenticate"
    );
    assert_eq!(
        call(&client, &base, &gone_secret, "GET", "/v1/tenant", None)
            .await
            .status,
        401,
        "the revocation persisted"
    );
    let state = call(&client, &base, &sk, "GET", "/v1/graph/state", None).await;
    assert_eq!(
        state.body["version"].as_i64(),
        Some(version),
        "{}",
        state.body
    );
    let allowed = call(&client, &base, &sk, "POST", "/v1/graph/check", Some(check)).await;
    assert_eq!(
        allowed.body["allowed"], true,
        "the graph was rebuilt from the object's storage"
    );
    let denied = call(
        &client,
        &base,
        &sk,
        "POST",
        "/v1/graph/check",
        Some(json!({"subject": "user:alice", "relation": "editor", "object": "doc:plan"})),
    )
    .await;
    assert_eq!(denied.body["allowed"], false, "{}", denied.body);
    let again = call(
        &client,
        &base,
        &sk,
        "POST",
        "/v1/graph/reload",
        Some(json!({})),
    )
    .await;
    assert_eq!(again.status, 200, "the CSV is still in R2: {}", again.body);
    assert_eq!(again.body["version"].as_i64(), Some(version + 1));
    let audit_after = call(&client, &base, &sk, "GET", "/v1/audit-log", None).await;
    let records_after = audit_after.body["records"].as_array().expect("records");
    assert_eq!(
        &records_after[..records_before.len()],
        &records_before[..],
        "the audit log kept every record, in order"
    );

    drop(workerd);
    let _ = stop_tx.send(());
    let _ = server.await;
}
