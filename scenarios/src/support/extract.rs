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

/// Anything shaped like a key, anywhere in a text (type and environment captured): 20 or
/// more characters, so a contract key, an upstream key prefix (29 to 32 characters after
/// `sk_live_`, or fewer) and a key cut short are all caught. Redaction uses it; it does not
/// decide what is a leak (a key prefix is an identifier, see [`credential_pattern`]).
pub fn key_pattern() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"\b(pk|sk|rk)_(live|test)_[0-9A-Za-z]{12,}").expect("static regex")
    })
}

/// A value that is a whole credential by its shape alone, anywhere in a text: a full key of
/// the contract's format (38 or more characters after the type and environment), or an
/// upstream `prefix:secret` bearer. A bare prefix (shorter, no secret) is an identifier that
/// key lists show legitimately, so it is not matched.
pub fn credential_pattern() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(
            r"\b(?:pk|sk|rk)_(?:live|test)_[0-9A-Za-z]{12,}:[0-9A-Za-z_-]{16,}|\b(?:pk|sk|rk)_(?:live|test)_[0-9A-Za-z]{38,}",
        )
        .expect("static regex")
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

/// A tenant's status from a tenant response: `tenant.status`, the envelope's
/// `data.tenant.status` or `data.status`, or a bare row's `status`. The upstream envelope's
/// own top-level `"status":"success"` is never read as the tenant's.
pub fn tenant_status(v: &Value) -> Option<String> {
    let envelope = v.get("data").is_some_and(Value::is_object);
    let mut paths = vec!["tenant.status", "data.tenant.status", "data.status"];
    if !envelope {
        paths.push("status");
    }
    paths
        .into_iter()
        .find_map(|p| path(v, p))
        .and_then(Value::as_str)
        .filter(|s| envelope || !matches!(*s, "success" | "error"))
        .map(str::to_owned)
}

/// How a timestamp is written: the contract's RFC 3339 text, or a dialect's epoch number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeForm {
    /// `2026-01-01T00:00:00Z` (the contract's form).
    Rfc3339,
    /// Milliseconds since 1970 (upstream sessions and users).
    EpochMillis,
    /// Seconds since 1970 (upstream tenant rows).
    EpochSeconds,
}

impl TimeForm {
    /// Words for a report.
    pub fn describe(self) -> &'static str {
        match self {
            TimeForm::Rfc3339 => "an RFC 3339 timestamp",
            TimeForm::EpochMillis => "epoch milliseconds",
            TimeForm::EpochSeconds => "epoch seconds",
        }
    }
}

/// The form of a timestamp value, if it is one: RFC 3339 text (any offset, optional
/// fraction), or a number read as epoch milliseconds (from 10^11, i.e. after 1973 in ms) or
/// epoch seconds (from 10^8, 1973 in seconds).
pub fn time_form(v: &Value) -> Option<TimeForm> {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        Regex::new(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
            .expect("static regex")
    });
    match v {
        Value::String(s) if re.is_match(s) => Some(TimeForm::Rfc3339),
        Value::Number(n) => match n.as_f64() {
            Some(x) if x >= 1e11 => Some(TimeForm::EpochMillis),
            Some(x) if x >= 1e8 => Some(TimeForm::EpochSeconds),
            _ => None,
        },
        _ => None,
    }
}

/// The user a token's claims name: the contract's `sub`, or upstream's `userId` (with which
/// of the two it was).
pub fn claim_user(claims: &Value) -> Option<(&'static str, &Value)> {
    ["sub", "userId"]
        .into_iter()
        .find_map(|k| claims.get(k).filter(|v| !v.is_null()).map(|v| (k, v)))
}

/// Where a field the contract puts at `dotted` sits in the upstream envelope instead: the
/// envelope's `data` IS the named object, so `tenant.id` is at `data.id`. Returns the twin's
/// path and value.
pub fn twin_field<'a>(v: &'a Value, dotted: &str) -> Option<(String, &'a Value)> {
    let (_, rest) = dotted.split_once('.')?;
    let data = v.get("data")?;
    path(data, rest).map(|x| (format!("data.{rest}"), x))
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

/// What one response issues: the values that must never be shown again, the identifiers
/// that may (key prefixes), and the tokens (which a target may, wrongly, issue twice).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Issued {
    /// Secret values with the field they came from (`credentials.secretKey.secret`).
    pub secrets: Vec<(String, String)>,
    /// Session tokens (`accessToken`, `refreshToken`, `token`) with their field; secrets too.
    pub tokens: Vec<(String, String)>,
    /// Key prefixes: public identifiers of issued keys, never a leak when shown again.
    pub identifiers: Vec<String>,
    /// One bearer per issued key credential (`prefix:secret`, the key, or the secret), in
    /// order: what a caller presents, for entropy checks.
    pub bearers: Vec<String>,
}

impl Issued {
    /// Every secret value (key secrets, bearers and tokens).
    pub fn all_secrets(&self) -> impl Iterator<Item = &str> {
        self.secrets
            .iter()
            .chain(&self.tokens)
            .map(|(s, _)| s.as_str())
    }

