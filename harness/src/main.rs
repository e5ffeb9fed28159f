//! `authconf`: the command line over the `authconf` library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use authconf::{options, RunError, RunOptions, Slo, Target};
use clap::{Parser, Subcommand};

const EXIT_CODES: &str = "Exit codes:
  0    every selected scenario passed (skips and expected failures allowed), or every
       failure is of a class --fail-on does not gate on
  1    a scenario or finding of a gated class failed, a known failure passed, or an --slo
       gate was missed
  2    usage or configuration error (also: the target has no admin API at GET
       /admin/tenants, or refuses the admin key)
  3    target unreachable (or the embedded reference did not start)
  130  interrupted (Ctrl-C); the run's tenants were deleted";

/// Conformance suite of the auth-service contract (docs/contract.md).
#[derive(Parser)]
#[command(name = "authconf", version, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the suite against the embedded reference (default) or --target URL.
    #[command(after_help = EXIT_CODES)]
    Run(Box<RunArgs>),
    /// List features, scenarios and tags.
    List {
        /// Feature files (a directory or one file).
        #[arg(long, value_name = "PATH")]
        features: Option<PathBuf>,
        /// Print the contract's rules (docs/contract.md) and the scenarios that check each;
        /// exit 1 when a rule has no scenario, a tag names no rule or a scenario names none.
        #[arg(long)]
        rules: bool,
    },
    /// HTTP load benchmark over loopback against a bare hyper server (see reports/bench).
    Bench {
        /// A loopback URL; without it the reference is started (the auth-service binary beside
        /// authconf as a process of its own, else in-process).
        #[arg(long, value_name = "URL")]
        target: Option<String>,
        /// A loopback URL of a bare hello world to measure as the baseline instead of the bare
        /// hyper server started here (the Worker's: scripts/bench-worker).
        #[arg(long, value_name = "URL")]
        baseline: Option<String>,
        /// Connections of the endpoint table and of the tenant spread.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Connections at which the hot path and the baseline are compared (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "1,16,64,256")]
        connections: Vec<usize>,
        /// Tenants (one key each) the hot path is spread over (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "1,100,10000")]
        tenants: Vec<usize>,
        /// Measure only the baseline and the hot path.
        #[arg(long)]
        hot_path_only: bool,
        /// Seconds per measured run.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Seconds of warm-up before the runs of each endpoint.
        #[arg(long, default_value_t = 1)]
        warmup: u64,
        /// Measured runs per endpoint; the median run is reported.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Threads of the load generator's own runtime (1, as wrk -t1).
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Do not run wrk beside the generator even when it is installed.
        #[arg(long)]
        no_wrk: bool,
        /// Skip the load measurement (e.g. to measure memory alone).
        #[arg(long)]
        no_load: bool,
        /// Also measure resident memory holding this many tenants (and --memory-keys keys),
        /// and the time to the first answer after a restart with that data.
        #[arg(long, value_name = "N")]
        memory_tenants: Option<usize>,
        /// Keys in all for the memory measurement.
        #[arg(long, default_value_t = 1_000_000)]
        memory_keys: usize,
        /// Where to write load.json (and memory.json).
        #[arg(long, default_value = "reports/bench")]
        out: PathBuf,
        /// Where the reference started here keeps its data, in a new directory (default: the
        /// system's temporary directory). /dev/shm spares the minutes a disk mounted with
        /// `discard` takes to delete 100,000 tenants' files afterwards.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Serve the bare hyper baseline and nothing else (the benchmark starts it this way).
        #[arg(long, hide = true)]
        serve_hello: bool,
    },
    /// Delete tenants left by interrupted runs (slug prefix `authconf-`, and the ledgers).
    #[command(after_help = EXIT_CODES)]
    Cleanup {
        /// Base URL of the deployment.
        #[arg(long, value_name = "URL")]
        target: String,
        /// Extra header for every request, `Name: value` (repeatable).
        #[arg(long = "header", value_name = "HEADER")]
        headers: Vec<String>,
        /// Where the run folders (with their ledger.jsonl) are.
        #[arg(long, default_value = "reports", value_name = "DIR")]
        report_dir: PathBuf,
        /// Only list what would be deleted.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Base URL of a deployment to check. Without it, the reference is started in-process.
    /// The platform admin key comes from AUTHCONF_ADMIN_KEY and is never printed; the
    /// deployment's JWT_SECRET, optional, from AUTHCONF_JWT_SECRET (@needs-jwt-secret).
    #[arg(long, value_name = "URL")]
    target: Option<String>,
    /// Routing base domain for subdomain scenarios (default: the one the target declares).
    #[arg(long, value_name = "DOMAIN")]
    base_domain: Option<String>,
    /// Act as the URL target's mail API on ADDR (e.g. 127.0.0.1:9025), capturing every mail so
    /// that @needs-mail scenarios run; start the target with MAIL_API_URL=http://ADDR/send.
    /// The key the target sends, if given in AUTHCONF_MAIL_KEY, must never appear in a mail
    /// or a response.
    #[arg(long, value_name = "ADDR", requires = "target")]
    mail_capture: Option<std::net::SocketAddr>,
    /// Extra header for every request, `Name: value` (repeatable), e.g. access-proxy tokens.
    #[arg(long = "header", value_name = "HEADER")]
    headers: Vec<String>,
    /// Cucumber tag expression, e.g. '@isolation and not @rotation'.
    #[arg(long, value_name = "EXPR")]
    tags: Option<String>,
    /// Regular expression on scenario names.
    #[arg(long, value_name = "REGEX")]
    name: Option<String>,
    /// Stop at the first failing scenario.
    #[arg(long)]
    fail_fast: bool,
    /// Scenarios run at once (`@serial` scenarios always run alone).
    #[arg(long, default_value_t = 8, value_name = "N")]
    concurrency: usize,
    /// Allow `@destructive` scenarios on a non-embedded target.
    #[arg(long)]
    allow_destructive: bool,
    /// Known failures (TOML `[[failure]] scenario/reason`, or lines `name | reason`).
    #[arg(long, value_name = "FILE")]
    known_failures: Option<PathBuf>,
    /// Latency gate per endpoint, e.g. 'p99<300ms' (repeatable).
    #[arg(long, value_name = "GATE")]
    slo: Vec<String>,
    /// Where `<run id>/` and `latest` are written.
    #[arg(long, default_value = "reports", value_name = "DIR")]
    report_dir: PathBuf,
    /// Feature files (a directory or one file).
    #[arg(long, value_name = "PATH")]
    features: Option<PathBuf>,
    /// No progress lines, only the summary.
    #[arg(long)]
    quiet: bool,
    /// Which failure classes fail the run (exit 1): security, conformance (security and
    /// conformance) or any (also blocked and harness).
    #[arg(long, default_value = "any", value_name = "CLASS")]
    fail_on: String,
    /// A capabilities document (the JSON of /.well-known/authconf) for a target that serves
    /// none, or to correct the one it serves; merged over the target's, key by key.
    #[arg(long, value_name = "FILE")]
    capabilities: Option<PathBuf>,
    /// Take a capability as offered whatever the target declares (repeatable): a feature
    /// (userAuth, adminDashboard, graph, events, auditLog, rateLimit, ...),
    /// testControls.<name> or rateLimit.override; NAME=false takes it as absent.
    #[arg(long, value_name = "NAME")]
    assume: Vec<String>,
}

