//! Reports of a run: junit.xml, cucumber JSON, summary.md, a self-contained summary.html,
//! and the summary table printed at the end. Everything here has been redacted already (the
//! collector redacts failures); the run's secrets are redacted once more on writing.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use serde_json::json;

use crate::collect::{ScenarioResult, StepStatus, Verdict};
use crate::RunOutcome;

/// Tags that name an area of the suite.
pub const AREAS: &[&str] = &[
    "isolation",
    "secrecy",
    "rotation",
    "errors",
    "contract",
    "admin",
    "rate-limit",
    "durable-object",
    "user-auth",
    "email",
    "onboarding",
    "jwt-rotation",
];

/// Latency percentiles of one endpoint.
#[derive(Debug, Clone)]
pub struct Latency {
    /// `GET /v1/api-keys/{id}`.
    pub endpoint: String,
    /// Samples.
    pub count: usize,
    /// p50.
    pub p50: Duration,
    /// p95.
    pub p95: Duration,
    /// p99.
    pub p99: Duration,
}

/// Nearest-rank percentile of sorted samples.
pub fn percentile(sorted: &[Duration], p: u8) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p as f64 / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The `--slo` gates each endpoint misses.
pub fn slo_violations(
    slos: &[crate::Slo],
    samples: &BTreeMap<String, Vec<Duration>>,
) -> Vec<String> {
    let mut out = Vec::new();
    for slo in slos {
        for (endpoint, v) in samples {
            let mut sorted = v.clone();
            sorted.sort();
            let got = percentile(&sorted, slo.percentile);
            if !slo.met_by(got) {
                out.push(format!(
                    "{endpoint}: p{} = {:.1} ms, gate {}",
                    slo.percentile,
                    got.as_secs_f64() * 1000.0,
                    slo.text
                ));
            }
        }
    }
    out
}

/// Per-endpoint latency figures.
pub fn latencies(samples: &BTreeMap<String, Vec<Duration>>) -> Vec<Latency> {
    samples
        .iter()
        .map(|(e, v)| {
            let mut s = v.clone();
            s.sort();
            Latency {
                endpoint: e.clone(),
                count: s.len(),
                p50: percentile(&s, 50),
                p95: percentile(&s, 95),
                p99: percentile(&s, 99),
            }
        })
        .collect()
}

/// Counts by verdict.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    /// Passed.
    pub passed: usize,
    /// Failed (including unexpected passes).
    pub failed: usize,
    /// Skipped.
    pub skipped: usize,
    /// Expected failures.
    pub expected: usize,
}

impl Counts {
    fn add(&mut self, v: &Verdict) {
        match v {
            Verdict::Passed => self.passed += 1,
            Verdict::Failed | Verdict::UnexpectedPass(_) => self.failed += 1,
            Verdict::Skipped(_) => self.skipped += 1,
            Verdict::ExpectedFailure(_) => self.expected += 1,
        }
    }
}

/// Counts by feature and by area.
pub fn tallies(
    results: &[ScenarioResult],
) -> (BTreeMap<String, Counts>, BTreeMap<String, Counts>, Counts) {
    let mut by_feature: BTreeMap<String, Counts> = BTreeMap::new();
    let mut by_area: BTreeMap<String, Counts> = BTreeMap::new();
    let mut total = Counts::default();
    for r in results {
        by_feature
            .entry(r.feature.clone())
            .or_default()
            .add(&r.verdict);
        let mut areas: Vec<&str> = r
            .tags
            .iter()
            .map(String::as_str)
            .filter(|t| AREAS.contains(t))
            .collect();
        areas.sort_unstable();
        areas.dedup();
        if areas.is_empty() {
            areas.push("(no area)");
        }
        for a in areas {
            by_area.entry(a.to_owned()).or_default().add(&r.verdict);
        }
        total.add(&r.verdict);
    }
    (by_feature, by_area, total)
}

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
    s.push_str(&crate::sections::text(o));
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

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .chars()
        .filter(|c| *c == '\n' || *c == '\t' || !c.is_control())
        .collect()
}

