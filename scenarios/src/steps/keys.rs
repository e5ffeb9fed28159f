//! A tenant's keys: created, revoked, minted in bulk, listed (`features/secrecy.feature`,
//! `isolation.feature`, `rotation.feature`).

use cucumber::{given, then, when};
use serde_json::{json, Value};

use crate::extract;
use crate::support::text::{excerpt, split_list};
use crate::verdict::FailureClass;
use crate::world::{AuthWorld, Req};

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

#[when(regex = r#"^"([^"]+)" creates (\d+) (publishable|secret|restricted) (live|test) keys$"#)]
async fn create_many(w: &mut AuthWorld, tenant: String, n: usize, ty: String, env: String) {
    w.issued.clear();
    for i in 0..n {
        let body = json!({"name": format!("authconf bulk {i}"), "type": ty, "environment": env});
        w.create_key(&tenant, &format!("bulk{i}"), body, &tenant)
            .await;
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
