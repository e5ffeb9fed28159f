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

//!
//! The routes are grouped by job: [`sessions`] opens and renews sessions (register, login,
//! refresh), [`access`] serves the holder of an access token (me, validate, logout,
//! change-password), [`recovery`] runs the mailed single-use tokens (verify-email,
//! resend-verification, forgot-password, reset-password). This file holds what they share:
//! the route table, the handler context and the answer shapes.

mod access;
pub mod jwt;
pub mod mail;
pub mod onboarding;
pub mod password;
mod recovery;
mod sessions;
pub mod store;

pub use recovery::{FORGOT_MESSAGE, RESEND_MESSAGE};

use auth_contract::{EndUser, UserMessage};
use http::{Method, StatusCode};

use crate::http::{json_sorted, ApiError, Fields, Request, Response};
use crate::keys::{self, KeyHasher};
use crate::model::{rfc3339, TenantRecord};
use crate::ports::Ports;
use jwt::JwtSecrets;
use store::UserRecord;

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
        UserRoute::Register => sessions::register(ctx, req),
        UserRoute::Login => sessions::login(ctx, req),
        UserRoute::Refresh => sessions::refresh(ctx, req),
        UserRoute::Logout => access::logout(ctx, req),
        UserRoute::Me => access::me(ctx, req),
        UserRoute::Validate => access::validate(ctx, req),
        UserRoute::ChangePassword => access::change_password(ctx, req),
        UserRoute::VerifyEmail => recovery::verify_email(ctx, req),
        UserRoute::ResendVerification => recovery::resend_verification(ctx, req),
        UserRoute::ForgotPassword => recovery::forgot_password(ctx, req),
        UserRoute::ResetPassword => recovery::reset_password(ctx, req),
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

fn user_wire(u: &UserRecord) -> EndUser {
    EndUser {
        id: u.id.clone(),
        email: u.email.clone(),
        name: u.name.clone(),
        username: u.username.clone(),
        email_verified: u.email_verified,
        tenant_id: u.tenant_id.clone(),
        created_at: rfc3339(u.created_at),
    }
}

fn message(status: StatusCode, text: &str) -> Response {
    json_sorted(
        status,
        &UserMessage {
            success: true,
            message: text.into(),
        },
    )
}

/// A new opaque secret token: `<prefix>_` plus 43 base62 characters (about 256 bits).
fn new_secret(ctx: &Ctx, prefix: &str) -> String {
    format!("{prefix}_{}", keys::random_base62(43, ctx.ports.entropy))
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
