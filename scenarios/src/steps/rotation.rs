//! Key rotation: rotating alone or concurrently, and what the rotation answer says of the new
//! and the previous key (`features/rotation.feature`).

use cucumber::{then, when};
use serde_json::Value;

use crate::extract;
use crate::world::{AuthWorld, KeyRef, Req};

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
            KeyRef {
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
