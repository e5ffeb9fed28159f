//! End-user auth (`/v1/auth/*`): the users of each tenant, their sessions, access tokens
//! (JWT), rotating refresh tokens, email verification and password reset.
//!
//! Every request runs in the tenant's `TenantState` object (one call at a time), so the
//! tenant's rate limit applies and revocation is exact: logout, password change and reset are
//! refused from the very next request on, also after a restart (everything is in the database).
//!
//! - Tenant: for `register`, `login`, `refresh`, `verify-email`, `resend-verification`,
//!   `forgot-password` and `reset-password` a publishable or secret key of the tenant, or the
//!   tenant routing sources (`X-Tenant-ID`, subdomain, `?tenant_id=`) naming an existing
//!   tenant; an unknown, deleted or suspended tenant is refused, never created. For `me`,
//!   `validate`, `logout` and `change-password` the access token's `tenantId`, which every
//!   other source must agree with.
//! - Lifetimes: access token 15 minutes; session and refresh token 30 days; verification token
//!   24 hours; reset token 1 hour.
//! - Every bad credential or token is the one uniform 401 ([`ApiError::UserUnauthorized`]).

pub mod jwt;
pub mod mail;
pub mod onboarding;
pub mod password;
pub mod store;

use http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::http::{
    header_str, json as json_response, json_object, ApiError, Fields, Request, Response,
};
use crate::keys::{self, KeyHasher};
use crate::model::{rfc3339, TenantRecord};
use crate::ports::{Ports, StorageError};
use jwt::{AccessClaims, JwtSecrets};
use store::{RefreshRecord, SessionRecord, TokenKind, UserRecord};

/// Session and refresh-token lifetime: 30 days.
pub const SESSION_TTL_MS: i64 = 30 * 24 * 3600 * 1000;

/// The routes under `/v1/auth/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum UserRoute {
    Register,
    Login,
    Refresh,
    Logout,
    Me,
    Validate,
    ChangePassword,
    VerifyEmail,
    ResendVerification,
    ForgotPassword,
    ResetPassword,
}

const GET: &[Method] = &[Method::GET, Method::HEAD];
const POST: &[Method] = &[Method::POST];

impl UserRoute {
    pub fn parse(segment: &str) -> Option<Self> {
        Some(match segment {
            "register" => UserRoute::Register,
            "login" => UserRoute::Login,
            "refresh" => UserRoute::Refresh,
            "logout" => UserRoute::Logout,
            "me" => UserRoute::Me,
            "validate" => UserRoute::Validate,
            "change-password" => UserRoute::ChangePassword,
            "verify-email" => UserRoute::VerifyEmail,
            "resend-verification" => UserRoute::ResendVerification,
            "forgot-password" => UserRoute::ForgotPassword,
            "reset-password" => UserRoute::ResetPassword,
            _ => return None,
        })
    }

    /// Allowed methods and the `Allow` header.
    pub fn methods(self) -> (&'static [Method], &'static str) {
        match self {
            UserRoute::Me | UserRoute::Validate => (GET, "GET, HEAD"),
            _ => (POST, "POST"),
        }
    }

    /// Whether the route authenticates with an access token (else with the tenant's routing).
    pub fn uses_access_token(self) -> bool {
        matches!(
            self,
            UserRoute::Me | UserRoute::Validate | UserRoute::Logout | UserRoute::ChangePassword
        )
    }
}

/// A change worth an audit record: `user.registered`, `user.logged_out`,
/// `user.password_changed`, `user.password_reset`, `user.email_verified`,
/// `user.refresh_reuse_detected`. Never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserEvent {
    pub action: &'static str,
    pub user_id: String,
}

/// What a handler may touch.
pub struct Ctx<'a> {
    pub ports: Ports<'a>,
    pub hasher: &'a KeyHasher,
    pub secrets: &'a JwtSecrets,
    pub tenant: &'a TenantRecord,
    /// Where argon2 runs (the host's bounded pool).
    pub passwords: &'a dyn password::PasswordWork,
    /// The change the request made, for the tenant's audit log (set even when the request
    /// ends in an error, as a detected refresh-token reuse does).
    pub event: std::cell::RefCell<Option<UserEvent>>,
}

