//! Verdict classes and root causes: which class a failed scenario carries (per the verdict
//! protocol, notes/protocol.md and `authconf_scenarios::verdict`), and how failures are
//! grouped by cause so that one missing route reads as one line, not as 114 failures.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use authconf_scenarios::{split_marker, Deviation, FailureClass};
use regex::Regex;

use crate::results::{Failure, ScenarioResult, Verdict};

/// Tags whose scenarios judge a security property: an unmarked failure there is `security`.
pub const SECURITY_TAGS: &[&str] = &[
    "isolation",
    "secrecy",
    "rotation",
    "rate-limit",
    "revocation",
    "user-auth",
    "jwt-rotation",
    "durable-object",
    "email",
    "security",
];

/// The class of an unmarked failure, from the scenario's tags.
pub fn class_by_tags(tags: &[String]) -> FailureClass {
    if tags
        .iter()
        .any(|t| SECURITY_TAGS.contains(&t.trim_start_matches('@')))
    {
        FailureClass::Security
    } else {
        FailureClass::Conformance
    }
}

/// Decides the class of a finished scenario and attaches its deviations.
///
/// - A failed step: the marker of its message (then removed from the message), else the
///   tags. A failure the harness itself made up (no step definition, a failing hook) is
///   `harness`.
/// - A scenario that passed but recorded deviations fails as `conformance`, listing them.
/// - A failed scenario keeps its class and lists its deviations as notes.
pub fn decide(r: &mut ScenarioResult, deviations: Vec<Deviation>) {
    r.deviations = deviations;
    match (&r.verdict, r.failure.as_mut()) {
        (Verdict::Failed, Some(f)) => {
            let (marked, rest) = split_marker(&f.message);
            let class = match marked {
                Some(c) => c,
                None if f.harness => FailureClass::Harness,
                None => class_by_tags(&r.tags),
            };
            if marked.is_some() {
                f.message = rest.to_owned();
            }
            r.class = Some(class);
        }
        (Verdict::Failed, None) => r.class = Some(FailureClass::Harness),
        (Verdict::Passed, _) if !r.deviations.is_empty() => {
            r.verdict = Verdict::Failed;
            r.class = Some(FailureClass::Conformance);
            let n = r.deviations.len();
            let mut message = format!(
                "{}\n{n} format deviation{} in all; the behaviour checked passed:",
                r.deviations[0],
                if n == 1 { "" } else { "s" }
            );
            for d in &r.deviations {
                message.push_str(&format!("\n- {d}"));
            }
            r.failure = Some(Failure {
                step: "(format deviations, recorded while the scenario went on)".into(),
                message,
                exchange: None,
                harness: false,
            });
        }
        _ => r.class = None,
    }
}

/// Failures that share one cause.
#[derive(Debug, Clone)]
pub struct Cause {
    /// The class of the failures.
    pub class: FailureClass,
    /// The cause: the failure message's first line, volatile parts normalised.
    pub text: String,
    /// `feature › scenario` of each failure.
    pub scenarios: Vec<String>,
    /// Index (into the outcome's scenarios) of the first failure, whose transcript stands
    /// for the group.
    pub example: usize,
}

impl Cause {
    /// `114 scenarios blocked: POST /v1/api-keys answered 404`.
    pub fn headline(&self) -> String {
        let n = self.scenarios.len();
        let noun = if n == 1 { "scenario" } else { "scenarios" };
        match self.class {
            FailureClass::Blocked => format!("{n} {noun} blocked: {}", self.text),
            c => format!("{n} {noun} failed ({c}): {}", self.text),
        }
    }
}

/// The volatile parts of a failure line, each with its placeholder.
fn volatile() -> &'static [(Regex, &'static str)] {
    static RES: OnceLock<Vec<(Regex, &'static str)>> = OnceLock::new();
    RES.get_or_init(|| {
        [
            // Slugs (and ids made from them) of any run: authconf-<run id>-<n><rnd>.
            (r"authconf-\d{12}-[a-z0-9]{4}-[a-z0-9]+", "{slug}"),
            (
                r"(?i)\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b",
                "{uuid}",
            ),
            (r"\b(?:pk|sk|rk)_(?:live|test)_[0-9A-Za-z]{12,}", "{key}"),
            (r"‹(?:secret|key) [^›]*›", "{secret}"),
            (r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", "{email}"),
            (r"\b[0-9a-fA-F]{16,}\b", "{hex}"),
            // An id with a type prefix and digits in it: key:00ab12..., usr_9f3k2...
            (
                r"\b([A-Za-z]{2,12}[:_])[A-Za-z0-9]*\d[A-Za-z0-9_-]{3,}",
                "${1}{id}",
            ),
        ]
        .into_iter()
        .map(|(re, with)| (Regex::new(re).expect("static regex"), with))
        .collect()
    })
}

/// A response body quoted after the status a failure names (`got 200: {"data": ...}`):
/// it tells one target's answer from another's (names, counts, times), not the cause.
fn quoted_body() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"(got \d{3})(?::? ?[\{\[].*)$").expect("static regex"))
}

/// The grouping key of a failure message: its first line without a quoted response body,
/// with ids, keys, slugs and other values of this run replaced by placeholders.
pub fn cause_of(message: &str) -> String {
    let first = message.lines().next().unwrap_or_default().trim();
    let (_, first) = split_marker(first);
    let first = quoted_body().replace(first, "$1");
    volatile().iter().fold(first.into_owned(), |s, (re, with)| {
        re.replace_all(&s, *with).into_owned()
    })
}