    fn secret(&mut self, value: &str, label: &str) {
        if !value.is_empty() && !self.secrets.iter().any(|(s, _)| s == value) {
            self.secrets.push((value.to_owned(), label.to_owned()));
        }
    }

    /// One credential slot: a string is a whole secret; an object `{prefix|keyPrefix,
    /// secret|keySecret}` gives an identifier, a secret and the `prefix:secret` bearer.
    fn credential(&mut self, v: &Value, label: &str) {
        match v {
            Value::String(s) => {
                self.secret(s, label);
                if !s.is_empty() {
                    self.bearers.push(s.clone());
                }
            }
            Value::Object(m) => {
                let prefix = ["prefix", "keyPrefix"]
                    .iter()
                    .find_map(|k| m.get(*k).and_then(Value::as_str))
                    .filter(|p| !p.is_empty());
                let secret = ["secret", "keySecret"]
                    .iter()
                    .find_map(|k| m.get(*k).and_then(Value::as_str));
                if let Some(p) = prefix {
                    if !self.identifiers.iter().any(|x| x == p) {
                        self.identifiers.push(p.to_owned());
                    }
                }
                if let Some(s) = secret {
                    self.secret(s, &format!("{label}.secret"));
                    match prefix.filter(|p| !s.starts_with(*p)) {
                        Some(p) => {
                            let bearer = format!("{p}:{s}");
                            self.secret(&bearer, label);
                            self.bearers.push(bearer);
                        }
                        None => self.bearers.push(s.to_owned()),
                    }
                }
            }
            _ => {}
        }
    }
}

/// Every credential a response issues, in every shape the harness reads: the contract's
/// strings (`credentials.secretKey`, `credentials.keySecret`), upstream objects
/// (`credentials.secretKey: {prefix, secret}`, `credentials: {keyPrefix, keySecret}`, the
/// admin mint's `data: {id, prefix, secret?}`), at the top level or in the envelope's `data`,
/// and session tokens. Only credential slots are read: a tenant row's `publicKey` and
/// `secretKey` (upstream: key prefixes) outside `credentials` issue nothing.
pub fn issued_credentials(v: &Value) -> Issued {
    let mut out = Issued::default();
    for root in roots(v) {
        let Some(obj) = root.as_object() else {
            continue;
        };
        match obj.get("credentials") {
            Some(c @ Value::Object(m)) => {
                let mut slot = false;
                for k in ["secretKey", "publicKey", "adminKey"] {
                    if let Some(x) = m.get(k) {
                        out.credential(x, &format!("credentials.{k}"));
                        slot = true;
                    }
                }
                if !slot {
                    out.credential(c, "credentials");
                }
            }
            Some(c @ Value::String(_)) => out.credential(c, "credentials"),
            _ => {}
        }
        // `{keyPrefix?, keySecret}` or the admin mint's `{id, prefix, secret?}` at this level.
        if ["prefix", "keyPrefix", "secret", "keySecret"]
            .iter()
            .any(|k| obj.get(*k).is_some_and(Value::is_string))
        {
            out.credential(root, "key");
        }
        for k in ["accessToken", "refreshToken", "token"] {
            if let Some(t) = obj.get(k).and_then(Value::as_str).filter(|t| !t.is_empty()) {
                if !out.tokens.iter().any(|(x, _)| x == t) {
                    out.tokens.push((t.to_owned(), k.to_owned()));
                }
            }
        }
    }
    out
}