impl Ctx<'_> {
    fn record(&self, action: &'static str, user_id: &str) {
        *self.event.borrow_mut() = Some(UserEvent {
            action,
            user_id: user_id.to_owned(),
        });
    }
    fn now(&self) -> i64 {
        self.ports.clock.now_ms()
    }
    fn tid(&self) -> &str {
        &self.tenant.id
    }
    fn random_id(&self, prefix: &str) -> String {
        format!("{prefix}:{}", keys::random_hex(16, self.ports.entropy))
    }
    /// Hashes a new password. The shared storage is let go first: nothing else waits on it
    /// while argon2 runs.
    fn hash_password(&self, password: &str) -> Result<String, ApiError> {
        self.ports.db.pause();
        password::hash(self.passwords, password, self.ports.entropy)
    }
    /// The work of a verification, for an address without an account.
    fn verify_nothing(&self, password: &str) -> Result<(), ApiError> {
        self.ports.db.pause();
        password::verify_nothing(self.passwords, password)
    }
    /// Verifies a password, with the same work whether or not `stored` is a usable hash.
    fn verify_password(&self, password: &str, stored: &str) -> Result<bool, ApiError> {
        self.ports.db.pause();
        password::verify(self.passwords, password, stored)
    }
}

/// Shortest time between two reset mails to one account: a flood of `forgot-password` calls
/// queues one mail per interval, not one per call.
pub const RESET_MAIL_INTERVAL_MS: i64 = 60_000;

/// Runs one end-user auth request for the tenant in `ctx`.
pub fn handle(ctx: &Ctx, route: UserRoute, req: &Request) -> Result<Response, ApiError> {
    match route {
        UserRoute::Register => register(ctx, req),
        UserRoute::Login => login(ctx, req),
        UserRoute::Refresh => refresh(ctx, req),
        UserRoute::Logout => logout(ctx, req),
        UserRoute::Me => me(ctx, req),
        UserRoute::Validate => validate(ctx, req),
        UserRoute::ChangePassword => change_password(ctx, req),
        UserRoute::VerifyEmail => verify_email(ctx, req),
        UserRoute::ResendVerification => resend_verification(ctx, req),
        UserRoute::ForgotPassword => forgot_password(ctx, req),
        UserRoute::ResetPassword => reset_password(ctx, req),
    }
}

/// Lowercased, trimmed, and shaped like `local@domain.tld`.
pub fn normalise_email(raw: &str) -> Option<String> {
    let e = raw.trim().to_lowercase();
    if e.len() > 254 || e.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    let (local, domain) = e.split_once('@')?;
    let (host, tld) = domain.rsplit_once('.')?;
    let ok = !local.is_empty()
        && local.len() <= 64
        && !domain.contains('@')
        && !host.is_empty()
        && !tld.is_empty()
        && !domain.starts_with('.')
        && !domain.contains("..");
    ok.then_some(e)
}

fn email_field(f: &Fields) -> Result<String, ApiError> {
    let raw = f.req_str("email")?;
    normalise_email(&raw).ok_or_else(|| ApiError::field("email", "must be an email address"))
}

fn user_json(u: &UserRecord) -> Value {
    json!({
        "id": u.id,
        "email": u.email,
        "name": u.name,
        "username": u.username,
        "emailVerified": u.email_verified,
        "tenantId": u.tenant_id,
        "createdAt": rfc3339(u.created_at),
    })
}

fn message(status: StatusCode, text: &str) -> Response {
    json_response(status, &json!({"success": true, "message": text}))
}

/// A new opaque secret token: `<prefix>_` plus 43 base62 characters (about 256 bits).
fn new_secret(ctx: &Ctx, prefix: &str) -> String {
    format!("{prefix}_{}", keys::random_base62(43, ctx.ports.entropy))
}

