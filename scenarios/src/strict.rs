//! Stricter checks that close gaps a proxy over a correct target could slip through: a
//! credential proven on every route that trusts it before and after its revocation (a
//! response cache in front of a target passes a check on a route never used before), the
//! exact rate-limit headers, and the time of a login as a sign of whether an address exists.

use std::time::{Duration, Instant};

use cucumber::{given, then, when};
use serde_json::json;

use crate::verdict::FailureClass;
use crate::world::{AuthWorld, Cred, Exchange, Req};

/// The tenant routes a key of this kind may call with a GET, per docs/contract.md's table
/// (`/v1/rate-limit` only where the target declares rate limiting).
fn routes_for(w: &AuthWorld, secret: &str) -> Vec<&'static str> {
    let mut routes = vec!["/v1/tenant"];
    if secret.starts_with("sk_") {
        routes.push("/v1/api-keys");
    }
    if w.ctx.caps.feature("rateLimit") {
        routes.push("/v1/rate-limit");
    }
    routes
}

#[given(
    regex = r#"^the key "([^"]+)" (works|is refused(?: with (\d+))?) on every route that accepts it$"#
)]
#[when(
    regex = r#"^the key "([^"]+)" (works|is refused(?: with (\d+))?) on every route that accepts it$"#
)]
#[then(
    regex = r#"^the key "([^"]+)" (works|is refused(?: with (\d+))?) on every route that accepts it$"#
)]
async fn key_on_every_route(w: &mut AuthWorld, key: String, how: String, status: String) {
    let cred = w.cred(&key);
    let Cred::Bearer { value, .. } = &cred else {
        w.harness_error(format!("{key:?} is not a key"))
    };
    let works = how == "works";
    let want: u16 = status.parse().unwrap_or(401);
    for route in routes_for(w, value) {
        let ex = w.send(Req::new("GET", route, cred.clone())).await.clone();
        judge(w, &ex, &key, works, want);
    }
}

/// A credential that should work must answer 200; one that should be refused must answer
/// `want`, and a success then is a security failure: a revoked credential was trusted.
fn judge(w: &AuthWorld, ex: &Exchange, who: &str, works: bool, want: u16) {
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

fn user_token(w: &AuthWorld, who: &str, named: bool) -> String {
    let found = if named {
        w.users.named.get(who).cloned()
    } else {
        w.users.access.get(who).and_then(|v| v.last().cloned())
    };
    match found {
        Some(t) => t,
        None => w.harness_error(format!("no access token {who:?} in the scenario")),
    }
}

async fn token_on_routes(w: &mut AuthWorld, label: &str, token: String, works: bool) {
    for route in ["/v1/auth/me", "/v1/auth/validate"] {
        let cred = Cred::Bearer {
            label: label.to_owned(),
            value: token.clone(),
        };
        let ex = w.send(Req::new("GET", route, cred)).await.clone();
        judge(w, &ex, label, works, 401);
        if works && route.ends_with("validate") {
            let valid = ex.json().get("valid").and_then(serde_json::Value::as_bool);
            if valid != Some(true) {
                w.fail(format!(
                    "GET /v1/auth/validate as {label:?}: expected \"valid\":true, got {valid:?}"
                ));
            }
        }
    }
}

#[given(regex = r#"^"(\w+)"'s access token (works|is refused) on me and validate$"#)]
#[then(regex = r#"^"(\w+)"'s access token (works|is refused) on me and validate$"#)]
async fn user_token_routes(w: &mut AuthWorld, user: String, how: String) {
    let token = user_token(w, &user, false);
    token_on_routes(w, &format!("{user}:access"), token, how == "works").await;
}

#[given(regex = r#"^the access token "([^"]+)" (works|is refused) on me and validate$"#)]
#[then(regex = r#"^the access token "([^"]+)" (works|is refused) on me and validate$"#)]
async fn named_token_routes(w: &mut AuthWorld, name: String, how: String) {
    let token = user_token(w, &name, true);
    token_on_routes(w, &name, token, how == "works").await;
}

// ---------------------------------------------------------------------------------------
// Rate-limit headers
// ---------------------------------------------------------------------------------------

fn header_num(ex: &Exchange, name: &str) -> Option<i64> {
    ex.header(name).and_then(|v| v.trim().parse().ok())
}

#[then(
    regex = r#"^every 429 carries Retry-After equal to its RateLimit-Reset, in whole seconds from 1 to (\d+)$"#
)]
async fn retry_after_exact(w: &mut AuthWorld, window: i64) {
    let batch = w.batch.clone();
    let refused: Vec<&Exchange> = batch.iter().filter(|e| e.status == 429).collect();
    if refused.is_empty() {
        w.fail("expected some 429 answers in the batch, got none");
    }
    for e in refused {
        let line = format!("{} {}", e.method, e.path);
        let retry = e.header("retry-after").unwrap_or("");
        let Ok(secs) = retry.trim().parse::<i64>() else {
            w.fail(format!(
                "{line}: expected Retry-After in whole seconds, got {retry:?}"
            ))
        };
        if !(1..=window).contains(&secs) {
            w.fail(format!(
                "{line}: expected Retry-After from 1 to {window} seconds (the window), got {secs}"
            ));
        }
        match header_num(e, "ratelimit-reset") {
            Some(reset) if reset == secs => {}
            // A second may tick between the two readings of the clock.
            Some(reset) if (reset - secs).abs() <= 1 => {}
            other => w.fail(format!(
                "{line}: expected Retry-After equal to RateLimit-Reset, got Retry-After {secs} and RateLimit-Reset {other:?}"
            )),
        }
    }
}

