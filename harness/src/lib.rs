//! `authconf`: runs the Gherkin conformance suite of docs/contract.md against the embedded
//! reference `auth-service` or any deployment, and writes reports.
//!
//! The binary is a thin wrapper over [`run_suite`], [`list_features`] and [`cleanup`], so that
//! tests can run the suite programmatically against fake targets (wiremock) and check the
//! verdict of each scenario.
//!
//! Safety against shared deployments: every tenant the suite creates has the slug
//! `authconf-<run id>-...`, is written to `reports/<run id>/ledger.jsonl` before the create
//! call, and is deleted at the end of the run, after failures and after Ctrl-C too.

pub mod bench;
pub mod capabilities;
pub mod cleanup;
pub mod collect;
pub mod known;
pub mod mail;
pub mod options;
pub mod preflight;
pub mod report;
pub mod rules;
pub mod sections;
pub mod verdicts;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use authconf_scenarios::{AuthWorld, Capabilities, FailureClass, Propagation, RunContext};
use cucumber::gherkin::tagexpr::TagOperation;
use cucumber::tag::Ext as _;
use cucumber::{gherkin, World as _};

pub use capabilities::{CapabilityLine, Source as CapabilitySource};
pub use cleanup::{cleanup, CleanupOutcome};
pub use collect::{Failure, ScenarioResult, StepResult, StepStatus, Verdict};
pub use known::KnownFailures;
pub use options::{FailOn, RunOptions, Slo, Target};
pub use report::Latency;
pub use verdicts::Cause;

/// Why a run could not be carried out (as opposed to a scenario failing).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Bad options or configuration: exit code 2.
    #[error("usage: {0}")]
    Usage(String),
    /// The target did not answer: exit code 3.
    #[error("target unreachable: {0}")]
    Unreachable(String),
    /// Reports or ledger could not be written: exit code 2.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

impl RunError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::Usage(_) | RunError::Io(_) => 2,
            RunError::Unreachable(_) => 3,
        }
    }
}

/// Exit code of an interrupted run (Ctrl-C), as shells report SIGINT.
pub const EXIT_INTERRUPTED: i32 = 130;

/// What a run found.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// The run id (`yyMMddHHmmss-xxxx`).
    pub run_id: String,
    /// `reports/<run id>`.
    pub report_path: PathBuf,
    /// The target as shown in reports (`embedded reference (http://...)` or the URL).
    pub target: String,
    /// Every selected scenario, skipped ones included.
    pub scenarios: Vec<ScenarioResult>,
    /// Latency by endpoint.
    pub latencies: Vec<Latency>,
    /// Propagation delays measured by polling steps.
    pub propagation: Vec<Propagation>,
    /// SLO gates that were missed.
    pub slo_violations: Vec<String>,
    /// Feature files that failed to parse.
    pub parse_errors: Vec<String>,
    /// Known-failure entries that matched no selected scenario (warnings).
    pub unused_known_failures: Vec<String>,
    /// Tenants that could not be deleted at the end.
    pub cleanup_errors: Vec<String>,
    /// Ctrl-C ended the run.
    pub interrupted: bool,
    /// Suite wall time (target start to the last scenario).
    pub wall: Duration,
    /// Time spent deleting the run's tenants afterwards.
    pub cleanup_time: Duration,
    /// Tenants this run's cleanup deleted (and confirmed gone).
    pub tenants_deleted: usize,
    /// The run's tenants that were already gone (never created, or deleted by a scenario).
    pub tenants_already_gone: usize,
    /// Deleted tenants whose key was tried after the delete.
    pub deleted_keys_checked: usize,
    /// Which failure classes fail the run.
    pub fail_on: FailOn,
    /// Run-wide findings that are no scenario's failure (non-unique tokens, keys of deleted
    /// tenants that still authenticate), redacted.
    pub findings: Vec<(FailureClass, String)>,
    /// Dialect fallbacks setup steps used, each once.
    pub fallbacks: Vec<String>,
    /// Every capability the run used, with where it came from.
    pub capabilities: Vec<CapabilityLine>,
}