/// What a new session hands out.
struct Issued {
    session: SessionRecord,
    access_token: String,
    refresh_token: String,
}

fn access_claims(ctx: &Ctx, user_id: &str, session_id: &str) -> AccessClaims {
    let now = ctx.now().div_euclid(1000);
    AccessClaims {
        sub: user_id.to_owned(),
        tenant_id: ctx.tid().to_owned(),
        jti: keys::random_hex(16, ctx.ports.entropy),
        iat: now,
        exp: now + jwt::ACCESS_TTL_SECONDS,
        nbf: Some(now),
        iss: jwt::ISSUER.into(),
        aud: ctx.tid().to_owned(),
        token_type: jwt::ACCESS_TYPE.into(),
        sid: session_id.to_owned(),
    }
}

/// The rows of a new session (written by the caller, inside its transaction).
fn new_session(ctx: &Ctx, user_id: &str) -> (SessionRecord, RefreshRecord, String) {
    let now = ctx.now();
    let session = SessionRecord {
        id: ctx.random_id("session"),
        user_id: user_id.to_owned(),
        family_id: ctx.random_id("family"),
        created_at: now,
        expires_at: now + SESSION_TTL_MS,
        revoked_at: None,
    };
    let refresh_token = new_secret(ctx, "rt");
    let refresh = RefreshRecord {
        id: ctx.random_id("refresh"),
        user_id: user_id.to_owned(),
        session_id: session.id.clone(),
        family_id: session.family_id.clone(),
        expires_at: session.expires_at,
        consumed_at: None,
        revoked_at: None,
    };
    (session, refresh, refresh_token)
}

fn write_session(
    ctx: &Ctx,
    db: &dyn crate::ports::Sql,
    req: &Request,
    session: &SessionRecord,
    refresh: &RefreshRecord,
    refresh_token: &str,
) -> Result<(), StorageError> {
    let clip = |v: &str, n: usize| v.chars().take(n).collect::<String>();
    let ip = header_str(req, "cf-connecting-ip")
        .or_else(|| header_str(req, "x-forwarded-for"))
        .map(|v| clip(v, 100));
    let ua = header_str(req, "user-agent").map(|v| clip(v, 512));
    store::insert_session(db, ctx.tid(), session, ip.as_deref(), ua.as_deref())?;
    store::insert_refresh(
        db,
        ctx.tid(),
        refresh,
        &ctx.hasher.hash(refresh_token),
        ctx.now(),
    )
}

fn issued_json(user: &UserRecord, issued: &Issued) -> Value {
    json!({
        "user": user_json(user),
        "accessToken": issued.access_token,
        "refreshToken": issued.refresh_token,
        "tokenType": "Bearer",
        "expiresIn": jwt::ACCESS_TTL_SECONDS,
        "session": {
            "id": issued.session.id,
            "expiresAt": rfc3339(issued.session.expires_at),
        },
    })
}