fn admin_key_from_env() -> Option<String> {
    std::env::var("AUTHCONF_ADMIN_KEY")
        .ok()
        .map(|k| k.trim().to_owned())
        .filter(|k| !k.is_empty())
}

fn run_options(a: RunArgs) -> Result<RunOptions, RunError> {
    let headers = a
        .headers
        .iter()
        .map(|h| options::parse_header(h))
        .collect::<Result<Vec<_>, _>>()?;
    let slo = a
        .slo
        .iter()
        .map(|s| Slo::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    let target = match a.target {
        Some(u) => Target::Url(u),
        None => Target::Embedded,
    };
    let admin_key = match target {
        Target::Url(_) => admin_key_from_env(),
        Target::Embedded => None,
    };
    let jwt_secret = match target {
        Target::Url(_) => std::env::var("AUTHCONF_JWT_SECRET")
            .ok()
            .map(|k| k.trim().to_owned())
            .filter(|k| !k.is_empty()),
        Target::Embedded => None,
    };
    let mail_capture = a.mail_capture.map(|addr| {
        let key = std::env::var("AUTHCONF_MAIL_KEY")
            .ok()
            .map(|k| k.trim().to_owned())
            .filter(|k| !k.is_empty());
        (addr, key)
    });
    Ok(RunOptions {
        target,
        admin_key,
        jwt_secret,
        mail_capture,
        base_domain: a.base_domain,
        headers,
        features: a.features.unwrap_or_else(options::default_features_dir),
        tags: a.tags,
        name: a.name,
        fail_fast: a.fail_fast,
        concurrency: a.concurrency,
        allow_destructive: a.allow_destructive,
        known_failures: a.known_failures,
        slo,
        report_dir: a.report_dir,
        progress: !a.quiet,
        summary: true,
        fail_on: authconf::FailOn::parse(&a.fail_on)?,
        capabilities_file: a.capabilities,
        assume: a.assume,
    })
}

async fn real_main(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Run(a) => {
            let opts = match run_options(*a) {
                Ok(o) => o,
                Err(e) => {
                    eprintln!("authconf: {e}");
                    return Ok(e.exit_code());
                }
            };
            match authconf::run_suite(opts).await {
                Ok(o) => Ok(o.exit_code()),
                Err(e) => {
                    eprintln!("authconf: {e}");
                    Ok(e.exit_code())
                }
            }
        }
        Command::Bench {
            target,
            baseline,
            concurrency,
            connections,
            tenants,
            hot_path_only,
            seconds,
            warmup,
            runs,
            threads,
            no_wrk,
            no_load,
            memory_tenants,
            memory_keys,
            out,
            data_dir,
            serve_hello,
        } => {
            if serve_hello {
                authconf::bench::serve_hello().await?;
                return Ok(0);
            }
            std::fs::create_dir_all(&out)?;
            if !no_load {
                let opts = authconf::bench::BenchOptions {
                    target,
                    admin_key: std::env::var("AUTHCONF_ADMIN_KEY").ok(),
                    baseline,
                    concurrency,
                    connections,
                    tenants,
                    hot_path_only,
                    duration: std::time::Duration::from_secs(seconds),
                    warmup: std::time::Duration::from_secs(warmup),
                    runs,
                    threads,
                    wrk: !no_wrk,
                    data_dir: data_dir.clone(),
                };
                let report = authconf::bench::run(opts).await?;
                print!("{}", authconf::bench::report::summary(&report));
                let path = out.join("load.json");
                std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
                println!("wrote {}", path.display());
            }
            if let Some(tenants) = memory_tenants {
                let m = authconf::bench::memory(tenants, memory_keys, data_dir.as_deref()).await?;
                println!(
                    "memory: {:.0} MiB resident with {} tenants and {} keys (filled in {:.0} s); \
                     after a restart: listening in {:.0} ms, first answer in {:.0} ms",
                    m.rss_mib,
                    m.tenants,
                    m.keys,
                    m.fill_seconds,
                    m.restart_listening_ms.unwrap_or(0.0),
                    m.restart_first_answer_ms.unwrap_or(0.0)
                );
                for t in &m.targets {
                    print!("{}", authconf::bench::report::target_line(t));
                }
                std::fs::write(out.join("memory.json"), serde_json::to_string_pretty(&m)?)?;
            }
            Ok(0)
        }
        Command::List { features, rules } => list(features, rules),
        Command::Cleanup {
            target,
            headers,
            report_dir,
            dry_run,
        } => cleanup(&target, &headers, &report_dir, dry_run).await,
    }
}

