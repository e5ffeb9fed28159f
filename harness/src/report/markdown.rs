//! summary.md: result, tables by area and feature, the report sections, failures with their
//! transcripts, skips, latency, propagation and SLO misses.

use std::fmt::Write as _;

use super::format::ms;
use super::sections::failure_text;
use super::tally::tallies;
use crate::outcome::RunOutcome;
use crate::results::{ScenarioResult, Verdict};

/// summary.md.
pub fn markdown(o: &RunOutcome) -> String {
    let (by_feature, by_area, total) = tallies(&o.scenarios);
    let mut s = String::new();
    let _ = writeln!(s, "# authconf run {}\n", o.run_id);
    let _ = writeln!(s, "- target: {}", o.target);
    let _ = writeln!(
        s,
        "- result: **{}** ({} passed, {} failed, {} skipped, {} expected failures)",
        if o.exit_code() == 0 {
            "passed"
        } else {
            "failed"
        },
        total.passed,
        total.failed,
        total.skipped,
        total.expected
    );
    let _ = writeln!(
        s,
        "- suite wall time: {:.2} s (then {:.2} s deleting {} tenants)",
        o.wall.as_secs_f64(),
        o.cleanup_time.as_secs_f64(),
        o.tenants_deleted
    );
    if o.interrupted {
        let _ = writeln!(s, "- **interrupted**: unfinished scenarios are not listed");
    }
    s.push('\n');
    for (title, rows) in [("Area", &by_area), ("Feature", &by_feature)] {
        let _ = writeln!(
            s,
            "| {title} | passed | failed | skipped | expected |\n|---|---|---|---|---|"
        );
        for (k, c) in rows {
            let _ = writeln!(
                s,
                "| {k} | {} | {} | {} | {} |",
                c.passed, c.failed, c.skipped, c.expected
            );
        }
        s.push('\n');
    }
    s.push_str(&super::sections::markdown(o));
    let failed: Vec<&ScenarioResult> = o
        .scenarios
        .iter()
        .filter(|r| r.verdict.fails_run())
        .collect();
    if !failed.is_empty() {
        let _ = writeln!(s, "## Failures\n");
        for r in failed {
            let _ = writeln!(
                s,
                "### {} › {}\n\n```\n{}\n```\n",
                r.feature,
                r.name,
                failure_text(r)
            );
        }
    }
    let skipped: Vec<&ScenarioResult> = o
        .scenarios
        .iter()
        .filter(|r| matches!(r.verdict, Verdict::Skipped(_) | Verdict::ExpectedFailure(_)))
        .collect();
    if !skipped.is_empty() {
        let _ = writeln!(s, "## Skipped and expected failures\n");
        for r in skipped {
            let why = match &r.verdict {
                Verdict::Skipped(w) => format!("skipped: {w}"),
                Verdict::ExpectedFailure(w) => format!("expected failure: {w}"),
                _ => String::new(),
            };
            let _ = writeln!(s, "- {} › {}: {why}", r.feature, r.name);
        }
        s.push('\n');
    }
    let _ = writeln!(s, "## Latency by endpoint\n\n| endpoint | n | p50 ms | p95 ms | p99 ms |\n|---|---|---|---|---|");
    for l in &o.latencies {
        let _ = writeln!(
            s,
            "| `{}` | {} | {:.1} | {:.1} | {:.1} |",
            l.endpoint,
            l.count,
            ms(l.p50),
            ms(l.p95),
            ms(l.p99)
        );
    }
    if !o.propagation.is_empty() {
        let _ = writeln!(s, "\n## Measured propagation delays\n");
        for p in &o.propagation {
            let _ = writeln!(s, "- {}: {:.0} ms", p.what, ms(p.delay));
        }
    }
    if !o.slo_violations.is_empty() {
        let _ = writeln!(s, "\n## SLO violations\n");
        for v in &o.slo_violations {
            let _ = writeln!(s, "- {v}");
        }
    }
    s
}
