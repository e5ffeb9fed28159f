//! The routes of an access token's holder: `me`, `validate`, `logout` and `change-password`.
//! Each authenticates the bearer token first ([`authenticate`]: signature, blacklist, live
//! session, active account); logout and a password change blacklist the token and end the
//! session's refresh tokens.

use auth_contract::{SessionRef, UserMe, UserValidation, ValidatedUser};
use http::StatusCode;

use super::jwt::{self, AccessClaims};
use super::store::{self, SessionRecord, UserRecord};
use super::{message, password, user_wire, Ctx};
use crate::http::{header_str, json_object, json_sorted, ApiError, Fields, Request, Response};
use crate::model::rfc3339;
use crate::ports::StorageError;

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

pub(super) fn me(ctx: &Ctx, req: &Request) -> Result<Response, ApiError> {
    let a = authenticate(ctx, req)?;
    Ok(json_sorted(
        StatusCode::OK,
        &UserMe {
            user: user_wire(&a.user),
        },
    ))
}

pub(super) fn validate(ctx: &Ctx, req: &Request) -> Result<Response, ApiError> {
    let a = authenticate(ctx, req)?;
    Ok(json_sorted(
        StatusCode::OK,
        &UserValidation {
            valid: true,
            user: ValidatedUser {
                id: a.user.id,
                email: a.user.email,
                name: a.user.name,
                tenant_id: a.user.tenant_id,
            },
            session: SessionRef {
                id: a.session.id,
                expires_at: rfc3339(a.session.expires_at),
            },
            expires_at: rfc3339(a.claims.exp * 1000),
        },
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

pub(super) fn logout(ctx: &Ctx, req: &Request) -> Result<Response, ApiError> {
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

pub(super) fn change_password(ctx: &Ctx, req: &Request) -> Result<Response, ApiError> {
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
