//! End-user auth of the dialect (§6): `/v1/auth/*` with `X-Tenant-ID` tenant selection,
//! `{success:false, error}` bodies and HS256 JWTs `{userId, tenantId, type, iat, exp}`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use super::{hex, not_found, now_ms, now_s, reply, Call, Fake, Store, User};

/// Seven days, upstream's access token lifetime.
const LIFETIME: u64 = 604_800;

fn fail(status: u16, msg: &str) -> axum::response::Response {
    reply(status, json!({"success": false, "error": msg}))
}

/// Without D10 every 401 of `/v1/auth/*` (bad login, unknown tenant, any bad token) is this
/// one body, as docs/contract.md's "one uniform 401" asks; upstream words each case.
fn unauthorized(fake: &Fake, upstream_words: &str) -> axum::response::Response {
    if fake.defects.d10_missing_auth_400 {
        fail(401, upstream_words)
    } else {
        fail(401, "Invalid credentials")
    }
}

fn sign(secret: &str, claims: &Value) -> String {
    let head = URL_SAFE_NO_PAD.encode(json!({"alg": "HS256", "typ": "JWT"}).to_string());
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    let input = format!("{head}.{body}");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(input.as_bytes());
    format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

/// The claims of a token with a valid HS256 signature and a future `exp`.
fn verify_jwt(secret: &str, token: &str) -> Option<Value> {
    let mut it = token.split('.');
    let (h, c, s) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() {
        return None;
    }
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).ok()?).ok()?;
    if header.get("alg") != Some(&json!("HS256")) {
        return None;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).ok()?;
    mac.update(format!("{h}.{c}").as_bytes());
    mac.verify_slice(&URL_SAFE_NO_PAD.decode(s).ok()?).ok()?;
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(c).ok()?).ok()?;
    let exp = claims.get("exp").and_then(Value::as_u64)?;
    let strings = ["userId", "tenantId", "type"]
        .iter()
        .all(|k| claims.get(*k).is_some_and(Value::is_string));
    (exp > now_s() && strings).then_some(claims)
}

fn strong(password: &str) -> Result<(), &'static str> {
    if password.chars().count() < 8 {
        return Err("Password must be at least 8 characters long");
    }
    if !password.chars().any(|c| c.is_ascii_uppercase()) {
        return Err("Password must contain at least one uppercase letter");
    }
    if !password.chars().any(|c| c.is_ascii_lowercase()) {
        return Err("Password must contain at least one lowercase letter");
    }
    if !password.chars().any(|c| c.is_ascii_digit()) {
        return Err("Password must contain at least one number");
    }
    Ok(())
}

fn valid_email(e: &str) -> bool {
    e.split_once('@').is_some_and(|(a, b)| {
        !a.is_empty()
            && b.split_once('.')
                .is_some_and(|(x, y)| !x.is_empty() && !y.is_empty())
    })
}

pub(crate) fn route(fake: &Fake, call: &Call) -> axum::response::Response {
    let leaf = call.path.trim_start_matches("/v1/auth/");
    match (call.method.as_str(), leaf) {
        ("POST", "register") => register(fake, call),
        ("POST", "login") => login(fake, call),
        ("GET", "me") | ("GET", "validate") | ("POST", "logout") | ("POST", "change-password") => {
            with_token(fake, call, leaf)
        }
        ("POST", "resend-verification") => resend(fake, call),
        ("POST", "forgot-password") => reply(
            200,
            json!({"success": true,
                   "message": "If an account exists, a password reset email has been sent"}),
        ),
        ("POST", "verify-email") => fail(400, "Invalid verification token"),
        ("POST", "reset-password") => fail(400, "Invalid or expired reset token"),
        _ => not_found(&call.path),
    }
}

