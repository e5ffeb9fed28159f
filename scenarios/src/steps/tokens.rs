//! Access tokens: forged ones, the session answer, and the one uniform 401 for every bad token
//! (`features/user_auth.feature`).

use cucumber::{given, then, when};
use serde_json::{json, Value};

use crate::extract;
use crate::support::jwt::{b64, jwt_parts, sign, signing_key};
use crate::support::text::{excerpt, normalized, random_alnum};
use crate::verdict::FailureClass;
use crate::world::{judge_status, judge_use, parts_or_fail, AuthWorld, Cred, Exchange, Req};

#[given(regex = r#"^a token "([^"]+)" made from "(\w+)"'s access token by (.+)$"#)]
#[when(regex = r#"^a token "([^"]+)" made from "(\w+)"'s access token by (.+)$"#)]
async fn forged(w: &mut AuthWorld, name: String, user: String, how: String) {
    let token = w.latest_access(&user);
    let (header, claims) = parts_or_fail(w, &token);
    let made_up = format!("made-up-secret-{}", random_alnum(32));
    let real_key = |w: &AuthWorld| -> Vec<u8> {
        let Some(secret) = w.ctx.jwt_secret.get() else {
            w.harness_error(
                "the harness does not know the target's JWT secret (tag @needs-jwt-secret)",
            )
        };
        let kid = header.get("kid").and_then(Value::as_str).unwrap_or("");
        signing_key(secret, kid)
    };
    let with_alg = |alg: &str| {
        let mut h = header.clone();
        h["alg"] = json!(alg);
        h
    };
    let claim_re = regex::Regex::new(
        r#"^setting the claim "(\w+)" to (?:(\d+) seconds (ago|from now)|(.+)) and re-signing it with the target's secret$"#,
    )
    .expect("static regex");
    let out = match how.as_str() {
        "setting alg to none" => sign(&with_alg("none"), &claims, b""),
        "setting alg to none and dropping the signature" => sign(&with_alg("none"), &claims, b"")
            .trim_end_matches('.')
            .to_owned(),
        "re-signing it with a made-up secret" => sign(&header, &claims, made_up.as_bytes()),
        "re-signing it with HS512 and a made-up secret" => {
            sign(&with_alg("HS512"), &claims, made_up.as_bytes())
        }
        "changing the user in the payload" => {
            let mut c = claims.clone();
            // The claim the target names its user with (`sub`, or upstream's `userId`).
            let k = extract::claim_user(&claims).map_or("sub", |(k, _)| k);
            c[k] = json!(format!("user:{}", random_alnum(12)));
            let mut p = token.split('.');
            let (h, _, s) = (p.next(), p.next(), p.next());
            format!(
                "{}.{}.{}",
                h.unwrap_or(""),
                b64(c.to_string().as_bytes()),
                s.unwrap_or("")
            )
        }
        "changing one character of the signature" => {
            let (input, sig) = token.rsplit_once('.').unwrap_or((&token, ""));
            let mut s: Vec<char> = sig.chars().collect();
            if s.len() < 10 {
                w.fail_as(
                    FailureClass::Conformance,
                    "the access token: expected an HS256 signature, got none to change",
                );
            }
            // A character in the middle: every bit of it is signature (the last one may be
            // padding bits).
            let i = s.len() / 2;
            s[i] = if s[i] == 'A' { 'B' } else { 'A' };
            format!("{input}.{}", s.into_iter().collect::<String>())
        }
        "re-signing it unchanged with the target's secret" => sign(&header, &claims, &real_key(w)),
        "re-signing it with HS512 and the target's secret" => {
            sign(&with_alg("HS512"), &claims, &real_key(w))
        }
        "removing its key id and re-signing it with the target's secret" => {
            let mut h = header.clone();
            if let Some(o) = h.as_object_mut() {
                o.remove("kid");
            }
            sign(&h, &claims, &real_key(w))
        }
        other => {
            let Some(c) = claim_re.captures(other) else {
                w.harness_error(format!("unknown token forgery {other:?}"))
            };
            let claim = c[1].to_owned();
            let value = if let Some(n) = c.get(2) {
                let n: i64 = n.as_str().parse().unwrap_or(0);
                let iat = claims.get("iat").and_then(Value::as_i64).unwrap_or(0);
                if &c[3] == "ago" {
                    json!(iat - n)
                } else {
                    json!(iat + n)
                }
            } else {
                let text = c[4].to_owned();
                let text = w.expand(&text, false);
                match serde_json::from_str::<Value>(&text) {
                    Ok(v) => v,
                    Err(_) => w.harness_error(format!("not a JSON value: {text}")),
                }
            };
            let mut cl = claims.clone();
            cl[claim.as_str()] = value;
            sign(&header, &cl, &real_key(w))
        }
    };
    if out == token {
        w.harness_error(format!("the forgery {how:?} did not change the token"));
    }
    w.users.named.insert(name, out);
}

