//! Credentials the harness makes (unissued, literal, altered keys) and the secrecy of issued
//! secrets: format, entropy, never shown again (`features/secrecy.feature`).

use cucumber::{given, then};

use crate::extract;
use crate::support::keys::{checksum, random_base62, replace_type};
use crate::verdict::FailureClass;
use crate::world::AuthWorld;

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
