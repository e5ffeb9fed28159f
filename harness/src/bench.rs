//! `authconf bench`: an HTTP load benchmark against the physical limit.
//!
//! It drives a target over loopback with a bounded number of connections for a bounded time,
//! several runs after a warm-up, and reports requests/s and p50/p95/p99 latency for each
//! endpoint. In the same run it measures a bare hyper "hello world" server with the same load
//! generator, and states each endpoint as a ratio of it: that server is the most this machine
//! and this load generator can do, so the ratio is what the service's own work costs.
//!
//! Traffic goes to 127.0.0.1 only: the target is the embedded reference, started here, or a
//! loopback URL; anything else is refused.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;
use serde_json::{json, Value};

/// What to measure and how hard.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// A loopback URL; `None` starts the embedded reference.
    pub target: Option<String>,
    pub admin_key: Option<String>,
    pub concurrency: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub runs: usize,
}

/// Figures of one endpoint: the median run by requests/s, and every run's figure.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointFigures {
    pub name: String,
    pub method: String,
    pub path: String,
    pub requests_per_second: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub runs_rps: Vec<f64>,
    pub statuses: Vec<(u16, u64)>,
    pub ratio_to_hyper: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub machine: String,
    pub concurrency: usize,
    pub duration_seconds: f64,
    pub warmup_seconds: f64,
    pub runs: usize,
    pub endpoints: Vec<EndpointFigures>,
}

/// One kind of request to repeat.
#[derive(Clone)]
struct Probe {
    name: &'static str,
    method: reqwest::Method,
    path: String,
    key: Option<String>,
    body: Option<Value>,
}

fn is_loopback(url: &str) -> bool {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .unwrap_or("");
    let host = rest.split(['/', ':']).next().unwrap_or("");
    host == "127.0.0.1" || host == "localhost" || host == "[::1]" || host.starts_with("127.")
}

/// A bare hyper server answering "hello world" to everything: the physical limit.
async fn start_hello() -> anyhow::Result<SocketAddr> {
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service = service_fn(|_req| async {
                    Ok::<_, Infallible>(hyper::Response::new(http_body_util::Full::new(
                        bytes::Bytes::from_static(b"hello world"),
                    )))
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

struct RunFigures {
    rps: f64,
    latencies_us: Vec<u64>,
    statuses: std::collections::BTreeMap<u16, u64>,
}

/// Drives `probe` with `concurrency` workers for `duration`; each worker has its own
/// keep-alive connection.
async fn drive(base: &str, probe: &Probe, concurrency: usize, duration: Duration) -> RunFigures {
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .build()
            .expect("client");
        let url = format!("{base}{}", probe.path);
        let probe = probe.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut statuses = std::collections::BTreeMap::new();
            while Instant::now() < deadline {
                let mut req = client.request(probe.method.clone(), &url);
                if let Some(k) = &probe.key {
                    req = req.bearer_auth(k);
                }
                if let Some(b) = &probe.body {
                    req = req.json(b);
                }
                let t = Instant::now();
                let status = match req.send().await {
                    Ok(r) => {
                        let s = r.status().as_u16();
                        let _ = r.bytes().await;
                        s
                    }
                    Err(_) => 0,
                };
                lat.push(t.elapsed().as_micros() as u64);
                *statuses.entry(status).or_insert(0u64) += 1;
            }
            (lat, statuses)
        }));
    }
    let started = Instant::now();
    let mut latencies_us = Vec::new();
    let mut statuses = std::collections::BTreeMap::new();
    for t in tasks {
        if let Ok((lat, st)) = t.await {
            latencies_us.extend(lat);
            for (k, v) in st {
                *statuses.entry(k).or_insert(0) += v;
            }
        }
    }
    let secs = started.elapsed().as_secs_f64().max(duration.as_secs_f64());
    RunFigures {
        rps: latencies_us.len() as f64 / secs,
        latencies_us,
        statuses,
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx] as f64 / 1000.0
}

