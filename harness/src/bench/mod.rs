//! `authconf bench`: an HTTP load benchmark against the physical limit.
//!
//! It drives a target over loopback with a bounded number of connections for a bounded time,
//! several runs after a warm-up, and reports requests/s and p50/p95/p99 latency. In the same
//! run it measures a baseline with the same generator, a bare hyper "hello world" server (or,
//! for the Worker, a bare workers-rs hello world given by `--baseline`), and states each
//! throughput as a ratio of it at the same connections: that server is the most this machine
//! and this generator can do, so the ratio is what the service's own work costs. Where `wrk`
//! is installed it drives the same endpoints too, so the generator's own ceiling shows.
//!
//! Traffic goes to 127.0.0.1 only: the target is the reference, started here, or a loopback
//! URL; anything else is refused. Modules: [`generator`] (the load), [`wrk`], [`targets`] (the
//! servers), [`fixtures`] (tenants and keys), [`memory`], [`report`] (goals and summary).

pub mod fixtures;
pub mod generator;
pub mod memory;
pub mod report;
pub mod targets;
pub mod wrk;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use hyper::Method;
use serde::{Deserialize, Serialize};
use serde_json::json;

pub use generator::{EndpointFigures, Load, Probe};
pub use memory::MemoryReport;
pub use report::Target;
pub use targets::serve_hello;
pub use wrk::WrkFigures;

/// Names of the probes the goals are read from.
pub const BASELINE: &str = "bare hyper hello world";
/// The name of a baseline given by `--baseline` (the Worker's: a bare workers-rs hello world).
pub const GIVEN_BASELINE: &str = "bare hello world (--baseline)";
pub const HOT_PATH: &str = "authenticated hot path";
pub const READ: &str = "authenticated read (SQLite)";

/// What to measure and how hard.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// A loopback URL; `None` starts the reference (the `auth-service` binary beside this one).
    pub target: Option<String>,
    pub admin_key: Option<String>,
    /// A loopback URL answering a bare hello world, measured as the baseline instead of the
    /// bare hyper server started here.
    pub baseline: Option<String>,
    /// Connections of the endpoint table and of the tenant spread.
    pub concurrency: usize,
    /// Connections at which the hot path and the baseline are compared.
    pub connections: Vec<usize>,
    /// Tenants (one key each) the hot path is spread over, at `concurrency` connections.
    pub tenants: Vec<usize>,
    /// Only the baseline and the hot path (for the Worker).
    pub hot_path_only: bool,
    pub duration: Duration,
    pub warmup: Duration,
    pub runs: usize,
    /// Threads of the generator's runtime (1, as `wrk -t1`).
    pub threads: usize,
    /// Run `wrk` beside the generator when it is installed.
    pub wrk: bool,
    /// Where a reference started here keeps its data (a new directory inside it); `None`: the
    /// system's temporary directory. A tmpfs (`/dev/shm`) spares the minutes a disk mounted
    /// with `discard` takes to delete tens of thousands of object files afterwards.
    pub data_dir: Option<std::path::PathBuf>,
}

/// A new temporary directory inside `parent`, or the system's.
pub fn data_dir(parent: Option<&std::path::Path>) -> anyhow::Result<tempfile::TempDir> {
    Ok(match parent {
        Some(p) => {
            tempfile::tempdir_in(p).with_context(|| format!("a directory in {}", p.display()))?
        }
        None => tempfile::tempdir()?,
    })
}

/// The hot path against the baseline at one number of connections.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Scaling {
    pub connections: usize,
    pub baseline: EndpointFigures,
    pub hot: EndpointFigures,
}

