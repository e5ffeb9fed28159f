//! The report sections that tell a team what its deployment is like rather than what each
//! scenario did: failures by class, root causes (grouped, most scenarios first, one example
//! transcript each), run-wide findings, dialect fallbacks, and where each capability came
//! from. Used by the console summary, summary.md, summary.html and results.json
//! ([`super`]); everything here is redacted again when written.

use std::fmt::Write as _;

use serde_json::json;

use super::format::h;
use crate::outcome::RunOutcome;
use crate::results::{ScenarioResult, Verdict};
use crate::verdicts::{counts_by_class, Cause};

/// `security 3, conformance 10, blocked 114` (empty when nothing failed).
pub fn class_counts(o: &RunOutcome) -> String {
    counts_by_class(&o.scenarios)
        .iter()
        .map(|(c, n)| format!("{c} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A failure's text: the step, the message, deviations noted, and the last exchange.
pub fn transcript(r: &ScenarioResult) -> String {
    let Some(f) = &r.failure else {
        return String::new();
    };
    let mut s = format!("step: {}\n{}", f.step, f.message);
    let notes: Vec<String> = r.deviations.iter().map(|d| format!("- {d}")).collect();
    if !notes.is_empty() && r.verdict != Verdict::Passed && !f.message.contains(&notes[0]) {
        let _ = write!(
            s,
            "\nformat deviations also recorded:\n{}",
            notes.join("\n")
        );
    }
    if let Some(e) = &f.exchange {
        let _ = write!(s, "\n\n{e}");
    }
    s
}

/// A failure's class and its transcript (step, message, last exchange).
pub(super) fn failure_text(r: &ScenarioResult) -> String {
    let class = r.class.map(|c| format!("class: {c}\n")).unwrap_or_default();
    format!("{class}{}", transcript(r))
}

fn example<'a>(o: &'a RunOutcome, c: &Cause) -> &'a ScenarioResult {
    &o.scenarios[c.example]
}

/// The console's part: class counts, root causes with an example each, findings,
/// fallbacks.
pub fn text(o: &RunOutcome) -> String {
    let mut s = String::new();
    let causes = o.causes();
    if !causes.is_empty() {
        let _ = writeln!(
            s,
            "Failures by class: {} (--fail-on {})\n\nRoot causes, most scenarios first:",
            class_counts(o),
            o.fail_on.name()
        );
        for c in &causes {
            let r = example(o, c);
            let _ = writeln!(s, "  {}", c.headline());
            let _ = writeln!(s, "      e.g. {} › {}", r.feature, r.name);
            if let Some(f) = &r.failure {
                let _ = writeln!(s, "      step: {}", f.step);
                for line in f.message.lines().skip(1).take(3) {
                    let _ = writeln!(s, "      {line}");
                }
            }
        }
        s.push('\n');
    }
    for (c, f) in &o.findings {
        let _ = writeln!(s, "FINDING [{c}] {f}");
    }
    for f in &o.fallbacks {
        let _ = writeln!(s, "fallback used: {f}");
    }
    s
}

/// summary.md's part.
pub fn markdown(o: &RunOutcome) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "## Capabilities\n\n| capability | offered | source | detail |\n|---|---|---|---|"
    );
    for l in &o.capabilities {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} |",
            l.name,
            if l.enabled { "yes" } else { "no" },
            l.source.kind(),
            l.source.to_string().replace('|', "\\|")
        );
    }
    s.push('\n');
    if !o.findings.is_empty() {
        let _ = writeln!(s, "## Findings\n");
        for (c, f) in &o.findings {
            let _ = writeln!(s, "- **{c}**: {f}");
        }
        s.push('\n');
    }
    if !o.fallbacks.is_empty() {
        let _ = writeln!(s, "## Fallbacks used\n");
        for f in &o.fallbacks {
            let _ = writeln!(s, "- {f}");
        }
        s.push('\n');
    }
    let causes = o.causes();
    if !causes.is_empty() {
        let _ = writeln!(
            s,
            "## Root causes\n\nFailures by class: {} (`--fail-on {}`).\n",
            class_counts(o),
            o.fail_on.name()
        );
        for c in &causes {
            let r = example(o, c);
            let _ = writeln!(
                s,
                "### {}\n\nExample: {} › {}\n\n```\n{}\n```\n",
                c.headline(),
                r.feature,
                r.name,
                transcript(r)
            );
            if c.scenarios.len() > 1 {
                let _ = writeln!(
                    s,
                    "<details><summary>all {} scenarios</summary>\n",
                    c.scenarios.len()
                );
                for n in &c.scenarios {
                    let _ = writeln!(s, "- {n}");
                }
                let _ = writeln!(s, "\n</details>\n");
            }
        }
    }
    s
}