fn register(ctx: &Ctx, req: &Request) -> Result<Response, ApiError> {
    let f = Fields::new(
        json_object(req, false)?,
        &["email", "password", "name", "username"],
    )?;
    let email = email_field(&f)?;
    let password = f.req_str("password")?;
    password::check_strength("password", &password)?;
    let name = f.text("name", 200, false)?;
    let username = f.text("username", 100, false)?;
    // A taken address is refused before any hashing (and checked again when writing).
    if store::find_user_by_email(ctx.ports.db, ctx.tid(), &email)?.is_some() {
        return Err(ApiError::Conflict(
            "An account with this email already exists.",
        ));
    }
    let password_hash = ctx.hash_password(&password)?;
    let now = ctx.now();
    let user = UserRecord {
        id: ctx.random_id("user"),
        tenant_id: ctx.tid().to_owned(),
        email: email.clone(),
        username,
        name,
        password_hash,
        email_verified: false,
        status: store::UserStatus::Active,
        created_at: now,
        updated_at: now,
        last_login_at: Some(now),
    };
    let (session, refresh, refresh_token) = new_session(ctx, &user.id);
    let (seed, verify_token) = mail::new_code(ctx.ports.entropy, ctx.hasher, "ev");
    let mail = mail::verification(
        ctx.ports.entropy,
        ctx.tid(),
        &ctx.tenant.name,
        &email,
        &seed,
    );
    let mut duplicate = false;
    ctx.ports
        .db
        .transaction(&mut |db| {
            if store::find_user_by_email(db, ctx.tid(), &email)?.is_some() {
                duplicate = true;
                return Ok(());
            }
            store::insert_user(db, &user)?;
            write_session(ctx, db, req, &session, &refresh, &refresh_token)?;
            store::replace_user_token(
                db,
                ctx.tid(),
                &user.id,
                TokenKind::VerifyEmail,
                &ctx.hasher.hash(&verify_token),
                now,
            )?;
            mail::enqueue(db, &mail, now)
        })
        .map_err(|e| match e {
            StorageError::Constraint(_) => {
                ApiError::Conflict("An account with this email already exists.")
            }
            _ => ApiError::Internal,
        })?;
    if duplicate {
        return Err(ApiError::Conflict(
            "An account with this email already exists.",
        ));
    }
    ctx.record("user.registered", &user.id);
    let access_token = jwt::sign(
        ctx.ports.db,
        ctx.secrets,
        &access_claims(ctx, &user.id, &session.id),
    )?;
    let issued = Issued {
        session,
        access_token,
        refresh_token,
    };
    Ok(json_response(
        StatusCode::CREATED,
        &issued_json(&user, &issued),
    ))
}

fn login(ctx: &Ctx, req: &Request) -> Result<Response, ApiError> {
    let f = Fields::new(json_object(req, false)?, &["email", "password"])?;
    let password = f.req_str("password")?;
    // A malformed address is simply an unknown user: the same 401, the same work.
    let email = normalise_email(&f.req_str("email")?).unwrap_or_default();
    let found = if email.is_empty() {
        None
    } else {
        store::find_user_by_email(ctx.ports.db, ctx.tid(), &email)?
    };
    let Some(user) = found else {
        ctx.verify_nothing(&password)?;
        return Err(ApiError::UserUnauthorized);
    };
    // The password is checked first, so the status of an account is told only to its owner.
    // An over-long password and an account without one cost the same verification.
    if !ctx.verify_password(&password, &user.password_hash)?
        || user.status != store::UserStatus::Active
    {
        return Err(ApiError::UserUnauthorized);
    }
    let (session, refresh, refresh_token) = new_session(ctx, &user.id);
    let now = ctx.now();
    ctx.ports.db.transaction(&mut |db| {
        write_session(ctx, db, req, &session, &refresh, &refresh_token)?;
        store::touch_login(db, ctx.tid(), &user.id, now)
    })?;
    let access_token = jwt::sign(
        ctx.ports.db,
        ctx.secrets,
        &access_claims(ctx, &user.id, &session.id),
    )?;
    let issued = Issued {
        session,
        access_token,
        refresh_token,
    };
    Ok(json_response(StatusCode::OK, &issued_json(&user, &issued)))
}

