//! Step definitions. Every step speaks HTTP to the target through [`AuthWorld::send`], so
//! every response is checked for leaked secrets whichever step sent it.
//!
//! Credential references in steps: `admin`, `none`, `A` (tenant A's secret key), `A:public`,
//! `A:<name>` (a key the scenario created), or a literal built by a "credential" step.

use std::time::{Duration, Instant};

use cucumber::gherkin::Step;
use cucumber::{given, then, when};
use rand::Rng as _;
use serde_json::{json, Value};

use crate::extract;
use crate::verdict::FailureClass;
use crate::world::{excerpt, statuses, AuthWorld, Body, Cred, Exchange, Req};

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_owned)
        .collect()
}

fn request_ids(ex: &Exchange) -> Vec<String> {
    ex.header("x-request-id")
        .map(|v| vec![v.to_owned()])
        .unwrap_or_default()
}

/// A body with the exchange's own request id and the given ids replaced, for comparing two
/// answers that must be identical.
pub(crate) fn normalized(ex: &Exchange, ids: &[&str]) -> String {
    let mut b = ex.body.clone();
    for r in request_ids(ex) {
        b = b.replace(&r, "<request-id>");
    }
    for id in ids {
        if !id.is_empty() {
            b = b.replace(id, "<id>");
            let enc: String =
                percent_encoding::utf8_percent_encode(id, percent_encoding::NON_ALPHANUMERIC)
                    .collect();
            b = b.replace(&enc, "<id>");
        }
    }
    b
}

/// `METHOD path: expected …, got STATUS: body` for the last exchange; no answer at all is the
/// harness's error (the target never answered), not the target's.
fn status_mismatch(w: &AuthWorld, expected: &str) -> String {
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

// ---------------------------------------------------------------------------------------
// Given: tenants, keys, credentials
// ---------------------------------------------------------------------------------------

#[given(regex = r#"^a tenant "([^"]+)"(?: on plan "([^"]+)")?$"#)]
async fn a_tenant(w: &mut AuthWorld, name: String, plan: String) {
    let plan = (!plan.is_empty()).then_some(plan.as_str());
    w.create_tenant(&name, plan).await;
}

#[given(
    regex = r#"^tenant "([^"]+)" has an? (publishable|public|secret|restricted) (live|test) key "([^"]+)"(?: with permissions "([^"]*)")?(?: created by "([^"]+)")?$"#
)]
#[when(
    regex = r#"^tenant "([^"]+)" has an? (publishable|public|secret|restricted) (live|test) key "([^"]+)"(?: with permissions "([^"]*)")?(?: created by "([^"]+)")?$"#
)]
async fn tenant_has_key(
    w: &mut AuthWorld,
    tenant: String,
    ty: String,
    env: String,
    key: String,
    perms: String,
    by: String,
) {
    let mut body = json!({"name": format!("authconf {key}"), "type": ty, "environment": env});
    if ty == "restricted" {
        body["permissions"] = json!(split_list(&perms));
    }
    let by = if by.is_empty() { tenant.clone() } else { by };
    w.create_key(&tenant, &key, body, &by).await;
}

#[given(regex = r#"^tenant "([^"]+)" is (suspended|deleted|active)$"#)]
async fn tenant_status(w: &mut AuthWorld, tenant: String, status: String) {
    let req = if status == "deleted" {
        Req::new(
            "DELETE",
            &format!("/admin/tenants/{{{tenant}.id}}"),
            w.cred("admin"),
        )
    } else {
        Req::new(
            "PATCH",
            &format!("/admin/tenants/{{{tenant}.id}}"),
            w.cred("admin"),
        )
        .json(&json!({"status": status}).to_string())
    };
    let ex = w.send(req).await.clone();
    w.expect_setup(&ex, &[200, 204], &format!("making {tenant:?} {status}"));
}

#[given(regex = r#"^the key "([^"]+)" is revoked$"#)]
async fn key_revoked(w: &mut AuthWorld, key: String) {
    let tenant = key.split(':').next().unwrap_or_default().to_owned();
    let req = Req::new(
        "DELETE",
        &format!("/v1/api-keys/{{{key}.id}}"),
        w.cred(&tenant),
    );
    let ex = w.send(req).await.clone();
    w.expect_setup(&ex, &[200, 204], &format!("revoking {key:?}"));
}

#[given(regex = r#"^the key ids of tenant "([^"]+)" are known$"#)]
async fn key_ids_known(w: &mut AuthWorld, tenant: String) {
    w.learn_key_ids(&tenant).await;
}

/// CRC-32 of the key body as 6 base62 digits, as docs/contract.md defines the checksum.
fn checksum(body: &str) -> String {
    let mut n = crc32fast::hash(body.as_bytes()) as u64;
    let mut out = [b'0'; 6];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn random_base62(n: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..n)
        .map(|_| BASE62[rng.gen_range(0..62)] as char)
        .collect()
}

#[given(
    regex = r#"^a credential "([^"]+)" that is a well-formed (pk|sk|rk) (live|test) key nobody issued$"#
)]
async fn unissued_key(w: &mut AuthWorld, name: String, ty: String, env: String) {
    let body = format!("{ty}_{env}_{}", random_base62(32));
    let key = format!("{body}{}", checksum(&body));
    w.raw_creds.insert(name, key);
}

#[given(regex = r#"^a credential "([^"]+)" that is "([^"]*)"$"#)]
async fn literal_cred(w: &mut AuthWorld, name: String, value: String) {
    w.raw_creds.insert(name, value);
}

#[given(regex = r#"^a credential "([^"]+)" made from "([^"]+)" by (.+)$"#)]
async fn mutated_cred(w: &mut AuthWorld, name: String, from: String, how: String) {
    let key = w.secret_of(&from);
    let chars: Vec<char> = key.chars().collect();
    // Mutations aim at the random part, after `xx_live_`.
    let mid = chars.len().saturating_sub(chars.len() / 3);
    let out: String = match how.as_str() {
        "removing its last character" => chars[..chars.len() - 1].iter().collect(),
        "removing its first character" => chars[1..].iter().collect(),
        "adding a character" => format!("{key}A"),
        "doubling it" => format!("{key}{key}"),
        "flipping the case of one letter" => {
            let mut c = chars.clone();
            let i = (mid..c.len())
                .chain(8..mid)
                .find(|&i| c[i].is_ascii_alphabetic())
                .unwrap_or(mid);
            c[i] = if c[i].is_ascii_uppercase() {
                c[i].to_ascii_lowercase()
            } else {
                c[i].to_ascii_uppercase()
            };
            c.into_iter().collect()
        }
        "changing one character" => {
            let mut c = chars.clone();
            c[mid] = if c[mid] == 'x' { 'y' } else { 'x' };
            c.into_iter().collect()
        }
        "keeping only its display prefix" => chars[..12.min(chars.len())].iter().collect(),
        "upper-casing it" => key.to_ascii_uppercase(),
        "changing its type to publishable" => replace_type(&key, "pk"),
        "changing its type to restricted" => replace_type(&key, "rk"),
        "changing its type to secret" => replace_type(&key, "sk"),
        "changing its environment to test" => key.replacen("_live_", "_test_", 1),
        "changing its environment to live" => key.replacen("_test_", "_live_", 1),
        other => w.harness_error(format!("unknown key mutation {other:?}")),
    };
    if out == key {
        w.harness_error(format!(
            "the mutation {how:?} did not change the key {from:?}"
        ));
    }
    w.raw_creds.insert(name, out);
}

