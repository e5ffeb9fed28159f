//! Reading responses tolerantly.
//!
//! A deployment may answer in the contract's (seed's) shape, or wrap it in the public cf-auth
//! deployment's `{"status":"success","data":...}` envelope and hand out credentials as
//! `{prefix, secret}` objects. Steps take what they need from either shape through these
//! functions, so that a deployment's security properties are measured even where its shapes
//! differ; the shapes themselves are judged strictly by the `@contract` scenarios.

use std::sync::OnceLock;

use regex::Regex;
use serde_json::Value;

/// A full key of the contract's format, anywhere in a text (type and environment captured).
pub fn key_pattern() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"\b(pk|sk|rk)_(live|test)_[0-9A-Za-z]{30,}").expect("static regex")
    })
}

/// The contract's key format, anchored.
pub fn key_format() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"^(pk|sk|rk)_(live|test)_[0-9A-Za-z]{38,}$").expect("static"))
}

/// The candidates where a field may live: the body itself, then the upstream envelope's
/// `data`.
fn roots(v: &Value) -> Vec<&Value> {
    let mut out = vec![v];
    if let Some(d) = v.get("data") {
        out.push(d);
    }
    out
}

/// Follows a dotted path (`tenant.id`) from `v`.
pub fn path<'a>(v: &'a Value, dotted: &str) -> Option<&'a Value> {
    let mut cur = v;
    for part in dotted.split('.') {
        cur = match cur {
            Value::Object(m) => m.get(part)?,
            Value::Array(a) => a.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// A field at `dotted`, in the body or in the envelope's `data`.
pub fn field<'a>(v: &'a Value, dotted: &str) -> Option<&'a Value> {
    roots(v).into_iter().find_map(|r| path(r, dotted))
}

/// The first of several paths that exists.
pub fn first<'a>(v: &'a Value, paths: &[&str]) -> Option<&'a Value> {
    paths.iter().find_map(|p| field(v, p))
}

/// A credential as a bearer token: a string, or an upstream `{prefix, secret}` object
/// (`prefix:secret` for secret keys, the prefix alone otherwise).
pub fn bearer_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Object(m) => {
            let prefix = m
                .get("prefix")
                .or_else(|| m.get("keyPrefix"))
                .and_then(Value::as_str);
            let secret = m
                .get("secret")
                .or_else(|| m.get("keySecret"))
                .and_then(Value::as_str);
            match (prefix, secret) {
                (Some(p), Some(s)) if s.starts_with(p) => Some(s.to_owned()),
                (Some(p), Some(s)) => Some(format!("{p}:{s}")),
                (None, Some(s)) => Some(s.to_owned()),
                (Some(p), None) => Some(p.to_owned()),
                (None, None) => None,
            }
        }
        _ => None,
    }
}

/// The secret parts of a credential that must never be shown again (the whole key in the
/// contract's format; the `secret` of an upstream `{prefix, secret}` object).
pub fn secret_parts(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Object(m) => ["secret", "keySecret"]
            .iter()
            .filter_map(|k| m.get(*k).and_then(Value::as_str))
            .map(str::to_owned)
            .collect(),
        _ => vec![],
    }
}

/// The tenant's secret and publishable keys from a tenant-creation response.
pub fn tenant_credentials(v: &Value) -> (Option<String>, Option<String>) {
    let secret = first(v, &["credentials.secretKey", "secretKey"]).and_then(bearer_of);
    let public = first(v, &["credentials.publicKey", "publicKey"]).and_then(bearer_of);
    (secret, public)
}