/// Everything one `authconf bench` run measured. The first six fields are the original
/// schema of `load.json`; the rest were added after (absent in older files).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchReport {
    pub machine: String,
    pub concurrency: usize,
    pub duration_seconds: f64,
    pub warmup_seconds: f64,
    pub runs: usize,
    /// Every probe at `concurrency` connections, the baseline first.
    pub endpoints: Vec<EndpointFigures>,
    #[serde(default)]
    pub generator: String,
    /// What the target is and where it runs (a process of its own or in-process).
    #[serde(default)]
    pub target: String,
    #[serde(default)]
    pub baseline: String,
    #[serde(default)]
    pub scaling: Vec<Scaling>,
    /// The hot path spread over many tenants, ratio to the baseline at `concurrency`.
    #[serde(default)]
    pub tenant_spread: Vec<EndpointFigures>,
    #[serde(default)]
    pub wrk: Vec<WrkFigures>,
    #[serde(default)]
    pub targets: Vec<Target>,
    /// How long each part of the run took, in seconds.
    #[serde(default)]
    pub timings: Vec<(String, f64)>,
}

/// The target under load: its address, admin API and what to call it.
struct Under {
    addr: SocketAddr,
    admin: fixtures::Admin,
    description: String,
    service: Option<targets::Service>,
    _dir: Option<tempfile::TempDir>,
}

async fn start_target(o: &BenchOptions) -> anyhow::Result<Under> {
    match &o.target {
        Some(url) => {
            let addr = targets::socket_addr(url)?;
            let key = o
                .admin_key
                .clone()
                .context("AUTHCONF_ADMIN_KEY is needed for a --target")?;
            Ok(Under {
                addr,
                admin: fixtures::Admin::new(url, &key),
                description: format!("{} (a process of its own)", url.trim_end_matches('/')),
                service: None,
                _dir: None,
            })
        }
        None => {
            let dir = data_dir(o.data_dir.as_deref())?;
            let key = fixtures::admin_key();
            let (service, base) = targets::Service::start(dir.path(), &key).await?;
            Ok(Under {
                addr: targets::socket_addr(&base)?,
                admin: fixtures::Admin::new(&base, &key),
                description: format!("the reference: {}", service.scope()),
                service: Some(service),
                _dir: Some(dir),
            })
        }
    }
}

/// Times each part of the run, and says on stderr what is being measured.
struct Clock {
    parts: Vec<(String, f64)>,
    since: Instant,
}

impl Clock {
    fn new() -> Self {
        Self {
            parts: Vec::new(),
            since: Instant::now(),
        }
    }

    fn lap(&mut self, part: &str) {
        let secs = self.since.elapsed().as_secs_f64();
        eprintln!("bench: {part}: {secs:.0} s");
        self.parts.push((part.to_owned(), secs));
        self.since = Instant::now();
    }
}

/// Measures a probe in the generator's own thread (see [`generator::measure`]).
async fn measure(addr: SocketAddr, probe: &Probe, load: Load) -> anyhow::Result<EndpointFigures> {
    let probe = probe.clone();
    tokio::task::spawn_blocking(move || generator::measure(addr, &probe, load)).await?
}

/// `wrk` on the same endpoint, with our figure beside it; `None` when wrk is not installed or
/// not wanted (a failure of wrk is reported on stderr and leaves the figure out).
async fn wrk_beside(
    o: &BenchOptions,
    addr: SocketAddr,
    path: &str,
    key: Option<&str>,
    ours: &EndpointFigures,
) -> Option<WrkFigures> {
    let wrk = o.wrk.then(wrk::find).flatten()?;
    let (url, key, name) = (
        format!("http://{addr}{path}"),
        key.map(str::to_owned),
        ours.name.clone(),
    );
    let (c, d) = (ours.connections, o.duration);
    let run =
        tokio::task::spawn_blocking(move || wrk::run(&wrk, &name, &url, key.as_deref(), c, d))
            .await;
    match run {
        Ok(Ok(mut f)) => {
            f.ours_requests_per_second = Some(ours.requests_per_second);
            Some(f)
        }
        Ok(Err(e)) => {
            eprintln!("bench: wrk left out: {e:#}");
            None
        }
        Err(e) => {
            eprintln!("bench: wrk left out: {e}");
            None
        }
    }
}

fn with_ratio(mut f: EndpointFigures, base: &EndpointFigures) -> EndpointFigures {
    f.ratio_to_hyper =
        (base.requests_per_second > 0.0).then(|| f.requests_per_second / base.requests_per_second);
    f
}