fn replace_type(key: &str, ty: &str) -> String {
    match key.get(2..) {
        Some(rest) => format!("{ty}{rest}"),
        None => key.to_owned(),
    }
}

// ---------------------------------------------------------------------------------------
// When: requests
// ---------------------------------------------------------------------------------------

fn docstring_body(req: Req, step: &Step) -> Req {
    match step.docstring() {
        Some(d) => req.json(d.trim()),
        None => req,
    }
}

#[when(regex = r#"^I send (GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) "([^"]*)" as "([^"]+)"$"#)]
async fn send_plain(w: &mut AuthWorld, step: &Step, method: String, path: String, cred: String) {
    let req = docstring_body(Req::new(&method, &path, w.cred(&cred)), step);
    w.send(req).await;
}

#[when(regex = r#"^I send (\w+) "([^"]*)" as "([^"]+)" with body '(.*)'$"#)]
async fn send_inline(w: &mut AuthWorld, method: String, path: String, cred: String, body: String) {
    let req = Req::new(&method, &path, w.cred(&cred)).json(&body);
    w.send(req).await;
}

#[when(regex = r#"^I send (\w+) "([^"]*)" as "([^"]+)" with header "([^"]+)" set to "([^"]*)"$"#)]
async fn send_header(
    w: &mut AuthWorld,
    step: &Step,
    method: String,
    path: String,
    cred: String,
    name: String,
    value: String,
) {
    let req = docstring_body(
        Req::new(&method, &path, w.cred(&cred)).header(&name, &value),
        step,
    );
    w.send(req).await;
}

#[when(
    regex = r#"^I send (\w+) "([^"]*)" as "([^"]+)" with the (tenant header|tenant slug header|tenant query parameter|subdomain) of "([^"]+)"$"#
)]
async fn send_routed(
    w: &mut AuthWorld,
    step: &Step,
    method: String,
    path: String,
    cred: String,
    source: String,
    tenant: String,
) {
    let mut req = Req::new(&method, &path, w.cred(&cred));
    let (id, slug) = match w.tenants.get(&tenant) {
        Some(t) => (t.id.clone(), t.slug.clone()),
        // An unknown tenant: a slug of this run's prefix that nobody created.
        None => {
            let slug = format!("{}nobody-{tenant}", crate::SLUG_PREFIX).to_ascii_lowercase();
            (format!("tenant:{slug}"), slug)
        }
    };
    match source.as_str() {
        "tenant header" => req = req.header("X-Tenant-ID", &id),
        "tenant slug header" => req = req.header("X-Tenant-ID", &slug),
        "tenant query parameter" => {
            let sep = if path.contains('?') { '&' } else { '?' };
            let enc: String =
                percent_encoding::utf8_percent_encode(&id, percent_encoding::NON_ALPHANUMERIC)
                    .collect();
            req.path = format!("{path}{sep}tenant_id={enc}");
        }
        _ => {
            let Some(base) = w.ctx.base_domain.clone() else {
                w.harness_error("the target has no routing base domain (use --base-domain)")
            };
            let port = reqwest::Url::parse(&w.ctx.base_url)
                .ok()
                .and_then(|u| u.port())
                .map(|p| format!(":{p}"))
                .unwrap_or_default();
            req.host = Some(format!("{slug}.{base}{port}"));
        }
    }
    let req = docstring_body(req, step);
    w.send(req).await;
}

#[when(
    regex = r#"^I send (\w+) "([^"]*)" as "([^"]+)" with content type "([^"]*)" and body '(.*)'$"#
)]
async fn send_content_type(
    w: &mut AuthWorld,
    method: String,
    path: String,
    cred: String,
    ct: String,
    body: String,
) {
    let mut req = Req::new(&method, &path, w.cred(&cred));
    req.body = Body::Raw {
        content_type: (!ct.is_empty()).then_some(ct),
        bytes: body.into_bytes(),
    };
    w.send(req).await;
}

#[when(regex = r#"^I send (\w+) "([^"]*)" as "([^"]+)" with a JSON body of (\d+) bytes$"#)]
async fn send_big(w: &mut AuthWorld, method: String, path: String, cred: String, size: usize) {
    // A valid JSON object, so that only its size can be the reason for refusing it.
    let filler = size.saturating_sub(40);
    let body = format!(
        "{{\"name\":\"big\",\"type\":\"secret\",\"pad\":\"{}\"}}",
        "a".repeat(filler)
    );
    let mut req = Req::new(&method, &path, w.cred(&cred));
    req.body = Body::Raw {
        content_type: Some("application/json".into()),
        bytes: body.into_bytes(),
    };
    w.send(req).await;
}

#[when(regex = r#"^I send (\w+) "([^"]*)" with the authorization header "([^"]*)"$"#)]
async fn send_raw_auth(w: &mut AuthWorld, method: String, path: String, value: String) {
    let value = w.expand(&value, false);
    let req = Req::new(&method, &path, Cred::Raw(value));
    w.send(req).await;
}

fn rotate_req(w: &AuthWorld, by: &str, key: &str, grace: &str) -> Req {
    let req = Req::new(
        "POST",
        &format!("/v1/api-keys/{{{key}.id}}/rotate"),
        w.cred(by),
    );
    if grace.is_empty() {
        req
    } else {
        req.json(&format!("{{\"expiresInSeconds\":{grace}}}"))
    }
}

