//! The answer: its status judged by family, problems, headers, shapes, and comparisons with
//! other answers (unknown id, no key, a saved answer).

use cucumber::then;
use serde_json::{json, Value};

use crate::extract;
use crate::support::text::{excerpt, normalized};
use crate::verdict::FailureClass;
use crate::world::{blocked_if_route_missing, judge_status, status_mismatch, AuthWorld, Cred};

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

#[then(regex = r#"^the request is refused or not found$"#)]
async fn refused_or_missing(w: &mut AuthWorld) {
    blocked_if_route_missing(w, &[401, 403, 404]).await;
    judge_status(w, &[401, 403, 404]);
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

#[then(regex = r#"^the body has the shape "([^"]+)"$"#)]
async fn shape(w: &mut AuthWorld, name: String) {
    if let Err(e) = crate::shapes::check(&name, w.last().json()) {
        w.deviate(format!(
            "expected the body to be a {name:?} of docs/contract.md, got: {e}"
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
