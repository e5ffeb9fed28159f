//! The JWT keyring: key ids in tokens and the keyring's statuses
//! (`features/jwt_rotation.feature`).

use cucumber::then;
use serde_json::{json, Value};

use crate::verdict::FailureClass;
use crate::world::{parts_or_fail, AuthWorld};

#[then(
    regex = r#"^the access token "([^"]+)" carries a different key id than "(\w+)"'s access token$"#
)]
async fn different_kid(w: &mut AuthWorld, name: String, user: String) {
    let a = w.named_token(&name);
    let b = w.latest_access(&user);
    let (ha, _) = parts_or_fail(w, &a);
    let (hb, _) = parts_or_fail(w, &b);
    if ha.get("kid").is_none() || ha.get("kid") == hb.get("kid") {
        w.fail(format!(
            "the token {name:?}: expected a key id other than {user:?}'s, got {:?} and {:?}",
            ha.get("kid"),
            hb.get("kid")
        ));
    }
}

#[then(regex = r#"^"(\w+)"'s access token carries the "currentKid" of the response "([^"]+)"$"#)]
async fn carries_current_kid(w: &mut AuthWorld, user: String, saved: String) {
    let t = w.latest_access(&user);
    let (h, _) = parts_or_fail(w, &t);
    let Some(ex) = w.saved.get(&saved).cloned() else {
        w.harness_error(format!("no saved response {saved:?}"))
    };
    let current = ex.json().get("currentKid").cloned();
    if current.is_none() || h.get("kid") != current.as_ref() {
        w.fail(format!(
            "{user:?}'s access token: expected the kid {current:?} ({} {}'s currentKid), got {:?}",
            ex.method,
            ex.path,
            h.get("kid")
        ));
    }
}

#[then(
    regex = r#"^the keyring lists the key id of the access token "([^"]+)" as "(current|previous|retired)"$"#
)]
async fn keyring_lists(w: &mut AuthWorld, name: String, status: String) {
    let t = w.named_token(&name);
    let (h, _) = parts_or_fail(w, &t);
    let kid = h.get("kid").cloned().unwrap_or(Value::Null);
    let keys = w
        .last()
        .json()
        .get("keys")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let found = keys.iter().find(|k| k.get("kid") == Some(&kid));
    match found {
        Some(k) if k.get("status") == Some(&json!(status)) => {}
        other => {
            let msg = format!(
                "{}: expected the key id {kid} listed as {status:?}, got {:?}",
                w.last_request_line(),
                other.and_then(|k| k.get("status"))
            );
            w.fail(msg)
        }
    }
}

#[then(regex = r#"^the keyring shows key ids and statuses only$"#)]
async fn keyring_no_secret(w: &mut AuthWorld) {
    let j = w.last().json().clone();
    let line = w.last_request_line();
    if let Some(secret) = w.ctx.jwt_secret.get() {
        if w.last().body.contains(secret.as_str()) {
            w.fail_as(
                FailureClass::Security,
                format!("SECRET LEAK: {line}: expected key ids and statuses only, got JWT_SECRET"),
            );
        }
    }
    if !j.get("currentKid").is_some_and(Value::is_string) {
        w.fail(format!("{line}: expected a currentKid, got none"));
    }
    let keys = j.get("keys").and_then(Value::as_array).cloned();
    let Some(keys) = keys.filter(|k| !k.is_empty()) else {
        w.fail(format!("{line}: expected a list of keys, got none"))
    };
    let allowed = ["kid", "status", "createdAt", "retiredAt"];
    for k in &keys {
        let Some(o) = k.as_object() else {
            w.fail(format!(
                "{line}: expected keyring entries as objects, got {k}"
            ))
        };
        if let Some(f) = o.keys().find(|f| !allowed.contains(&f.as_str())) {
            // Whatever else an entry carries may be key material.
            w.fail_as(
                FailureClass::Security,
                format!(
                    "{line}: expected only kid, status, createdAt, retiredAt in a keyring entry, got the field {f:?}"
                ),
            );
        }
    }
}