fn failure_text(r: &ScenarioResult) -> String {
    let class = r.class.map(|c| format!("class: {c}\n")).unwrap_or_default();
    format!("{class}{}", crate::sections::transcript(r))
}

/// junit.xml: one testsuite per feature.
pub fn junit(o: &RunOutcome) -> String {
    let mut by_feature: BTreeMap<&str, Vec<&ScenarioResult>> = BTreeMap::new();
    for r in &o.scenarios {
        by_feature.entry(&r.feature).or_default().push(r);
    }
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        s,
        "<testsuites name=\"authconf\" tests=\"{}\" time=\"{:.3}\">",
        o.scenarios.len(),
        o.wall.as_secs_f64()
    );
    for (feat, rs) in by_feature {
        let failures = rs.iter().filter(|r| r.verdict.fails_run()).count();
        let skipped = rs
            .iter()
            .filter(|r| matches!(r.verdict, Verdict::Skipped(_)))
            .count();
        let _ = writeln!(
            s,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" skipped=\"{skipped}\">",
            xml(feat),
            rs.len()
        );
        for r in rs {
            let _ = write!(
                s,
                "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\"",
                xml(feat),
                xml(&r.name),
                r.duration.as_secs_f64()
            );
            if let Some(c) = r.class {
                // The class of a failure, for CI tools that filter on testcase properties.
                let _ = write!(
                    s,
                    ">\n      <properties><property name=\"authconf.class\" value=\"{c}\"/></properties"
                );
            }
            match &r.verdict {
                Verdict::Passed if r.class.is_some() => s.push_str(">\n    </testcase>\n"),
                Verdict::Passed => s.push_str("/>\n"),
                Verdict::Skipped(why) => {
                    let _ = writeln!(
                        s,
                        ">\n      <skipped message=\"{}\"/>\n    </testcase>",
                        xml(why)
                    );
                }
                Verdict::ExpectedFailure(why) => {
                    let _ = writeln!(
                        s,
                        ">\n      <system-out>expected failure: {}\n{}</system-out>\n    </testcase>",
                        xml(why),
                        xml(&failure_text(r))
                    );
                }
                Verdict::UnexpectedPass(why) => {
                    let _ = writeln!(
                        s,
                        ">\n      <failure message=\"listed as a known failure but passed\">{}</failure>\n    </testcase>",
                        xml(why)
                    );
                }
                Verdict::Failed => {
                    let msg = r
                        .failure
                        .as_ref()
                        .map(|f| f.message.lines().next().unwrap_or_default().to_owned())
                        .unwrap_or_default();
                    let _ = writeln!(
                        s,
                        ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>",
                        xml(&msg),
                        xml(&failure_text(r))
                    );
                }
            }
        }
        s.push_str("  </testsuite>\n");
    }
    s.push_str("</testsuites>\n");
    s
}