/// `authconf list`: the scenarios with their tags, or with `--rules` the rule map.
fn list(features: Option<PathBuf>, rules: bool) -> anyhow::Result<i32> {
    let path = features.unwrap_or_else(options::default_features_dir);
    let listed = match authconf::list_features(&path) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("authconf: {e}");
            return Ok(e.exit_code());
        }
    };
    if rules {
        let contract = authconf::rules::contract_beside(&path);
        let text = std::fs::read_to_string(&contract)
            .with_context(|| format!("reading {}", contract.display()))?;
        let map = authconf::rules::map(&text, &listed);
        print!("{}", authconf::rules::render(&map));
        return Ok(if map.is_complete() { 0 } else { 1 });
    }
    let mut feature = String::new();
    let mut tags = std::collections::BTreeMap::<String, usize>::new();
    for l in &listed {
        if l.feature != feature {
            println!("\nFeature: {}", l.feature);
            feature = l.feature.clone();
        }
        let t: Vec<String> = l.tags.iter().map(|t| format!("@{t}")).collect();
        println!("  {}  [{}]", l.name, t.join(" "));
        for t in &l.tags {
            *tags.entry(t.clone()).or_default() += 1;
        }
    }
    println!("\n{} scenarios. Tags:", listed.len());
    for (t, n) in tags {
        println!("  @{t}: {n}");
    }
    Ok(0)
}

/// `authconf cleanup`: deletes the tenants interrupted runs left.
async fn cleanup(
    target: &str,
    headers: &[String],
    report_dir: &std::path::Path,
    dry_run: bool,
) -> anyhow::Result<i32> {
    let Some(key) = admin_key_from_env() else {
        eprintln!("authconf: cleanup needs the platform admin key in AUTHCONF_ADMIN_KEY");
        return Ok(2);
    };
    let headers = match headers
        .iter()
        .map(|h| options::parse_header(h))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(h) => h,
        Err(e) => {
            eprintln!("authconf: {e}");
            return Ok(e.exit_code());
        }
    };
    match authconf::cleanup(target, &key, &headers, report_dir, dry_run).await {
        Ok(o) => {
            let verb = if dry_run { "would delete" } else { "deleted" };
            for id in &o.deleted {
                println!("{verb} {id}");
            }
            for e in &o.errors {
                eprintln!("failed: {e}");
            }
            println!(
                "{} tenants {verb}, {} failures",
                o.deleted.len(),
                o.errors.len()
            );
            Ok(if o.errors.is_empty() { 0 } else { 1 })
        }
        Err(e) => {
            eprintln!("authconf: {e}");
            Ok(e.exit_code())
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("authconf: {e:#}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(real_main(cli)) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("authconf: {e:#}");
            ExitCode::from(2)
        }
    }
}
