//! The whole suite against the embedded reference, as `authconf run` does it: every scenario
//! must pass (or be skipped with a reason), within the suite's time budget.

use std::time::Duration;

use authconf::{RunOptions, Verdict};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_passes_the_suite() {
    let dir = tempfile::tempdir().unwrap();
    let out = authconf::run_suite(RunOptions {
        report_dir: dir.path().to_path_buf(),
        progress: false,
        summary: false,
        ..RunOptions::default()
    })
    .await
    .expect("the run completes");
    let failed: Vec<String> = out
        .scenarios
        .iter()
        .filter(|r| r.verdict.fails_run())
        .map(|r| {
            format!(
                "{} › {}: {}",
                r.feature,
                r.name,
                r.failure.as_ref().map(|f| f.message.as_str()).unwrap_or("")
            )
        })
        .collect();
    assert!(
        failed.is_empty(),
        "failed scenarios:\n{}",
        failed.join("\n")
    );
    assert!(
        out.scenarios.len() >= 80,
        "{} scenarios",
        out.scenarios.len()
    );
    assert!(out
        .scenarios
        .iter()
        .all(|r| !matches!(&r.verdict, Verdict::Skipped(w) if w.is_empty())));
    // The budget is 20 s on this 2-core machine; a test gives some slack for a busy
    // machine.
    assert!(
        out.wall < Duration::from_secs(40),
        "suite took {:?}",
        out.wall
    );
}