/// Cucumber JSON (the format cucumber-reporting tools read).
pub fn cucumber_json(o: &RunOutcome) -> serde_json::Value {
    let mut by_feature: BTreeMap<(&str, &str), Vec<&ScenarioResult>> = BTreeMap::new();
    for r in &o.scenarios {
        by_feature.entry((&r.file, &r.feature)).or_default().push(r);
    }
    let features: Vec<serde_json::Value> = by_feature
        .into_iter()
        .map(|((file, name), rs)| {
            let elements: Vec<serde_json::Value> = rs
                .iter()
                .map(|r| {
                    let steps: Vec<serde_json::Value> = r
                        .steps
                        .iter()
                        .map(|st| {
                            let failed = st.status == StepStatus::Failed;
                            let status = match (&st.status, &r.verdict) {
                                (StepStatus::Passed, _) => "passed",
                                (StepStatus::Failed, _) => "failed",
                                (StepStatus::Skipped, _) => "skipped",
                            };
                            let mut result = json!({
                                "status": status,
                                "duration": st.duration.as_nanos() as u64,
                            });
                            if failed {
                                result["error_message"] = json!(failure_text(r));
                            }
                            json!({"keyword": format!("{} ", st.keyword), "name": st.text,
                                   "line": st.line, "result": result})
                        })
                        .collect();
                    json!({
                        "id": format!("{}:{}", name, r.name),
                        "keyword": "Scenario",
                        "type": "scenario",
                        "name": r.name,
                        "line": r.line,
                        "tags": r.tags.iter().map(|t| json!({"name": format!("@{t}")})).collect::<Vec<_>>(),
                        "steps": steps,
                        "authconf": {"verdict": r.verdict.label(), "reason": match &r.verdict {
                            Verdict::Skipped(w) | Verdict::ExpectedFailure(w) | Verdict::UnexpectedPass(w) => json!(w),
                            _ => serde_json::Value::Null,
                        }, "class": r.class.map(|c| c.name()),
                           "deviations": r.deviations.iter().map(|d| d.to_string()).collect::<Vec<_>>()},
                    })
                })
                .collect();
            json!({"uri": file, "id": name, "keyword": "Feature", "name": name, "elements": elements})
        })
        .collect();
    json!(features)
}

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
    s.push_str(&crate::sections::markdown(o));
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

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn h(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// summary.html, self-contained (inline CSS, no scripts from elsewhere).
pub fn html(o: &RunOutcome) -> String {
    let (by_feature, by_area, total) = tallies(&o.scenarios);
    let mut s = String::new();
    s.push_str("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>authconf ");
    s.push_str(&h(&o.run_id));
    s.push_str("</title><style>body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}\
th{background:#f3f3f3}.pass{color:#137333}.fail{color:#b3261e;font-weight:bold}.skip{color:#8a6d00}\
.bar{display:inline-block;height:10px}pre{background:#f7f7f7;padding:8px;overflow:auto;max-height:30em;white-space:pre-wrap;word-break:break-all}\
details{margin:.5em 0}</style></head><body>");
    let verdict = if o.exit_code() == 0 {
        "<span class=pass>passed</span>"
    } else {
        "<span class=fail>failed</span>"
    };
    let _ = write!(
        s,
        "<h1>authconf run {}</h1><p>Target: <code>{}</code><br>Result: {verdict}: {} passed, {} failed, {} skipped, {} expected failures<br>Suite wall time: {:.2} s</p>",
        h(&o.run_id),
        h(&o.target),
        total.passed,
        total.failed,
        total.skipped,
        total.expected,
        o.wall.as_secs_f64()
    );
    for (title, rows) in [("Areas", &by_area), ("Features", &by_feature)] {
        let _ = write!(s, "<h2>{title}</h2><table><tr><th>{title}</th><th>passed</th><th>failed</th><th>skipped</th><th>expected</th><th></th></tr>");
        for (k, c) in rows {
            let n = (c.passed + c.failed + c.skipped + c.expected).max(1);
            let bar = |count: usize, color: &str| {
                format!(
                    "<span class=bar style=\"width:{}px;background:{color}\"></span>",
                    count * 200 / n
                )
            };
            let _ = write!(
                s,
                "<tr><td>{}</td><td class=pass>{}</td><td class=fail>{}</td><td class=skip>{}</td><td>{}</td><td>{}{}{}{}</td></tr>",
                h(k),
                c.passed,
                c.failed,
                c.skipped,
                c.expected,
                bar(c.passed, "#34a853"),
                bar(c.failed, "#ea4335"),
                bar(c.skipped, "#fbbc04"),
                bar(c.expected, "#9aa0a6")
            );
        }
        s.push_str("</table>");
    }
    let failed: Vec<&ScenarioResult> = o
        .scenarios
        .iter()
        .filter(|r| r.verdict.fails_run())
        .collect();
    s.push_str(&crate::sections::html(o));
    if !failed.is_empty() {
        s.push_str("<h2>Failures</h2>");
        for r in failed {
            let _ = write!(
                s,
                "<details open><summary class=fail>{} › {}</summary><pre>{}</pre></details>",
                h(&r.feature),
                h(&r.name),
                h(&failure_text(r))
            );
        }
    }
    s.push_str("<h2>All scenarios</h2><table><tr><th>feature</th><th>scenario</th><th>tags</th><th>verdict</th><th>ms</th></tr>");
    for r in &o.scenarios {
        let class = match r.verdict {
            Verdict::Passed => "pass",
            Verdict::Skipped(_) | Verdict::ExpectedFailure(_) => "skip",
            _ => "fail",
        };
        let why = match &r.verdict {
            Verdict::Skipped(w) | Verdict::ExpectedFailure(w) | Verdict::UnexpectedPass(w) => {
                format!(": {}", h(w))
            }
            _ => String::new(),
        };
        let _ =
            write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class={class}>{}{why}</td><td>{}</td></tr>",
            h(&r.feature),
            h(&r.name),
            h(&r.tags.iter().map(|t| format!("@{t}")).collect::<Vec<_>>().join(" ")),
            r.verdict.label(),
            r.duration.as_millis()
        );
    }
    s.push_str("</table><h2>Latency by endpoint</h2><table><tr><th>endpoint</th><th>n</th><th>p50 ms</th><th>p95 ms</th><th>p99 ms</th></tr>");
    for l in &o.latencies {
        let _ = write!(
            s,
            "<tr><td><code>{}</code></td><td>{}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td></tr>",
            h(&l.endpoint),
            l.count,
            ms(l.p50),
            ms(l.p95),
            ms(l.p99)
        );
    }
    s.push_str("</table>");
    if !o.propagation.is_empty() {
        s.push_str("<h2>Measured propagation delays</h2><ul>");
        for p in &o.propagation {
            let _ = write!(s, "<li>{}: {:.0} ms</li>", h(&p.what), ms(p.delay));
        }
        s.push_str("</ul>");
    }
    if !o.slo_violations.is_empty() {
        s.push_str("<h2>SLO violations</h2><ul>");
        for v in &o.slo_violations {
            let _ = write!(s, "<li class=fail>{}</li>", h(v));
        }
        s.push_str("</ul>");
    }
    s.push_str("</body></html>\n");
    s
}

