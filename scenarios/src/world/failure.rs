//! How a step fails: every message names the request, what was expected and what came, with
//! the marker of its class (security, conformance, blocked, harness) or none (the scenario's
//! tags decide); format deviations are recorded and the scenario goes on.

use super::core::AuthWorld;
use crate::support::http::{Cred, Exchange};
use crate::support::text::{excerpt, normalized, statuses};
use crate::verdict::{Deviation, FailureClass};

impl AuthWorld {
    /// Records a format deviation of the last exchange and lets the scenario go on; inside
    /// a `@contract` scenario the format is the subject, so the step fails as conformance.
    #[track_caller]
    pub fn deviate(&mut self, message: impl AsRef<str>) {
        let request = self.last_request_line();
        let message = self.ctx.secrets.redact(message.as_ref());
        if self.is_contract() {
            self.fail_as(FailureClass::Conformance, format!("{request}: {message}"));
        }
        let key = self.scenario_key.clone().unwrap_or_default();
        self.ctx
            .record_deviation(&key, Deviation { request, message });
    }

    /// Panics with a redacted message starting with the marker of `class`.
    #[track_caller]
    pub fn fail_as(&self, class: FailureClass, msg: impl AsRef<str>) -> ! {
        panic!(
            "{}{}",
            class.marker(),
            self.ctx.secrets.redact(msg.as_ref())
        )
    }

    /// Fails naming the last exchange: `METHOD path: expected X, got Y`, with the class's
    /// marker (`None`: unmarked, the harness decides from the scenario's tags).
    #[track_caller]
    pub fn fail_expect(
        &self,
        class: Option<FailureClass>,
        expected: impl std::fmt::Display,
        got: impl std::fmt::Display,
    ) -> ! {
        let msg = format!(
            "{}: expected {expected}, got {got}",
            self.last_request_line()
        );
        match class {
            Some(c) => self.fail_as(c, msg),
            None => self.fail(msg),
        }
    }

    /// A setup step cannot run because `METHOD path_template` answered `status` (404, 405,
    /// 501: the route or capability is missing). The first line is the harness's grouping
    /// key, so it carries the path TEMPLATE (ids as `{...}`), never concrete ids.
    #[track_caller]
    pub fn blocked(&self, method: &str, path_template: &str, status: u16) -> ! {
        self.fail_as(
            FailureClass::Blocked,
            format!("{method} {path_template} answered {status}"),
        )
    }

    /// Fails as the harness's own problem: a step used wrongly by a feature, or a value the
    /// scenario never set up.
    #[track_caller]
    pub fn harness_error(&self, msg: impl AsRef<str>) -> ! {
        self.fail_as(FailureClass::Harness, msg)
    }

    /// Checks the answer of a SETUP request (`what`: "creating tenant \"A\"") against the
    /// statuses that let the scenario go on. No answer is the harness's problem (it could
    /// not reach the target); 404, 405 or 501 mean the route is missing, so the scenario is
    /// blocked (first line `METHOD template answered N`, grouped by the harness); any other
    /// status is the target answering otherwise than the contract.
    #[track_caller]
    pub fn expect_setup(&self, ex: &Exchange, ok: &[u16], what: &str) {
        if ok.contains(&ex.status) {
            return;
        }
        let (method, template) = ex
            .endpoint
            .split_once(' ')
            .unwrap_or((ex.method.as_str(), ex.path.as_str()));
        match ex.status {
            0 => self.harness_error(format!(
                "{what}: {} {}: no answer from the target: {}",
                ex.method, ex.path, ex.body
            )),
            404 | 405 | 501 => self.blocked_with(
                method,
                template,
                ex.status,
                format!("{what} needs {} {}", ex.method, ex.path),
            ),
            s => self.fail_as(
                FailureClass::Conformance,
                format!(
                    "{what}: {} {}: expected {}, got {s}: {}",
                    ex.method,
                    ex.path,
                    statuses(ok),
                    excerpt(&ex.body)
                ),
            ),
        }
    }