#[when(
    regex = r#"^"([^"]+)" rotates the key "([^"]+)"(?: with a grace period of (\d+) seconds?)?(?: into "([^"]+)")?$"#
)]
async fn rotate(w: &mut AuthWorld, by: String, key: String, grace: String, into: String) {
    let req = rotate_req(w, &by, &key, &grace);
    let ex = w.send(req).await.clone();
    if ex.status == 201 {
        let tenant = key.split(':').next().unwrap_or_default().to_owned();
        let name = if into.is_empty() {
            format!("{key}-rotated")
        } else {
            into
        };
        let secret = extract::key_secret(ex.json());
        if let Some(v) = &secret {
            w.relabel(v, &name);
        }
        w.keys.insert(
            name,
            crate::world::KeyRef {
                id: extract::key_id(ex.json()),
                secret,
                tenant,
            },
        );
    }
}

#[when(regex = r#"^"([^"]+)" rotates the key "([^"]+)" (\d+) times concurrently$"#)]
async fn rotate_concurrently(w: &mut AuthWorld, by: String, key: String, n: usize) {
    let req = Req::new(
        "POST",
        &format!("/v1/api-keys/{{{key}.id}}/rotate"),
        w.cred(&by),
    );
    let req = w.prepare(&req);
    w.send_batch(vec![req; n]).await;
}

#[when(regex = r#"^"([^"]+)" creates (\d+) (publishable|secret|restricted) (live|test) keys$"#)]
async fn create_many(w: &mut AuthWorld, tenant: String, n: usize, ty: String, env: String) {
    w.issued.clear();
    for i in 0..n {
        let body = json!({"name": format!("authconf bulk {i}"), "type": ty, "environment": env});
        w.create_key(&tenant, &format!("bulk{i}"), body, &tenant)
            .await;
    }
}

#[when(regex = r#"^I remember the response as "([^"]+)"$"#)]
#[then(regex = r#"^I remember the response as "([^"]+)"$"#)]
async fn remember(w: &mut AuthWorld, name: String) {
    let ex = w.last().clone();
    w.saved.insert(name, ex);
}

// ---------------------------------------------------------------------------------------
// Then: statuses and problems
// ---------------------------------------------------------------------------------------

#[then(regex = r"^the status is (\d+)$")]
async fn status_is(w: &mut AuthWorld, status: u16) {
    blocked_if_route_missing(w, &[status]).await;
    judge_status(w, &[status]);
}

#[then(regex = r"^the request is refused with (\d+)$")]
async fn refused_with(w: &mut AuthWorld, status: u16) {
    status_is(w, status).await;
}

#[then(regex = r"^the request is refused$")]
async fn refused(w: &mut AuthWorld) {
    blocked_if_route_missing(w, &[401, 403]).await;
    judge_status(w, &[401, 403]);
}

#[then(regex = r"^the request succeeds$")]
async fn succeeds(w: &mut AuthWorld) {
    blocked_if_route_missing(w, &[200, 201, 204]).await;
    if !(200..300).contains(&w.last().status) {
        let msg = status_mismatch(w, "a 2xx status");
        w.fail(msg);
    }
}

#[then(regex = r#"^the response is a problem (\d+) "([^"]+)"$"#)]
/// The status is judged (a wrong status is a failure); the problem's format (media type,
/// shape, `code`, `status` member) is a deviation outside `@contract` scenarios, so the
/// scenario goes on to its behavioural steps.
async fn problem(w: &mut AuthWorld, status: u16, code: String) {
    blocked_if_route_missing(w, &[status]).await;
    judge_status(w, &[status]);
    let ex = w.last().clone();
    let ct = ex.header("content-type").unwrap_or("").to_owned();
    if !ct.starts_with("application/problem+json") {
        w.deviate(format!(
            "expected Content-Type application/problem+json, got {ct:?}"
        ));
    }
    if let Err(e) = crate::shapes::check("problem", ex.json()) {
        w.deviate(format!(
            "expected a problem body (docs/contract.md), got {}: {e}",
            excerpt(&ex.body)
        ));
    }
    let j = ex.json();
    let got_code = extract::error_code(j);
    if got_code.as_deref() != Some(code.as_str()) {
        w.deviate(format!("expected problem code {code:?}, got {got_code:?}"));
    }
    if j["status"] != json!(status) {
        w.deviate(format!(
            "expected the problem's status member {status}, got {}",
            j["status"]
        ));
    }
}

#[then(regex = r#"^the problem names the field "([^"]+)"$"#)]
async fn problem_field(w: &mut AuthWorld, field: String) {
    let j = w.last().json();
    // A more precise path inside the field (`rateLimit.requests` for `rateLimit`) names it too.
    let names = |v: &Value| {
        v.as_str()
            .is_some_and(|s| s == field || s.starts_with(&format!("{field}.")))
    };
    let direct = names(&j["field"]);
    let listed = j["errors"]
        .as_array()
        .is_some_and(|a| a.iter().any(|e| names(&e["field"])));
    if !direct && !listed {
        let msg = format!(
            "expected the problem to name the field {field:?}, got {}",
            excerpt(&w.last().body)
        );
        w.deviate(msg);
    }
}

#[then(regex = r"^the response is not a server error$")]
async fn not_5xx(w: &mut AuthWorld) {
    let ex = w.last();
    if ex.status == 0 {
        w.harness_error(format!(
            "{} {}: expected no server error, got no answer: {}",
            ex.method, ex.path, ex.body
        ));
    }
    if ex.status >= 500 {
        let msg = format!(
            "{} {}: expected no server error, got {}: {}",
            ex.method,
            ex.path,
            ex.status,
            excerpt(&ex.body)
        );
        w.fail(msg);
    }
}

#[then(regex = r#"^the response has the header "([^"]+)"(?: containing "([^"]*)")?$"#)]
/// A header is a format property (`WWW-Authenticate`, `X-Request-Id`, `RateLimit-*`,
/// `Allow`): a deviation outside `@contract` scenarios.
async fn has_header(w: &mut AuthWorld, name: String, containing: String) {
    let got = w.last().header(&name).map(str::to_owned);
    match got {
        Some(v)
            if v.to_ascii_lowercase()
                .contains(&containing.to_ascii_lowercase()) => {}
        Some(v) => w.deviate(format!(
            "expected the header {name} containing {containing:?}, got {v:?}"
        )),
        None => w.deviate(format!("expected the header {name}, got none")),
    }
}