impl RunOutcome {
    /// 0 passed, 1 a failure of a class `--fail-on` gates on (a failed scenario or a
    /// finding), a known failure that passed, a missed SLO or a feature file error; 130
    /// interrupted.
    pub fn exit_code(&self) -> i32 {
        let gated = self.scenarios.iter().any(|r| match r.verdict {
            Verdict::Failed => self.fail_on.gates(r.class),
            Verdict::UnexpectedPass(_) => true,
            _ => false,
        }) || self
            .findings
            .iter()
            .any(|(c, _)| self.fail_on.gates(Some(*c)));
        if self.interrupted {
            EXIT_INTERRUPTED
        } else if gated || !self.slo_violations.is_empty() || !self.parse_errors.is_empty() {
            1
        } else {
            0
        }
    }

    /// Failures grouped by cause, most scenarios first.
    pub fn causes(&self) -> Vec<Cause> {
        verdicts::causes(&self.scenarios)
    }

    /// The result of the scenario with this name.
    pub fn scenario(&self, name: &str) -> Option<&ScenarioResult> {
        self.scenarios.iter().find(|r| r.name == name)
    }
}

/// A run id: UTC time and 4 random characters, lowercase (it goes into DNS-label slugs).
pub fn new_run_id() -> String {
    use rand::Rng as _;
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (y, mo, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    let r: String = rand::thread_rng()
        .sample_iter(rand::distributions::Alphanumeric)
        .take(4)
        .map(|c| (c as char).to_ascii_lowercase())
        .collect();
    format!(
        "{:02}{:02}{:02}{:02}{:02}{:02}-{r}",
        y % 100,
        mo,
        d,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Why a scenario with these tags cannot run on this target, if it cannot.
///
/// A capability the target claims is taken at its word: the scenario runs and fails if the
/// target does not deliver.
pub fn skip_reason(
    tags: &[String],
    caps: &Capabilities,
    embedded: bool,
    allow_destructive: bool,
    base_domain: Option<&str>,
) -> Option<String> {
    for t in tags {
        let why = match t.as_str() {
            "destructive" if !embedded && !allow_destructive => {
                Some("@destructive needs --allow-destructive on a non-embedded target".to_owned())
            }
            "needs-test-controls" if !caps.test_control("enabled") => {
                Some("the target offers no test controls (testControls.enabled)".into())
            }
            "needs-clock" if !caps.test_control("clock") => {
                Some("the target offers no settable clock (testControls.clock)".into())
            }
            "needs-evict" if !caps.test_control("evict") => {
                Some("the target cannot evict objects (testControls.evict)".into())
            }
            "needs-alarms" if !caps.test_control("alarms") => {
                Some("the target cannot fire alarms on demand (testControls.alarms)".into())
            }
            "needs-rate-limit" if !caps.feature("rateLimit") => {
                Some("the target declares no rate limiting (features.rateLimit)".into())
            }
            "needs-rate-limit-override" if !caps.rate_limit_override => {
                Some("the target declares no rate-limit override (rateLimit.override)".into())
            }
            "needs-durable-objects" | "needs-audit-log" if !caps.feature("auditLog") => {
                Some("the target declares no audit log (features.auditLog)".into())
            }
            "needs-events" if !caps.feature("events") => {
                Some("the target declares no WebSocket events (features.events)".into())
            }
            "needs-graph" if !caps.feature("graph") => {
                Some("the target declares no graph (features.graph)".into())
            }
            "needs-admin-dashboard" if !caps.feature("adminDashboard") => Some(
                "the target declares no admin dashboard and usage metrics (features.adminDashboard)"
                    .into(),
            ),
            "needs-user-auth" if !caps.feature("userAuth") => {
                Some("the target declares no end-user auth (features.userAuth)".into())
            }
            "needs-mail" if !caps.feature("mailCapture") => Some(
                "the target offers no mail capture that authconf can read (features.mailCapture; the embedded reference gets a wiremock mail API)"
                    .into(),
            ),
            "needs-jwt-secret" if !caps.feature("jwtSecretKnown") => Some(
                "the harness does not know the target's JWT_SECRET (set AUTHCONF_JWT_SECRET)"
                    .into(),
            ),
            "needs-subdomain" if base_domain.is_none() => {
                Some("no routing base domain (the target declares none; pass --base-domain)".into())
            }
            "needs-capabilities" if !caps.present => {
                Some("the target serves no /.well-known/authconf".into())
            }
            _ => None,
        };
        if why.is_some() {
            return why;
        }
    }
    None
}

/// The target started or reached for a run.
struct Prepared {
    base_url: String,
    admin_key: Option<String>,
    embedded: Option<auth_service::RunningService>,
    _data_dir: Option<tempfile::TempDir>,
    /// The mail API the embedded reference sends to.
    mail: Option<mail::WiremockMail>,
    /// The JWT signing secret, when the harness knows it.
    jwt_secret: Option<String>,
    /// The mail API's key: never to appear in a response or in a mail body.
    mail_key: Option<String>,
}

fn random_alnum(n: usize) -> String {
    use rand::Rng as _;
    rand::thread_rng()
        .sample_iter(rand::distributions::Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

async fn prepare_target(opts: &RunOptions) -> Result<Prepared, RunError> {
    match &opts.target {
        Target::Embedded => {
            let dir = tempfile::tempdir()?;
            let key = {
                use rand::Rng as _;
                let r: String = rand::thread_rng()
                    .sample_iter(rand::distributions::Alphanumeric)
                    .take(40)
                    .map(char::from)
                    .collect();
                format!("sk_live_{r}")
            };
            let config = auth_service::Config {
                listen: ([127, 0, 0, 1], 0).into(),
                data_dir: dir.path().to_path_buf(),
                base_domain: Some(
                    opts.base_domain
                        .clone()
                        .unwrap_or_else(|| "auth.test".into()),
                ),
                admin_key: Some(key),
                test_hooks: true,
            };
            // A mail API that captures every mail, and secrets the harness chose: the steps
            // read tokens from the mail and can sign JWTs independently.
            let mail = mail::WiremockMail::start().await;
            let jwt_secret = random_alnum(48);
            let mail_key = format!("mailkey_{}", random_alnum(32));
            let extras = auth_service::Extras {
                jwt_secret: jwt_secret.clone(),
                jwt_secret_previous: None,
                mail: Some(auth_service::MailConfig::new(mail.url(), mail_key.clone())),
            };
            let svc = auth_service::spawn_with(config, extras)
                .await
                .map_err(|e| {
                    RunError::Unreachable(format!("the embedded reference did not start: {e:#}"))
                })?;
            Ok(Prepared {
                base_url: svc.base_url(),
                admin_key: Some(svc.admin_key.clone()),
                embedded: Some(svc),
                _data_dir: Some(dir),
                mail: Some(mail),
                jwt_secret: Some(jwt_secret),
                mail_key: Some(mail_key),
            })
        }
        Target::Url(u) => {
            let url = reqwest::Url::parse(u)
                .map_err(|e| RunError::Usage(format!("--target {u:?}: {e}")))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(RunError::Usage(format!(
                    "--target {u:?}: http or https only"
                )));
            }
            if opts.admin_key.is_none() {
                return Err(RunError::Usage(
                    "a URL target needs the platform admin key in AUTHCONF_ADMIN_KEY".into(),
                ));
            }
            let (mail, mail_key) = match &opts.mail_capture {
                Some((addr, key)) => {
                    let mail = mail::WiremockMail::start_on(*addr).await.map_err(|e| {
                        RunError::Usage(format!("--mail-capture {addr}: cannot listen: {e}"))
                    })?;
                    (Some(mail), key.clone())
                }
                None => (None, None),
            };
            Ok(Prepared {
                base_url: u.trim_end_matches('/').to_owned(),
                admin_key: opts.admin_key.clone(),
                embedded: None,
                _data_dir: None,
                mail,
                jwt_secret: opts.jwt_secret.clone(),
                mail_key,
            })
        }
    }
}

pub(crate) fn client(headers: &[(String, String)]) -> Result<reqwest::Client, RunError> {
    let _ = headers;
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(32)
        .build()
        .map_err(|e| RunError::Usage(format!("HTTP client: {e}")))
}

pub(crate) fn with_headers(
    rb: reqwest::RequestBuilder,
    headers: &[(String, String)],
) -> reqwest::RequestBuilder {
    headers.iter().fold(rb, |rb, (k, v)| rb.header(k, v))
}

/// A scenario the target cannot run, reported as skipped with the reason.
fn skipped_result(
    feat: &gherkin::Feature,
    sc: &gherkin::Scenario,
    file: String,
    tags: Vec<String>,
    why: String,
) -> ScenarioResult {
    ScenarioResult {
        feature: feat.name.clone(),
        file,
        name: sc.name.clone(),
        tags,
        line: sc.position.line,
        verdict: Verdict::Skipped(why),
        duration: Duration::ZERO,
        steps: sc
            .steps
            .iter()
            .map(|st| StepResult {
                keyword: st.keyword.trim().to_owned(),
                text: st.value.clone(),
                line: st.position.line,
                status: StepStatus::Skipped,
                duration: Duration::ZERO,
            })
            .collect(),
        failure: None,
        class: None,
        deviations: Vec::new(),
    }
}

/// The scenario key (`<feature path>:<line>`, as [`ScenarioResult`] has it) and the tags
/// (feature, rule, scenario) the `before` hook gives each World.
fn scenario_identity(
    feat: &gherkin::Feature,
    rule: Option<&gherkin::Rule>,
    sc: &gherkin::Scenario,
) -> (String, Vec<String>) {
    let file = feat
        .path
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    (
        collect::scenario_key(&file, sc.position.line),
        scenario_tags(feat, rule, sc),
    )
}

/// A scenario's tags with those it inherits: the feature's, then the rule's, then its own.
fn scenario_tags(
    feat: &gherkin::Feature,
    rule: Option<&gherkin::Rule>,
    sc: &gherkin::Scenario,
) -> Vec<String> {
    feat.tags
        .iter()
        .chain(rule.iter().flat_map(|r| r.tags.iter()))
        .chain(sc.tags.iter())
        .cloned()
        .collect()
}

/// Keeps one key of each tenant the scenario created (its secret key, else any of its
/// keys), so that cleanup can check the key stops working once the tenant is deleted.
fn remember_tenant_keys(w: &AuthWorld, keys: &cleanup::TenantKeys) {
    let mut k = keys.lock().expect("tenant keys poisoned");
    for (name, t) in &w.tenants {
        let secret = w
            .keys
            .get(&format!("{name}:secret"))
            .and_then(|r| r.secret.clone())
            .or_else(|| {
                w.keys
                    .values()
                    .filter(|r| &r.tenant == name)
                    .find_map(|r| r.secret.clone())
            });
        if let Some(s) = secret {
            k.entry(t.id.clone()).or_insert(s);
        }
    }
}

/// Parses every feature file under `path`.
pub fn parse_features(path: &Path) -> Result<Vec<gherkin::Feature>, RunError> {
    let mut files = Vec::new();
    if path.is_dir() {
        let mut stack = vec![path.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d)? {
                let p = e?.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "feature") {
                    files.push(p);
                }
            }
        }
    } else if path.is_file() {
        files.push(path.to_path_buf());
    } else {
        return Err(RunError::Usage(format!(
            "no feature files at {}",
            path.display()
        )));
    }
    files.sort();
    files
        .iter()
        .map(|f| {
            gherkin::Feature::parse_path(f, gherkin::GherkinEnv::default())
                .map_err(|e| RunError::Usage(format!("{}: {e}", f.display())))
        })
        .collect()
}

/// One scenario as listed (outlines expanded per example row).
#[derive(Debug, Clone)]
pub struct Listed {
    /// Feature name.
    pub feature: String,
    /// Scenario name, placeholders filled in.
    pub name: String,
    /// Tags (feature and scenario), without `@`.
    pub tags: Vec<String>,
}

fn fill(template: &str, header: &[String], row: &[String]) -> String {
    let mut s = template.to_owned();
    for (h, v) in header.iter().zip(row) {
        s = s.replace(&format!("<{h}>"), v);
    }
    s
}

/// Every scenario of the features, outlines expanded, in file order.
pub fn list_features(path: &Path) -> Result<Vec<Listed>, RunError> {
    let mut out = Vec::new();
    for f in parse_features(path)? {
        let scenarios = f.scenarios.iter().map(|s| (s, Vec::new())).chain(
            f.rules
                .iter()
                .flat_map(|r| r.scenarios.iter().map(move |s| (s, r.tags.clone()))),
        );
        for (s, rule_tags) in scenarios {
            let base: Vec<String> = f
                .tags
                .iter()
                .chain(rule_tags.iter())
                .chain(s.tags.iter())
                .cloned()
                .collect();
            if s.examples.is_empty() {
                out.push(Listed {
                    feature: f.name.clone(),
                    name: s.name.clone(),
                    tags: base,
                });
                continue;
            }
            for ex in &s.examples {
                let Some(table) = &ex.table else { continue };
                let Some((header, rows)) = table.rows.split_first() else {
                    continue;
                };
                for row in rows {
                    let mut tags = base.clone();
                    tags.extend(ex.tags.iter().cloned());
                    out.push(Listed {
                        feature: f.name.clone(),
                        name: fill(&s.name, header, row),
                        tags,
                    });
                }
            }
        }
    }
    Ok(out)
}

fn selection(opts: &RunOptions) -> Result<(Option<TagOperation>, Option<regex::Regex>), RunError> {
    let tags = opts
        .tags
        .as_deref()
        .map(|t| {
            t.parse::<TagOperation>()
                .map_err(|e| RunError::Usage(format!("--tags {t:?}: {e}")))
        })
        .transpose()?;
    let name = opts
        .name
        .as_deref()
        .map(|n| regex::Regex::new(n).map_err(|e| RunError::Usage(format!("--name {n:?}: {e}"))))
        .transpose()?;
    Ok((tags, name))
}

/// Runs the suite. Scenario failures are in the outcome ([`RunOutcome::exit_code`]); an
/// error means the run itself could not be carried out.
pub async fn run_suite(opts: RunOptions) -> Result<RunOutcome, RunError> {
    // Everything that can be checked without the target first: usage errors exit 2 early.
    if opts.concurrency == 0 {
        return Err(RunError::Usage("--concurrency must be at least 1".into()));
    }
    let (tag_filter, name_filter) = selection(&opts)?;
    let known = match &opts.known_failures {
        Some(p) => KnownFailures::load(p)?,
        None => KnownFailures::default(),
    };
    let listed = list_features(&opts.features)?;
    let selected = |name: &str, tags: &[String]| {
        tag_filter.as_ref().is_none_or(|t| t.eval(tags.iter()))
            && name_filter.as_ref().is_none_or(|r| r.is_match(name))
    };
    let total_hint = listed.iter().filter(|l| selected(&l.name, &l.tags)).count();
    if total_hint == 0 {
        return Err(RunError::Usage("the selection matches no scenario".into()));
    }
    capabilities::check_assumptions(&opts.assume)?;
    let caps_file = opts
        .capabilities_file
        .as_deref()
        .map(|p| capabilities::load_file(p).map(|v| (v, p.display().to_string())))
        .transpose()?;

    let started = Instant::now();
    let prepared = prepare_target(&opts).await?;
    let http = client(&opts.headers)?;
    preflight::check_reachable(&http, &prepared.base_url, &opts.headers).await?;
    preflight::check_admin_api(
        &http,
        &prepared.base_url,
        prepared.admin_key.as_deref(),
        &opts.headers,
    )
    .await?;
    let prober = capabilities::Prober {
        http: &http,
        base: &prepared.base_url,
        admin_key: prepared.admin_key.as_deref(),
        headers: &opts.headers,
    };
    let (caps, capability_lines) = capabilities::discover(
        &prober,
        caps_file.as_ref().map(|(v, p)| (v, p.clone())),
        &opts.assume,
        capabilities::HarnessSide {
            mail_capture: prepared.mail.is_some(),
            jwt_secret_known: prepared.jwt_secret.is_some(),
        },
    )
    .await?;
    let embedded = prepared.embedded.is_some();
    let base_domain = opts
        .base_domain
        .clone()
        .or_else(|| caps.base_domain.clone());
    if !embedded {
        if let Some(k) = &prepared.admin_key {
            if k.starts_with("sk_live_") && opts.progress {
                eprintln!(
                    "warning: AUTHCONF_ADMIN_KEY is a live-mode key: this run creates and deletes tenants (slug prefix authconf-) on {}",
                    prepared.base_url
                );
            }
        }
    }

    let run_id = new_run_id();
    let run_dir = opts.report_dir.join(&run_id);
    std::fs::create_dir_all(&run_dir)?;
    let target_label = if embedded {
        format!("embedded reference ({})", prepared.base_url)
    } else {
        prepared.base_url.clone()
    };
    let ctx = RunContext::new(
        prepared.base_url.clone(),
        prepared.admin_key.clone(),
        base_domain.clone(),
        opts.headers.clone(),
        run_id.clone(),
        caps.clone(),
        embedded,
        http.clone(),
        Some(run_dir.join("ledger.jsonl")),
    );
    if let Some(m) = &prepared.mail {
        let _ = ctx.mail.set(Arc::new(m.clone()));
    }
    if let Some(j) = &prepared.jwt_secret {
        let _ = ctx.jwt_secret.set(j.clone());
        // Never shown by the target: any response containing it leaks.
        ctx.secrets.remember(j, "JWT_SECRET", 0);
    }
    if let Some(k) = &prepared.mail_key {
        ctx.secrets.remember(k, "MAIL_API_KEY", 0);
    }
    if opts.progress {
        println!(
            "authconf run {run_id}: {total_hint} scenarios against {target_label} (concurrency {})",
            opts.concurrency
        );
        if !caps.present {
            println!("  the target serves no /.well-known/authconf");
        }
        for l in &capability_lines {
            println!(
                "  capability {}: {} ({})",
                l.name,
                if l.enabled { "yes" } else { "no" },
                l.source
            );
        }
    }

    // Scenarios the target cannot run are filtered out of the cucumber run and reported as
    // skipped with their reason.
    let skipped: Arc<Mutex<Vec<ScenarioResult>>> = Arc::default();
    let filter = {
        let skipped = skipped.clone();
        let caps = caps.clone();
        let base_domain = base_domain.clone();
        let allow = opts.allow_destructive;
        let tag_filter = tag_filter.clone();
        let name_filter = name_filter.clone();
        move |feat: &gherkin::Feature, rule: Option<&gherkin::Rule>, sc: &gherkin::Scenario| {
            let tags = scenario_tags(feat, rule, sc);
            let chosen = tag_filter.as_ref().is_none_or(|t| t.eval(tags.iter()))
                && name_filter.as_ref().is_none_or(|r| r.is_match(&sc.name));
            if !chosen {
                return false;
            }
            match skip_reason(&tags, &caps, embedded, allow, base_domain.as_deref()) {
                None => true,
                Some(why) => {
                    let mut s = skipped.lock().expect("skip list poisoned");
                    let file = feat
                        .path
                        .as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default();
                    if !s
                        .iter()
                        .any(|r| r.file == file && r.line == sc.position.line)
                    {
                        s.push(skipped_result(feat, sc, file, tags, why));
                    }
                    false
                }
            }
        }
    };

    let state: Arc<Mutex<collect::Collected>> = Arc::default();
    let writer = collect::Collector::new(state.clone(), ctx.clone(), opts.progress, total_hint);
    let tenant_keys: cleanup::TenantKeys = Arc::default();
    let mut cucumber = AuthWorld::cucumber()
        .before(|feat, rule, sc, world| {
            let (key, tags) = scenario_identity(feat, rule, sc);
            world.scenario_key = Some(key);
            world.scenario_tags = tags;
            Box::pin(async {})
        })
        .after({
            let tenant_keys = tenant_keys.clone();
            move |_, _, _, _, world| {
                if let Some(w) = world {
                    remember_tenant_keys(w, &tenant_keys);
                }
                Box::pin(async {})
            }
        })
        .with_writer(writer)
        .with_cli(cucumber::cli::Opts::<_, _, _, cucumber::cli::Empty>::default())
        .max_concurrent_scenarios(opts.concurrency);
    if opts.fail_fast {
        cucumber = cucumber.fail_fast();
    }
    let run = authconf_scenarios::with_context(
        ctx.clone(),
        cucumber.filter_run(opts.features.clone(), filter),
    );
    let interrupted = tokio::select! {
        _ = run => false,
        _ = tokio::signal::ctrl_c() => true,
    };
    let wall = started.elapsed();
    if interrupted && opts.progress {
        eprintln!("interrupted: deleting this run's tenants");
    }

    let cleanup_started = Instant::now();
    let deleted = cleanup::delete_tenants(&ctx, &opts.headers).await;
    if opts.progress && !deleted.errors.is_empty() {
        eprintln!(
            "{} tenants could not be deleted; run `authconf cleanup`",
            deleted.errors.len()
        );
    }
    let keys = std::mem::take(&mut *tenant_keys.lock().expect("tenant keys poisoned"));
    let deleted_keys_checked =
        cleanup::check_deleted_keys(&ctx, &opts.headers, &deleted.gone, &keys).await;
    let cleanup_time = cleanup_started.elapsed();

    // Verdicts: collected results, skipped ones, then the known-failures list.
    let (mut results, parse_errors) = {
        let mut st = state.lock().expect("collector poisoned");
        (
            std::mem::take(&mut st.results),
            std::mem::take(&mut st.parse_errors),
        )
    };
    results.extend(skipped.lock().expect("skip list poisoned").drain(..));
    results.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    let unused_known_failures = known.apply(&mut results);

    let latencies = report::latencies(&ctx.latencies.lock().expect("latencies poisoned"));
    let slo_violations = report::slo_violations(
        &opts.slo,
        &ctx.latencies.lock().expect("latencies poisoned"),
    );
    let outcome = RunOutcome {
        run_id: run_id.clone(),
        report_path: run_dir.clone(),
        target: target_label,
        scenarios: results,
        latencies,
        propagation: ctx
            .propagation
            .lock()
            .expect("propagation poisoned")
            .clone(),
        slo_violations,
        parse_errors,
        unused_known_failures,
        cleanup_errors: deleted.errors,
        interrupted,
        wall,
        cleanup_time,
        tenants_deleted: deleted.deleted,
        tenants_already_gone: deleted.already_gone,
        deleted_keys_checked,
        fail_on: opts.fail_on,
        findings: ctx.findings(),
        fallbacks: ctx.fallbacks(),
        capabilities: capability_lines,
    };
    let redact = |s: &str| ctx.secrets.redact(s);
    report::write_all(&outcome, &run_dir, &redact)?;
    report::update_latest(&opts.report_dir, &run_dir, &run_id)?;
    if opts.summary {
        print!("{}", redact(&report::text_summary(&outcome)));
        for k in &outcome.unused_known_failures {
            println!("warning: known failure {k:?} matches no selected scenario");
        }
        for e in &outcome.cleanup_errors {
            println!("warning: {e}");
        }
    }
    // The reference shuts down gracefully, waiting for open connections: close this run's
    // pooled connections first, so that it need not wait for them to time out.
    drop(ctx);
    drop(http);
    if let Some(svc) = prepared.embedded {
        let shutdown_started = Instant::now();
        svc.shutdown().await;
        if opts.progress && shutdown_started.elapsed() > Duration::from_secs(2) {
            eprintln!(
                "note: the embedded reference took {:.1} s to shut down",
                shutdown_started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(outcome)
}

pub(crate) fn url_segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_dns_safe() {
        let id = new_run_id();
        assert_eq!(id.len(), 17, "{id}");
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase() || b == b'-'));
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_418), (2025, 11, 26));
    }

    #[test]
    fn skips_need_reasons() {
        let caps = Capabilities::basic();
        let t = |s: &str| vec![s.to_owned()];
        assert!(skip_reason(&t("needs-rate-limit"), &caps, true, false, None).is_some());
        assert!(skip_reason(&t("destructive"), &caps, false, false, None).is_some());
        assert!(skip_reason(&t("destructive"), &caps, true, false, None).is_none());
        assert!(skip_reason(&t("needs-subdomain"), &caps, true, false, Some("a.test")).is_none());
        assert!(skip_reason(&t("isolation"), &caps, false, false, None).is_none());
        for tag in ["needs-user-auth", "needs-mail", "needs-jwt-secret"] {
            assert!(
                skip_reason(&t(tag), &caps, true, false, None).is_some(),
                "{tag}"
            );
        }
        let mut caps = Capabilities::basic();
        for f in ["userAuth", "mailCapture", "jwtSecretKnown"] {
            caps.features.insert(f.into(), true);
        }
        for tag in ["needs-user-auth", "needs-mail", "needs-jwt-secret"] {
            assert!(
                skip_reason(&t(tag), &caps, false, false, None).is_none(),
                "{tag}"
            );
        }
    }
}