    /// [`Self::blocked`] with details on a second line.
    #[track_caller]
    pub fn blocked_with(
        &self,
        method: &str,
        path_template: &str,
        status: u16,
        details: impl AsRef<str>,
    ) -> ! {
        self.fail_as(
            FailureClass::Blocked,
            format!(
                "{method} {path_template} answered {status}\n{}",
                details.as_ref()
            ),
        )
    }

    /// Text for a failure report: the last exchange, redacted.
    pub fn failure_context(&self) -> Option<String> {
        self.last
            .as_ref()
            .map(|e| self.ctx.secrets.redact(&e.describe()))
    }

    /// Panics with a redacted message (a failed step).
    #[track_caller]
    pub fn fail(&self, msg: impl AsRef<str>) -> ! {
        panic!("{}", self.ctx.secrets.redact(msg.as_ref()))
    }
}

/// `METHOD path: expected …, got STATUS: body` for the last exchange; no answer at all is the
/// harness's error (the target never answered), not the target's.
pub(crate) fn status_mismatch(w: &AuthWorld, expected: &str) -> String {
    let ex = w.last();
    if ex.status == 0 {
        w.harness_error(format!(
            "{} {}: expected {expected}, got no answer: {}",
            ex.method, ex.path, ex.body
        ));
    }
    format!(
        "{} {}: expected {expected}, got {}: {}",
        ex.method,
        ex.path,
        ex.status,
        excerpt(&ex.body)
    )
}

/// Judges the last answer's status against the statuses a step accepts, and fails with the
/// class the difference deserves (every message names method, path, expected and got):
///
/// - no answer at all: `harness` (the harness could not reach the target);
/// - a refusal (401, 403 or 404) was expected and the target accepted (2xx/3xx): `security`,
///   whatever the scenario: a request that must be refused went through;
/// - the status family is right but the code differs (400 for 401, 403 for 401, 200 for
///   201): `conformance`, the target did refuse (or accept) but says it otherwise than the
///   contract. EXCEPT when the exact code is the rule: 404 (a foreign or missing resource must
///   look absent, so 403 reveals that it exists) and 429 (the rate limit's own answer); then
///   the failure is left unmarked and the scenario's tags decide (`@isolation`,
///   `@rate-limit`: security);
/// - anything else (a 5xx, an error where success was expected, a success where a validation
///   error was expected): unmarked, the scenario's tags decide.
pub(crate) fn judge_status(w: &AuthWorld, want: &[u16]) {
    let got = w.last().status;
    if want.contains(&got) {
        return;
    }
    let msg = status_mismatch(w, &statuses(want));
    let family = |s: u16| s / 100;
    let all_4xx = want.iter().all(|s| family(*s) == 4);
    let all_2xx = want.iter().all(|s| family(*s) == 2);
    let refusal = want.iter().any(|s| matches!(s, 401 | 403 | 404));
    let class = if all_4xx && (family(got) == 2 || family(got) == 3) && refusal {
        Some(FailureClass::Security)
    } else if all_4xx && family(got) == 4 {
        let exact_rule = want.iter().all(|s| matches!(s, 404 | 429));
        (!exact_rule).then_some(FailureClass::Conformance)
    } else if all_2xx && family(got) == 2 {
        Some(FailureClass::Conformance)
    } else {
        None
    };
    match class {
        Some(c) => w.fail_as(c, msg),
        None => w.fail(msg),
    }
}