/// A tenant id from a tenant response.
pub fn tenant_id(v: &Value) -> Option<String> {
    first(v, &["tenant.id", "id"])
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// A tenant's status from a tenant response.
pub fn tenant_status(v: &Value) -> Option<String> {
    first(v, &["tenant.status", "status"])
        .and_then(Value::as_str)
        .filter(|s| *s != "success")
        .map(str::to_owned)
}

/// The new key's id from a key-creation or rotation response.
pub fn key_id(v: &Value) -> Option<String> {
    first(v, &["apiKey.id", "id"])
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// The new key's secret, as a bearer token, from a key-creation or rotation response.
pub fn key_secret(v: &Value) -> Option<String> {
    if let Some(c) = field(v, "credentials") {
        if let Some(b) = bearer_of(c) {
            return Some(b);
        }
    }
    // Upstream admin mint: `data.{prefix, secret}`.
    if let Some(d) = v.get("data") {
        if d.get("prefix").is_some() {
            return bearer_of(d);
        }
    }
    first(v, &["keySecret", "secret"]).and_then(bearer_of)
}

/// Every credential-like value in a response that issues credentials, with a label, so the
/// caller can remember them as secrets.
pub fn issued_secrets(v: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in [
        "credentials.secretKey",
        "credentials.publicKey",
        "credentials.keySecret",
        "credentials",
        "secret",
        "keySecret",
        "accessToken",
        "refreshToken",
    ] {
        if let Some(c) = field(v, p) {
            if c.is_object() && p == "credentials" {
                continue;
            }
            for s in secret_parts(c) {
                out.push((s, p.to_owned()));
            }
        }
    }
    out
}

/// A list of objects: `apiKeys`, `tenants`, or the envelope's `data` array.
pub fn list<'a>(v: &'a Value, name: &str) -> Option<&'a Vec<Value>> {
    if let Some(a) = v.get(name).and_then(Value::as_array) {
        return Some(a);
    }
    match v.get("data") {
        Some(Value::Array(a)) => Some(a),
        Some(d) => d.get(name).and_then(Value::as_array),
        None => None,
    }
}

/// The problem `code` of an error body, or the upstream `error` string.
pub fn error_code(v: &Value) -> Option<String> {
    v.get("code")
        .or_else(|| v.get("error"))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_seed_and_upstream_tenant_creation() {
        let seed = json!({"tenant":{"id":"tenant:a"},"credentials":{"publicKey":"pk_live_x","secretKey":"sk_live_y"}});
        assert_eq!(tenant_id(&seed).as_deref(), Some("tenant:a"));
        assert_eq!(
            tenant_credentials(&seed),
            (Some("sk_live_y".into()), Some("pk_live_x".into()))
        );
        let up = json!({"status":"success","data":{"tenant":{"id":"tenant:a"},"credentials":{"publicKey":{"prefix":"pk_live_p"},"secretKey":{"prefix":"sk_live_p","secret":"abc"}}}});
        assert_eq!(tenant_id(&up).as_deref(), Some("tenant:a"));
        assert_eq!(
            tenant_credentials(&up),
            (Some("sk_live_p:abc".into()), Some("pk_live_p".into()))
        );
        assert_eq!(tenant_status(&up), None);
    }

    #[test]
    fn reads_key_shapes() {
        let seed = json!({"apiKey":{"id":"key:1"},"credentials":{"keySecret":"sk_test_z"}});
        assert_eq!(key_id(&seed).as_deref(), Some("key:1"));
        assert_eq!(key_secret(&seed).as_deref(), Some("sk_test_z"));
        let up = json!({"apiKey":{"id":"key:2"},"credentials":{"keyPrefix":"sk_live_q","keySecret":"ff"}});
        assert_eq!(key_secret(&up).as_deref(), Some("sk_live_q:ff"));
        let mint = json!({"status":"success","data":{"id":"key:3","prefix":"rk_live_r"}});
        assert_eq!(key_id(&mint).as_deref(), Some("key:3"));
        assert_eq!(key_secret(&mint).as_deref(), Some("rk_live_r"));
    }

    #[test]
    fn lists() {
        assert_eq!(
            list(&json!({"apiKeys":[1]}), "apiKeys").map(Vec::len),
            Some(1)
        );
        assert_eq!(
            list(&json!({"data":[1,2]}), "apiKeys").map(Vec::len),
            Some(2)
        );
    }
}