fn refresh(ctx: &Ctx, req: &Request) -> Result<Response, ApiError> {
    let f = Fields::new(json_object(req, false)?, &["refreshToken"])?;
    let token = f.req_str("refreshToken")?;
    let now = ctx.now();
    let db = ctx.ports.db;
    let row = store::find_refresh(db, ctx.tid(), &ctx.hasher.hash(&token))?
        .ok_or(ApiError::UserUnauthorized)?;
    if row.consumed_at.is_some() {
        // Reuse of a consumed token: someone else holds a copy. End the whole family.
        store::revoke_family(db, ctx.tid(), &row.family_id, now)?;
        ctx.record("user.refresh_reuse_detected", &row.user_id);
        return Err(ApiError::UserUnauthorized);
    }
    if row.revoked_at.is_some() || row.expires_at <= now {
        return Err(ApiError::UserUnauthorized);
    }
    let session = store::find_session(db, ctx.tid(), &row.session_id)?
        .filter(|s| s.usable_at(now))
        .ok_or(ApiError::UserUnauthorized)?;
    let user = store::find_user(db, ctx.tid(), &row.user_id)?
        .filter(|u| u.status == store::UserStatus::Active)
        .ok_or(ApiError::UserUnauthorized)?;
    let new_token = new_secret(ctx, "rt");
    let next = RefreshRecord {
        id: ctx.random_id("refresh"),
        consumed_at: None,
        revoked_at: None,
        ..row.clone()
    };
    let mut consumed = false;
    db.transaction(&mut |db| {
        consumed = store::consume_refresh(db, ctx.tid(), &row.id, now)?;
        if consumed {
            store::insert_refresh(db, ctx.tid(), &next, &ctx.hasher.hash(&new_token), now)?;
        }
        Ok(())
    })?;
    if !consumed {
        return Err(ApiError::UserUnauthorized);
    }
    let access_token = jwt::sign(db, ctx.secrets, &access_claims(ctx, &user.id, &session.id))?;
    let issued = Issued {
        session,
        access_token,
        refresh_token: new_token,
    };
    Ok(json_response(StatusCode::OK, &issued_json(&user, &issued)))
}

/// The bearer token of the request.
fn bearer(req: &Request) -> Option<&str> {
    let value = header_str(req, http::header::AUTHORIZATION.as_str())?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// An authenticated end user: a valid access token of this tenant, not blacklisted, whose
/// session is live and whose account is active.
struct Authed {
    claims: AccessClaims,
    user: UserRecord,
    session: SessionRecord,
}

fn authenticate(ctx: &Ctx, req: &Request) -> Result<Authed, ApiError> {
    let token = bearer(req).ok_or(ApiError::UserUnauthorized)?;
    let now = ctx.now();
    let db = ctx.ports.db;
    let claims = jwt::verify(db, ctx.secrets, token, ctx.tid(), now)?;
    if store::is_blacklisted(db, &claims.jti)? {
        return Err(ApiError::UserUnauthorized);
    }
    let session = store::find_session(db, ctx.tid(), &claims.sid)?
        .filter(|s| s.usable_at(now) && s.user_id == claims.sub)
        .ok_or(ApiError::UserUnauthorized)?;
    let user = store::find_user(db, ctx.tid(), &claims.sub)?
        .filter(|u| u.status == store::UserStatus::Active)
        .ok_or(ApiError::UserUnauthorized)?;
    Ok(Authed {
        claims,
        user,
        session,
    })
}

fn me(ctx: &Ctx, req: &Request) -> Result<Response, ApiError> {
    let a = authenticate(ctx, req)?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"user": user_json(&a.user)}),
    ))
}

fn validate(ctx: &Ctx, req: &Request) -> Result<Response, ApiError> {
    let a = authenticate(ctx, req)?;
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "valid": true,
            "user": {"id": a.user.id, "email": a.user.email, "name": a.user.name, "tenantId": a.user.tenant_id},
            "session": {"id": a.session.id, "expiresAt": rfc3339(a.session.expires_at)},
            "expiresAt": rfc3339(a.claims.exp * 1000),
        }),
    ))
}

/// Puts the token on the blacklist until it would have expired anyway.
fn blacklist_token(
    ctx: &Ctx,
    db: &dyn crate::ports::Sql,
    claims: &AccessClaims,
    reason: &str,
) -> Result<(), StorageError> {
    store::blacklist(
        db,
        ctx.tid(),
        &claims.jti,
        claims.exp * 1000,
        reason,
        ctx.now(),
    )
}