/// Failures (verdict `Failed`) grouped by class and cause, most scenarios first (then
/// severity, then text).
pub fn causes(results: &[ScenarioResult]) -> Vec<Cause> {
    let mut groups: BTreeMap<(FailureClass, String), Cause> = BTreeMap::new();
    for (i, r) in results.iter().enumerate() {
        if r.verdict != Verdict::Failed {
            continue;
        }
        let class = r.class.unwrap_or(FailureClass::Harness);
        let text = r
            .failure
            .as_ref()
            .map(|f| cause_of(&f.message))
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| "(no failure message)".into());
        groups
            .entry((class, text.clone()))
            .or_insert_with(|| Cause {
                class,
                text,
                scenarios: Vec::new(),
                example: i,
            })
            .scenarios
            .push(format!("{} › {}", r.feature, r.name));
    }
    let mut out: Vec<Cause> = groups.into_values().collect();
    out.sort_by(|a, b| {
        b.scenarios
            .len()
            .cmp(&a.scenarios.len())
            .then(a.class.cmp(&b.class))
            .then(a.text.cmp(&b.text))
    });
    out
}

/// Failed scenarios by class, in class order.
pub fn counts_by_class(results: &[ScenarioResult]) -> BTreeMap<FailureClass, usize> {
    let mut m = BTreeMap::new();
    for r in results {
        if r.verdict == Verdict::Failed {
            *m.entry(r.class.unwrap_or(FailureClass::Harness))
                .or_insert(0) += 1;
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn failed(msg: &str, tags: &[&str]) -> ScenarioResult {
        ScenarioResult {
            feature: "F".into(),
            file: "f.feature".into(),
            name: msg.into(),
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            line: 1,
            verdict: Verdict::Failed,
            duration: Duration::ZERO,
            steps: Vec::new(),
            failure: Some(Failure {
                step: "s".into(),
                message: msg.into(),
                exchange: None,
                harness: false,
            }),
            class: None,
            deviations: Vec::new(),
        }
    }

    #[test]
    fn the_marker_decides_then_the_tags() {
        let mut r = failed(
            "[authconf:blocked] POST /v1/api-keys answered 404",
            &["isolation"],
        );
        decide(&mut r, Vec::new());
        assert_eq!(r.class, Some(FailureClass::Blocked));
        assert_eq!(r.failure.unwrap().message, "POST /v1/api-keys answered 404");
        let mut r = failed("GET /v1/tenant: expected 401, got 200", &["isolation"]);
        decide(&mut r, Vec::new());
        assert_eq!(r.class, Some(FailureClass::Security));
        let mut r = failed("GET /health: expected 200, got 500", &["errors"]);
        decide(&mut r, Vec::new());
        assert_eq!(r.class, Some(FailureClass::Conformance));
    }

    #[test]
    fn deviations_fail_a_passed_scenario_as_conformance_and_annotate_a_failed_one() {
        let d = Deviation {
            request: "GET /v1/tenant".into(),
            message: "expected application/problem+json, got application/json".into(),
        };
        let mut r = failed("", &[]);
        r.verdict = Verdict::Passed;
        r.failure = None;
        decide(&mut r, vec![d.clone()]);
        assert_eq!(r.verdict, Verdict::Failed);
        assert_eq!(r.class, Some(FailureClass::Conformance));
        assert!(r
            .failure
            .unwrap()
            .message
            .starts_with("GET /v1/tenant: expected"));
        let mut r = failed("[authconf:security] GET /v1/x: expected 401, got 200", &[]);
        decide(&mut r, vec![d]);
        assert_eq!(r.class, Some(FailureClass::Security));
        assert_eq!(r.deviations.len(), 1);
    }

    #[test]
    fn causes_group_across_volatile_values_most_first() {
        let rs = vec![
            failed(
                "[authconf:blocked] POST /v1/api-keys answered 404\ndetail 1",
                &[],
            ),
            failed("GET /v1/api-keys/key:0001abcd: expected 200, got 500", &[]),
            failed(
                "[authconf:blocked] POST /v1/api-keys answered 404\ndetail 2",
                &[],
            ),
            failed("GET /v1/api-keys/key:0099ffee: expected 200, got 500", &[]),
            failed("[authconf:blocked] POST /v1/api-keys answered 404", &[]),
        ];
        let mut rs = rs;
        for r in &mut rs {
            decide(r, Vec::new());
        }
        let c = causes(&rs);
        assert_eq!(c.len(), 2, "{c:?}");
        assert_eq!(
            c[0].headline(),
            "3 scenarios blocked: POST /v1/api-keys answered 404"
        );
        assert_eq!(
            c[1].headline(),
            "2 scenarios failed (conformance): GET /v1/api-keys/key:{id}: expected 200, got 500"
        );
    }

    #[test]
    fn volatile_parts_are_normalised() {
        assert_eq!(
            cause_of("DELETE /admin/tenants/tenant:authconf-261204131500-ab1c-12xyz answered 500"),
            "DELETE /admin/tenants/tenant:{slug} answered 500"
        );
        assert_eq!(
            cause_of("user 3f2b1c4d-1111-2222-3333-444455556666 and sk_live_abcdefghijkl012"),
            "user {uuid} and {key}"
        );
        assert_eq!(
            cause_of("GET /v1/tenant: expected 401, got 200"),
            "GET /v1/tenant: expected 401, got 200"
        );
        assert_eq!(
            cause_of(
                r#"GET /admin/tenants: expected 403, got 200: {"data":[{"name":"authconf A"}]}"#
            ),
            "GET /admin/tenants: expected 403, got 200"
        );
        assert_eq!(
            cause_of(r#"GET /v1/auth/validate: expected 401, got 200 {"valid":false}"#),
            "GET /v1/auth/validate: expected 401, got 200"
        );
    }
}
