//! `run_suite`: the phases of a run in order. What can be checked without the target first
//! (usage errors exit 2 early), then the target, its capabilities, the scenarios, cleanup,
//! verdicts and reports; each phase is a function here or a module of its own.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use authconf_scenarios::{AuthWorld, Capabilities, RunContext};
use cucumber::{gherkin, World as _};
use serde_json::Value;

use crate::capabilities::{self, CapabilityLine};
use crate::cleanup::{self, RunCleanup, TenantKeys};
use crate::collect::{self, Collected};
use crate::error::RunError;
use crate::http::client;
use crate::known::KnownFailures;
use crate::latency;
use crate::listing::list_features;
use crate::options::RunOptions;
use crate::outcome::RunOutcome;
use crate::preflight;
use crate::report;
use crate::results::{scenario_key, ScenarioResult};
use crate::run_id::new_run_id;
use crate::select::{scenario_filter, scenario_tags, Selection, SkipRules};
use crate::target::{self, Prepared};

/// What the options decide before the target is touched.
struct Plan {
    selection: Selection,
    known: KnownFailures,
    /// Selected scenarios (outlines expanded), skipped ones included.
    total: usize,
    /// `--capabilities FILE`, read, with its path for the reports.
    caps_file: Option<(Value, String)>,
}

/// Everything that can be checked without the target: usage errors exit 2 early.
fn plan(opts: &RunOptions) -> Result<Plan, RunError> {
    if opts.concurrency == 0 {
        return Err(RunError::Usage("--concurrency must be at least 1".into()));
    }
    let selection = Selection::from_options(opts)?;
    let known = match &opts.known_failures {
        Some(p) => KnownFailures::load(p)?,
        None => KnownFailures::default(),
    };
    let listed = list_features(&opts.features)?;
    let total = listed
        .iter()
        .filter(|l| selection.chosen(&l.name, &l.tags))
        .count();
    if total == 0 {
        return Err(RunError::Usage("the selection matches no scenario".into()));
    }
    capabilities::check_assumptions(&opts.assume)?;
    let caps_file = opts
        .capabilities_file
        .as_deref()
        .map(|p| capabilities::load_file(p).map(|v| (v, p.display().to_string())))
        .transpose()?;
    Ok(Plan {
        selection,
        known,
        total,
        caps_file,
    })
}

/// The target once preflight passed and its capabilities are known.
struct Reached {
    caps: Capabilities,
    lines: Vec<CapabilityLine>,
    embedded: bool,
    base_domain: Option<String>,
}

