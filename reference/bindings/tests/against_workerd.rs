//! The backends against the real `workerd` (the pinned npm binary), no mocks: a JavaScript probe
//! Worker (`tests/fixtures/probe.js`) calls the KV, D1 and R2 binding APIs, and the assertions
//! check what came back through workerd's own binding clients.

use std::fs::File;
use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

fn workerd_binary() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let bin = root.join("node_modules/.bin/workerd");
    assert!(
        bin.exists(),
        "workerd is not installed at {}: run scripts/install-worker-tools from the repository root",
        bin.display()
    );
    bin
}

/// Stops workerd however the test ends: SIGTERM, up to 3 s to drain, then SIGKILL. On a failure
/// it also prints workerd's log, which is usually where the reason is.
struct Workerd {
    child: Child,
    log: PathBuf,
}

impl Drop for Workerd {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("---- workerd log ----\n{log}\n---- end of workerd log ----");
        }
    }
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn config(backend_port: u16) -> String {
    format!(
        r#"using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [
    (name = "main", worker = .probe),
{services}  ],
  sockets = [ (name = "http", address = "127.0.0.1:0", http = (), service = "main") ],
);
const probe :Workerd.Worker = (
  modules = [ (name = "probe.js", esModule = embed "probe.js") ],
  compatibilityDate = "2025-09-01",
  bindings = [
{bindings}  ],
);
"#,
        services = binding_services::capnp_services(backend_port),
        bindings = binding_services::capnp_bindings(),
    )
}

struct Probe {
    http: reqwest::Client,
    base: String,
}

impl Probe {
    /// Calls one op; `Ok(value)` on success, `Err(message)` when the binding threw.
    async fn try_call(&self, op: &str, args: Value) -> Result<Value, String> {
        let resp = self
            .http
            .post(format!("{}{op}", self.base))
            .json(&args)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{op}: {e}"));
        let status = resp.status();
        let body: Value = resp
            .json()
            .await
            .unwrap_or_else(|e| panic!("{op}: body is not JSON: {e}"));
        match (body.get("ok"), body.get("error")) {
            (Some(v), _) if status.is_success() => Ok(v.clone()),
            (_, Some(Value::String(e))) => Err(e.clone()),
            _ => panic!("{op}: unexpected answer {status} {body}"),
        }
    }

    async fn call(&self, op: &str, args: Value) -> Value {
        match self.try_call(op, args.clone()).await {
            Ok(v) => v,
            Err(e) => panic!("{op} {args} failed: {e}"),
        }
    }
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bindings_work_through_workerd() {
    let bin = workerd_binary();
    let tmp = tempfile::tempdir().expect("tempdir");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind backend");
    let backend_port = listener.local_addr().expect("addr").port();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(binding_services::serve(
        listener,
        tmp.path().join("data"),
        async {
            let _ = stop_rx.await;
        },
    ));

    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/probe.js"),
        tmp.path().join("probe.js"),
    )
    .expect("copy probe.js");
    let config_path = tmp.path().join("probe.capnp");
    std::fs::write(&config_path, config(backend_port)).expect("write config");

