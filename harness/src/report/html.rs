//! summary.html: the same content as summary.md, self-contained (inline CSS, no scripts).

use std::fmt::Write as _;

use super::format::{h, ms};
use super::sections::failure_text;
use super::tally::tallies;
use crate::outcome::RunOutcome;
use crate::results::{ScenarioResult, Verdict};

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
    s.push_str(&super::sections::html(o));
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