/// Every secret value in a response that issues credentials, with a label (the secrets and
/// tokens of [`issued_credentials`]).
pub fn issued_secrets(v: &Value) -> Vec<(String, String)> {
    let i = issued_credentials(v);
    i.secrets.into_iter().chain(i.tokens).collect()
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

    fn learned(v: &Value) -> (Vec<String>, Vec<String>, Vec<String>) {
        let i = issued_credentials(v);
        let mut secrets: Vec<String> = i.secrets.into_iter().map(|(s, _)| s).collect();
        secrets.sort();
        let tokens = i.tokens.into_iter().map(|(s, _)| s).collect();
        (secrets, i.identifiers, tokens)
    }

    #[test]
    fn learns_every_credential_shape() {
        // The contract's strings.
        let seed = json!({"tenant":{"id":"t"},"credentials":{"publicKey":"pk_live_aaaaaaaaaaaaaaaaaaaa","secretKey":"sk_live_bbbbbbbbbbbbbbbbbbbb"}});
        assert_eq!(
            learned(&seed),
            (
                vec![
                    "pk_live_aaaaaaaaaaaaaaaaaaaa".into(),
                    "sk_live_bbbbbbbbbbbbbbbbbbbb".into()
                ],
                vec![],
                vec![]
            )
        );
        let key =
            json!({"apiKey":{"id":"k"},"credentials":{"keySecret":"sk_test_cccccccccccccccccccc"}});
        assert_eq!(
            learned(&key).0,
            vec!["sk_test_cccccccccccccccccccc".to_owned()]
        );
        // Upstream tenant creation in the envelope: `{prefix}` and `{prefix, secret}`, with
        // prefixes of 29 and 32 characters.
        let pk = "pk_live_AbCdEfGhIjKlMnOpQrStU"; // 29
        let sk = "sk_live_AbCdEfGhIjKlMnOpQrStUvWx"; // 32
        assert_eq!((pk.len(), sk.len()), (29, 32));
        let up = json!({"status":"success","data":{"tenant":{"id":"tenant:a"},"credentials":{"publicKey":{"prefix":pk},"secretKey":{"prefix":sk,"secret":"0123456789abcdef"}}}});
        let (secrets, ids, tokens) = learned(&up);
        assert_eq!(
            secrets,
            vec![
                "0123456789abcdef".to_owned(),
                format!("{sk}:0123456789abcdef")
            ]
        );
        assert_eq!(ids, vec![sk.to_owned(), pk.to_owned()]);
        assert!(tokens.is_empty());
        // Upstream's `{keyPrefix, keySecret}` credentials and the admin mint's `data`.
        let kp = json!({"apiKey":{"id":"k"},"credentials":{"keyPrefix":"rk_live_q1","keySecret":"ffffffffff"}});
        assert_eq!(
            learned(&kp),
            (
                vec!["ffffffffff".into(), "rk_live_q1:ffffffffff".into()],
                vec!["rk_live_q1".into()],
                vec![]
            )
        );
        // One bearer per credential, whatever its shape (entropy checks count them).
        assert_eq!(
            issued_credentials(&kp).bearers,
            vec!["rk_live_q1:ffffffffff".to_owned()]
        );
        assert_eq!(issued_credentials(&up).bearers.len(), 1);
        assert_eq!(issued_credentials(&seed).bearers.len(), 2);
        let mint =
            json!({"status":"success","data":{"id":"key:3","prefix":"pk_live_zz","type":"public"}});
        assert_eq!(learned(&mint), (vec![], vec!["pk_live_zz".into()], vec![]));
        // Session tokens, in either place.
        let session = json!({"success":true,"accessToken":"eyJ.a.b","data":{"refreshToken":"r-1"}});
        assert_eq!(
            learned(&session).2,
            vec!["eyJ.a.b".to_owned(), "r-1".to_owned()]
        );
        // A tenant row's prefixes outside `credentials` issue nothing.
        let row =
            json!({"status":"success","data":{"id":"tenant:a","publicKey":pk,"secretKey":sk}});
        assert_eq!(learned(&row), (vec![], vec![], vec![]));
    }

    #[test]
    fn patterns_know_a_prefix_from_a_credential() {
        // 21 characters: key-shaped (redacted), but not a whole credential.
        let short = "sk_live_0123456789abc";
        assert_eq!(short.len(), 21);
        assert!(key_pattern().is_match(short));
        assert!(!credential_pattern().is_match(short));
        assert!(credential_pattern().is_match(&format!("{short}:{}", "f".repeat(64))));
        assert!(credential_pattern().is_match(&format!("sk_live_{}", "A".repeat(38))));
        assert!(!key_pattern().is_match("sk_live_0123456789a"));
    }

    #[test]
    fn tenant_status_never_reads_the_envelope() {
        let up = json!({"status":"success","data":{"id":"tenant:a","status":"deleted"}});
        assert_eq!(tenant_status(&up).as_deref(), Some("deleted"));
        let nested = json!({"status":"success","data":{"tenant":{"status":"active"}}});
        assert_eq!(tenant_status(&nested).as_deref(), Some("active"));
        let seed = json!({"tenant":{"status":"suspended"}});
        assert_eq!(tenant_status(&seed).as_deref(), Some("suspended"));
        assert_eq!(tenant_status(&json!({"status":"success","data":{}})), None);
        assert_eq!(tenant_status(&json!({"status":"success"})), None);
    }

    #[test]
    fn dialect_twins() {
        assert_eq!(
            time_form(&json!("2026-01-01T00:00:00Z")),
            Some(TimeForm::Rfc3339)
        );
        assert_eq!(
            time_form(&json!(1_764_000_000_000u64)),
            Some(TimeForm::EpochMillis)
        );
        assert_eq!(
            time_form(&json!(1_764_000_000u64)),
            Some(TimeForm::EpochSeconds)
        );
        assert_eq!(time_form(&json!("tomorrow")), None);
        assert_eq!(
            claim_user(&json!({"sub":"u1"})),
            Some(("sub", &json!("u1")))
        );
        assert_eq!(
            claim_user(&json!({"userId":"u2"})),
            Some(("userId", &json!("u2")))
        );
        let up = json!({"status":"success","data":{"id":"tenant:a"}});
        assert_eq!(
            twin_field(&up, "tenant.id"),
            Some(("data.id".to_owned(), &json!("tenant:a")))
        );
        assert_eq!(
            tenant_id(&json!({"data":{"tenant":{"id":"tenant:b"}}})).as_deref(),
            Some("tenant:b")
        );
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
