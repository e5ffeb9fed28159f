//! The harness in the field (issue 12): the whole suite against a fake target that speaks the
//! upstream cf-auth dialect (`tests/dialect`, see its module comment for the defects that
//! cannot be made black-box visible and why).
//!
//! With every carried defect on, the run must report no failure of class `harness`, no
//! "SECRET LEAK" (the fake never shows a secret twice: its prefixes are identifiers), and each
//! defect in the scenario meant to catch it, with its class. With every defect off, the same
//! dialect must pass `--fail-on security`.
//!
//! Figures (passed / failed by class / skipped), 2026-12-04 14:52 UTC, 418 scenarios a run,
//! as the `figures (...)` lines of this test print them (`--nocapture`):
//! - defects on: passed 32 / security 33, conformance 121, blocked 158, harness 0 / skipped 74
//! - defects off: passed 67 / security 0, conformance 119, blocked 158, harness 0 / skipped 74
//!
//! `AUTHCONF_DIALECT_DUMP=1` also prints every failure and skip of both runs.

#[path = "dialect/mod.rs"]
mod fake;

use authconf::{run_suite, FailOn, RunOptions, RunOutcome, ScenarioResult, Target, Verdict};
use authconf_scenarios::FailureClass;
use fake::Defects;

use FailureClass::{Conformance, Security};

/// Each carried defect, a part of the name of a scenario meant to catch it, and the class
/// it must be reported with.
const CAUGHT: &[(&str, &str, FailureClass)] = &[
    (
        "D1",
        "A tenant's secret key on GET /admin/tenants is refused with 403",
        Security,
    ),
    ("D1", "A tenant key cannot create tenants", Security),
    (
        "D2",
        "POST /do/tenant-state/{A.id}/reset without a key is refused",
        Security,
    ),
    (
        "D3",
        "Signing up in a tenant that does not exist is refused and creates nothing",
        Security,
    ),
    (
        "D4",
        "Logout refuses the token on the very next request",
        Security,
    ),
    (
        "D4",
        "Validate refuses a token after logout, as me does",
        Security,
    ),
    (
        "D5",
        "well-known secret \"default-secret-change-in-production\"",
        Security,
    ),
    (
        "D6",
        "A weak new password is refused on a password change",
        Security,
    ),
    (
        "D8",
        "answers an address in upper case exactly like in lower case",
        Security,
    ),
    (
        "D9",
        "new verification mail answers an unknown address exactly like a known one",
        Security,
    ),
    (
        "D10",
        "GET /v1/auth/me without an Authorization header answers 401, not 400",
        Conformance,
    ),
    (
        "D10",
        "Validate refuses a token setting alg to none, as me does",
        Conformance,
    ),
    ("D11", "Signing up in a deleted tenant is refused", Security),
    (
        "D11",
        "The platform admin key works on admin routes whatever routing header",
        Conformance,
    ),
    (
        "D11",
        "A token of tenant A named together with tenant B is refused",
        Security,
    ),
    (
        "D12",
        "The listed prefix of a restricted key alone is not a credential",
        Security,
    ),
    (
        "D12",
        "The listed prefix of a publishable key alone is not a credential",
        Security,
    ),
    ("D13", "refused naming the field parent_id", Conformance),
    (
        "D21",
        "A CORS preflight for POST /admin/tenants from a foreign origin",
        Security,
    ),
    (
        "D21",
        "A request from a foreign origin may not send credentials",
        Security,
    ),
    (
        "X-Tenant-ID twice",
        "A login with the tenant header sent twice",
        Security,
    ),
];

/// Run-wide findings each defect must produce: (defect, part of the finding's text).
const FINDINGS: &[(&str, &str)] = &[
    (
        "D11 (keys of deleted tenants)",
        "keys of deleted tenants still authenticate",
    ),
    ("tokens without jti", "non-unique token"),
];

async fn run(defects: Defects) -> RunOutcome {
    let target = fake::start(defects).await;
    let reports = tempfile::tempdir().expect("tempdir");
    let outcome = run_suite(RunOptions {
        target: Target::Url(target.url()),
        admin_key: Some(target.admin_key.clone()),
        report_dir: reports.path().to_owned(),
        allow_destructive: true,
        progress: false,
        summary: false,
        fail_on: FailOn::Security,
        concurrency: 8,
        ..RunOptions::default()
    })
    .await
    .expect("the suite runs");
    drop(target);
    outcome
}

fn first_line(r: &ScenarioResult) -> String {
    r.failure
        .as_ref()
        .map(|f| f.message.lines().next().unwrap_or("").to_owned())
        .unwrap_or_default()
}

