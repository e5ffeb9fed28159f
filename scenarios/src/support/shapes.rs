//! Exact response shapes of docs/contract.md, judged by the `@contract` scenarios only.
//!
//! Each shape lists every key an object must have, and no other; a deployment that answers
//! in another shape still runs the security scenarios (they read tolerantly), but fails here.

use std::sync::OnceLock;

use regex::Regex;
use serde_json::Value;

fn rfc3339() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$").expect("static regex")
    })
}

type Check = Result<(), String>;

/// A named shape's check of a whole body.
type ShapeCheck = fn(&Value) -> Check;

fn obj<'a>(v: &'a Value, at: &str) -> Result<&'a serde_json::Map<String, Value>, String> {
    v.as_object()
        .ok_or_else(|| format!("{at}: expected an object, got {v}"))
}

/// The object at `at` has exactly these keys.
fn exact_keys(v: &Value, at: &str, keys: &[&str]) -> Check {
    let m = obj(v, at)?;
    let mut missing: Vec<&str> = keys
        .iter()
        .copied()
        .filter(|k| !m.contains_key(*k))
        .collect();
    let extra: Vec<&String> = m.keys().filter(|k| !keys.contains(&k.as_str())).collect();
    if missing.is_empty() && extra.is_empty() {
        Ok(())
    } else {
        missing.sort_unstable();
        Err(format!(
            "{at}: missing keys {missing:?}, unexpected keys {extra:?}"
        ))
    }
}

fn string(v: &Value, at: &str) -> Check {
    v.as_str()
        .map(|_| ())
        .ok_or_else(|| format!("{at}: expected a string, got {v}"))
}

fn timestamp(v: &Value, at: &str) -> Check {
    match v.as_str() {
        Some(s) if rfc3339().is_match(s) => Ok(()),
        _ => Err(format!("{at}: expected an RFC 3339 UTC timestamp, got {v}")),
    }
}

fn timestamp_or_null(v: &Value, at: &str) -> Check {
    if v.is_null() {
        Ok(())
    } else {
        timestamp(v, at)
    }
}

fn one_of(v: &Value, at: &str, allowed: &[&str]) -> Check {
    match v.as_str() {
        Some(s) if allowed.contains(&s) => Ok(()),
        _ => Err(format!("{at}: expected one of {allowed:?}, got {v}")),
    }
}

fn tenant(v: &Value, at: &str) -> Check {
    let m = obj(v, at)?;
    let mut keys = vec![
        "id",
        "slug",
        "name",
        "plan",
        "status",
        "rateLimit",
        "createdAt",
        "updatedAt",
    ];
    if m.get("status").and_then(Value::as_str) == Some("deleted") {
        keys.push("deletedAt");
        timestamp(&v["deletedAt"], &format!("{at}.deletedAt"))?;
    }
    exact_keys(v, at, &keys)?;
    let slug = v["slug"].as_str().unwrap_or_default();
    if v["id"].as_str() != Some(&format!("tenant:{slug}")) {
        return Err(format!(
            "{at}.id: expected \"tenant:{slug}\", got {}",
            v["id"]
        ));
    }
    string(&v["name"], &format!("{at}.name"))?;
    one_of(
        &v["plan"],
        &format!("{at}.plan"),
        &["free", "pro", "enterprise"],
    )?;
    one_of(
        &v["status"],
        &format!("{at}.status"),
        &["active", "suspended", "deleted"],
    )?;
    match &v["rateLimit"] {
        Value::Null => {}
        rl => {
            exact_keys(
                rl,
                &format!("{at}.rateLimit"),
                &["requests", "windowSeconds"],
            )?;
        }
    }
    timestamp(&v["createdAt"], &format!("{at}.createdAt"))?;
    timestamp(&v["updatedAt"], &format!("{at}.updatedAt"))
}