fn logout(ctx: &Ctx, req: &Request) -> Result<Response, ApiError> {
    let a = authenticate(ctx, req)?;
    if !req.body().is_empty() {
        // The session's refresh tokens end with it, so a refreshToken field needs no use.
        Fields::new(json_object(req, true)?, &["refreshToken"])?;
    }
    let now = ctx.now();
    ctx.ports.db.transaction(&mut |db| {
        blacklist_token(ctx, db, &a.claims, "logout")?;
        store::revoke_family(db, ctx.tid(), &a.session.family_id, now)
    })?;
    ctx.record("user.logged_out", &a.user.id);
    Ok(message(StatusCode::OK, "Logged out successfully"))
}

fn change_password(ctx: &Ctx, req: &Request) -> Result<Response, ApiError> {
    let a = authenticate(ctx, req)?;
    let f = Fields::new(
        json_object(req, false)?,
        &["currentPassword", "newPassword"],
    )?;
    let current = f.req_str("currentPassword")?;
    let new = f.req_str("newPassword")?;
    password::check_strength("newPassword", &new)?;
    if !ctx.verify_password(&current, &a.user.password_hash)? {
        return Err(ApiError::field(
            "currentPassword",
            "is not the current password",
        ));
    }
    let hash = ctx.hash_password(&new)?;
    let now = ctx.now();
    ctx.ports.db.transaction(&mut |db| {
        store::set_password(db, ctx.tid(), &a.user.id, &hash, now)?;
        blacklist_token(ctx, db, &a.claims, "password_changed")?;
        store::revoke_user(db, ctx.tid(), &a.user.id, now)
    })?;
    ctx.record("user.password_changed", &a.user.id);
    Ok(message(StatusCode::OK, "Password changed successfully"))
}

fn invalid_token() -> ApiError {
    ApiError::field("token", "is invalid, expired or already used")
}

fn verify_email(ctx: &Ctx, req: &Request) -> Result<Response, ApiError> {
    let f = Fields::new(json_object(req, false)?, &["token"])?;
    let token = f.req_str("token")?;
    let now = ctx.now();
    let mut verified = None;
    ctx.ports.db.transaction(&mut |db| {
        let hash = ctx.hasher.hash(&token);
        verified = store::use_user_token(db, ctx.tid(), TokenKind::VerifyEmail, &hash, now)?;
        if let Some(user_id) = &verified {
            store::set_verified(db, ctx.tid(), user_id, now)?;
        }
        Ok(())
    })?;
    let user_id = verified.ok_or_else(invalid_token)?;
    ctx.record("user.email_verified", &user_id);
    Ok(message(StatusCode::OK, "Email verified successfully"))
}

/// The one answer of `resend-verification`, whatever the account's state.
pub const RESEND_MESSAGE: &str =
    "If the account exists and is not verified yet, a verification email has been sent";
/// The one answer of `forgot-password`, whatever the account's state.
pub const FORGOT_MESSAGE: &str = "If an account exists, a password reset email has been sent";

fn resend_verification(ctx: &Ctx, req: &Request) -> Result<Response, ApiError> {
    let f = Fields::new(json_object(req, false)?, &["email"])?;
    let email = email_field(&f)?;
    let now = ctx.now();
    if let Some(user) = store::find_user_by_email(ctx.ports.db, ctx.tid(), &email)? {
        if !user.email_verified && user.status == store::UserStatus::Active {
            let (seed, token) = mail::new_code(ctx.ports.entropy, ctx.hasher, "ev");
            let mail = mail::verification(
                ctx.ports.entropy,
                ctx.tid(),
                &ctx.tenant.name,
                &user.email,
                &seed,
            );
            ctx.ports.db.transaction(&mut |db| {
                store::replace_user_token(
                    db,
                    ctx.tid(),
                    &user.id,
                    TokenKind::VerifyEmail,
                    &ctx.hasher.hash(&token),
                    now,
                )?;
                mail::enqueue(db, &mail, now)
            })?;
        }
    }
    Ok(message(StatusCode::OK, RESEND_MESSAGE))
}

