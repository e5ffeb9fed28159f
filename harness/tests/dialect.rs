//! The harness in the field (issue 12): the whole suite against a fake target that speaks the
//! upstream cf-auth dialect (`tests/dialect`).

#[path = "dialect/mod.rs"]
mod fake;

use authconf::{run_suite, FailOn, RunOptions, RunOutcome, Target, Verdict};
use fake::Defects;

async fn run(defects: Defects) -> RunOutcome {
    let fake = fake::start(defects).await;
    let reports = tempfile::tempdir().expect("tempdir");
    let outcome = run_suite(RunOptions {
        target: Target::Url(fake.url()),
        admin_key: Some(fake.admin_key.clone()),
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
    drop(fake);
    outcome
}

fn dump(outcome: &RunOutcome) {
    for r in &outcome.scenarios {
        let v = match &r.verdict {
            Verdict::Passed => "passed".to_owned(),
            Verdict::Skipped(_) => continue,
            Verdict::Failed => format!("FAILED {:?}", r.class),
            other => format!("{other:?}"),
        };
        let msg = r
            .failure
            .as_ref()
            .map(|f| f.message.lines().next().unwrap_or("").to_owned())
            .unwrap_or_default();
        eprintln!("{v:>22} | {} | {} | {}", r.file, r.name, msg);
    }
    for (c, f) in &outcome.findings {
        eprintln!("finding {c}: {f}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explore_defects_on() {
    let outcome = run(Defects::all()).await;
    dump(&outcome);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explore_defects_off() {
    let outcome = run(Defects::none()).await;
    dump(&outcome);
}