    let port = free_port();
    let log = tmp.path().join("workerd.log");
    let log_file = File::create(&log).expect("log file");
    let child = Command::new(&bin)
        .arg("serve")
        .arg(&config_path)
        .arg("--socket-addr")
        .arg(format!("http=127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("log file"))
        .stderr(log_file)
        .spawn()
        .expect("start workerd");
    let mut workerd = Workerd { child, log };

    let probe = Probe {
        http: reqwest::Client::new(),
        base: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(status)) = workerd.child.try_wait() {
            panic!("workerd exited early with {status}");
        }
        if let Ok(r) = probe
            .http
            .get(format!("{}/health", probe.base))
            .send()
            .await
        {
            if r.status().is_success() {
                break;
            }
        }
        assert!(Instant::now() < deadline, "workerd not ready after 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Started first so that it has expired by the end without a dedicated sleep.
    let expires_at = now_s() + 2;
    let expiring = json!({"ns": "SESSION_CACHE", "key": "short-lived", "value": "soon gone"});
    let mut put = expiring.clone();
    put["expiration"] = json!(expires_at);
    probe.call("/kv/put", put).await;

    kv(&probe, expires_at).await;
    d1(&probe).await;
    r2(&probe).await;

    // Expiry: still there before, gone (get and list) after.
    let wait = (expires_at * 1000 + 100).saturating_sub(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
    );
    tokio::time::sleep(Duration::from_millis(wait)).await;
    let got = probe.call("/kv/get", expiring.clone()).await;
    assert_eq!(got["value"], Value::Null, "expired value must read as null");
    let listed = probe
        .call(
            "/kv/list",
            json!({"ns": "SESSION_CACHE", "prefix": "short"}),
        )
        .await;
    assert_eq!(listed["keys"], json!([]), "expired keys are not listed");

    // A request that skips the header convention is refused, not guessed.
    let resp = reqwest::get(format!("http://127.0.0.1:{backend_port}/some-key"))
        .await
        .expect("direct request");
    assert_eq!(resp.status(), 400);

    drop(workerd);
    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("server stops within 5 s")
        .expect("server task")
        .expect("server result");
}

async fn kv(probe: &Probe, expires_at: u64) {
    // The expiring key was written just before; it reads back and lists with its expiration.
    let got = probe
        .call(
            "/kv/get",
            json!({"ns": "SESSION_CACHE", "key": "short-lived"}),
        )
        .await;
    assert_eq!(got["value"], "soon gone");
    let listed = probe
        .call(
            "/kv/list",
            json!({"ns": "SESSION_CACHE", "prefix": "short"}),
        )
        .await;
    assert_eq!(listed["keys"][0]["name"], "short-lived");
    assert_eq!(listed["keys"][0]["expiration"], json!(expires_at));

    // Keys with characters that need encoding survive the single percent-decoding.
    let odd = "a/b c%20d?e#f+g&é";
    probe
        .call(
            "/kv/put",
            json!({"ns": "TOKEN_BLACKLIST", "key": odd, "value": "v1", "metadata": {"reason": "logout", "n": 3}}),
        )
        .await;
    let got = probe
        .call("/kv/get", json!({"ns": "TOKEN_BLACKLIST", "key": odd}))
        .await;
    assert_eq!(got["value"], "v1");
    assert_eq!(got["metadata"], json!({"reason": "logout", "n": 3}));
    let got = probe
        .call(
            "/kv/get",
            json!({"ns": "TOKEN_BLACKLIST", "key": "a/b c d?e#f+g&é"}),
        )
        .await;
    assert_eq!(got["value"], Value::Null, "decoded exactly once");

    // Overwrite drops the old metadata; JSON values parse on the Worker side.
    probe
        .call(
            "/kv/put",
            json!({"ns": "TOKEN_BLACKLIST", "key": odd, "value": "{\"x\":[1,2]}"}),
        )
        .await;
    let got = probe
        .call("/kv/get", json!({"ns": "TOKEN_BLACKLIST", "key": odd}))
        .await;
    assert_eq!(got["metadata"], Value::Null);
    let parsed = probe
        .call("/kv/get-json", json!({"ns": "TOKEN_BLACKLIST", "key": odd}))
        .await;
    assert_eq!(parsed, json!({"x": [1, 2]}));

    // Namespaces are isolated: the same key in another namespace is absent, then distinct.
    let got = probe
        .call("/kv/get", json!({"ns": "MUTATION_LOG", "key": odd}))
        .await;
    assert_eq!(got["value"], Value::Null);
    probe
        .call(
            "/kv/put",
            json!({"ns": "MUTATION_LOG", "key": odd, "value": "other"}),
        )
        .await;
    let got = probe
        .call("/kv/get", json!({"ns": "TOKEN_BLACKLIST", "key": odd}))
        .await;
    assert_eq!(got["value"], "{\"x\":[1,2]}");

    // expirationTtl is accepted and reported in list as an absolute time.
    probe
        .call(
            "/kv/put",
            json!({"ns": "MUTATION_LOG", "key": "ttl", "value": "t", "expirationTtl": 3600}),
        )
        .await;
    let listed = probe
        .call("/kv/list", json!({"ns": "MUTATION_LOG", "prefix": "ttl"}))
        .await;
    let exp = listed["keys"][0]["expiration"]
        .as_u64()
        .expect("expiration");
    assert!(
        (now_s() + 3590..=now_s() + 3610).contains(&exp),
        "ttl → {exp}"
    );

    // List with a cursor across pages, with metadata, in key order, prefix respected.
    for i in 0..5 {
        probe
            .call(
                "/kv/put",
                json!({"ns": "MUTATION_LOG", "key": format!("log:{i}"), "value": format!("m{i}"), "metadata": {"i": i}}),
            )
            .await;
    }
    let mut names = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut args = json!({"ns": "MUTATION_LOG", "prefix": "log:", "limit": 2});
        if let Some(c) = &cursor {
            args["cursor"] = json!(c);
        }
        let page = probe.call("/kv/list", args).await;
        pages += 1;
        for k in page["keys"].as_array().expect("keys") {
            let name = k["name"].as_str().expect("name").to_owned();
            let i: u64 = name[4..].parse().expect("index");
            assert_eq!(k["metadata"], json!({"i": i}), "metadata of {name}");
            names.push(name);
        }
        if page["list_complete"] == json!(true) {
            break;
        }
        cursor = Some(page["cursor"].as_str().expect("cursor").to_owned());
        assert!(pages < 10, "list does not terminate");
    }
    assert_eq!(pages, 3);
    assert_eq!(names, ["log:0", "log:1", "log:2", "log:3", "log:4"]);

    // Bulk get (workerd sends one POST /bulk/get).
    let many = probe
        .call(
            "/kv/get-many",
            json!({"ns": "MUTATION_LOG", "keys": ["log:1", "log:4", "nope"]}),
        )
        .await;
    assert_eq!(many, json!({"log:1": "m1", "log:4": "m4", "nope": null}));

    // Delete.
    probe
        .call("/kv/delete", json!({"ns": "MUTATION_LOG", "key": "log:3"}))
        .await;
    let got = probe
        .call("/kv/get", json!({"ns": "MUTATION_LOG", "key": "log:3"}))
        .await;
    assert_eq!(got["value"], Value::Null);
    let listed = probe
        .call("/kv/list", json!({"ns": "MUTATION_LOG", "prefix": "log:"}))
        .await;
    assert_eq!(listed["keys"].as_array().map(Vec::len), Some(4));
    assert_eq!(listed["list_complete"], true);
}

async fn d1(probe: &Probe) {
    let created = probe
        .call(
            "/d1/exec",
            json!({"sql": "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, score REAL, data BLOB)"}),
        )
        .await;
    assert_eq!(created["count"], 1);

    let run = probe
        .call(
            "/d1/run",
            json!({"sql": "INSERT INTO t (name, score) VALUES (?, ?)", "params": ["ann", 1.5]}),
        )
        .await;
    assert_eq!(run["success"], true);
    assert_eq!(run["meta"]["changes"], 1);
    assert_eq!(run["meta"]["last_row_id"], 1);
    probe
        .call(
            "/d1/run",
            json!({"sql": "INSERT INTO t (name, score) VALUES (?1, ?2)", "params": ["bob", 7]}),
        )
        .await;

    let all = probe
        .call("/d1/all", json!({"sql": "SELECT id, name, score FROM t WHERE score > ? ORDER BY id", "params": [1]}))
        .await;
    assert_eq!(
        all["results"],
        json!([{"id": 1, "name": "ann", "score": 1.5}, {"id": 2, "name": "bob", "score": 7}])
    );
    let first = probe
        .call(
            "/d1/first",
            json!({"sql": "SELECT name FROM t WHERE id = ?", "params": [2]}),
        )
        .await;
    assert_eq!(first, json!({"name": "bob"}));
    let raw = probe
        .call(
            "/d1/raw",
            json!({"sql": "SELECT id, name FROM t ORDER BY id DESC"}),
        )
        .await;
    assert_eq!(raw, json!([[2, "bob"], [1, "ann"]]));

    // Blobs go out as bytes and come back as arrays of bytes.
    probe
        .call(
            "/d1/blob",
            json!({"sql": "UPDATE t SET data = ? WHERE id = 1", "bytes": [0, 1, 254, 255]}),
        )
        .await;
    let blob = probe
        .call(
            "/d1/first",
            json!({"sql": "SELECT data FROM t WHERE id = 1"}),
        )
        .await;
    assert_eq!(blob["data"], json!([0, 1, 254, 255]));

    // A batch returns one result per statement.
    let batch = probe
        .call(
            "/d1/batch",
            json!({"statements": [
                {"sql": "INSERT INTO t (name) VALUES (?)", "params": ["cy"]},
                {"sql": "UPDATE t SET score = score * 2 WHERE name IN (?, ?)", "params": ["ann", "bob"]},
                {"sql": "SELECT count(*) AS n FROM t"},
            ]}),
        )
        .await;
    assert_eq!(batch[0]["meta"]["changes"], 1);
    assert_eq!(batch[1]["meta"]["changes"], 2);
    assert_eq!(batch[2]["results"], json!([{"n": 3}]));

    // A failing statement makes the whole batch fail and leaves nothing written.
    let failed = probe
        .try_call(
            "/d1/batch",
            json!({"statements": [
                {"sql": "INSERT INTO t (name) VALUES (?)", "params": ["dee"]},
                {"sql": "UPDATE t SET score = 0"},
                {"sql": "INSERT INTO t (name) VALUES (?)", "params": ["ann"]},
            ]}),
        )
        .await;
    let err = failed.expect_err("batch with a UNIQUE violation must fail");
    assert!(err.contains("D1_ERROR") && err.contains("UNIQUE"), "{err}");
    let after = probe
        .call(
            "/d1/all",
            json!({"sql": "SELECT name, score FROM t ORDER BY id"}),
        )
        .await;
    assert_eq!(
        after["results"],
        // JSON.stringify writes whole REALs as integers.
        json!([{"name": "ann", "score": 3}, {"name": "bob", "score": 14}, {"name": "cy", "score": null}])
    );

    // SQL errors surface as errors in the Worker.
    let err = probe
        .try_call("/d1/all", json!({"sql": "SELECT * FROM missing_table"}))
        .await
        .expect_err("unknown table");
    assert!(
        err.contains("D1_ERROR") && err.contains("no such table"),
        "{err}"
    );
    // Several statements in one prepare all run; the rows are the last one's.
    let multi = probe
        .call(
            "/d1/all",
            json!({"sql": "INSERT INTO t (name) VALUES ('eve'); SELECT name FROM t WHERE id = 4;"}),
        )
        .await;
    assert_eq!(multi["results"], json!([{"name": "eve"}]));
    assert_eq!(multi["meta"]["changes"], 1);
    let err = probe
        .try_call(
            "/d1/run",
            json!({"sql": "INSERT INTO t (name) VALUES (?)", "params": []}),
        )
        .await
        .expect_err("missing parameter");
    assert!(err.contains("D1_ERROR"), "{err}");
}

async fn r2(probe: &Probe) {
    let bytes: Vec<u8> = (0..=255u8).chain([0, 13, 10]).collect();
    let put = probe
        .call(
            "/r2/put",
            json!({"key": "tenants/t1/graph.csv", "bytes": bytes, "contentType": "text/csv", "custom": {"rows": "2"}}),
        )
        .await;
    assert_eq!(put["key"], "tenants/t1/graph.csv");
    assert_eq!(put["size"], bytes.len());
    let etag = put["etag"].as_str().expect("etag").to_owned();

    let got = probe
        .call("/r2/get", json!({"key": "tenants/t1/graph.csv"}))
        .await;
    assert_eq!(got["bytes"], json!(bytes), "bytes round-trip");
    assert_eq!(got["etag"], etag);
    assert_eq!(got["httpMetadata"]["contentType"], "text/csv");
    assert_eq!(got["customMetadata"], json!({"rows": "2"}));
    let uploaded = got["uploaded"].as_u64().expect("uploaded");
    assert!(
        uploaded.abs_diff(now_s() * 1000) < 60_000,
        "uploaded {uploaded}"
    );

    let part = probe
        .call(
            "/r2/get",
            json!({"key": "tenants/t1/graph.csv", "range": {"offset": 254, "length": 3}}),
        )
        .await;
    assert_eq!(part["bytes"], json!([254, 255, 0]));

    let head = probe
        .call("/r2/head", json!({"key": "tenants/t1/graph.csv"}))
        .await;
    assert_eq!(head["size"], bytes.len());
    assert_eq!(head["customMetadata"], json!({"rows": "2"}));
    assert_eq!(
        probe.call("/r2/get", json!({"key": "nope"})).await,
        Value::Null
    );
    assert_eq!(
        probe.call("/r2/head", json!({"key": "nope"})).await,
        Value::Null
    );

    for key in ["tenants/t1/a", "tenants/t2/a", "tenants/t2/b", "other"] {
        probe
            .call(
                "/r2/put",
                json!({"key": key, "text": format!("body of {key}")}),
            )
            .await;
    }
    let list = probe
        .call("/r2/list", json!({"options": {"prefix": "tenants/t2/"}}))
        .await;
    assert_eq!(list["keys"], json!(["tenants/t2/a", "tenants/t2/b"]));
    assert_eq!(list["truncated"], false);

    // Pages with a cursor, and a delimiter folding "directories".
    let page1 = probe
        .call(
            "/r2/list",
            json!({"options": {"prefix": "tenants/", "limit": 2}}),
        )
        .await;
    assert_eq!(
        page1["keys"],
        json!(["tenants/t1/a", "tenants/t1/graph.csv"])
    );
    assert_eq!(page1["truncated"], true);
    let page2 = probe
        .call(
            "/r2/list",
            json!({"options": {"prefix": "tenants/", "limit": 2, "cursor": page1["cursor"]}}),
        )
        .await;
    assert_eq!(page2["keys"], json!(["tenants/t2/a", "tenants/t2/b"]));
    assert_eq!(page2["truncated"], false);
    let dirs = probe
        .call(
            "/r2/list",
            json!({"options": {"prefix": "tenants/", "delimiter": "/"}}),
        )
        .await;
    assert_eq!(
        dirs["delimitedPrefixes"],
        json!(["tenants/t1/", "tenants/t2/"])
    );
    assert_eq!(dirs["keys"], json!([]));
    let with_meta = probe
        .call(
            "/r2/list",
            json!({"options": {"prefix": "tenants/t1/g", "include": ["customMetadata"]}}),
        )
        .await;
    assert_eq!(
        with_meta["objects"][0]["customMetadata"],
        json!({"rows": "2"})
    );

    // Overwrite replaces the body; delete (one and many) removes.
    probe
        .call("/r2/put", json!({"key": "other", "text": "new"}))
        .await;
    let got = probe.call("/r2/get", json!({"key": "other"})).await;
    assert_eq!(got["bytes"], json!(b"new".to_vec()));
    probe
        .call("/r2/delete", json!({"key": "tenants/t1/graph.csv"}))
        .await;
    assert_eq!(
        probe
            .call("/r2/get", json!({"key": "tenants/t1/graph.csv"}))
            .await,
        Value::Null
    );
    probe
        .call(
            "/r2/delete",
            json!({"keys": ["tenants/t2/a", "tenants/t2/b"]}),
        )
        .await;
    let list = probe.call("/r2/list", json!({})).await;
    assert_eq!(list["keys"], json!(["other", "tenants/t1/a"]));
}

#[test]
fn capnp_snippets_name_every_binding() {
    let services = binding_services::capnp_services(8790);
    assert_eq!(services.lines().count(), 5);
    assert!(services.contains(
        r#"(name = "bindings-kv-TOKEN_BLACKLIST", external = (address = "127.0.0.1:8790", http = (injectRequestHeaders = [(name = "x-authconf-binding", value = "kv:TOKEN_BLACKLIST")]))),"#
    ));
    let bindings = binding_services::capnp_bindings();
    assert!(bindings
        .contains(r#"(name = "SESSION_CACHE", kvNamespace = "bindings-kv-SESSION_CACHE"),"#));
    assert!(bindings.contains(r#"(name = "TENANT_DATA", r2Bucket = "bindings-r2-TENANT_DATA"),"#));
    assert!(
        bindings.contains(r#"innerBindings = [(name = "fetcher", service = "bindings-d1-DB")]"#)
    );
}