/// summary.html's part.
pub fn html(o: &RunOutcome) -> String {
    let mut s = String::from(
        "<h2>Capabilities</h2><table><tr><th>capability</th><th>offered</th><th>source</th><th>detail</th></tr>",
    );
    for l in &o.capabilities {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            h(&l.name),
            if l.enabled { "yes" } else { "no" },
            l.source.kind(),
            h(&l.source.to_string())
        );
    }
    s.push_str("</table>");
    if !o.findings.is_empty() {
        s.push_str("<h2>Findings</h2><ul>");
        for (c, f) in &o.findings {
            let _ = write!(s, "<li class=fail>[{c}] {}</li>", h(f));
        }
        s.push_str("</ul>");
    }
    if !o.fallbacks.is_empty() {
        s.push_str("<h2>Fallbacks used</h2><ul>");
        for f in &o.fallbacks {
            let _ = write!(s, "<li>{}</li>", h(f));
        }
        s.push_str("</ul>");
    }
    let causes = o.causes();
    if !causes.is_empty() {
        let _ = write!(
            s,
            "<h2>Root causes</h2><p>Failures by class: {} (<code>--fail-on {}</code>)</p>",
            h(&class_counts(o)),
            o.fail_on.name()
        );
        for c in &causes {
            let r = example(o, c);
            let _ = write!(
                s,
                "<details><summary class=fail>{}</summary><p>Example: {} › {}</p><pre>{}</pre><ul>",
                h(&c.headline()),
                h(&r.feature),
                h(&r.name),
                h(&transcript(r))
            );
            for n in &c.scenarios {
                let _ = write!(s, "<li>{}</li>", h(n));
            }
            s.push_str("</ul></details>");
        }
    }
    s
}

/// results.json: the verdicts with their classes, causes, findings, fallbacks and
/// capabilities, for tools that do not read cucumber JSON.
pub fn results_json(o: &RunOutcome) -> serde_json::Value {
    json!({
        "runId": o.run_id,
        "target": o.target,
        "failOn": o.fail_on.name(),
        "exitCode": o.exit_code(),
        "failuresByClass": counts_by_class(&o.scenarios)
            .iter()
            .map(|(c, n)| (c.name().to_owned(), json!(n)))
            .collect::<serde_json::Map<_, _>>(),
        "causes": o.causes().iter().map(|c| json!({
            "class": c.class.name(), "cause": c.text, "count": c.scenarios.len(),
            "scenarios": c.scenarios,
        })).collect::<Vec<_>>(),
        "findings": o.findings.iter().map(|(c, f)| json!({"class": c.name(), "text": f})).collect::<Vec<_>>(),
        "fallbacks": o.fallbacks,
        "capabilities": o.capabilities.iter().map(|l| json!({
            "name": l.name, "offered": l.enabled, "source": l.source.kind(),
            "detail": l.source.to_string(),
        })).collect::<Vec<_>>(),
        "cleanup": {"tenantsDeleted": o.tenants_deleted, "alreadyGone": o.tenants_already_gone,
                    "deletedKeysChecked": o.deleted_keys_checked, "errors": o.cleanup_errors},
        "scenarios": o.scenarios.iter().map(|r| json!({
            "feature": r.feature, "file": r.file, "line": r.line, "name": r.name,
            "tags": r.tags, "verdict": r.verdict.label(),
            "class": r.class.map(|c| c.name()),
            "message": r.failure.as_ref().map(|f| f.message.clone()),
            "deviations": r.deviations.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}