fn key_object(v: &Value, at: &str) -> Check {
    exact_keys(
        v,
        at,
        &[
            "id",
            "name",
            "type",
            "environment",
            "permissions",
            "displayPrefix",
            "createdAt",
            "revokedAt",
            "expiresAt",
        ],
    )?;
    static ID: OnceLock<Regex> = OnceLock::new();
    let id = ID.get_or_init(|| Regex::new("^key:[0-9a-f]{16}$").expect("static regex"));
    if !v["id"].as_str().is_some_and(|s| id.is_match(s)) {
        return Err(format!("{at}.id: expected key:<16 hex>, got {}", v["id"]));
    }
    string(&v["name"], &format!("{at}.name"))?;
    one_of(
        &v["type"],
        &format!("{at}.type"),
        &["publishable", "secret", "restricted"],
    )?;
    one_of(
        &v["environment"],
        &format!("{at}.environment"),
        &["live", "test"],
    )?;
    if !v["permissions"]
        .as_array()
        .is_some_and(|a| a.iter().all(Value::is_string))
    {
        return Err(format!(
            "{at}.permissions: expected an array of strings, got {}",
            v["permissions"]
        ));
    }
    static DP: OnceLock<Regex> = OnceLock::new();
    let dp = DP.get_or_init(|| {
        Regex::new("^(pk|sk|rk)_(live|test)_[0-9A-Za-z]{4}$").expect("static regex")
    });
    if !v["displayPrefix"].as_str().is_some_and(|s| dp.is_match(s)) {
        return Err(format!(
            "{at}.displayPrefix: expected <type>_<env>_ and 4 characters, got {}",
            v["displayPrefix"]
        ));
    }
    let ty = match v["type"].as_str() {
        Some("publishable") => "pk",
        Some("secret") => "sk",
        _ => "rk",
    };
    let want = format!("{ty}_{}_", v["environment"].as_str().unwrap_or(""));
    if !v["displayPrefix"]
        .as_str()
        .is_some_and(|s| s.starts_with(&want))
    {
        return Err(format!(
            "{at}.displayPrefix: does not match type and environment ({want})"
        ));
    }
    timestamp(&v["createdAt"], &format!("{at}.createdAt"))?;
    timestamp_or_null(&v["revokedAt"], &format!("{at}.revokedAt"))?;
    timestamp_or_null(&v["expiresAt"], &format!("{at}.expiresAt"))
}

fn key_secret_credentials(v: &Value, at: &str) -> Check {
    exact_keys(v, at, &["keySecret"])?;
    string(&v["keySecret"], &format!("{at}.keySecret"))
}

/// Checks `body` against the named shape; an unknown name is a bug in the feature file.
pub fn check(shape: &str, body: &Value) -> Check {
    match SHAPES.iter().find(|(name, _)| *name == shape) {
        Some((_, check)) => check(body),
        None => Err(format!(
            "unknown shape {shape:?} (a bug in the feature file)"
        )),
    }
}

/// Every shape the features may name, by name.
const SHAPES: &[(&str, ShapeCheck)] = &[
    ("health", health),
    ("capabilities", capabilities),
    ("tenant-created", tenant_created),
    ("tenant", tenant_shape),
    ("tenant-list", tenant_list),
    ("tenant-self", tenant_self),
    ("key", key_shape),
    ("key-list", key_list),
    ("key-created", key_created),
    ("rotation", rotation),
    ("problem", problem),
];

fn health(body: &Value) -> Check {
    exact_keys(body, "$", &["status", "timestamp", "version"])?;
    if body["status"] != "ok" {
        return Err(format!("$.status: expected \"ok\", got {}", body["status"]));
    }
    if !body["timestamp"].is_u64() {
        return Err("$.timestamp: expected milliseconds since the epoch".into());
    }
    string(&body["version"], "$.version")
}

fn capabilities(body: &Value) -> Check {
    // The capabilities document is meant to grow: every key the contract lists must be
    // there, and a target may add more (e.g. the reference's `planDefaults`).
    let need = |v: &Value, at: &str, keys: &[&str]| -> Check {
        let m = obj(v, at)?;
        match keys.iter().find(|k| !m.contains_key(**k)) {
            Some(k) => Err(format!("{at}: missing key {k:?}")),
            None => Ok(()),
        }
    };
    need(
        body,
        "$",
        &[
            "service",
            "contractVersion",
            "version",
            "routing",
            "revocation",
            "rateLimit",
            "features",
            "testControls",
        ],
    )?;
    if body["contractVersion"] != "1" {
        return Err("$.contractVersion: expected \"1\"".into());
    }
    need(&body["routing"], "$.routing", &["baseDomain", "sources"])?;
    need(
        &body["revocation"],
        "$.revocation",
        &["consistency", "maxDelaySeconds"],
    )?;
    let features = [
        "apiKeys",
        "rateLimit",
        "auditLog",
        "events",
        "graph",
        "userAuth",
        "mailCapture",
    ];
    need(&body["features"], "$.features", &features)?;
    if !obj(&body["features"], "$.features")?
        .values()
        .all(Value::is_boolean)
    {
        return Err("$.features: every flag must be a boolean".into());
    }
    need(
        &body["testControls"],
        "$.testControls",
        &["enabled", "clock", "evict", "alarms"],
    )?;
    if !body["rateLimit"].is_null() {
        need(
            &body["rateLimit"],
            "$.rateLimit",
            &["algorithm", "exact", "toleranceRequests", "override"],
        )?;
    }
    Ok(())
}