fn forgot_password(ctx: &Ctx, req: &Request) -> Result<Response, ApiError> {
    let f = Fields::new(json_object(req, false)?, &["email"])?;
    let email = email_field(&f)?;
    let now = ctx.now();
    if let Some(user) = store::find_user_by_email(ctx.ports.db, ctx.tid(), &email)? {
        let recent = store::newest_live_token_at(
            ctx.ports.db,
            ctx.tid(),
            &user.id,
            TokenKind::ResetPassword,
            now,
        )?
        .is_some_and(|at| now - at < RESET_MAIL_INTERVAL_MS);
        // Within the interval the mail already sent stands: the same answer, no new mail.
        if user.status == store::UserStatus::Active && !recent {
            let (seed, token) = mail::new_code(ctx.ports.entropy, ctx.hasher, "pr");
            let mail = mail::reset(
                ctx.ports.entropy,
                ctx.tid(),
                &ctx.tenant.name,
                &user.email,
                &seed,
            );
            ctx.ports.db.transaction(&mut |db| {
                store::replace_user_token(
                    db,
                    ctx.tid(),
                    &user.id,
                    TokenKind::ResetPassword,
                    &ctx.hasher.hash(&token),
                    now,
                )?;
                mail::enqueue(db, &mail, now)
            })?;
        }
    }
    Ok(message(StatusCode::OK, FORGOT_MESSAGE))
}

fn reset_password(ctx: &Ctx, req: &Request) -> Result<Response, ApiError> {
    let f = Fields::new(json_object(req, false)?, &["token", "newPassword"])?;
    let token = f.req_str("token")?;
    let new = f.req_str("newPassword")?;
    // Checked before the token is used, so a weak password does not burn the token.
    password::check_strength("newPassword", &new)?;
    let now = ctx.now();
    let token_hash = ctx.hasher.hash(&token);
    // The token is checked before the new password is hashed: a bogus token costs no argon2.
    store::find_user_token(
        ctx.ports.db,
        ctx.tid(),
        TokenKind::ResetPassword,
        &token_hash,
        now,
    )?
    .ok_or_else(invalid_token)?;
    let hash = ctx.hash_password(&new)?;
    let mut done = None;
    ctx.ports.db.transaction(&mut |db| {
        done = store::use_user_token(db, ctx.tid(), TokenKind::ResetPassword, &token_hash, now)?;
        if let Some(user_id) = &done {
            store::set_password(db, ctx.tid(), user_id, &hash, now)?;
            // The token came by mail, so the address is proven too.
            store::set_verified(db, ctx.tid(), user_id, now)?;
            // Every session and refresh token of the user ends; their access tokens are
            // refused from the next request on because their session is revoked.
            store::revoke_user(db, ctx.tid(), user_id, now)?;
        }
        Ok(())
    })?;
    let user_id = done.ok_or_else(invalid_token)?;
    ctx.record("user.password_reset", &user_id);
    Ok(message(StatusCode::OK, "Password reset successfully"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_lowercased_and_checked() {
        assert_eq!(
            normalise_email(" User@Example.COM ").as_deref(),
            Some("user@example.com")
        );
        for bad in [
            "", "a", "a@b", "@b.c", "a@.c", "a@b.", "a b@c.d", "a@b@c.d", "a@b..c",
        ] {
            assert!(normalise_email(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn routes_parse_with_their_methods() {
        assert_eq!(UserRoute::parse("me"), Some(UserRoute::Me));
        assert_eq!(UserRoute::Me.methods().1, "GET, HEAD");
        assert_eq!(UserRoute::parse("register").unwrap().methods().1, "POST");
        assert!(UserRoute::parse("users").is_none());
        assert!(UserRoute::Logout.uses_access_token());
        assert!(!UserRoute::Refresh.uses_access_token());
    }
}
