//! The mailed single-use tokens: `verify-email`, `resend-verification`, `forgot-password` and
//! `reset-password`. The two mail-sending routes give one answer whatever the account's state,
//! so they never tell whether an address has an account.

use http::StatusCode;

use super::mail::OutboxMail;
use super::store::{self, TokenKind, UserRecord};
use super::{email_field, mail, message, password, Ctx, RESET_MAIL_INTERVAL_MS};
use crate::http::{json_object, ApiError, Fields, Request, Response};
use crate::ports::Entropy;

/// A kind of mailed code: the token it is stored as, the prefix its seed carries and the mail
/// that carries it.
struct MailedCode {
    kind: TokenKind,
    prefix: &'static str,
    compose: fn(&dyn Entropy, &str, &str, &str, &str) -> OutboxMail,
}

const VERIFY_EMAIL: MailedCode = MailedCode {
    kind: TokenKind::VerifyEmail,
    prefix: "ev",
    compose: mail::verification,
};

const RESET_PASSWORD: MailedCode = MailedCode {
    kind: TokenKind::ResetPassword,
    prefix: "pr",
    compose: mail::reset,
};

/// Replaces the user's live code of this kind with a new one and queues the mail that carries
/// it, in one transaction: no mail goes out for a code that was not stored, and the code itself
/// rests only in the mail (its keyed hash in the token row).
fn mail_a_new_code(
    ctx: &Ctx,
    user: &UserRecord,
    code: MailedCode,
    now: i64,
) -> Result<(), ApiError> {
    let (seed, token) = mail::new_code(ctx.ports.entropy, ctx.hasher, code.prefix);
    let mail = (code.compose)(
        ctx.ports.entropy,
        ctx.tid(),
        &ctx.tenant.name,
        &user.email,
        &seed,
    );
    ctx.ports.db.transaction(&mut |db| {
        let hash = ctx.hasher.hash(&token);
        store::replace_user_token(db, ctx.tid(), &user.id, code.kind, &hash, now)?;
        mail::enqueue(db, &mail, now)
    })?;
    Ok(())
}

fn invalid_token() -> ApiError {
    ApiError::field("token", "is invalid, expired or already used")
}

pub(super) fn verify_email(ctx: &Ctx, req: &Request) -> Result<Response, ApiError> {
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

pub(super) fn resend_verification(ctx: &Ctx, req: &Request) -> Result<Response, ApiError> {
    let f = Fields::new(json_object(req, false)?, &["email"])?;
    let email = email_field(&f)?;
    let now = ctx.now();
    if let Some(user) = store::find_user_by_email(ctx.ports.db, ctx.tid(), &email)? {
        if !user.email_verified && user.status == store::UserStatus::Active {
            mail_a_new_code(ctx, &user, VERIFY_EMAIL, now)?;
        }
    }
    Ok(message(StatusCode::OK, RESEND_MESSAGE))
}

pub(super) fn forgot_password(ctx: &Ctx, req: &Request) -> Result<Response, ApiError> {
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
            mail_a_new_code(ctx, &user, RESET_PASSWORD, now)?;
        }
    }
    Ok(message(StatusCode::OK, FORGOT_MESSAGE))
}

pub(super) fn reset_password(ctx: &Ctx, req: &Request) -> Result<Response, ApiError> {
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
