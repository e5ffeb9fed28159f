//! Crash consistency of the real `auth-service` binary: nothing a client has been told is lost
//! when the process is killed with SIGKILL while writes are in flight.
//!
//! Each round loads a running service with concurrent key creations, chained key rotations and
//! rate-limited bursts over small quotas, records every 2xx answer a client received, kills the
//! process (`kill -9`) at a random moment with requests in flight, restarts it on the same data
//! dir and checks every acknowledged write: the keys it created exist, the keys it rotated are
//! revoked, the audit log holds a record of each and its `seq` has no gap, and the quota used
//! in a window is at least the admissions acknowledged in it (and those never pass the limit).
//! Loopback only, three rounds, a few seconds; it stops by itself.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Client, Method};
use serde_json::{json, Value};

const JWT_SECRET: &str = "crash-test-jwt-secret-0123456789abcdefghij";
const ROUNDS: usize = 3;
/// A day: fixed windows are aligned to UTC midnight, so one window spans every round.
const WINDOW: u64 = 86_400;
/// Quotas of the burst tenants of each round: one exhausted at once, one midway, one that
/// lasts most of the round.
const LIMITS: [u64; 3] = [25, 400, 3000];
const BURST_WORKERS: usize = 12;

/// The service as a child process. Dropping it kills the process.
struct Server {
    child: Child,
    /// Kept open: the service printed its address on it.
    _stdout: BufReader<ChildStdout>,
    base: String,
    admin: String,
}

