//! cucumber.json: the format cucumber-reporting tools read, with authconf's verdict, reason,
//! class and deviations on each scenario.

use std::collections::BTreeMap;

use serde_json::json;

use super::sections::failure_text;
use crate::outcome::RunOutcome;
use crate::results::{ScenarioResult, StepStatus, Verdict};

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