/// Preflight (reachable, admin API answers), then the capabilities.
async fn reach(
    opts: &RunOptions,
    prepared: &Prepared,
    http: &reqwest::Client,
    caps_file: Option<&(Value, String)>,
) -> Result<Reached, RunError> {
    preflight::check_reachable(http, &prepared.base_url, &opts.headers).await?;
    preflight::check_admin_api(
        http,
        &prepared.base_url,
        prepared.admin_key.as_deref(),
        &opts.headers,
    )
    .await?;
    let prober = capabilities::Prober {
        http,
        base: &prepared.base_url,
        admin_key: prepared.admin_key.as_deref(),
        headers: &opts.headers,
    };
    let (caps, lines) = capabilities::discover(
        &prober,
        caps_file.map(|(v, p)| (v, p.clone())),
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
    Ok(Reached {
        caps,
        lines,
        embedded,
        base_domain,
    })
}

/// The context every scenario of the run shares, with the secrets the target must never
/// show registered.
fn context(
    opts: &RunOptions,
    prepared: &Prepared,
    reached: &Reached,
    http: &reqwest::Client,
    run_id: &str,
    run_dir: &std::path::Path,
) -> Arc<RunContext> {
    let ctx = RunContext::new(
        prepared.base_url.clone(),
        prepared.admin_key.clone(),
        reached.base_domain.clone(),
        opts.headers.clone(),
        run_id.to_owned(),
        reached.caps.clone(),
        reached.embedded,
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
    ctx
}

/// The run's opening lines: what runs against what, and every capability with its source.
fn announce(opts: &RunOptions, run_id: &str, total: usize, target_label: &str, reached: &Reached) {
    if !opts.progress {
        return;
    }
    println!(
        "authconf run {run_id}: {total} scenarios against {target_label} (concurrency {})",
        opts.concurrency
    );
    if !reached.caps.present {
        println!("  the target serves no /.well-known/authconf");
    }
    for l in &reached.lines {
        println!(
            "  capability {}: {} ({})",
            l.name,
            if l.enabled { "yes" } else { "no" },
            l.source
        );
    }
}

/// What the cucumber run left behind.
struct Ran {
    collected: Arc<Mutex<Collected>>,
    skipped: Arc<Mutex<Vec<ScenarioResult>>>,
    tenant_keys: TenantKeys,
    interrupted: bool,
    /// Suite wall time: target start to the last scenario.
    wall: Duration,
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
        scenario_key(&file, sc.position.line),
        scenario_tags(feat, rule, sc),
    )
}

/// Runs the selected scenarios with cucumber until they end or Ctrl-C. Scenarios the target
/// cannot run are filtered out of the cucumber run and reported as skipped with their reason.
async fn scenarios(
    opts: &RunOptions,
    plan: &Plan,
    reached: &Reached,
    ctx: &Arc<RunContext>,
    started: Instant,
) -> Ran {
    let skipped: Arc<Mutex<Vec<ScenarioResult>>> = Arc::default();
    let filter = scenario_filter(
        plan.selection.clone(),
        SkipRules {
            caps: reached.caps.clone(),
            embedded: reached.embedded,
            allow_destructive: opts.allow_destructive,
            base_domain: reached.base_domain.clone(),
        },
        skipped.clone(),
    );
    let collected: Arc<Mutex<Collected>> = Arc::default();
    let writer = collect::Collector::new(collected.clone(), ctx.clone(), opts.progress, plan.total);
    let tenant_keys: TenantKeys = Arc::default();
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
                    cleanup::remember_tenant_keys(w, &tenant_keys);
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
    Ran {
        collected,
        skipped,
        tenant_keys,
        interrupted,
        wall: started.elapsed(),
    }
}

/// Verdicts: the collected results and the skipped ones in file order, with the known-failures
/// list applied. Returns the results, the feature file errors and the unused known failures.
fn verdicts(ran: &Ran, known: &KnownFailures) -> (Vec<ScenarioResult>, Vec<String>, Vec<String>) {
    let (mut results, parse_errors) = {
        let mut st = ran.collected.lock().expect("collector poisoned");
        (
            std::mem::take(&mut st.results),
            std::mem::take(&mut st.parse_errors),
        )
    };
    results.extend(ran.skipped.lock().expect("skip list poisoned").drain(..));
    results.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    let unused_known_failures = known.apply(&mut results);
    (results, parse_errors, unused_known_failures)
}

/// Where a run's reports go and how it names its target.
struct Identity {
    run_id: String,
    run_dir: PathBuf,
    target_label: String,
}

/// The outcome of the run from every phase's result.
fn outcome(
    opts: &RunOptions,
    id: &Identity,
    ctx: &RunContext,
    ran: &Ran,
    known: &KnownFailures,
    lines: Vec<CapabilityLine>,
    cleaned: RunCleanup,
) -> RunOutcome {
    let (results, parse_errors, unused_known_failures) = verdicts(ran, known);
    let latencies = latency::latencies(&ctx.latencies.lock().expect("latencies poisoned"));
    let slo_violations = latency::slo_violations(
        &opts.slo,
        &ctx.latencies.lock().expect("latencies poisoned"),
    );
    RunOutcome {
        run_id: id.run_id.clone(),
        report_path: id.run_dir.clone(),
        target: id.target_label.clone(),
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
        cleanup_errors: cleaned.deleted.errors,
        interrupted: ran.interrupted,
        wall: ran.wall,
        cleanup_time: cleaned.time,
        tenants_deleted: cleaned.deleted.deleted,
        tenants_already_gone: cleaned.deleted.already_gone,
        deleted_keys_checked: cleaned.keys_checked,
        fail_on: opts.fail_on,
        findings: ctx.findings(),
        fallbacks: ctx.fallbacks(),
        capabilities: lines,
    }
}

/// Writes the reports (redacted), points `latest` at them and prints the summary.
fn publish(opts: &RunOptions, outcome: &RunOutcome, ctx: &RunContext) -> Result<(), RunError> {
    let redact = |s: &str| ctx.secrets.redact(s);
    report::write_all(outcome, &outcome.report_path, &redact)?;
    report::update_latest(&opts.report_dir, &outcome.report_path, &outcome.run_id)?;
    if opts.summary {
        print!("{}", redact(&report::text_summary(outcome)));
        for k in &outcome.unused_known_failures {
            println!("warning: known failure {k:?} matches no selected scenario");
        }
        for e in &outcome.cleanup_errors {
            println!("warning: {e}");
        }
    }
    Ok(())
}

/// Runs the suite. Scenario failures are in the outcome ([`RunOutcome::exit_code`]); an
/// error means the run itself could not be carried out.
pub async fn run_suite(opts: RunOptions) -> Result<RunOutcome, RunError> {
    let plan = plan(&opts)?;

    let started = Instant::now();
    let prepared = target::prepare(&opts).await?;
    let http = client(&opts.headers)?;
    let reached = reach(&opts, &prepared, &http, plan.caps_file.as_ref()).await?;

    let run_id = new_run_id();
    let run_dir = opts.report_dir.join(&run_id);
    std::fs::create_dir_all(&run_dir)?;
    let target_label = if reached.embedded {
        format!("embedded reference ({})", prepared.base_url)
    } else {
        prepared.base_url.clone()
    };
    let ctx = context(&opts, &prepared, &reached, &http, &run_id, &run_dir);
    announce(&opts, &run_id, plan.total, &target_label, &reached);

    let ran = scenarios(&opts, &plan, &reached, &ctx, started).await;
    if ran.interrupted && opts.progress {
        eprintln!("interrupted: deleting this run's tenants");
    }

    let cleaned = cleanup::after_run(&ctx, &opts.headers, &ran.tenant_keys, opts.progress).await;
    let id = Identity {
        run_id,
        run_dir,
        target_label,
    };
    let outcome = outcome(&opts, &id, &ctx, &ran, &plan.known, reached.lines, cleaned);
    publish(&opts, &outcome, &ctx)?;
    // The reference shuts down gracefully, waiting for open connections: close this run's
    // pooled connections first, so that it need not wait for them to time out.
    drop(ctx);
    drop(http);
    prepared.shut_down(opts.progress).await;
    Ok(outcome)
}