/// What every phase of a run drives: the target, the baseline and the tenants' keys.
struct Drive<'a> {
    o: &'a BenchOptions,
    target: SocketAddr,
    baseline: SocketAddr,
    baseline_path: String,
    /// Secret keys of the roomy tenants, one each.
    keys: Vec<String>,
}

impl Drive<'_> {
    fn load(&self, connections: usize) -> Load {
        Load {
            connections,
            duration: self.o.duration,
            warmup: self.o.warmup,
            runs: self.o.runs,
            threads: self.o.threads,
        }
    }

    /// The hot path over the first `tenants` tenants' keys.
    fn hot(&self, tenants: usize) -> anyhow::Result<Probe> {
        let n = tenants.clamp(1, self.keys.len());
        Probe::new(HOT_PATH, Method::GET, "/v1/rate-limit").keys(&self.keys[..n])
    }

    /// The hot path against the baseline at each number of connections, wrk beside both.
    async fn scaling(&self, report: &mut BenchReport, clock: &mut Clock) -> anyhow::Result<()> {
        let mut connections = self.o.connections.clone();
        if !connections.contains(&self.o.concurrency) {
            connections.push(self.o.concurrency);
        }
        let name = if self.o.baseline.is_some() {
            GIVEN_BASELINE
        } else {
            BASELINE
        };
        let base_probe = Probe::new(name, Method::GET, &self.baseline_path);
        for c in connections {
            let base = measure(self.baseline, &base_probe, self.load(c)).await?;
            let wrk = wrk_beside(self.o, self.baseline, &self.baseline_path, None, &base).await;
            report.wrk.extend(wrk);
            let hot = measure(self.target, &self.hot(1)?, self.load(c)).await?;
            let hot = with_ratio(hot, &base);
            let key = Some(self.keys[0].as_str());
            let wrk = wrk_beside(self.o, self.target, "/v1/rate-limit", key, &hot).await;
            report.wrk.extend(wrk);
            report.scaling.push(Scaling {
                connections: c,
                baseline: EndpointFigures {
                    ratio_to_hyper: Some(1.0),
                    ..base
                },
                hot,
            });
            clock.lap(&format!("baseline and hot path at {c} connections"));
        }
        let table = report
            .scaling
            .iter()
            .find(|s| s.connections == self.o.concurrency)
            .context("the table's connections were measured")?;
        report.endpoints = vec![table.baseline.clone(), table.hot.clone()];
        Ok(())
    }

    /// The hot path spread over more tenants, at the table's connections.
    async fn spread(&self, report: &mut BenchReport, clock: &mut Clock) -> anyhow::Result<()> {
        let (base, hot) = (report.endpoints[0].clone(), report.endpoints[1].clone());
        for &t in &self.o.tenants {
            let f = if t <= 1 {
                hot.clone()
            } else {
                let probe = self.hot(t)?;
                with_ratio(
                    measure(self.target, &probe, self.load(self.o.concurrency)).await?,
                    &base,
                )
            };
            report.tenant_spread.push(f);
            clock.lap(&format!("hot path over {t} tenants"));
        }
        Ok(())
    }

    /// The other endpoints at the table's connections; answers the tenant it made.
    async fn endpoints(
        &self,
        admin: &fixtures::Admin,
        run: &str,
        graph: &fixtures::Tenant,
        report: &mut BenchReport,
        clock: &mut Clock,
    ) -> anyhow::Result<fixtures::Tenant> {
        let limited = admin.limited_tenant(run).await?;
        admin.graph(graph).await?;
        let key = [self.keys[0].as_str()];
        let probes = [
            Probe::new(READ, Method::GET, "/v1/api-keys").keys(&key)?,
            Probe::new("429 answer", Method::GET, "/v1/rate-limit")
                .keys(&[limited.secret_key.as_str()])?,
            Probe::new("graph check", Method::POST, "/v1/graph/check")
                .keys(&key)?
                .json(&json!({"subject": "user:u7", "relation": "read", "object": "doc:d7"})),
            Probe::new("key creation", Method::POST, "/v1/api-keys")
                .keys(&key)?
                .json(&json!({"name": "bench", "type": "restricted", "permissions": ["read:api_keys"]})),
        ];
        let base = report.endpoints[0].clone();
        for p in probes {
            let f = measure(self.target, &p, self.load(self.o.concurrency)).await?;
            report.endpoints.push(with_ratio(f, &base));
            clock.lap(&p.name);
        }
        Ok(limited)
    }
}