#[then(regex = r#"^the response is the same as for an unknown key id$"#)]
async fn same_as_unknown(w: &mut AuthWorld) {
    let ex = w.last().clone();
    let ours = w.last_key_id_in_path();
    let Some(ours) = ours else {
        w.harness_error(format!(
            "{} {}: the step needs a key id in the path",
            ex.method, ex.path
        ))
    };
    let unknown = "key:0000000000000000";
    let enc: String =
        percent_encoding::utf8_percent_encode(&ours, percent_encoding::NON_ALPHANUMERIC).collect();
    let path = ex
        .path
        .replace(&enc, "key%3A0000000000000000")
        .replace(&ours, unknown);
    let mut req = w.last_req.clone().expect("a request was sent");
    req.path = path;
    let other = w.send_prepared(req).await.clone();
    if other.status != ex.status || normalized(&other, &[unknown]) != normalized(&ex, &[&ours]) {
        // Telling "exists elsewhere" from "does not exist" reveals another tenant's keys.
        let msg = format!(
            "{} {}: expected the same answer as for an unknown key id ({} {}), got {} {:?} vs {} {:?}",
            ex.method,
            ex.path,
            other.method,
            other.path,
            ex.status,
            excerpt(&ex.body),
            other.status,
            excerpt(&other.body)
        );
        w.fail_as(FailureClass::Security, msg);
    }
}

#[then(regex = r#"^the response is identical to the answer without a key$"#)]
async fn same_as_no_key(w: &mut AuthWorld) {
    let ex = w.last().clone();
    let mut req = w.last_req.clone().expect("a request was sent");
    req.cred = Cred::None;
    req.path = ex.path.clone();
    let other = w.send_prepared(req).await.clone();
    // What the credential was (revoked, foreign, malformed) must not show in the answer.
    if other.status != ex.status {
        let msg = format!(
            "{} {}: expected the status without a key ({}), got {}",
            ex.method, ex.path, other.status, ex.status
        );
        w.fail(msg);
    }
    if normalized(&other, &[]) != normalized(&ex, &[]) {
        let msg = format!(
            "{} {}: expected the body without a key {:?}, got {:?}",
            ex.method,
            ex.path,
            excerpt(&other.body),
            excerpt(&ex.body)
        );
        w.fail(msg);
    }
    let ours = ex.header("www-authenticate").map(str::to_ascii_lowercase);
    let theirs = other
        .header("www-authenticate")
        .map(str::to_ascii_lowercase);
    // The answer under test stays the last one.
    w.last = Some(ex);
    if ours != theirs {
        w.deviate(format!(
            "expected the WWW-Authenticate header of the answer without a key ({theirs:?}), got {ours:?}"
        ));
    }
}

#[then(regex = r#"^the response is identical to the response "([^"]+)"$"#)]
async fn same_as_saved(w: &mut AuthWorld, name: String) {
    let ex = w.last().clone();
    let Some(other) = w.saved.get(&name).cloned() else {
        w.harness_error(format!("no saved response {name:?}"))
    };
    if other.status != ex.status || normalized(&other, &[]) != normalized(&ex, &[]) {
        let msg = format!(
            "{} {}: expected the same answer as {name:?} ({} {}: {} {:?}), got {} {:?}",
            ex.method,
            ex.path,
            other.method,
            other.path,
            other.status,
            excerpt(&other.body),
            ex.status,
            excerpt(&ex.body)
        );
        w.fail(msg);
    }
}

// ---------------------------------------------------------------------------------------
// Then: fields and lists (tolerant)
// ---------------------------------------------------------------------------------------

#[then(
    regex = r#"^the field "([^"]+)" is ("[^"]*"|null|true|false|-?\d+(?:\.\d+)?|\[.*\]|\{.*\})$"#
)]
async fn field_is(w: &mut AuthWorld, path: String, value: String) {
    let value = w.expand(&value, false);
    let want: Value = match serde_json::from_str(&value) {
        Ok(v) => v,
        Err(_) => w.harness_error(format!("{value:?} is not a JSON value (quote strings)")),
    };
    let j = w.last().json().clone();
    let got = extract::field(&j, &path).cloned();
    if got.as_ref() == Some(&want) {
        return;
    }
    // Upstream's envelope puts the named object itself in `data` (`tenant.id` at `data.id`):
    // the right value there is a shape difference, not a wrong value.
    if got.is_none() {
        if let Some((twin, v)) = extract::twin_field(&j, &path) {
            if v == &want {
                w.deviate(format!("expected the field {path:?}, found it at {twin:?}"));
                return;
            }
            let msg = format!(
                "{}: expected the field {path:?} = {want}, got {v} (at {twin:?})",
                w.last_request_line()
            );
            w.fail(msg);
        }
    }
    // A field the answer does not carry at all is a shape difference: the value cannot be
    // judged, the scenario goes on (and fails as conformance if nothing worse happens). A
    // field that is there with another value is a failure.
    let Some(got) = got else {
        w.deviate(format!(
            "expected the field {path:?} = {want}, got no such field"
        ));
        return;
    };
    let msg = format!(
        "{}: expected the field {path:?} = {want}, got {got}",
        w.last_request_line()
    );
    w.fail(msg);
}

#[then(regex = r#"^the field "([^"]+)" is (present|absent|a timestamp|not null)$"#)]
/// A timestamp written as epoch seconds or milliseconds (upstream) is a format deviation:
/// the time is there. A field found only at its envelope twin (`data.x` for `tenant.x`) is a
/// shape deviation.
async fn field_presence(w: &mut AuthWorld, path: String, what: String) {
    let j = w.last().json().clone();
    let mut got = extract::field(&j, &path).cloned();
    if got.is_none() && what != "absent" {
        if let Some((twin, v)) = extract::twin_field(&j, &path) {
            w.deviate(format!("expected the field {path:?}, found it at {twin:?}"));
            got = Some(v.clone());
        }
    }
    if what == "present" && got.is_none() {
        w.deviate(format!("expected the field {path:?}, got no such field"));
        return;
    }
    let ok = match what.as_str() {
        "present" => got.is_some(),
        "absent" => got.is_none(),
        "not null" => got.as_ref().is_some_and(|v| !v.is_null()),
        _ => match got.as_ref().and_then(extract::time_form) {
            Some(extract::TimeForm::Rfc3339) => {
                // The contract writes UTC with `Z`.
                got.as_ref()
                    .and_then(Value::as_str)
                    .is_some_and(|s| s.ends_with('Z'))
            }
            Some(form) => {
                w.deviate(format!(
                    "expected the field {path:?} as an RFC 3339 timestamp, got {} ({})",
                    form.describe(),
                    got.as_ref().map(Value::to_string).unwrap_or_default()
                ));
                true
            }
            None => false,
        },
    };
    if !ok {
        let got = got.map_or_else(|| "no such field".to_owned(), |v| v.to_string());
        let msg = format!(
            "{}: expected the field {path:?} {what}, got {got}",
            w.last_request_line()
        );
        w.fail(msg);
    }
}