fn tenant_created(body: &Value) -> Check {
    exact_keys(body, "$", &["tenant", "credentials"])?;
    tenant(&body["tenant"], "$.tenant")?;
    exact_keys(
        &body["credentials"],
        "$.credentials",
        &["publicKey", "secretKey"],
    )?;
    for (k, p) in [("publicKey", "pk_live_"), ("secretKey", "sk_live_")] {
        if !body["credentials"][k]
            .as_str()
            .is_some_and(|s| s.starts_with(p))
        {
            return Err(format!("$.credentials.{k}: expected a {p} key"));
        }
    }
    Ok(())
}

fn tenant_shape(body: &Value) -> Check {
    exact_keys(body, "$", &["tenant"])?;
    tenant(&body["tenant"], "$.tenant")
}

fn tenant_list(body: &Value) -> Check {
    exact_keys(body, "$", &["tenants", "pagination"])?;
    let list = body["tenants"]
        .as_array()
        .ok_or("$.tenants: expected an array")?;
    for (i, t) in list.iter().enumerate() {
        tenant(t, &format!("$.tenants[{i}]"))?;
    }
    exact_keys(
        &body["pagination"],
        "$.pagination",
        &["page", "limit", "total", "pages"],
    )?;
    for k in ["page", "limit", "total", "pages"] {
        if !body["pagination"][k].is_u64() {
            return Err(format!("$.pagination.{k}: expected a number"));
        }
    }
    Ok(())
}

fn tenant_self(body: &Value) -> Check {
    exact_keys(body, "$", &["tenant"])?;
    exact_keys(
        &body["tenant"],
        "$.tenant",
        &["id", "slug", "name", "plan", "status"],
    )
}

fn key_shape(body: &Value) -> Check {
    exact_keys(body, "$", &["apiKey"])?;
    key_object(&body["apiKey"], "$.apiKey")
}

fn key_list(body: &Value) -> Check {
    exact_keys(body, "$", &["apiKeys"])?;
    let list = body["apiKeys"]
        .as_array()
        .ok_or("$.apiKeys: expected an array")?;
    for (i, k) in list.iter().enumerate() {
        key_object(k, &format!("$.apiKeys[{i}]"))?;
    }
    Ok(())
}

fn key_created(body: &Value) -> Check {
    exact_keys(body, "$", &["apiKey", "credentials"])?;
    key_object(&body["apiKey"], "$.apiKey")?;
    key_secret_credentials(&body["credentials"], "$.credentials")
}

fn rotation(body: &Value) -> Check {
    exact_keys(body, "$", &["apiKey", "credentials", "previousKey"])?;
    key_object(&body["apiKey"], "$.apiKey")?;
    key_object(&body["previousKey"], "$.previousKey")?;
    key_secret_credentials(&body["credentials"], "$.credentials")
}

fn problem(body: &Value) -> Check {
    let m = obj(body, "$")?;
    for k in ["type", "title", "status", "code"] {
        if !m.contains_key(k) {
            return Err(format!("$: a problem needs {k:?}"));
        }
    }
    let allowed = [
        "type", "title", "status", "code", "detail", "field", "errors",
    ];
    if let Some(extra) = m.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(format!("$: unexpected key {extra:?} in a problem"));
    }
    let code = body["code"].as_str().unwrap_or_default();
    if body["type"].as_str() != Some(&format!("urn:auth-service:problem:{code}")) {
        return Err(format!(
            "$.type: expected urn:auth-service:problem:{code}, got {}",
            body["type"]
        ));
    }
    string(&body["title"], "$.title")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_shape_is_a_clear_error() {
        let err = check("tenant-creatd", &Value::Null).expect_err("no such shape");
        assert_eq!(
            err,
            "unknown shape \"tenant-creatd\" (a bug in the feature file)"
        );
    }

    #[test]
    fn every_shape_a_feature_names_is_in_the_table() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../features");
        let re = Regex::new(r#"has the shape "([^"]+)""#).expect("static regex");
        let mut named = 0;
        for entry in std::fs::read_dir(dir).expect("features/") {
            let text = std::fs::read_to_string(entry.expect("entry").path()).unwrap_or_default();
            for c in re.captures_iter(&text) {
                named += 1;
                assert!(
                    SHAPES.iter().any(|(n, _)| *n == &c[1]),
                    "a feature names the shape {:?}, which the table lacks",
                    &c[1]
                );
            }
        }
        assert!(named > 0, "no feature names a shape");
    }

    #[test]
    fn a_problem_is_checked_by_its_own_entry() {
        let ok = serde_json::json!({"type": "urn:auth-service:problem:bad", "title": "Bad",
            "status": 400, "code": "bad"});
        assert_eq!(check("problem", &ok), Ok(()));
        let wrong = serde_json::json!({"type": "about:blank", "title": "Bad",
            "status": 400, "code": "bad"});
        assert!(check("problem", &wrong).is_err());
    }
}