/// A session answer. What makes it a session of this user in this tenant is judged (the
/// address, the tenant, a token whose claims name the same user and tenant, no password in
/// it); how it is written (`expiresAt` as epoch milliseconds, `userId` for `sub`, no
/// `tokenType`, no refresh token) is a deviation outside `@contract` scenarios.
#[then(regex = r#"^the answer is a session of "(\w+)" in tenant "([^"]+)"$"#)]
async fn is_session(w: &mut AuthWorld, user: String, tenant: String) {
    let email = w.email_of(&user).to_ascii_lowercase();
    let tenant_id = w.tenant(&tenant).id.clone();
    let j = w.last().json().clone();
    let s = |p: &str| {
        extract::field(&j, p)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let mut wrong: Vec<String> = Vec::new();
    let mut security = false;
    let mut format: Vec<String> = Vec::new();
    if s("user.email").as_deref() != Some(email.as_str()) {
        wrong.push(format!("user.email {:?}", s("user.email")));
    }
    match s("user.tenantId") {
        Some(t) if t != tenant_id => {
            wrong.push(format!("user.tenantId {t:?}"));
            security = true;
        }
        Some(_) => {}
        None => format.push("no user.tenantId".into()),
    }
    for p in ["user.id", "accessToken"] {
        if s(p).is_none_or(|v| v.is_empty()) {
            wrong.push(format!("no {p}"));
        }
    }
    for p in ["refreshToken", "session.id"] {
        if s(p).is_none_or(|v| v.is_empty()) {
            format.push(format!("no {p}"));
        }
    }
    match extract::field(&j, "session.expiresAt").map(|v| (extract::time_form(v), v)) {
        None => format.push("no session.expiresAt".into()),
        Some((Some(extract::TimeForm::Rfc3339), _)) => {}
        Some((Some(f), v)) => format.push(format!("session.expiresAt as {} ({v})", f.describe())),
        Some((None, v)) => format.push(format!("session.expiresAt {v}, not a time")),
    }
    if extract::field(&j, "tokenType") != Some(&json!("Bearer")) {
        format.push(format!("tokenType {:?}", extract::field(&j, "tokenType")));
    }
    if extract::field(&j, "expiresIn")
        .and_then(Value::as_i64)
        .is_none_or(|n| n <= 0)
    {
        format.push(format!("expiresIn {:?}", extract::field(&j, "expiresIn")));
    }
    if extract::field(&j, "user.password").is_some()
        || extract::field(&j, "user.passwordHash").is_some()
    {
        wrong.push("a password field in the user object".into());
        security = true;
    }
    if let Some(t) = s("accessToken") {
        match jwt_parts(&t) {
            Some((h, c)) => {
                let alg = h.get("alg").and_then(Value::as_str).unwrap_or("");
                if alg.eq_ignore_ascii_case("none") || alg.is_empty() {
                    wrong.push(format!("an unsigned token (alg {alg:?})"));
                    security = true;
                } else if alg != "HS256" {
                    format.push(format!("the token's alg {alg:?}"));
                }
                match c.get("tenantId") {
                    Some(x) if x != &json!(tenant_id) => {
                        wrong.push(format!("the token's tenantId {x}"));
                        security = true;
                    }
                    Some(_) => {}
                    None => format.push("no tenantId claim".into()),
                }
                let user_id = extract::field(&j, "user.id");
                match extract::claim_user(&c) {
                    Some((k, v)) if Some(v) != user_id => {
                        wrong.push(format!("the token's {k} {v} (user.id is {user_id:?})"));
                        security = true;
                    }
                    Some(("userId", _)) => format.push("the user claim is userId, not sub".into()),
                    Some(_) => {}
                    None => wrong.push("no sub (or userId) claim in the token".into()),
                }
            }
            None => format.push("accessToken is not a JWT".into()),
        }
    }
    if !format.is_empty() {
        w.deviate(format!(
            "expected the contract's session answer, got {}",
            format.join("; ")
        ));
    }
    if !wrong.is_empty() {
        let msg = format!(
            "{}: expected a session of {user:?} in tenant {tenant:?}, got {}",
            w.last_request_line(),
            wrong.join("; ")
        );
        if security {
            w.fail_as(FailureClass::Security, msg);
        }
        w.fail(msg);
    }
}

/// `GET /v1/auth/me` with a token: 200 and the user's address, or the uniform 401.
async fn me_with(w: &mut AuthWorld, label: &str, token: String) -> u16 {
    w.send_with_token("GET", "/v1/auth/me", label, token, None, None)
        .await;
    w.last().status
}

async fn expect_works(w: &mut AuthWorld, label: &str, token: String, user: Option<&str>) {
    let s = me_with(w, label, token).await;
    if s != 200 {
        let msg = format!(
            "GET /v1/auth/me as {label}: expected 200, got {s}: {}",
            excerpt(&w.last().body)
        );
        w.fail(msg);
    }
    if let Some(u) = user {
        let email = w.email_of(u).to_ascii_lowercase();
        let got = extract::field(w.last().json(), "user.email").cloned();
        if got != Some(json!(email)) {
            // The token opens another account than its own.
            w.fail_as(
                FailureClass::Security,
                format!("GET /v1/auth/me as {label}: expected user.email {email:?}, got {got:?}"),
            );
        }
    }
}

#[then(regex = r#"^"(\w+)"'s access token (works|is refused)$"#)]
async fn user_token_works(w: &mut AuthWorld, user: String, how: String) {
    let token = w.latest_access(&user);
    let label = format!("{user}:access");
    if how == "works" {
        expect_works(w, &label, token, Some(&user)).await;
    } else {
        me_with(w, &label, token).await;
        uniform_401(w).await;
    }
}

#[then(regex = r#"^the access token "([^"]+)" (works|is refused)$"#)]
async fn named_token_works(w: &mut AuthWorld, name: String, how: String) {
    let token = w.named_token(&name);
    if how == "works" {
        expect_works(w, &name, token, None).await;
    } else {
        me_with(w, &name, token).await;
        uniform_401(w).await;
    }
}

#[then(regex = r#"^every access token "(\w+)" was given is refused$"#)]
async fn all_refused(w: &mut AuthWorld, user: String) {
    let all = w.users.access.get(&user).cloned().unwrap_or_default();
    if all.is_empty() {
        w.harness_error(format!("{user:?} was given no access token"));
    }
    for (i, t) in all.into_iter().enumerate() {
        me_with(w, &format!("{user}:access#{}", i + 1), t).await;
        uniform_401(w).await;
    }
}

/// The last answer must be the one uniform 401: status 401, `WWW-Authenticate: Bearer`, and
/// the same body as `GET /v1/auth/me` without any token.
///
/// A success is a security failure (the bad token was accepted); another refusal status is
/// conformance. The header is a format deviation. The body comparison is the rule (an answer
/// that differs by the reason tells an attacker which part of a forgery was right), but it
/// only means something when the answer without a token is itself a 401: otherwise the
/// target's no-token answer differs for another reason (upstream: 400 from a validator) and
/// that is recorded as a deviation instead.
#[then(regex = r#"^the answer is the uniform 401$"#)]
async fn uniform_401(w: &mut AuthWorld) {
    let ex = w.last().clone();
    if refused_as_invalid(&ex) {
        // `validate` answering 200 `{"valid": false}` refuses the token, in another form than
        // the contract's 401: a format deviation, not a token accepted.
        w.deviate(format!(
            "expected the uniform 401, got {} with \"valid\": false",
            ex.status
        ));
        return;
    }
    if ex.status != 401 {
        judge_status(w, &[401]);
    }
    if !ex
        .header("www-authenticate")
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("bearer"))
    {
        w.deviate("expected WWW-Authenticate: Bearer on the 401, got none");
    }
    let reference = send_raw_me(w).await;
    // The answer under test stays the last one.
    w.last = Some(ex.clone());
    if reference.status != 401 {
        w.deviate(format!(
            "expected GET /v1/auth/me without a token to be the uniform 401, got {}: {}",
            reference.status,
            excerpt(&reference.body)
        ));
        return;
    }
    if normalized(&reference, &[]) != normalized(&ex, &[]) {
        w.fail(format!(
            "{} {}: expected the body of the answer without a token {:?}, got {:?}",
            ex.method,
            ex.path,
            excerpt(&reference.body),
            excerpt(&ex.body)
        ));
    }
}