#[then(
    regex = r#"^the admitted responses carry RateLimit-Remaining from (\d+) down to 0, each value once$"#
)]
async fn remaining_each_once(w: &mut AuthWorld, top: i64) {
    let mut got: Vec<Option<i64>> = w
        .batch
        .iter()
        .filter(|e| (200..300).contains(&e.status))
        .map(|e| header_num(e, "ratelimit-remaining"))
        .collect();
    got.sort();
    let want: Vec<Option<i64>> = (0..=top).map(Some).collect();
    if got != want {
        w.fail(format!(
            "GET burst: expected RateLimit-Remaining {top}..0, one value per admitted request, got {got:?}"
        ));
    }
}

// ---------------------------------------------------------------------------------------
// Timing: does a login's time tell whether the address has an account?
// ---------------------------------------------------------------------------------------

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[when(
    regex = r#"^I time (\d+) interleaved logins to tenant "([^"]+)" with a wrong password, for the address of "(\w+)" and for an unknown address$"#
)]
/// Alternates known and unknown addresses so drift on the target (load, caches, CPU
/// frequency) falls on both samples alike; one warm-up round of each is not counted.
async fn time_logins(w: &mut AuthWorld, n: usize, tenant: String, user: String) {
    let known = w.email_of(&user);
    let unknown = format!("nobody-{}@authconf.invalid", w.ctx.new_slug());
    let public = w.cred(&format!("{tenant}:public"));
    let mut samples: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    for round in 0..=n {
        for (i, email) in [&known, &unknown].into_iter().enumerate() {
            let body = json!({"email": email, "password": "Wrong-password-123"}).to_string();
            // The tenant named by its publishable key, so a limiter for requests without any
            // credential does not throttle the samples.
            let req = Req::new("POST", "/v1/auth/login", public.clone()).json(&body);
            let started = Instant::now();
            let ex = w.send(req).await.clone();
            let took = started.elapsed();
            if ex.status != 401 {
                w.fail_expect(
                    None,
                    "401 for a wrong password or unknown address",
                    ex.status,
                );
            }
            if round > 0 {
                samples[i].push(took);
            }
        }
    }
    let [mut k, mut u] = samples;
    let (mk, mu) = (median(&mut k), median(&mut u));
    w.values
        .insert("timing:known".into(), mk.as_micros().to_string());
    w.values
        .insert("timing:unknown".into(), mu.as_micros().to_string());
}