async fn measure(base: &str, probe: &Probe, o: &BenchOptions) -> EndpointFigures {
    let _ = drive(base, probe, o.concurrency, o.warmup).await;
    let mut runs: Vec<RunFigures> = Vec::new();
    for _ in 0..o.runs.max(1) {
        runs.push(drive(base, probe, o.concurrency, o.duration).await);
    }
    let runs_rps: Vec<f64> = runs.iter().map(|r| r.rps).collect();
    // The median run by throughput stands for the endpoint; all runs are kept in the report.
    let mut order: Vec<usize> = (0..runs.len()).collect();
    order.sort_by(|a, b| runs[*a].rps.total_cmp(&runs[*b].rps));
    let median = &mut runs[order[order.len() / 2]];
    median.latencies_us.sort_unstable();
    EndpointFigures {
        name: probe.name.into(),
        method: probe.method.to_string(),
        path: probe.path.clone(),
        requests_per_second: median.rps,
        p50_ms: percentile(&median.latencies_us, 0.50),
        p95_ms: percentile(&median.latencies_us, 0.95),
        p99_ms: percentile(&median.latencies_us, 0.99),
        runs_rps,
        statuses: median.statuses.iter().map(|(k, v)| (*k, *v)).collect(),
        ratio_to_hyper: None,
    }
}

async fn admin(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> anyhow::Result<Value> {
    let r = http
        .request(method, format!("{base}{path}"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await?;
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("{path}: {status}");
    }
    Ok(v)
}

/// Runs the benchmark and answers its report.
pub async fn run(o: BenchOptions) -> anyhow::Result<BenchReport> {
    let (base, admin_key, _service, _dir) = match &o.target {
        Some(url) => {
            if !is_loopback(url) {
                bail!("load benchmarks send traffic to 127.0.0.1 or localhost only");
            }
            let key = o
                .admin_key
                .clone()
                .context("AUTHCONF_ADMIN_KEY is needed for a --target")?;
            (url.trim_end_matches('/').to_owned(), key, None, None)
        }
        None => {
            let dir = tempfile::tempdir()?;
            let key = admin_key_for_bench();
            let service = auth_service::spawn(auth_service::Config {
                listen: "127.0.0.1:0".parse()?,
                data_dir: dir.path().to_owned(),
                base_domain: None,
                admin_key: Some(key.clone()),
                test_hooks: false,
            })
            .await?;
            (service.base_url(), key, Some(service), Some(dir))
        }
    };
    let http = reqwest::Client::new();
    let id = crate::new_run_id();
    let create = |slug: String, limit: Value| json!({"slug": slug, "name": "bench", "plan": "enterprise", "rateLimit": limit});
    let roomy = json!({"requests": 1_000_000, "windowSeconds": 1});
    let fast = admin(
        &http,
        &base,
        &admin_key,
        reqwest::Method::POST,
        "/admin/tenants",
        create(format!("authconf-{id}-bench"), roomy),
    )
    .await?;
    let tight = admin(
        &http,
        &base,
        &admin_key,
        reqwest::Method::POST,
        "/admin/tenants",
        create(
            format!("authconf-{id}-limited"),
            json!({"requests": 1, "windowSeconds": 86400}),
        ),
    )
    .await?;
    let sk = fast["credentials"]["secretKey"]
        .as_str()
        .context("secret key")?
        .to_owned();
    let limited = tight["credentials"]["secretKey"]
        .as_str()
        .context("secret key")?
        .to_owned();
    // Use up the limited tenant's one request, so every later request is a 429.
    let _ = http
        .get(format!("{base}/v1/rate-limit"))
        .bearer_auth(&limited)
        .send()
        .await?;
    let mut csv = String::from("subject_type,subject_id,relation,object_type,object_id\n");
    for i in 0..1000 {
        csv.push_str(&format!(
            "user,u{i},member,group,g{}\ngroup,g{},read,doc,d{}\n",
            i % 50,
            i % 50,
            i % 50
        ));
    }
    http.put(format!("{base}/v1/graph/csv"))
        .bearer_auth(&sk)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await?
        .error_for_status()?;
    http.post(format!("{base}/v1/graph/reload"))
        .bearer_auth(&sk)
        .send()
        .await?
        .error_for_status()?;

    let hello = start_hello().await?;
    let hello_base = format!("http://{hello}");
    let probe = |name, method, path: &str, key: Option<&String>, body: Option<Value>| Probe {
        name,
        method,
        path: path.into(),
        key: key.cloned(),
        body,
    };
    let mut endpoints = Vec::new();
    let baseline = measure(
        &hello_base,
        &probe(
            "bare hyper hello world",
            reqwest::Method::GET,
            "/",
            None,
            None,
        ),
        &o,
    )
    .await;
    let hyper_rps = baseline.requests_per_second;
    endpoints.push(EndpointFigures {
        ratio_to_hyper: Some(1.0),
        ..baseline
    });
    let probes = [
        probe(
            "authenticated hot path",
            reqwest::Method::GET,
            "/v1/rate-limit",
            Some(&sk),
            None,
        ),
        probe(
            "authenticated read (SQLite)",
            reqwest::Method::GET,
            "/v1/api-keys",
            Some(&sk),
            None,
        ),
        probe(
            "429 answer",
            reqwest::Method::GET,
            "/v1/rate-limit",
            Some(&limited),
            None,
        ),
        probe(
            "graph check",
            reqwest::Method::POST,
            "/v1/graph/check",
            Some(&sk),
            Some(json!({"subject": "user:u7", "relation": "read", "object": "doc:d7"})),
        ),
        probe(
            "key creation",
            reqwest::Method::POST,
            "/v1/api-keys",
            Some(&sk),
            Some(json!({"name": "bench", "type": "restricted", "permissions": ["read:api_keys"]})),
        ),
    ];
    for p in probes {
        let mut f = measure(&base, &p, &o).await;
        f.ratio_to_hyper = (hyper_rps > 0.0).then(|| f.requests_per_second / hyper_rps);
        endpoints.push(f);
    }
    for t in [&fast, &tight] {
        if let Some(tid) = t["tenant"]["id"].as_str() {
            let _ = admin(
                &http,
                &base,
                &admin_key,
                reqwest::Method::DELETE,
                &format!("/admin/tenants/{}", tid.replace(':', "%3A")),
                Value::Null,
            )
            .await;
        }
    }
    Ok(BenchReport {
        machine: machine_description(),
        concurrency: o.concurrency,
        duration_seconds: o.duration.as_secs_f64(),
        warmup_seconds: o.warmup.as_secs_f64(),
        runs: o.runs,
        endpoints,
    })
}

/// A fresh platform admin key for the embedded reference.
fn admin_key_for_bench() -> String {
    use rand::Rng;
    let r: String = rand::thread_rng()
        .sample_iter(rand::distributions::Alphanumeric)
        .take(40)
        .map(char::from)
        .collect();
    format!("sk_live_{r}")
}

/// CPU model, core count and memory, from /proc where it exists.
pub fn machine_description() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or_else(String::new, |kb| format!(", {} GiB", kb / 1024 / 1024));
    format!("{cpu}, {cores} cores{mem}")
}

/// Resident memory of the reference holding many tenants and keys.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryReport {
    pub tenants: usize,
    pub keys: usize,
    pub rss_mib: f64,
    pub rss_before_mib: f64,
    pub fill_seconds: f64,
    pub note: String,
}