/// A 2xx from `GET /v1/auth/validate` whose body says the token is not valid.
fn refused_as_invalid(ex: &Exchange) -> bool {
    (200..300).contains(&ex.status)
        && ex.path.starts_with("/v1/auth/validate")
        && ex.json().get("valid") == Some(&Value::Bool(false))
}

async fn send_raw_me(w: &mut AuthWorld) -> Exchange {
    let req = Req::new("GET", "/v1/auth/me", Cred::None);
    w.send(req).await.clone()
}

fn user_token(w: &AuthWorld, who: &str, named: bool) -> String {
    let found = if named {
        w.users.named.get(who).cloned()
    } else {
        w.users.access.get(who).and_then(|v| v.last().cloned())
    };
    match found {
        Some(t) => t,
        None => w.harness_error(format!("no access token {who:?} in the scenario")),
    }
}

async fn token_on_routes(w: &mut AuthWorld, label: &str, token: String, works: bool) {
    for route in ["/v1/auth/me", "/v1/auth/validate"] {
        let cred = Cred::Bearer {
            label: label.to_owned(),
            value: token.clone(),
        };
        let ex = w.send(Req::new("GET", route, cred)).await.clone();
        judge_use(w, &ex, label, works, 401);
        if works && route.ends_with("validate") {
            let valid = ex.json().get("valid").and_then(serde_json::Value::as_bool);
            if valid != Some(true) {
                w.fail(format!(
                    "GET /v1/auth/validate as {label:?}: expected \"valid\":true, got {valid:?}"
                ));
            }
        }
    }
}

#[given(regex = r#"^"(\w+)"'s access token (works|is refused) on me and validate$"#)]
#[then(regex = r#"^"(\w+)"'s access token (works|is refused) on me and validate$"#)]
async fn user_token_routes(w: &mut AuthWorld, user: String, how: String) {
    let token = user_token(w, &user, false);
    token_on_routes(w, &format!("{user}:access"), token, how == "works").await;
}

#[given(regex = r#"^the access token "([^"]+)" (works|is refused) on me and validate$"#)]
#[then(regex = r#"^the access token "([^"]+)" (works|is refused) on me and validate$"#)]
async fn named_token_routes(w: &mut AuthWorld, name: String, how: String) {
    let token = user_token(w, &name, true);
    token_on_routes(w, &name, token, how == "works").await;
}