/// An answer 404, 405 or 501 where a step expected another status may mean that the target
/// has no such route at all. Asked again without any credential, a route that exists answers
/// differently (401, or the resource); the very same answer means the route is missing, and
/// the scenario is blocked on it (`METHOD template answered N`) rather than failed. A request
/// that carried no credential is not asked again: nothing would tell the two apart.
pub(crate) async fn blocked_if_route_missing(w: &mut AuthWorld, want: &[u16]) {
    let ex = w.last().clone();
    if want.contains(&ex.status) || !matches!(ex.status, 404 | 405 | 501) {
        return;
    }
    let Some(req) = w.last_req.clone() else {
        return;
    };
    if matches!(req.cred, Cred::None) {
        return;
    }
    let mut bare = req.clone();
    bare.cred = Cred::None;
    let other = w.send_prepared(bare).await.clone();
    // The answer under test stays the last one.
    w.last = Some(ex.clone());
    w.last_req = Some(req);
    if other.status == ex.status && normalized(&other, &[]) == normalized(&ex, &[]) {
        let (method, template) = ex
            .endpoint
            .split_once(' ')
            .unwrap_or((ex.method.as_str(), ex.path.as_str()));
        w.blocked_with(
            method,
            template,
            ex.status,
            format!(
                "{} {}: expected {}, got {} with or without a credential: the target has no such route",
                ex.method,
                ex.path,
                statuses(want),
                ex.status
            ),
        );
    }
}

/// A credential that should work must answer 200; one that should be refused must answer
/// `want`, and a success then is a security failure: a revoked credential was trusted.
pub(crate) fn judge_use(w: &AuthWorld, ex: &Exchange, who: &str, works: bool, want: u16) {
    let line = format!("{} {} as {who:?}", ex.method, ex.path);
    if works {
        // Proving the credential before its revocation is setup: a missing route blocks
        // the scenario rather than failing it.
        w.expect_setup(ex, &[200], &format!("using {who:?} before its revocation"));
        return;
    }
    if ex.status == want {
        return;
    }
    let msg = format!(
        "{line}: expected {want} (the credential is revoked), got {}",
        ex.status
    );
    match ex.status / 100 {
        2 | 3 => w.fail_as(FailureClass::Security, msg),
        4 => w.fail_as(FailureClass::Conformance, msg),
        _ => w.fail(msg),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::tests::{exchange, world};
    use serde_json::json;
    use std::panic::{catch_unwind, AssertUnwindSafe};

    /// The panic message of `judge_status` for an answer `got` where `want` was expected.
    fn judged(got: u16, want: &[u16]) -> Option<String> {
        let mut w = world();
        w.last = Some(exchange("GET", "/v1/tenant", got, json!({})));
        catch_unwind(AssertUnwindSafe(|| judge_status(&w, want)))
            .err()
            .map(|p| p.downcast_ref::<String>().cloned().unwrap_or_default())
    }

    #[test]
    fn statuses_are_judged_by_family() {
        assert_eq!(judged(401, &[401]), None);
        // Accepted where a refusal was expected: security, naming method, path, both codes.
        assert_eq!(
            judged(200, &[401]).as_deref(),
            Some("[authconf:security] GET /v1/tenant: expected 401, got 200: {}")
        );
        assert!(judged(200, &[401, 403, 404])
            .unwrap()
            .starts_with("[authconf:security] GET /v1/tenant: expected 401, 403 or 404, got 200"));
        // Refused with another code: conformance.
        assert!(judged(400, &[401])
            .unwrap()
            .starts_with("[authconf:conformance] GET /v1/tenant: expected 401, got 400"));
        assert!(judged(201, &[200])
            .unwrap()
            .starts_with("[authconf:conformance]"));
        // Where the exact code is the rule (404 hides existence), the tags decide.
        assert!(judged(403, &[404])
            .unwrap()
            .starts_with("GET /v1/tenant: expected 404, got 403"));
        // A server error: unmarked; no answer at all: the harness's problem.
        assert!(judged(500, &[400]).unwrap().starts_with("GET /v1/tenant"));
        assert!(judged(0, &[400])
            .unwrap()
            .starts_with("[authconf:harness] GET /v1/tenant: expected 400, got no answer"));
    }
}
