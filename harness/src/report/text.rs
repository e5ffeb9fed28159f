//! The summary printed at the end of a run: tables by feature and by area, the failures (one
//! by one when few), the report sections, and the run's figures.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::tally::{tallies, Counts};
use crate::outcome::RunOutcome;
use crate::results::Verdict;

fn table(title: &str, rows: &BTreeMap<String, Counts>) -> String {
    let w = rows
        .keys()
        .map(|k| k.chars().count())
        .max()
        .unwrap_or(5)
        .max(title.len());
    let mut s = String::new();
    let _ = writeln!(s, "{title:<w$}  passed  failed  skipped  expected",);
    for (k, c) in rows {
        let _ = writeln!(
            s,
            "{k:<w$}  {:>6}  {:>6}  {:>7}  {:>8}",
            c.passed, c.failed, c.skipped, c.expected
        );
    }
    s
}

/// The summary printed at the end of a run.
pub fn text_summary(o: &RunOutcome) -> String {
    let (by_feature, by_area, total) = tallies(&o.scenarios);
    let mut s = String::new();
    let _ = writeln!(s, "\n{}", table("feature", &by_feature));
    let _ = writeln!(s, "{}", table("area", &by_area));
    // A handful of failures are listed one by one; many are read through their causes.
    let list_each = total.failed <= 20;
    for r in &o.scenarios {
        match &r.verdict {
            Verdict::Failed if list_each => {
                let class = r.class.map(|c| format!(" [{c}]")).unwrap_or_default();
                let _ = writeln!(s, "FAILED{class}   {} › {}", r.feature, r.name);
                if let Some(f) = &r.failure {
                    let _ = writeln!(s, "         step: {}", f.step);
                    let _ = writeln!(
                        s,
                        "         {}",
                        f.message.lines().next().unwrap_or_default()
                    );
                }
            }
            Verdict::UnexpectedPass(why) => {
                let _ = writeln!(
                    s,
                    "UNEXPECTED PASS {} › {} (listed as known failure: {why}); remove it from the list",
                    r.feature, r.name
                );
            }
            _ => {}
        }
    }
    s.push('\n');
    s.push_str(&super::sections::text(o));
    for v in &o.slo_violations {
        let _ = writeln!(s, "SLO      {v}");
    }
    if o.interrupted {
        let _ = writeln!(
            s,
            "INTERRUPTED: the run was stopped; unfinished scenarios are not listed"
        );
    }
    for e in &o.parse_errors {
        let _ = writeln!(s, "FEATURE FILE ERROR {e}");
    }
    let _ = writeln!(
        s,
        "\n{} scenarios: {} passed, {} failed, {} skipped, {} expected failures",
        o.scenarios.len(),
        total.passed,
        total.failed,
        total.skipped,
        total.expected
    );
    let _ = writeln!(
        s,
        "suite wall time: {:.2} s, then {:.2} s of cleanup: {} tenants deleted, {} already gone, {} not deleted, keys of {} deleted tenants tried (run {}), reports in {}",
        o.wall.as_secs_f64(),
        o.cleanup_time.as_secs_f64(),
        o.tenants_deleted,
        o.tenants_already_gone,
        o.cleanup_errors.len(),
        o.deleted_keys_checked,
        o.run_id,
        o.report_path.display()
    );
    s
}