impl Server {
    fn start(dir: &Path) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_auth-service"))
            .arg("--data-dir")
            .arg(dir)
            .args(["--listen", "127.0.0.1:0"])
            .env("JWT_SECRET", JWT_SECRET)
            .env_remove("PLATFORM_ADMIN_KEY")
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("auth-service starts");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        // The service prints "listening on ADDR" once bound (or exits, closing stdout).
        stdout.read_line(&mut line).expect("read the address line");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        let admin = std::fs::read_to_string(dir.join("platform-admin.key"))
            .expect("the generated admin key")
            .trim()
            .to_owned();
        Server {
            child,
            _stdout: stdout,
            base: format!("http://{addr}"),
            admin,
        }
    }

    /// SIGKILL, then reap.
    fn kill(mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reaped");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request; `None` when no answer arrived (the process was killed, say).
async fn send(
    client: &Client,
    base: &str,
    key: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Option<(u16, Value)> {
    let mut rb = client
        .request(method, format!("{base}{path}"))
        .bearer_auth(key);
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let resp = rb.send().await.ok()?;
    let status = resp.status().as_u16();
    let body = resp.json::<Value>().await.unwrap_or(Value::Null);
    Some((status, body))
}

#[derive(Clone)]
struct Tenant {
    id: String,
    sk: String,
    limit: u64,
}

async fn make_tenant(client: &Client, srv: &Server, slug: &str, limit: u64) -> Tenant {
    let (status, b) = send(
        client,
        &srv.base,
        &srv.admin,
        Method::POST,
        "/admin/tenants",
        Some(json!({"slug": slug, "name": slug,
                    "rateLimit": {"requests": limit, "windowSeconds": WINDOW}})),
    )
    .await
    .expect("tenant created");
    assert_eq!(status, 201, "{b}");
    Tenant {
        id: b["tenant"]["id"].as_str().unwrap().to_owned(),
        sk: b["credentials"]["secretKey"].as_str().unwrap().to_owned(),
        limit,
    }
}

/// Every answer a client got a 2xx for.
#[derive(Default)]
struct Acks {
    created: Vec<String>,
    /// (old key, successor)
    rotated: Vec<(String, String)>,
    /// Admissions per burst tenant id.
    admitted: std::collections::HashMap<String, u64>,
}

fn key_body(i: usize) -> Value {
    json!({"name": format!("k{i}"), "type": "secret", "environment": "live"})
}

/// Creates a key, then rotates it, then its successor, and so on, until the kill.
async fn rotation_chain(
    client: Client,
    base: String,
    sk: String,
    acks: Arc<Mutex<Acks>>,
    killed: Arc<AtomicBool>,
) {
    let Some((201, b)) = send(
        &client,
        &base,
        &sk,
        Method::POST,
        "/v1/api-keys",
        Some(key_body(0)),
    )
    .await
    else {
        return;
    };
    let mut current = b["apiKey"]["id"].as_str().unwrap().to_owned();
    acks.lock().unwrap().created.push(current.clone());
    while !killed.load(Ordering::SeqCst) {
        let path = format!("/v1/api-keys/{current}/rotate");
        match send(&client, &base, &sk, Method::POST, &path, None).await {
            Some((201, b)) => {
                let new = b["apiKey"]["id"].as_str().unwrap().to_owned();
                assert_eq!(b["previousKey"]["id"], current.as_str());
                assert!(b["previousKey"]["revokedAt"].is_string(), "{b}");
                acks.lock().unwrap().rotated.push((current, new.clone()));
                current = new;
            }
            Some((s, b)) => panic!("rotation answered {s}: {b}"),
            None => return,
        }
    }
}

/// Creates keys until the kill.
async fn creations(
    client: Client,
    base: String,
    sk: String,
    acks: Arc<Mutex<Acks>>,
    killed: Arc<AtomicBool>,
) {
    let mut i = 1;
    while !killed.load(Ordering::SeqCst) {
        match send(
            &client,
            &base,
            &sk,
            Method::POST,
            "/v1/api-keys",
            Some(key_body(i)),
        )
        .await
        {
            Some((201, b)) => {
                let id = b["apiKey"]["id"].as_str().unwrap().to_owned();
                acks.lock().unwrap().created.push(id);
            }
            Some((s, b)) => panic!("key creation answered {s}: {b}"),
            None => return,
        }
        i += 1;
    }
}

/// `GET /v1/rate-limit` over and over, past the quota, until the kill.
async fn burst(
    client: Client,
    base: String,
    tenant: Tenant,
    acks: Arc<Mutex<Acks>>,
    killed: Arc<AtomicBool>,
) {
    while !killed.load(Ordering::SeqCst) {
        match send(
            &client,
            &base,
            &tenant.sk,
            Method::GET,
            "/v1/rate-limit",
            None,
        )
        .await
        {
            Some((200, _)) => {
                *acks
                    .lock()
                    .unwrap()
                    .admitted
                    .entry(tenant.id.clone())
                    .or_default() += 1;
            }
            Some((429, _)) => {}
            Some((s, b)) => panic!("rate-limit answered {s}: {b}"),
            None => return,
        }
    }
}

/// Every audit record of a tenant, checked gapless.
async fn audit(client: &Client, base: &str, sk: &str) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    let mut after = 0;
    loop {
        let path = format!("/v1/audit-log?after={after}&limit=100");
        let (status, b) = send(client, base, sk, Method::GET, &path, None)
            .await
            .expect("audit answered");
        assert_eq!(status, 200, "{b}");
        let records = b["records"].as_array().unwrap().clone();
        let Some(last) = records.last() else {
            break;
        };
        after = last["seq"].as_i64().unwrap();
        out.extend(records);
    }
    for (i, r) in out.iter().enumerate() {
        assert_eq!(r["seq"], i as i64 + 1, "audit seq has a gap at {i}: {r}");
    }
    out
}

/// Checks every acknowledged write against the restarted service.
async fn check(client: &Client, srv: &Server, keys: &Tenant, bursts: &[Tenant], acks: &Acks) {
    let base = &srv.base;
    let get_key = |id: &str| {
        let path = format!("/v1/api-keys/{id}");
        async move {
            let (status, b) = send(client, base, &keys.sk, Method::GET, &path, None)
                .await
                .expect("key answered");
            assert_eq!(
                status, 200,
                "acknowledged key {path} lost after a crash: {b}"
            );
            b["apiKey"].clone()
        }
    };
    for id in &acks.created {
        get_key(id).await;
    }
    for (old, new) in &acks.rotated {
        let k = get_key(old).await;
        assert!(
            k["revokedAt"].is_string(),
            "acknowledged rotation of {old} lost: {k}"
        );
        get_key(new).await;
    }
    let records = audit(client, base, &keys.sk).await;
    let has = |action: &str, target: &str| {
        records
            .iter()
            .any(|r| r["action"] == action && r["target"] == target)
    };
    for id in &acks.created {
        assert!(
            has("api_key.created", id),
            "no audit record of the creation of {id}"
        );
    }
    for (old, _) in &acks.rotated {
        assert!(
            has("api_key.rotated", old),
            "no audit record of the rotation of {old}"
        );
    }
    for t in bursts {
        let admitted = acks.admitted.get(&t.id).copied().unwrap_or(0);
        assert!(
            admitted <= t.limit,
            "{admitted} admissions acknowledged over a limit of {}",
            t.limit
        );
        let (status, b) = send(client, base, &t.sk, Method::GET, "/v1/rate-limit", None)
            .await
            .expect("rate-limit answered");
        match status {
            // The check itself is one more admission.
            200 => {
                let remaining = b["remaining"].as_u64().unwrap();
                assert!(
                    t.limit - remaining > admitted,
                    "quota forgot admissions after a crash: limit {}, remaining {remaining} \
                     after {admitted} acknowledged and this one",
                    t.limit
                );
            }
            429 => {}
            s => panic!("rate-limit answered {s}: {b}"),
        }
    }
}

/// A random delay in `[lo, hi)` ms, from the OS generator (no test-order dependence).
fn random_ms(lo: u64, hi: u64) -> u64 {
    let mut b = [0u8; 8];
    getrandom::getrandom(&mut b).unwrap();
    lo + u64::from_le_bytes(b) % (hi - lo)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_write_survives_kill_9() {
    // Stay inside one day window (aligned to UTC midnight) for the whole test.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let to_midnight = WINDOW - now % WINDOW;
    if to_midnight < 60 {
        tokio::time::sleep(Duration::from_secs(to_midnight + 1)).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let client = Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut srv = Server::start(dir.path());
    let keys = make_tenant(&client, &srv, "crash-keys", 1_000_000).await;
    let acks = Arc::new(Mutex::new(Acks::default()));
    let mut bursts: Vec<Tenant> = Vec::new();
    for round in 0..ROUNDS {
        let mut these = Vec::new();
        for (i, limit) in LIMITS.iter().enumerate() {
            these.push(make_tenant(&client, &srv, &format!("crash-b{round}-{i}"), *limit).await);
        }
        let killed = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        let ctx = || {
            (
                client.clone(),
                srv.base.clone(),
                Arc::clone(&acks),
                Arc::clone(&killed),
            )
        };
        for _ in 0..2 {
            let (c, b, a, k) = ctx();
            tasks.push(tokio::spawn(rotation_chain(c, b, keys.sk.clone(), a, k)));
            let (c, b, a, k) = ctx();
            tasks.push(tokio::spawn(creations(c, b, keys.sk.clone(), a, k)));
        }
        for w in 0..BURST_WORKERS {
            let (c, b, a, k) = ctx();
            tasks.push(tokio::spawn(burst(
                c,
                b,
                these[w % these.len()].clone(),
                a,
                k,
            )));
        }
        tokio::time::sleep(Duration::from_millis(random_ms(200, 900))).await;
        // Requests are in flight: the workers never pause.
        killed.store(true, Ordering::SeqCst);
        srv.kill();
        for t in tasks {
            tokio::time::timeout(Duration::from_secs(15), t)
                .await
                .expect("a worker ends once the service is gone")
                .expect("worker");
        }
        bursts.extend(these);
        srv = Server::start(dir.path());
        let snapshot = {
            let acks = acks.lock().unwrap();
            Acks {
                created: acks.created.clone(),
                rotated: acks.rotated.clone(),
                admitted: acks.admitted.clone(),
            }
        };
        assert!(
            !snapshot.created.is_empty() && !snapshot.admitted.is_empty(),
            "the round did some work before the kill"
        );
        eprintln!(
            "round {round}: {} creations, {} rotations, {} admissions acknowledged so far",
            snapshot.created.len(),
            snapshot.rotated.len(),
            snapshot.admitted.values().sum::<u64>()
        );
        check(&client, &srv, &keys, &bursts, &snapshot).await;
    }
    drop(srv);
}