#[then(
    regex = r#"^the median times differ by less than (\d+) ms or by less than (\d+)% of the slower one$"#
)]
/// The margin is the larger of an absolute bound (jitter of a remote target) and a share of
/// the slower median (a target with slow hashing): a skipped hash differs by the whole
/// hashing time, far more than either.
async fn medians_close(w: &mut AuthWorld, ms: u64, pct: u64) {
    let get = |k: &str| -> u128 {
        w.values
            .get(k)
            .and_then(|v| v.parse().ok())
            .unwrap_or_default()
    };
    let (known, unknown) = (get("timing:known"), get("timing:unknown"));
    let diff = known.abs_diff(unknown);
    let slower = known.max(unknown);
    let margin = u128::from(ms) * 1000;
    let share = slower * u128::from(pct) / 100;
    if diff >= margin.max(share) {
        w.fail_as(
            FailureClass::Security,
            format!(
                "POST /v1/auth/login: expected the same time for a known and an unknown address (median difference under {ms} ms or {pct}%), got medians {:.1} ms (known) and {:.1} ms (unknown): the time tells whether an address has an account",
                known as f64 / 1000.0,
                unknown as f64 / 1000.0
            ),
        );
    }
}

// ---------------------------------------------------------------------------------------
// Nothing internal in errors
// ---------------------------------------------------------------------------------------

/// Text that only an implementation's insides write: SQL with its tables, database engine
/// messages, source paths with line numbers, Rust or JavaScript type paths and error types,
/// stack frames, panics.
fn internal_patterns() -> &'static [regex::Regex] {
    static PATTERNS: std::sync::OnceLock<Vec<regex::Regex>> = std::sync::OnceLock::new();
    PATTERNS.get_or_init(|| {
        [
            // SQL as engines and query builders write it: keywords in capitals.
            r"\b(SELECT\s+[\w*.,\s]+?\s+FROM|INSERT\s+INTO|DELETE\s+FROM|UPDATE\s+\w+\s+SET)\s+\w+",
            r"(?i)\b(sqlite|sqlstate|sqlx|rusqlite|d1_error|no such (table|column)|constraint failed|syntax error at or near)\b",
            r"(?i)[\w./-]+\.(rs|ts|js|mjs|go|py|java)(:\d+)",
            r"\b(std|core|alloc|tokio|serde_json|serde|axum|hyper|rusqlite|worker)::[A-Za-z_]\w*",
            r"\b(TypeError|ReferenceError|RangeError|SyntaxError|Traceback)\b",
            r"(?m)^\s*at \S+ \(\S+:\d+:\d+\)|\bat \S+:\d+:\d+\b",
            r"(?i)panicked at|stack backtrace|RUST_BACKTRACE|called `(Option|Result)::unwrap\(\)`",
        ]
        .iter()
        .map(|p| regex::Regex::new(p).expect("static regex"))
        .collect()
    })
}