/// `figures: passed P / security S, conformance C, blocked B, harness H / skipped K`.
fn figures(label: &str, outcome: &RunOutcome) -> String {
    let count =
        |f: &dyn Fn(&ScenarioResult) -> bool| outcome.scenarios.iter().filter(|r| f(r)).count();
    let failed =
        |c: FailureClass| count(&|r| matches!(r.verdict, Verdict::Failed) && r.class == Some(c));
    let line = format!(
        "figures ({label}): {} scenarios: passed {} / security {}, conformance {}, blocked {}, harness {} / skipped {}",
        outcome.scenarios.len(),
        count(&|r| matches!(r.verdict, Verdict::Passed)),
        failed(FailureClass::Security),
        failed(FailureClass::Conformance),
        failed(FailureClass::Blocked),
        failed(FailureClass::Harness),
        count(&|r| matches!(r.verdict, Verdict::Skipped(_))),
    );
    eprintln!("{line}");
    line
}

/// Failures that are the harness's own: class `harness`, or a "SECRET LEAK" (the fake never
/// shows a secret twice).
fn harness_faults(outcome: &RunOutcome) -> Vec<String> {
    outcome
        .scenarios
        .iter()
        .filter(|r| matches!(r.verdict, Verdict::Failed))
        .filter(|r| {
            r.class == Some(FailureClass::Harness)
                || r.failure
                    .as_ref()
                    .is_some_and(|f| f.message.contains("SECRET LEAK"))
        })
        .map(|r| format!("{} [{:?}]: {}", r.name, r.class, first_line(r)))
        .collect()
}

/// A failure message without run-specific ids and bodies: what was expected and got.
fn gist(message: &str) -> String {
    let re = regex::Regex::new(r"authconf-[0-9a-z-]+|key(:|%3A)[0-9a-f]+").expect("static regex");
    let head = message.split(": {").next().unwrap_or(message);
    re.replace_all(head, "<id>").into_owned()
}

fn failed_as<'a>(outcome: &'a RunOutcome, name: &str) -> Vec<&'a ScenarioResult> {
    outcome
        .scenarios
        .iter()
        .filter(|r| r.name.contains(name) && matches!(r.verdict, Verdict::Failed))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_dialect_gets_a_true_verdict() {
    let on = run(Defects::all()).await;
    let off = run(Defects::none()).await;
    let mut problems = Vec::new();
    for (label, outcome) in [("defects on", &on), ("defects off", &off)] {
        figures(label, outcome);
        if std::env::var_os("AUTHCONF_DIALECT_DUMP").is_some() {
            for r in outcome
                .scenarios
                .iter()
                .filter(|r| matches!(r.verdict, Verdict::Failed))
            {
                eprintln!("{label} | {:?} | {} | {}", r.class, r.name, first_line(r));
            }
            for r in &outcome.scenarios {
                if let Verdict::Skipped(why) = &r.verdict {
                    eprintln!("{label} | skipped | {} | {why}", r.name);
                }
            }
        }
        for f in harness_faults(outcome) {
            problems.push(format!("{label}: a harness fault: {f}"));
        }
    }
    for (defect, name, class) in CAUGHT {
        let hits = failed_as(&on, name);
        if hits.is_empty() {
            problems.push(format!(
                "{defect} not caught: no failed scenario named like {name:?}"
            ));
        }
        for r in hits.iter().filter(|r| r.class != Some(*class)) {
            problems.push(format!(
                "{defect} caught as {:?}, not {class}: {} — {}",
                r.class,
                r.name,
                first_line(r)
            ));
        }
    }
    // The failure must be the defect's doing: without it, the same scenario may still fail
    // on a dialect difference, but never with the same message.
    for (defect, name, _) in CAUGHT {
        for r in failed_as(&off, name) {
            let same = failed_as(&on, name)
                .iter()
                .any(|o| o.name == r.name && gist(&first_line(o)) == gist(&first_line(r)));
            if same {
                problems.push(format!(
                    "{defect}: {} fails the same way without the defect: {}",
                    r.name,
                    first_line(r)
                ));
            }
        }
    }
    for (defect, text) in FINDINGS {
        if !on
            .findings
            .iter()
            .any(|(c, f)| *c == Security && f.contains(text))
        {
            problems.push(format!("{defect}: no security finding {text:?}"));
        }
        if off.findings.iter().any(|(_, f)| f.contains(text)) {
            problems.push(format!("{defect}: the finding {text:?} without the defect"));
        }
    }
    for r in off
        .scenarios
        .iter()
        .filter(|r| matches!(r.verdict, Verdict::Failed) && r.class == Some(FailureClass::Security))
    {
        problems.push(format!(
            "defects off: a security failure: {} — {}",
            r.name,
            first_line(r)
        ));
    }
    if off.exit_code() != 0 {
        problems.push(format!(
            "defects off: exit code {} under --fail-on security (findings: {:?})",
            off.exit_code(),
            off.findings
        ));
    }
    if on.exit_code() != 1 {
        problems.push(format!(
            "defects on: exit code {}, expected 1",
            on.exit_code()
        ));
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