/// The tenant `X-Tenant-ID` names (§10 step 1); `create`: D3's dev-mode auto-creation.
fn tenant_of(
    fake: &Fake,
    store: &mut Store,
    call: &Call,
    create: bool,
) -> Result<String, axum::response::Response> {
    let d = fake.defects;
    let values: Vec<String> = call
        .tenant_headers()
        .iter()
        .flat_map(|v| {
            v.split(',')
                .map(|s| s.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .filter(|v| !v.is_empty())
        .collect();
    let Some(first) = values.first().cloned() else {
        return Err(fail(400, "Tenant ID required"));
    };
    if !d.first_tenant_header_wins && values.iter().any(|v| *v != first) {
        return Err(fail(403, "tenant_mismatch: the X-Tenant-ID values differ"));
    }
    match store.tenants.get(&first) {
        Some(t) if !d.d11_tenant_status_ignored && t.status == "deleted" => {
            Err(unauthorized(fake, "Tenant not found"))
        }
        Some(t) if !d.d11_tenant_status_ignored && t.status == "suspended" => {
            Err(fail(403, "Tenant suspended"))
        }
        Some(_) => Ok(first),
        None if create && d.d3_auto_create_tenant => {
            let slug = first.trim_start_matches("tenant_").to_owned();
            store.add_tenant(&first, &slug, &format!("Dev Tenant {first}"), None);
            Ok(first)
        }
        None => Err(unauthorized(fake, "Tenant not found")),
    }
}

/// A session answer (register and login): the user, a fresh JWT and the session row.
fn session(fake: &Fake, store: &mut Store, user: &User, status: u16) -> axum::response::Response {
    let sid = format!("session:{}", hex(16));
    store
        .sessions
        .entry(user.id.clone())
        .or_default()
        .push(sid.clone());
    let iat = now_s();
    let mut claims = json!({"userId": user.id, "tenantId": user.tenant_id, "type": "access",
                            "iat": iat, "exp": iat + LIFETIME});
    if !fake.defects.non_unique_tokens {
        claims["sid"] = json!(sid);
    }
    reply(
        status,
        json!({"success": true,
               "user": {"id": user.id, "email": user.email, "name": user.name,
                        "username": user.username, "emailVerified": user.verified},
               "accessToken": sign(&fake.jwt_secret, &claims),
               "session": {"id": sid, "expiresAt": now_ms() + LIFETIME * 1000}}),
    )
}

fn register(fake: &Fake, call: &Call) -> axum::response::Response {
    let body = match call.json() {
        Ok(b) => b,
        Err(r) => return r,
    };
    let mut store = fake.store.lock().expect("store");
    let tenant = match tenant_of(fake, &mut store, call, true) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let email = body.get("email").and_then(Value::as_str).unwrap_or("");
    let password = body.get("password").and_then(Value::as_str).unwrap_or("");
    if !valid_email(email) {
        return fail(400, "Invalid email format");
    }
    if let Err(m) = strong(password) {
        return fail(400, m);
    }
    let email = email.to_lowercase();
    if store
        .users
        .iter()
        .any(|u| u.tenant_id == tenant && u.email == email)
    {
        return fail(400, "User already exists");
    }
    let text = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_owned);
    let user = User {
        id: format!("user:{tenant}:{}", hex(16)),
        tenant_id: tenant,
        email,
        name: text("name"),
        username: text("username"),
        password: password.to_owned(),
        verified: false,
    };
    store.users.push(user.clone());
    session(fake, &mut store, &user, 201)
}

fn login(fake: &Fake, call: &Call) -> axum::response::Response {
    let body = match call.json() {
        Ok(b) => b,
        Err(r) => return r,
    };
    let mut store = fake.store.lock().expect("store");
    let tenant = match tenant_of(fake, &mut store, call, false) {
        Ok(t) => t,
        // Upstream never checks the tenant on login: an unknown one has no users.
        Err(r) if r.status() == 400 || r.status() == 403 => return r,
        Err(_) => return unauthorized(fake, "Invalid credentials"),
    };
    let email = body
        .get("email")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_lowercase();
    let password = body.get("password").and_then(Value::as_str).unwrap_or("");
    let found = store
        .users
        .iter()
        .find(|u| u.tenant_id == tenant && u.email == email && u.password == password)
        .cloned();
    match found {
        Some(u) => session(fake, &mut store, &u, 200),
        None => unauthorized(fake, "Invalid credentials"),
    }
}

/// The 401 of a token route. Upstream (D10) words it per case and per route; without the
/// defect every case and route gets one body.
fn refused(fake: &Fake, leaf: &str, why: &str) -> axum::response::Response {
    if !fake.defects.d10_missing_auth_400 {
        return unauthorized(fake, why);
    }
    match leaf {
        "validate" => reply(200, json!({"valid": false, "error": why})),
        "me" => reply(401, json!({"error": why})),
        "logout" => reply(401, json!({"success": false, "message": why})),
        _ => fail(401, why),
    }
}

/// The user a token names, when the token is good.
fn token_user(
    fake: &Fake,
    store: &Store,
    call: &Call,
    token: &str,
) -> Option<(User, Option<String>)> {
    let d = fake.defects;
    let claims = verify_jwt(&fake.jwt_secret, token)?;
    let user_id = claims["userId"].as_str()?;
    let tenant_id = claims["tenantId"].as_str()?;
    let user = store.users.iter().find(|u| u.id == user_id)?.clone();
    let sid = claims.get("sid").and_then(Value::as_str).map(str::to_owned);
    if !d.d4_logout_keeps_jwt {
        let live = store.sessions.get(user_id).cloned().unwrap_or_default();
        let ok = match &sid {
            Some(s) => live.contains(s),
            None => !live.is_empty(),
        };
        if !ok {
            return None;
        }
    }
    if !d.d11_tenant_status_ignored {
        let tenant_ok = store
            .tenants
            .get(tenant_id)
            .is_some_and(|t| t.status == "active");
        let header_ok = call.tenant_headers().iter().all(|h| h == tenant_id);
        if claims["type"] != json!("access")
            || user.tenant_id != tenant_id
            || !tenant_ok
            || !header_ok
        {
            return None;
        }
    }
    Some((user, sid))
}

fn with_token(fake: &Fake, call: &Call, leaf: &str) -> axum::response::Response {
    let Some(auth) = call.header("authorization") else {
        if fake.defects.d10_missing_auth_400 {
            // zod's header validation runs before the handler.
            return reply(
                400,
                json!({"success": false, "error": {"name": "ZodError",
                       "issues": [{"path": ["authorization"], "message": "Required"}]}}),
            );
        }
        return refused(fake, leaf, "No token provided");
    };
    let Some(token) = auth.strip_prefix("Bearer ") else {
        return refused(fake, leaf, "No token provided");
    };
    let mut store = fake.store.lock().expect("store");
    let Some((user, sid)) = token_user(fake, &store, call, token) else {
        return refused(fake, leaf, "Invalid token");
    };
    match leaf {
        "me" => reply(
            200,
            json!({"user": {"id": user.id, "email": user.email, "name": user.name,
                            "username": user.username, "emailVerified": user.verified,
                            "tenantId": user.tenant_id}}),
        ),
        "validate" => reply(
            200,
            json!({"valid": true, "user": {"id": user.id, "email": user.email,
                                           "name": user.name, "tenantId": user.tenant_id}}),
        ),
        "logout" => {
            let live = store.sessions.entry(user.id.clone()).or_default();
            match sid {
                // Without a session id (upstream) every session of the user goes.
                Some(s) if !fake.defects.d4_logout_keeps_jwt => live.retain(|x| *x != s),
                _ => live.clear(),
            }
            reply(
                200,
                json!({"success": true, "message": "Logged out successfully"}),
            )
        }
        _ => change_password(fake, &mut store, call, &user),
    }
}

fn change_password(
    fake: &Fake,
    store: &mut Store,
    call: &Call,
    user: &User,
) -> axum::response::Response {
    let body = match call.json() {
        Ok(b) => b,
        Err(r) => return r,
    };
    let current = body
        .get("currentPassword")
        .and_then(Value::as_str)
        .unwrap_or("");
    let new = body
        .get("newPassword")
        .and_then(Value::as_str)
        .unwrap_or("");
    if new.chars().count() < 8 {
        return reply(
            400,
            json!({"success": false, "error": {"name": "ZodError"}}),
        );
    }
    if current != user.password {
        return fail(400, "Current password is incorrect");
    }
    // D6: upstream negates the (always truthy) result object, so the check never fires.
    if !fake.defects.d6_weak_password_on_change {
        if let Err(m) = strong(new) {
            return fail(400, m);
        }
    }
    if let Some(u) = store.users.iter_mut().find(|u| u.id == user.id) {
        u.password = new.to_owned();
    }
    store.sessions.remove(&user.id);
    reply(
        200,
        json!({"success": true, "message": "Password changed successfully"}),
    )
}

fn resend(fake: &Fake, call: &Call) -> axum::response::Response {
    let body = match call.json() {
        Ok(b) => b,
        Err(r) => return r,
    };
    let raw = body.get("email").and_then(Value::as_str).unwrap_or("");
    if !valid_email(raw) {
        return reply(
            400,
            json!({"success": false, "error": {"name": "ZodError"}}),
        );
    }
    if fake.defects.d9_enumeration {
        // D8: the raw address, while stored addresses are lowercased; no tenant filter.
        let wanted = if fake.defects.d8_email_case {
            raw.to_owned()
        } else {
            raw.to_lowercase()
        };
        let store = fake.store.lock().expect("store");
        match store.users.iter().find(|u| u.email == wanted) {
            None => return fail(400, "User not found"),
            Some(u) if u.verified => return fail(400, "Email already verified"),
            Some(_) => {}
        }
    }
    reply(
        200,
        json!({"success": true, "message": "Verification email sent"}),
    )
}