/// Fails when an error's `title`, `detail` or `errors[].message` holds internal text that
/// the caller did not send itself (an echo of the caller's own input is not a leak).
pub(crate) fn check_internals(w: &AuthWorld, ex: &Exchange) {
    if ex.status < 400 {
        return;
    }
    let Some(j) = ex.json.as_ref() else { return };
    let mut texts: Vec<(&str, &str)> = Vec::new();
    for field in ["title", "detail"] {
        if let Some(s) = j.get(field).and_then(serde_json::Value::as_str) {
            texts.push((field, s));
        }
    }
    if let Some(errs) = j.get("errors").and_then(serde_json::Value::as_array) {
        texts.extend(
            errs.iter()
                .filter_map(|e| e.get("message").and_then(serde_json::Value::as_str))
                .map(|s| ("errors[].message", s)),
        );
    }
    let sent = format!("{} {}", ex.path, ex.request_body.as_deref().unwrap_or(""));
    for (field, text) in texts {
        for re in internal_patterns() {
            if let Some(m) = re.find(text) {
                if sent.contains(m.as_str()) {
                    continue;
                }
                w.fail_as(
                    FailureClass::Security,
                    format!(
                        "{} {}: expected an error without internal text, got {field} {text:?} (internal: {:?})",
                        ex.method,
                        ex.path,
                        m.as_str()
                    ),
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Values kept from an answer (platform admins' keys and ids)
// ---------------------------------------------------------------------------------------

fn field_text(w: &AuthWorld, path: &str) -> String {
    match crate::extract::field(w.last().json(), path).and_then(serde_json::Value::as_str) {
        Some(s) => s.to_owned(),
        None => w.fail_expect(
            None,
            format!("a string in {path:?}"),
            crate::extract::field(w.last().json(), path)
                .cloned()
                .unwrap_or(serde_json::Value::Null),
        ),
    }
}

#[then(regex = r#"^I keep the credential in "([^"]+)" as "([^"]+)"$"#)]
#[when(regex = r#"^I keep the credential in "([^"]+)" as "([^"]+)"$"#)]
/// The bearer secret at `path` of the last answer becomes the credential `name`.
async fn keep_credential(w: &mut AuthWorld, path: String, name: String) {
    let v = field_text(w, &path);
    w.raw_creds.insert(name, v);
}

#[then(regex = r#"^I keep the field "([^"]+)" as "([^"]+)"$"#)]
#[when(regex = r#"^I keep the field "([^"]+)" as "([^"]+)"$"#)]
/// The string at `path` of the last answer becomes `{value:name}`.
async fn keep_field(w: &mut AuthWorld, path: String, name: String) {
    let v = field_text(w, &path);
    w.values.insert(name, v);
}

#[given(
    regex = r#"^a platform admin "([^"]+)" with role "([^"]+)"(?: limited to tenant "([^"]+)")?$"#
)]
/// Creates a platform admin with the root key; its key becomes the credential `name` and its
/// id `{value:name.id}`.
async fn platform_admin(w: &mut AuthWorld, name: String, role: String, tenant: String) {
    let email = format!("{}@authconf.invalid", w.ctx.new_slug());
    let mut body = json!({"email": email, "role": role});
    if !tenant.is_empty() {
        body["tenants"] = json!([w.tenant(&tenant).id.clone()]);
    }
    let req = Req::new("POST", "/admin/admins", w.cred("admin")).json(&body.to_string());
    let ex = w.send(req).await.clone();
    w.expect_setup(
        &ex,
        &[201],
        &format!("creating the platform admin {name:?}"),
    );
    keep_credential(w, "credentials.adminKey".into(), name.clone()).await;
    keep_field(w, "admin.id".into(), format!("{name}.id")).await;
}

#[cfg(test)]
mod tests {
    use super::internal_patterns;

    fn internal(text: &str) -> bool {
        internal_patterns().iter().any(|re| re.is_match(text))
    }

    #[test]
    fn internal_text_is_recognised() {
        for t in [
            "SQLITE_CONSTRAINT: UNIQUE constraint failed: api_keys.key_hash",
            "error in SELECT id FROM tenants WHERE slug = ?",
            "at reference/core/src/store.rs:142",
            "serde_json::Error: EOF while parsing",
            "TypeError: Cannot read properties of undefined",
            "    at handler (/app/src/index.ts:12:7)",
            "thread 'main' panicked at src/main.rs:3:5",
            "D1_ERROR: no such table: tenants",
        ] {
            assert!(internal(t), "{t:?} should count as internal");
        }
    }

    #[test]
    fn ordinary_problem_text_is_not() {
        for t in [
            "Bad Request",
            "line 1, column 2: expected value",
            "csv: line 3, column 3: relation must match [A-Za-z0-9_-]+",
            "must be at most 100 characters",
            "must be one of free, pro, enterprise",
            "The key was revoked or never existed",
            "select a plan from the list",
            "unknown field `colour`, expected one of `after`, `limit`",
        ] {
            assert!(!internal(t), "{t:?} should not count as internal");
        }
    }
}