#[then(regex = r#"^the list "([^"]+)" has (at most|at least|exactly) (\d+) items?$"#)]
async fn list_len(w: &mut AuthWorld, name: String, how: String, n: usize) {
    let len = extract::list(w.last().json(), &name).map(Vec::len);
    let ok = match (how.as_str(), len) {
        (_, None) => false,
        ("at most", Some(l)) => l <= n,
        ("at least", Some(l)) => l >= n,
        (_, Some(l)) => l == n,
    };
    if !ok {
        let got = len.map_or_else(|| "no list".to_owned(), |l| format!("{l} items"));
        let msg = format!(
            "{}: expected the list {name:?} to have {how} {n} items, got {got}",
            w.last_request_line()
        );
        w.fail(msg);
    }
}

fn key_list_ids(w: &AuthWorld) -> Vec<String> {
    extract::list(w.last().json(), "apiKeys")
        .map(|l| {
            l.iter()
                .filter_map(|k| k.get("id").and_then(Value::as_str).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[then(regex = r#"^the key list (contains|does not contain) the key "([^"]+)"$"#)]
async fn key_list_contains(w: &mut AuthWorld, how: String, key: String) {
    if extract::list(w.last().json(), "apiKeys").is_none() {
        let msg = format!(
            "{}: expected a key list, got {}",
            w.last_request_line(),
            excerpt(&w.last().body)
        );
        w.fail(msg);
    }
    let id = w.key_id(&key);
    let has = key_list_ids(w).contains(&id);
    if has != (how == "contains") {
        let msg = format!(
            "{}: expected the key list {how} {key:?}, got it {}",
            w.last_request_line(),
            if has { "listed" } else { "missing" }
        );
        w.fail(msg);
    }
}

#[then(regex = r#"^every key in the list is an? (test|live) key$"#)]
async fn every_key_env(w: &mut AuthWorld, env: String) {
    let Some(list) = extract::list(w.last().json(), "apiKeys").cloned() else {
        let msg = format!("{}: expected a key list, got none", w.last_request_line());
        w.fail(msg)
    };
    if list.is_empty() {
        let msg = format!(
            "{}: expected {env} keys in the list, got an empty list",
            w.last_request_line()
        );
        w.fail(msg);
    }
    for k in &list {
        let e = k
            .get("environment")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| {
                k.get("displayPrefix")
                    .or_else(|| k.get("keyPrefix"))
                    .and_then(Value::as_str)
                    .and_then(|p| p.split('_').nth(1).map(str::to_owned))
            });
        if e.as_deref() != Some(env.as_str()) {
            let msg = format!(
                "{}: expected only {env} keys, got {e:?} for {}",
                w.last_request_line(),
                k.get("id").cloned().unwrap_or(Value::Null)
            );
            w.fail(msg);
        }
    }
}

#[then(regex = r#"^no key named "([^"]+)" exists for tenant "([^"]+)"$"#)]
async fn no_key_named(w: &mut AuthWorld, name: String, tenant: String) {
    let req = Req::new("GET", "/v1/api-keys", w.cred(&tenant));
    let ex = w.send(req).await.clone();
    let list = extract::list(ex.json(), "apiKeys")
        .cloned()
        .unwrap_or_default();
    w.expect_setup(&ex, &[200], &format!("listing {tenant:?}'s keys"));
    if list.iter().any(|k| k.get("name") == Some(&json!(name))) {
        let msg =
            format!("GET /v1/api-keys as {tenant:?}: expected no key named {name:?}, got one");
        w.fail(msg);
    }
}

#[then(regex = r#"^the response does not contain the secret of "([^"]+)"$"#)]
async fn no_secret_of(w: &mut AuthWorld, key: String) {
    let bearer = w.secret_of(&key);
    // An upstream `prefix:secret` bearer: its prefix is an issued identifier (rows and lists
    // show it), so the secret part is what must not show. A credential that is its prefix
    // alone (upstream public and restricted keys) has no secret part to look for.
    let (secret, core) = match bearer.split_once(':') {
        Some((p, s)) if w.ctx.secrets.is_identifier(p) => (bearer.clone(), s.to_owned()),
        _ if w.ctx.secrets.is_identifier(&bearer) => return,
        // The part after the type and environment, so a re-encoded key is caught too.
        _ => (
            bearer.clone(),
            bearer.get(8..).unwrap_or(&bearer).to_owned(),
        ),
    };
    let ex = w.last();
    let mut text = ex.body.clone();
    for (k, v) in &ex.headers {
        text.push_str(k);
        text.push_str(v);
    }
    if text.contains(&secret) || text.contains(&core) {
        let msg = format!(
            "SECRET LEAK: {}: expected no trace of the secret of {key:?}, got it in the answer",
            w.last_request_line()
        );
        w.fail_as(FailureClass::Security, msg);
    }
}

#[then(
    regex = r#"^the response contains no value of the key "([^"]+)" beyond its display prefix$"#
)]
async fn no_more_than_prefix(w: &mut AuthWorld, key: String) {
    let bearer = w.secret_of(&key);
    // An upstream `prefix:secret` bearer: the prefix is the key's public identifier (lists
    // show it whole), so only the secret part is looked for.
    let secret = match bearer.split_once(':') {
        Some((p, s)) if w.ctx.secrets.is_identifier(p) => s.to_owned(),
        _ if w.ctx.secrets.is_identifier(&bearer) => return,
        _ => bearer,
    };
    let ex = w.last();
    // Any 13 consecutive characters of the key would be more than its 12-character display
    // prefix: enough to narrow a guess.
    let chars: Vec<char> = secret.chars().collect();
    for start in 0..chars.len().saturating_sub(12) {
        let window: String = chars[start..start + 13].iter().collect();
        if ex.body.contains(&window) {
            let msg = format!(
                "SECRET LEAK: {} {}: expected at most the display prefix of {key:?}, got 13 or more of its characters",
                ex.method, ex.path
            );
            w.fail_as(FailureClass::Security, msg);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Then: keys
// ---------------------------------------------------------------------------------------

/// Tries a key on `GET /v1/tenant`, the harness's probe. When the probe answers 404, 405 or
/// 501, the route itself may be missing: asked again without any key, the same answer means
/// the target has no such route and the scenario is blocked (its keys cannot be judged this
/// way), not that the key was refused.
async fn probe(w: &mut AuthWorld, key: &str) -> u16 {
    let req = Req::new("GET", "/v1/tenant", w.cred(key));
    let ex = w.send(req).await.clone();
    if matches!(ex.status, 404 | 405 | 501) {
        let bare = Req::new("GET", "/v1/tenant", Cred::None);
        let without = w.send(bare).await.status;
        w.last = Some(ex.clone());
        if without == ex.status {
            w.blocked_with(
                "GET",
                "/v1/tenant",
                ex.status,
                format!("the harness tries keys on GET /v1/tenant (key {key:?}), which the target does not serve"),
            );
        }
    }
    ex.status
}

#[then(regex = r#"^the key "([^"]+)" (?:still )?works$"#)]
async fn key_works(w: &mut AuthWorld, key: String) {
    let s = probe(w, &key).await;
    if s != 200 {
        let msg = format!(
            "GET /v1/tenant as {key:?}: expected 200 (the key works), got {s}: {}",
            excerpt(&w.last().body)
        );
        w.fail(msg);
    }
}

#[then(regex = r#"^the key "([^"]+)" is refused(?: with (\d+))?$"#)]
async fn key_refused(w: &mut AuthWorld, key: String, status: String) {
    probe(w, &key).await;
    let want: u16 = status.parse().unwrap_or(401);
    judge_status(w, &[want]);
}

/// A key that should be refused answered `s` (not its 401): a success is a broken security
/// property, another refusal a different code, anything else is left to the tags.
fn refused_otherwise(w: &AuthWorld, key: &str, s: u16, why: &str) -> ! {
    let msg = format!(
        "GET /v1/tenant as {key:?}: expected 401 ({why}), got {s}: {}",
        excerpt(&w.last().body)
    );
    match s / 100 {
        2 | 3 => w.fail_as(FailureClass::Security, msg),
        4 => w.fail_as(FailureClass::Conformance, msg),
        _ => w.fail(msg),
    }
}

#[then(regex = r#"^within (\d+) seconds the key "([^"]+)" is refused$"#)]
async fn eventually_refused(w: &mut AuthWorld, secs: u64, key: String) {
    let start = Instant::now();
    let deadline = Duration::from_secs(secs);
    loop {
        let s = probe(w, &key).await;
        if s == 401 {
            w.ctx
                .record_propagation(&format!("grace period end of {key}"), start.elapsed());
            return;
        }
        if s != 200 {
            let msg = format!(
                "GET /v1/tenant as {key:?}: expected 200 during the grace period, then 401, got {s}: {}",
                excerpt(&w.last().body)
            );
            match s / 100 {
                4 => w.fail_as(FailureClass::Conformance, msg),
                _ => w.fail(msg),
            }
        }
        if start.elapsed() > deadline {
            refused_otherwise(w, &key, s, &format!("the grace period ended {secs} s ago"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[then(
    regex = r#"^the key "([^"]+)" is refused at once, or within the delay the target declares$"#
)]
async fn refused_per_caps(w: &mut AuthWorld, key: String) {
    let start = Instant::now();
    // The reference declares immediate revocation: one probe. A target that declares
    // eventual consistency gets its declared delay, and the measured delay is reported.
    let max = if w.ctx.caps.eventual_revocation {
        Duration::from_secs_f64(w.ctx.caps.revocation_max_delay)
    } else {
        Duration::ZERO
    };
    loop {
        let s = probe(w, &key).await;
        if s == 401 {
            w.ctx.record_propagation("revocation", start.elapsed());
            return;
        }
        if start.elapsed() >= max || !(200..300).contains(&s) {
            refused_otherwise(w, &key, s, &format!("revoked; declared delay {:?}", max));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[then(regex = r#"^the secret of "([^"]+)" has the key format with prefix "([^"]+)"$"#)]
async fn key_format(w: &mut AuthWorld, key: String, prefix: String) {
    let s = w.secret_of(&key);
    let shape = match s.split_once(':') {
        Some((p, rest)) => format!("{}…:‹{} characters›", &p[..p.len().min(8)], rest.len()),
        None => format!("{}…, {} characters", &s[..s.len().min(8)], s.len()),
    };
    if !extract::key_format().is_match(&s) {
        w.fail_as(
            FailureClass::Conformance,
            format!(
                "the key {key:?} as issued: expected the format (pk|sk|rk)_(live|test)_[0-9A-Za-z]{{38,}}, got {shape}"
            ),
        );
    }
    if !s.starts_with(&prefix) {
        w.fail_as(
            FailureClass::Conformance,
            format!("the key {key:?} as issued: expected the prefix {prefix:?}, got {shape}"),
        );
    }
}

#[then(
    regex = r#"^the (\d+) new secrets are distinct and share no run of (\d+) characters after their prefix$"#
)]
async fn distinct_secrets(w: &mut AuthWorld, n: usize, run: usize) {
    let secrets: Vec<String> = w.issued.clone();
    if secrets.len() != n {
        w.harness_error(format!("expected {n} new secrets, saw {}", secrets.len()));
    }
    let mut seen = std::collections::HashMap::new();
    for (i, s) in secrets.iter().enumerate() {
        let body: Vec<char> = s.chars().skip(8).collect();
        let mut own = std::collections::HashSet::new();
        for win in body.windows(run) {
            let win: String = win.iter().collect();
            if !own.insert(win.clone()) {
                continue;
            }
            if let Some(j) = seen.insert(win.clone(), i) {
                w.fail_as(
                    FailureClass::Security,
                    format!(
                        "POST /v1/api-keys: expected unrelated secrets, got secrets #{j} and #{i} sharing a run of {run} characters ({:?}…)",
                        &win[..4.min(win.len())]
                    ),
                );
            }
        }
    }
}

#[then(regex = r#"^the new secrets' random parts use at least (\d+) different characters$"#)]
async fn charset(w: &mut AuthWorld, n: usize) {
    let set: std::collections::HashSet<char> =
        w.issued.iter().flat_map(|s| s.chars().skip(8)).collect();
    if set.len() < n {
        w.fail(format!(
            "POST /v1/api-keys: expected the new secrets' random parts to use at least {n} different characters, got {}",
            set.len()
        ));
    }
}

#[then(regex = r#"^exactly (\d+) of the responses has status (\d+) and the others (\d+)$"#)]
async fn batch_statuses(w: &mut AuthWorld, n: usize, status: u16, others: u16) {
    let hits = w.batch.iter().filter(|e| e.status == status).count();
    let rest_ok = w
        .batch
        .iter()
        .all(|e| e.status == status || e.status == others);
    if hits != n || !rest_ok {
        if let Some(first) = w.batch.first().cloned() {
            if w.batch.iter().all(|e| e.status == first.status) {
                w.last = Some(first);
                blocked_if_route_missing(w, &[status, others]).await;
            }
        }
        let all: Vec<u16> = w.batch.iter().map(|e| e.status).collect();
        let req = w
            .batch
            .last()
            .map(|e| format!("{} {}", e.method, e.path))
            .unwrap_or_default();
        w.fail(format!(
            "{req} x {}: expected exactly {n} x {status} and the rest {others}, got {all:?}",
            all.len()
        ));
    }
}

#[then(regex = r#"^the rotated key keeps the name, type, environment and permissions$"#)]
async fn rotation_keeps(w: &mut AuthWorld) {
    let j = w.last().json().clone();
    let new = extract::field(&j, "apiKey").cloned().unwrap_or(Value::Null);
    let old = extract::field(&j, "previousKey")
        .cloned()
        .unwrap_or(Value::Null);
    let line = w.last_request_line();
    if new.is_null() || old.is_null() {
        w.deviate("expected apiKey and previousKey in the rotation answer, got not both; rotated key not compared");
        return;
    }
    if new.get("id") == old.get("id") {
        w.fail(format!(
            "{line}: expected a new key id, got the old one {:?}",
            old.get("id")
        ));
    }
    for f in ["name", "type", "environment", "permissions"] {
        if new.get(f) != old.get(f) {
            w.fail(format!(
                "{line}: expected the rotated key to keep {f} {:?}, got {:?}",
                old.get(f),
                new.get(f)
            ));
        }
    }
}

#[then(regex = r#"^the previous key is marked (revoked|expiring)$"#)]
async fn previous_marked(w: &mut AuthWorld, how: String) {
    let j = w.last().json().clone();
    let old = extract::field(&j, "previousKey")
        .cloned()
        .unwrap_or(Value::Null);
    let field = if how == "revoked" {
        "revokedAt"
    } else {
        "expiresAt"
    };
    if old.get(field).is_none_or(Value::is_null) {
        let msg = format!(
            "{}: expected previousKey.{field} set, got {}",
            w.last_request_line(),
            old
        );
        w.fail(msg);
    }
}

// ---------------------------------------------------------------------------------------
// Then: shapes and tenants (admin)
// ---------------------------------------------------------------------------------------

#[then(regex = r#"^the body has the shape "([^"]+)"$"#)]
async fn shape(w: &mut AuthWorld, name: String) {
    if let Err(e) = crate::shapes::check(&name, w.last().json()) {
        w.deviate(format!(
            "expected the body to be a {name:?} of docs/contract.md, got: {e}"
        ));
    }
}

pub(crate) async fn all_tenants(w: &mut AuthWorld, query: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for page in 1..=200 {
        let path = format!("/admin/tenants?{query}page={page}&limit=100");
        let req = Req::new("GET", &path, w.cred("admin"));
        let ex = w.send(req).await.clone();
        w.expect_setup(&ex, &[200], "listing tenants");
        let list = extract::list(ex.json(), "tenants")
            .cloned()
            .unwrap_or_default();
        let n = list.len();
        out.extend(list);
        let pages = extract::field(ex.json(), "pagination.pages")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        if n == 0 || page as u64 >= pages {
            break;
        }
    }
    out
}

#[then(regex = r#"^in the tenant list, "([^"]+)" comes before "([^"]+)"$"#)]
async fn tenant_order(w: &mut AuthWorld, a: String, b: String) {
    let (ia, ib) = (w.tenant(&a).id.clone(), w.tenant(&b).id.clone());
    let list = all_tenants(w, "").await;
    let pos = |id: &str| list.iter().position(|t| t.get("id") == Some(&json!(id)));
    match (pos(&ia), pos(&ib)) {
        (Some(x), Some(y)) if x < y => {}
        (x, y) => w.fail(format!(
            "GET /admin/tenants: expected {a:?} before {b:?}, got positions {x:?} and {y:?}"
        )),
    }
}

#[then(regex = r#"^the tenant list filtered by "([^"]*)" (includes|excludes) "([^"]+)"$"#)]
async fn tenant_filter(w: &mut AuthWorld, filter: String, how: String, t: String) {
    let id = w.tenant(&t).id.clone();
    let list = all_tenants(w, &format!("{filter}&")).await;
    let has = list.iter().any(|x| x.get("id") == Some(&json!(id)));
    if has != (how == "includes") {
        w.fail(format!(
            "GET /admin/tenants?{filter}: expected the list {how} {t:?}, got {}",
            if has { "it listed" } else { "it missing" }
        ));
    }
}

#[then(regex = r#"^every tenant in the list has "([^"]+)" set to "([^"]+)"$"#)]
async fn every_tenant(w: &mut AuthWorld, field: String, value: String) {
    let list = extract::list(w.last().json(), "tenants")
        .cloned()
        .unwrap_or_default();
    if let Some(bad) = list.iter().find(|t| t.get(&field) != Some(&json!(value))) {
        let msg = format!(
            "{}: expected every tenant with {field} = {value:?}, got {:?} for {}",
            w.last_request_line(),
            bad.get(&field),
            bad.get("id").cloned().unwrap_or(Value::Null)
        );
        w.fail(msg);
    }
}

#[then(regex = r#"^tenant "([^"]+)" has status "([^"]+)"$"#)]
async fn tenant_has_status(w: &mut AuthWorld, t: String, status: String) {
    let req = Req::new(
        "GET",
        &format!("/admin/tenants/{{{t}.id}}"),
        w.cred("admin"),
    );
    let ex = w.send(req).await.clone();
    let got = extract::tenant_status(ex.json());
    if got.as_deref() != Some(status.as_str()) {
        w.fail(format!(
            "{} {}: expected the tenant {t:?} with status {status:?}, got {} (HTTP {})",
            ex.method,
            ex.path,
            got.map_or_else(|| "no status".to_owned(), |g| format!("{g:?}")),
            ex.status
        ));
    }
}

#[then(regex = r#"^the capabilities document (is served|is absent)$"#)]
async fn caps_served(w: &mut AuthWorld, how: String) {
    if w.ctx.caps.present != (how == "is served") {
        w.fail_as(
            FailureClass::Conformance,
            format!(
                "GET /.well-known/authconf: expected the capabilities document {how}, got it {}",
                if w.ctx.caps.present {
                    "served"
                } else {
                    "absent"
                }
            ),
        );
    }
}

#[then(regex = r#"^the display prefix is the start of the secret of "([^"]+)"$"#)]
async fn display_prefix(w: &mut AuthWorld, key: String) {
    let secret = w.secret_of(&key);
    let dp = extract::field(w.last().json(), "apiKey.displayPrefix")
        .and_then(Value::as_str)
        .map(str::to_owned);
    match dp {
        Some(p) if p.len() == 12 && secret.starts_with(&p) => {}
        other => {
            let msg = format!(
                "{}: expected apiKey.displayPrefix = the first 12 characters of the secret of {key:?}, got {}",
                w.last_request_line(),
                match &other {
                    Some(p) if secret.starts_with(p.as_str()) => format!("{} characters of it", p.len()),
                    Some(_) => "another value".to_owned(),
                    None => "none".to_owned(),
                }
            );
            w.deviate(msg);
        }
    }
}

#[given(regex = r#"^tenant "([^"]+)" has a rate limit of (\d+) requests per (\d+) seconds?$"#)]
async fn rate_limit_override(w: &mut AuthWorld, tenant: String, n: u32, secs: u32) {
    let req = Req::new(
        "PATCH",
        &format!("/admin/tenants/{{{tenant}.id}}"),
        w.cred("admin"),
    )
    .json(&json!({"rateLimit": {"requests": n, "windowSeconds": secs}}).to_string());
    let ex = w.send(req).await.clone();
    w.expect_setup(
        &ex,
        &[200],
        &format!("setting the rate limit of {tenant:?}"),
    );
}

#[when(regex = r#"^I send (GET|POST|DELETE) "([^"]*)" as "([^"]+)" (\d+) times concurrently$"#)]
async fn send_concurrently(
    w: &mut AuthWorld,
    method: String,
    path: String,
    cred: String,
    n: usize,
) {
    let req = Req::new(&method, &path, w.cred(&cred));
    let req = w.prepare(&req);
    w.send_batch(vec![req; n]).await;
}

#[when(
    regex = r#"^I send (GET|POST|DELETE) "([^"]*)" as "([^"]+)" (\d+) times one after another$"#
)]
async fn send_sequentially(
    w: &mut AuthWorld,
    method: String,
    path: String,
    cred: String,
    n: usize,
) {
    let mut all = Vec::new();
    for _ in 0..n {
        let req = Req::new(&method, &path, w.cred(&cred));
        all.push(w.send(req).await.clone());
    }
    w.batch = all;
}

#[then(
    regex = r#"^every response with status (\d+) is a problem "([^"]+)" with the header "([^"]+)"$"#
)]
async fn every_problem(w: &mut AuthWorld, status: u16, code: String, header: String) {
    let batch = w.batch.clone();
    let req = batch
        .last()
        .map(|e| format!("{} {}", e.method, e.path))
        .unwrap_or_default();
    if !batch.iter().any(|e| e.status == status) {
        let all: Vec<u16> = batch.iter().map(|e| e.status).collect();
        w.fail(format!(
            "{req} x {}: expected some answers {status}, got {all:?}",
            all.len()
        ));
    }
    for e in batch.iter().filter(|e| e.status == status) {
        let got = extract::error_code(e.json());
        if got.as_deref() != Some(code.as_str()) {
            w.deviate(format!(
                "expected every {status} to be a problem {code:?}, got code {got:?}"
            ));
            break;
        }
    }
    if let Some(e) = batch
        .iter()
        .find(|e| e.status == status && e.header(&header).is_none())
    {
        let _ = e;
        w.deviate(format!(
            "expected every {status} with the header {header}, got one without"
        ));
    }
}

#[then(regex = r#"^the (\d+) responses count down the "([^"]+)" header$"#)]
async fn count_down(w: &mut AuthWorld, n: usize, header: String) {
    let values: Vec<Option<i64>> = w
        .batch
        .iter()
        .map(|e| e.header(&header).and_then(|v| v.trim().parse().ok()))
        .collect();
    let req = w
        .batch
        .last()
        .map(|e| format!("{} {}", e.method, e.path))
        .unwrap_or_default();
    if values.len() != n || values.iter().any(Option::is_none) {
        w.fail(format!(
            "{req} x {n}: expected a numeric {header} on every answer, got {values:?}"
        ));
    }
    let v: Vec<i64> = values.into_iter().flatten().collect();
    if v.windows(2).any(|p| p[1] != p[0] - 1) {
        w.fail_as(
            FailureClass::Security,
            format!("{req} x {n}: expected {header} to count down by one, got {v:?}"),
        );
    }
}

#[then(regex = r#"^within (\d+) seconds "([^"]+)" gets (\d+) on (GET) "([^"]*)" again$"#)]
async fn eventually_status(
    w: &mut AuthWorld,
    secs: u64,
    cred: String,
    status: u16,
    method: String,
    path: String,
) {
    let start = Instant::now();
    loop {
        let req = Req::new(&method, &path, w.cred(&cred));
        let got = w.send(req).await.status;
        if got == status {
            w.ctx
                .record_propagation("rate-limit window reset", start.elapsed());
            return;
        }
        if start.elapsed() > Duration::from_secs(secs) {
            w.fail(format!(
                "{method} {path} as {cred:?}: expected {status} within {secs} s, got {got}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[then(regex = r#"^the response (mentions|does not mention) "([^"]*)"$"#)]
async fn mentions(w: &mut AuthWorld, how: String, text: String) {
    let text = w.expand(&text, false);
    let has = w.last().body.contains(&text);
    if has != (how == "mentions") {
        let msg = format!(
            "{}: expected the answer {how} {text:?}, got {}",
            w.last_request_line(),
            if has { "it mentioned" } else { "no mention" }
        );
        w.fail(msg);
    }
}

#[then(regex = r#"^the request is refused or not found$"#)]
async fn refused_or_missing(w: &mut AuthWorld) {
    blocked_if_route_missing(w, &[401, 403, 404]).await;
    judge_status(w, &[401, 403, 404]);
}

#[then(regex = r#"^the key list shows only keys of tenant "([^"]+)"$"#)]
async fn only_own_keys(w: &mut AuthWorld, tenant: String) {
    let Some(list) = extract::list(w.last().json(), "apiKeys").cloned() else {
        let msg = format!("{}: expected a key list, got none", w.last_request_line());
        w.fail(msg)
    };
    if list.is_empty() {
        let msg = format!(
            "{}: expected {tenant:?}'s keys, got an empty list",
            w.last_request_line()
        );
        w.fail(msg);
    }
    // Every listed key must be one this tenant was given: its display prefix starts one of
    // the tenant's secrets (a foreign key's 4 random characters will not match).
    let own: Vec<String> = w
        .keys
        .values()
        .filter(|k| k.tenant == tenant)
        .filter_map(|k| k.secret.clone())
        .collect();
    for k in &list {
        let prefix = k
            .get("displayPrefix")
            .or_else(|| k.get("keyPrefix"))
            .and_then(Value::as_str)
            .unwrap_or("");
        if prefix.len() < 8 || !own.iter().any(|s| s.starts_with(prefix)) {
            let msg = format!(
                "{}: expected only {tenant:?}'s own keys, got the key {}",
                w.last_request_line(),
                k.get("id").cloned().unwrap_or(Value::Null)
            );
            w.fail_as(FailureClass::Security, msg);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::tests::{exchange, world};
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