fn rss_mib() -> f64 {
    rss_mib_of("self")
}

/// VmRSS of a process (`self` or a pid) in MiB; 0 where /proc is not there.
fn rss_mib_of(pid: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The reference whose memory is measured: the `auth-service` binary as a process of its own
/// when it sits beside this one (then the figure is the service's alone), else in-process.
/// A child process is killed however the measurement ends.
struct MeasuredService {
    child: Option<std::process::Child>,
    in_process: Option<auth_service::RunningService>,
}

impl Drop for MeasuredService {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl MeasuredService {
    async fn start(dir: &std::path::Path, admin_key: &str) -> anyhow::Result<(Self, String)> {
        let beside = std::env::current_exe()?.with_file_name("auth-service");
        if beside.exists() {
            use std::io::BufRead;
            let mut child = std::process::Command::new(&beside)
                .args(["--listen", "127.0.0.1:0", "--data-dir"])
                .arg(dir)
                .env("PLATFORM_ADMIN_KEY", admin_key)
                .env("JWT_SECRET", format!("bench-{admin_key}"))
                .env_remove("MAIL_API_URL")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()?;
            let stdout = child.stdout.take();
            let service = Self {
                child: Some(child),
                in_process: None,
            };
            let stdout = stdout.context("auth-service stdout")?;
            // Its log shares stdout: find the address line, then keep draining so the
            // service never writes into a full pipe.
            let (tx, rx) = tokio::sync::oneshot::channel();
            std::thread::spawn(move || {
                let mut tx = Some(tx);
                for line in std::io::BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if let Some(addr) = line.strip_prefix("listening on ") {
                        if let Some(tx) = tx.take() {
                            let _ = tx.send(addr.trim().to_owned());
                        }
                    }
                }
            });
            let addr = tokio::time::timeout(Duration::from_secs(30), rx)
                .await
                .context("auth-service did not start within 30 s")?
                .context("auth-service did not report its address")?;
            return Ok((service, format!("http://{addr}")));
        }
        let running = auth_service::spawn(auth_service::Config {
            listen: "127.0.0.1:0".parse()?,
            data_dir: dir.to_owned(),
            base_domain: None,
            admin_key: Some(admin_key.to_owned()),
            test_hooks: false,
        })
        .await?;
        let base = running.base_url();
        Ok((
            Self {
                child: None,
                in_process: Some(running),
            },
            base,
        ))
    }

    fn rss_mib(&self) -> f64 {
        match &self.child {
            Some(child) => rss_mib_of(&child.id().to_string()),
            None => rss_mib(),
        }
    }

    fn note(&self) -> String {
        let scope = if self.child.is_some() {
            "the auth-service process alone"
        } else {
            "whole process (service plus load generator: no auth-service binary beside authconf)"
        };
        format!(
            "{scope}; at most {} objects stay in memory",
            auth_service::MAX_LIVE_OBJECTS
        )
    }

    async fn stop(mut self) {
        if let Some(running) = self.in_process.take() {
            running.shutdown().await;
        }
        // A child is killed by Drop.
    }
}

/// Fills a reference with `tenants` tenants and `keys` keys in all (two per tenant come with
/// it, the rest are minted through the admin API), then touches every tenant once so its
/// object is loaded, and reports the service's resident memory (see [`MeasuredService`]).
pub async fn memory(
    tenants: usize,
    keys: usize,
    concurrency: usize,
) -> anyhow::Result<MemoryReport> {
    let dir = tempfile::tempdir()?;
    let admin_key = admin_key_for_bench();
    let (service, base) = MeasuredService::start(dir.path(), &admin_key).await?;
    let before = service.rss_mib();
    let started = Instant::now();
    let http = reqwest::Client::new();
    let id = crate::new_run_id();
    let extra_per_tenant = keys.saturating_sub(tenants * 2).div_ceil(tenants.max(1));
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (http, base, admin_key, id, next) = (
            http.clone(),
            base.clone(),
            admin_key.clone(),
            id.clone(),
            next.clone(),
        );
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= tenants {
                    return Ok::<(), anyhow::Error>(());
                }
                let created = admin(
                    &http,
                    &base,
                    &admin_key,
                    reqwest::Method::POST,
                    "/admin/tenants",
                    json!({"slug": format!("authconf-{id}-m{i}"), "name": "memory"}),
                )
                .await?;
                let tid = created["tenant"]["id"]
                    .as_str()
                    .unwrap_or_default()
                    .replace(':', "%3A");
                for _ in 0..extra_per_tenant {
                    admin(
                        &http,
                        &base,
                        &admin_key,
                        reqwest::Method::POST,
                        &format!("/admin/tenants/{tid}/keys"),
                        json!({"name": "m", "type": "secret"}),
                    )
                    .await?;
                }
                let sk = created["credentials"]["secretKey"]
                    .as_str()
                    .unwrap_or_default();
                http.get(format!("{base}/v1/tenant"))
                    .bearer_auth(sk)
                    .send()
                    .await?;
            }
        }));
    }
    for w in workers {
        w.await??;
    }
    let fill_seconds = started.elapsed().as_secs_f64();
    let rss = service.rss_mib();
    let note = service.note();
    service.stop().await;
    Ok(MemoryReport {
        tenants,
        keys: tenants * (2 + extra_per_tenant),
        rss_mib: rss,
        rss_before_mib: before,
        fill_seconds,
        note,
    })
}
