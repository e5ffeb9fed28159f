//! Opening and renewing sessions: `register` (a new account and its first session),
//! `login` and `refresh` (the rotating refresh token; a reused one ends its whole family).
//! Each hands out an access token, a refresh token and the session they belong to, in the one
//! shape [`issued_answer`] builds.

use auth_contract::{SessionRef, UserSession};
use http::StatusCode;

use super::jwt::{self, AccessClaims};
use super::store::{self, RefreshRecord, SessionRecord, TokenKind, UserRecord};
use super::SESSION_TTL_MS;
use super::{email_field, mail, new_secret, normalise_email, password, user_wire, Ctx};
use crate::http::{header_str, json_object, json_sorted, ApiError, Fields, Request, Response};
use crate::keys;
use crate::model::rfc3339;
use crate::ports::StorageError;

/// What a new session hands out.
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

/// Signs the session's access token and answers the new or renewed session (keys sorted, as
/// it has always gone out).
fn issue(
    ctx: &Ctx,
    status: StatusCode,
    user: &UserRecord,
    session: SessionRecord,
    refresh_token: String,
) -> Result<Response, ApiError> {
    let claims = access_claims(ctx, &user.id, &session.id);
    let access_token = jwt::sign(ctx.ports.db, ctx.secrets, &claims)?;
    Ok(json_sorted(
        status,
        &UserSession {
            user: user_wire(user),
            access_token,
            refresh_token,
            token_type: "Bearer".into(),
            expires_in: jwt::ACCESS_TTL_SECONDS,
            session: SessionRef {
                id: session.id,
                expires_at: rfc3339(session.expires_at),
            },
        },
    ))
}

pub(super) fn register(ctx: &Ctx, req: &Request) -> Result<Response, ApiError> {
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
    issue(ctx, StatusCode::CREATED, &user, session, refresh_token)
}

pub(super) fn login(ctx: &Ctx, req: &Request) -> Result<Response, ApiError> {
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
    issue(ctx, StatusCode::OK, &user, session, refresh_token)
}

pub(super) fn refresh(ctx: &Ctx, req: &Request) -> Result<Response, ApiError> {
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
    issue(ctx, StatusCode::OK, &user, session, new_token)
}
