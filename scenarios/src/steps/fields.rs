//! Fields and lists of the answer, read tolerantly (the contract's shapes or the public
//! deployment's envelope; a field found only at its twin is a deviation).

use std::time::{Duration, Instant};

use cucumber::then;
use serde_json::Value;

use crate::extract;
use crate::world::{AuthWorld, Req};

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

#[then(
    regex = r#"^within (\d+) seconds GET "([^"]+)" as "([^"]+)" shows the field "([^"]+)" as (.+)$"#
)]
async fn eventually_field(
    w: &mut AuthWorld,
    secs: u64,
    path: String,
    cred: String,
    field: String,
    value: String,
) {
    let value = w.expand(&value, false);
    let want: Value = match serde_json::from_str(&value) {
        Ok(v) => v,
        Err(_) => w.harness_error(format!("not a JSON value: {value}")),
    };
    let start = Instant::now();
    loop {
        let req = Req::new("GET", &path, w.cred(&cred));
        let ex = w.send(req).await.clone();
        let got = extract::field(ex.json(), &field).cloned();
        if got.as_ref() == Some(&want) {
            return;
        }
        if start.elapsed() > Duration::from_secs(secs) {
            w.fail(format!(
                "{} {}: expected the field {field:?} = {want} within {secs} s, got {} (HTTP {})",
                ex.method,
                ex.path,
                got.map_or_else(|| "no such field".to_owned(), |g| g.to_string()),
                ex.status
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