/// The baseline to measure: the URL given, or a bare hyper server started here (kept running
/// while the answer is held). Answers its address, path and description.
async fn start_baseline(
    o: &BenchOptions,
) -> anyhow::Result<(Option<targets::ChildServer>, SocketAddr, String, String)> {
    match &o.baseline {
        Some(url) => {
            let path = url
                .strip_prefix("http://")
                .and_then(|r| r.find('/').map(|i| r[i..].to_owned()))
                .unwrap_or_else(|| "/".into());
            Ok((None, targets::socket_addr(url)?, path, url.clone()))
        }
        None => {
            let hello = tokio::task::spawn_blocking(targets::start_hello).await??;
            let addr = targets::socket_addr(&format!("http://{}", hello.addr))?;
            let what = "bare hyper hello world, a process of its own".to_owned();
            Ok((Some(hello), addr, "/".to_owned(), what))
        }
    }
}

/// Runs the benchmark and answers its report.
pub async fn run(o: BenchOptions) -> anyhow::Result<BenchReport> {
    let mut clock = Clock::new();
    let under = start_target(&o).await?;
    let run = fixtures::run_id();
    let most_tenants = o.tenants.iter().copied().max().unwrap_or(1).max(1);
    let mut made = under.admin.roomy_tenants(&run, most_tenants).await?;
    clock.lap(&format!("setup: {most_tenants} tenants"));
    let (hello, baseline, baseline_path, baseline_name) = start_baseline(&o).await?;
    let drive = Drive {
        o: &o,
        target: under.addr,
        baseline,
        baseline_path,
        keys: made.iter().map(|t| t.secret_key.clone()).collect(),
    };
    let mut report = BenchReport {
        machine: machine_description(),
        concurrency: o.concurrency,
        duration_seconds: o.duration.as_secs_f64(),
        warmup_seconds: o.warmup.as_secs_f64(),
        runs: o.runs,
        endpoints: Vec::new(),
        generator: format!(
            "one keep-alive HTTP/1.1 connection per worker, requests made once, {} thread(s) \
             of its own runtime",
            o.threads
        ),
        target: under.description.clone(),
        baseline: baseline_name,
        scaling: Vec::new(),
        tenant_spread: Vec::new(),
        wrk: Vec::new(),
        targets: Vec::new(),
        timings: Vec::new(),
    };
    drive.scaling(&mut report, &mut clock).await?;
    drive.spread(&mut report, &mut clock).await?;
    if !o.hot_path_only {
        let graph = made[0].clone();
        let limited = drive
            .endpoints(&under.admin, &run, &graph, &mut report, &mut clock)
            .await?;
        made.push(limited);
    }
    under.admin.delete(&made).await;
    clock.lap("cleanup");
    if let Some(service) = under.service {
        service.stop().await;
    }
    drop(hello);
    report.timings = clock.parts;
    report.targets = report::load_targets(&report);
    if report
        .endpoints
        .iter()
        .any(|e| e.statuses.iter().any(|(s, _)| *s == 0))
    {
        eprintln!("bench: some requests got no answer (status 0 in the figures)");
    }
    Ok(report)
}

/// Resident memory at `tenants` tenants and `keys` keys, and the restart (see [`memory`]).
pub async fn memory(
    tenants: usize,
    keys: usize,
    dir: Option<&std::path::Path>,
) -> anyhow::Result<MemoryReport> {
    if tenants == 0 {
        bail!("--memory-tenants must be at least 1");
    }
    memory::measure(tenants, keys, dir).await
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