/// Writes every report into `dir`, passing each text through `redact`.
pub fn write_all(
    o: &RunOutcome,
    dir: &Path,
    redact: &dyn Fn(&str) -> String,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("junit.xml"), redact(&junit(o)))?;
    let j = serde_json::to_string_pretty(&cucumber_json(o)).unwrap_or_else(|_| "[]".into());
    std::fs::write(dir.join("cucumber.json"), redact(&j))?;
    std::fs::write(dir.join("summary.md"), redact(&markdown(o)))?;
    std::fs::write(dir.join("summary.html"), redact(&html(o)))?;
    let r = serde_json::to_string_pretty(&crate::sections::results_json(o))
        .unwrap_or_else(|_| "{}".into());
    std::fs::write(dir.join("results.json"), redact(&r))?;
    Ok(())
}

/// Points `<report dir>/latest` at this run: a symlink, or a copy where links fail.
pub fn update_latest(report_dir: &Path, run_dir: &Path, run_id: &str) -> std::io::Result<()> {
    let latest = report_dir.join("latest");
    if let Ok(meta) = std::fs::symlink_metadata(&latest) {
        if meta.file_type().is_dir() {
            std::fs::remove_dir_all(&latest)?;
        } else {
            std::fs::remove_file(&latest)?;
        }
    }
    #[cfg(unix)]
    {
        if std::os::unix::fs::symlink(run_id, &latest).is_ok() {
            return Ok(());
        }
    }
    let _ = run_id;
    std::fs::create_dir_all(&latest)?;
    for e in std::fs::read_dir(run_dir)? {
        let e = e?;
        if e.file_type()?.is_file() {
            std::fs::copy(e.path(), latest.join(e.file_name()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&v, 50), Duration::from_millis(50));
        assert_eq!(percentile(&v, 99), Duration::from_millis(99));
        assert_eq!(percentile(&v[..1], 99), Duration::from_millis(1));
        assert_eq!(percentile(&[], 99), Duration::ZERO);
    }
}
