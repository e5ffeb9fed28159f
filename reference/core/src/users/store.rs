//! SQL of end-user auth. Every function takes the tenant id and adds `tenant_id = ?` itself:
//! a user, session or token of another tenant is never found.

use crate::ports::{Row, Sql, SqlValue, StorageError};

/// An end user's account status (the `tenant_users.status` column: `active`, `suspended`, `deleted`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserStatus {
    Active,
    Suspended,
    Deleted,
}

impl UserStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            UserStatus::Active => "active",
            UserStatus::Suspended => "suspended",
            UserStatus::Deleted => "deleted",
        }
    }

    /// Reads the column. A value the schema's CHECK would refuse (a hand-edited row) reads as
    /// `Suspended`: such an account fails closed instead of failing the request.
    pub fn from_column(value: &str) -> Self {
        match value {
            "active" => UserStatus::Active,
            "deleted" => UserStatus::Deleted,
            _ => UserStatus::Suspended,
        }
    }
}

/// A row of `tenant_users`.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRecord {
    pub id: String,
    pub tenant_id: String,
    pub email: String,
    pub username: Option<String>,
    pub name: Option<String>,
    pub password_hash: String,
    pub email_verified: bool,
    pub status: UserStatus,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_login_at: Option<i64>,
}

const USER_COLUMNS: &str = "id, tenant_id, email, username, name, password_hash, email_verified, \
     status, created_at, updated_at, last_login_at";

fn s(row: &Row, i: usize) -> String {
    row.get(i)
        .and_then(SqlValue::as_str)
        .unwrap_or_default()
        .to_owned()
}
fn os(row: &Row, i: usize) -> Option<String> {
    row.get(i).and_then(SqlValue::as_str).map(str::to_owned)
}
fn n(row: &Row, i: usize) -> i64 {
    row.get(i).and_then(SqlValue::as_i64).unwrap_or(0)
}
fn on(row: &Row, i: usize) -> Option<i64> {
    row.get(i).and_then(SqlValue::as_i64)
}

fn user_from_row(r: &Row) -> UserRecord {
    UserRecord {
        id: s(r, 0),
        tenant_id: s(r, 1),
        email: s(r, 2),
        username: os(r, 3),
        name: os(r, 4),
        password_hash: s(r, 5),
        email_verified: n(r, 6) != 0,
        status: UserStatus::from_column(&s(r, 7)),
        created_at: n(r, 8),
        updated_at: n(r, 9),
        last_login_at: on(r, 10),
    }
}

pub fn find_user_by_email(
    db: &dyn Sql,
    tenant_id: &str,
    email: &str,
) -> Result<Option<UserRecord>, StorageError> {
    Ok(db
        .query(
            &format!("SELECT {USER_COLUMNS} FROM tenant_users WHERE tenant_id = ? AND email = ?"),
            &[tenant_id.into(), email.into()],
        )?
        .first()
        .map(user_from_row))
}

pub fn find_user(
    db: &dyn Sql,
    tenant_id: &str,
    id: &str,
) -> Result<Option<UserRecord>, StorageError> {
    Ok(db
        .query(
            &format!("SELECT {USER_COLUMNS} FROM tenant_users WHERE tenant_id = ? AND id = ?"),
            &[tenant_id.into(), id.into()],
        )?
        .first()
        .map(user_from_row))
}

pub fn insert_user(db: &dyn Sql, u: &UserRecord) -> Result<(), StorageError> {
    db.execute(
        &format!(
            "INSERT INTO tenant_users ({USER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ),
        &[
            u.id.as_str().into(),
            u.tenant_id.as_str().into(),
            u.email.as_str().into(),
            u.username.clone().into(),
            u.name.clone().into(),
            u.password_hash.as_str().into(),
            i64::from(u.email_verified).into(),
            u.status.as_str().into(),
            u.created_at.into(),
            u.updated_at.into(),
            u.last_login_at.into(),
        ],
    )
    .map(drop)
}

pub fn set_password(
    db: &dyn Sql,
    tenant_id: &str,
    user_id: &str,
    hash: &str,
    now: i64,
) -> Result<(), StorageError> {
    db.execute(
        "UPDATE tenant_users SET password_hash = ?, updated_at = ? WHERE tenant_id = ? AND id = ?",
        &[hash.into(), now.into(), tenant_id.into(), user_id.into()],
    )
    .map(drop)
}

pub fn set_verified(
    db: &dyn Sql,
    tenant_id: &str,
    user_id: &str,
    now: i64,
) -> Result<(), StorageError> {
    db.execute(
        "UPDATE tenant_users SET email_verified = 1, updated_at = ? WHERE tenant_id = ? AND id = ?",
        &[now.into(), tenant_id.into(), user_id.into()],
    )
    .map(drop)
}

pub fn touch_login(
    db: &dyn Sql,
    tenant_id: &str,
    user_id: &str,
    now: i64,
) -> Result<(), StorageError> {
    db.execute(
        "UPDATE tenant_users SET last_login_at = ? WHERE tenant_id = ? AND id = ?",
        &[now.into(), tenant_id.into(), user_id.into()],
    )
    .map(drop)
}

// ---- sessions and refresh tokens ----

/// A row of `tenant_user_sessions`.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    pub id: String,
    pub user_id: String,
    pub family_id: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

impl SessionRecord {
    pub fn usable_at(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at > now
    }
}

pub fn insert_session(
    db: &dyn Sql,
    tenant_id: &str,
    s: &SessionRecord,
    ip: Option<&str>,
    user_agent: Option<&str>,
) -> Result<(), StorageError> {
    db.execute(
        "INSERT INTO tenant_user_sessions (id, tenant_id, user_id, family_id, ip_address, \
         user_agent, created_at, expires_at, last_activity_at, revoked_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
        &[
            s.id.as_str().into(),
            tenant_id.into(),
            s.user_id.as_str().into(),
            s.family_id.as_str().into(),
            ip.into(),
            user_agent.into(),
            s.created_at.into(),
            s.expires_at.into(),
            s.created_at.into(),
        ],
    )
    .map(drop)
}

pub fn find_session(
    db: &dyn Sql,
    tenant_id: &str,
    id: &str,
) -> Result<Option<SessionRecord>, StorageError> {
    Ok(db
        .query(
            "SELECT id, user_id, family_id, created_at, expires_at, revoked_at \
             FROM tenant_user_sessions WHERE tenant_id = ? AND id = ?",
            &[tenant_id.into(), id.into()],
        )?
        .first()
        .map(|r| SessionRecord {
            id: s(r, 0),
            user_id: s(r, 1),
            family_id: s(r, 2),
            created_at: n(r, 3),
            expires_at: n(r, 4),
            revoked_at: on(r, 5),
        }))
}

/// Revokes one refresh-token family: its tokens and its sessions.
pub fn revoke_family(
    db: &dyn Sql,
    tenant_id: &str,
    family_id: &str,
    now: i64,
) -> Result<(), StorageError> {
    db.execute(
        "UPDATE refresh_tokens SET revoked_at = ? \
         WHERE tenant_id = ? AND family_id = ? AND revoked_at IS NULL",
        &[now.into(), tenant_id.into(), family_id.into()],
    )?;
    db.execute(
        "UPDATE tenant_user_sessions SET revoked_at = ? \
         WHERE tenant_id = ? AND family_id = ? AND revoked_at IS NULL",
        &[now.into(), tenant_id.into(), family_id.into()],
    )
    .map(drop)
}

/// Revokes every session and refresh token of a user (password change and reset).
pub fn revoke_user(
    db: &dyn Sql,
    tenant_id: &str,
    user_id: &str,
    now: i64,
) -> Result<(), StorageError> {
    db.execute(
        "UPDATE refresh_tokens SET revoked_at = ? \
         WHERE tenant_id = ? AND user_id = ? AND revoked_at IS NULL",
        &[now.into(), tenant_id.into(), user_id.into()],
    )?;
    db.execute(
        "UPDATE tenant_user_sessions SET revoked_at = ? \
         WHERE tenant_id = ? AND user_id = ? AND revoked_at IS NULL",
        &[now.into(), tenant_id.into(), user_id.into()],
    )
    .map(drop)
}

/// A row of `refresh_tokens` (the token itself is never stored, only its keyed hash).
#[derive(Debug, Clone, PartialEq)]
pub struct RefreshRecord {
    pub id: String,
    pub user_id: String,
    pub session_id: String,
    pub family_id: String,
    pub expires_at: i64,
    pub consumed_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

pub fn insert_refresh(
    db: &dyn Sql,
    tenant_id: &str,
    r: &RefreshRecord,
    token_hash: &str,
    now: i64,
) -> Result<(), StorageError> {
    db.execute(
        "INSERT INTO refresh_tokens (id, tenant_id, user_id, session_id, family_id, token_hash, \
         created_at, expires_at, consumed_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL)",
        &[
            r.id.as_str().into(),
            tenant_id.into(),
            r.user_id.as_str().into(),
            r.session_id.as_str().into(),
            r.family_id.as_str().into(),
            token_hash.into(),
            now.into(),
            r.expires_at.into(),
        ],
    )
    .map(drop)
}

pub fn find_refresh(
    db: &dyn Sql,
    tenant_id: &str,
    token_hash: &str,
) -> Result<Option<RefreshRecord>, StorageError> {
    Ok(db
        .query(
            "SELECT id, user_id, session_id, family_id, expires_at, consumed_at, revoked_at \
             FROM refresh_tokens WHERE tenant_id = ? AND token_hash = ?",
            &[tenant_id.into(), token_hash.into()],
        )?
        .first()
        .map(|r| RefreshRecord {
            id: s(r, 0),
            user_id: s(r, 1),
            session_id: s(r, 2),
            family_id: s(r, 3),
            expires_at: n(r, 4),
            consumed_at: on(r, 5),
            revoked_at: on(r, 6),
        }))
}

/// Marks a refresh token consumed; answers false when it already was (compare-and-set).
pub fn consume_refresh(
    db: &dyn Sql,
    tenant_id: &str,
    id: &str,
    now: i64,
) -> Result<bool, StorageError> {
    Ok(db.execute(
        "UPDATE refresh_tokens SET consumed_at = ? \
         WHERE tenant_id = ? AND id = ? AND consumed_at IS NULL AND revoked_at IS NULL",
        &[now.into(), tenant_id.into(), id.into()],
    )? == 1)
}

// ---- single-use email tokens ----

/// The two kinds of email token. They never stand in for each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    VerifyEmail,
    ResetPassword,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::VerifyEmail => "verify_email",
            TokenKind::ResetPassword => "reset_password",
        }
    }
    /// Lifetime: 24 hours to verify an address, 1 hour to reset a password.
    pub fn ttl_ms(self) -> i64 {
        match self {
            TokenKind::VerifyEmail => 24 * 3600 * 1000,
            TokenKind::ResetPassword => 3600 * 1000,
        }
    }
}

/// Stores a new token of `kind` for the user and ends any earlier unused one of that kind
/// (and only that kind).
pub fn replace_user_token(
    db: &dyn Sql,
    tenant_id: &str,
    user_id: &str,
    kind: TokenKind,
    token_hash: &str,
    now: i64,
) -> Result<(), StorageError> {
    db.execute(
        "UPDATE user_tokens SET used_at = ? \
         WHERE tenant_id = ? AND user_id = ? AND kind = ? AND used_at IS NULL",
        &[
            now.into(),
            tenant_id.into(),
            user_id.into(),
            kind.as_str().into(),
        ],
    )?;
    insert_user_token(db, tenant_id, user_id, kind, token_hash, now, kind.ttl_ms())
}

/// Stores a token of `kind` valid for `ttl_ms`.
pub fn insert_user_token(
    db: &dyn Sql,
    tenant_id: &str,
    user_id: &str,
    kind: TokenKind,
    token_hash: &str,
    now: i64,
    ttl_ms: i64,
) -> Result<(), StorageError> {
    db.execute(
        "INSERT INTO user_tokens (token_hash, tenant_id, user_id, kind, created_at, expires_at, used_at) \
         VALUES (?, ?, ?, ?, ?, ?, NULL)",
        &[
            token_hash.into(),
            tenant_id.into(),
            user_id.into(),
            kind.as_str().into(),
            now.into(),
            (now + ttl_ms).into(),
        ],
    )
    .map(drop)
}

/// The user a live, unused token of `kind` belongs to, without using it: checked before any
/// expensive work the token would authorise (hashing a new password).
pub fn find_user_token(
    db: &dyn Sql,
    tenant_id: &str,
    kind: TokenKind,
    token_hash: &str,
    now: i64,
) -> Result<Option<String>, StorageError> {
    Ok(db
        .query(
            "SELECT user_id FROM user_tokens WHERE tenant_id = ? AND kind = ? AND token_hash = ? \
             AND used_at IS NULL AND expires_at > ?",
            &[
                tenant_id.into(),
                kind.as_str().into(),
                token_hash.into(),
                now.into(),
            ],
        )?
        .first()
        .map(|r| s(r, 0)))
}

/// When the newest token of `kind` for this user was issued, if any is still live: a
/// flood of `forgot-password` calls sends one mail per interval, not one per call.
pub fn newest_live_token_at(
    db: &dyn Sql,
    tenant_id: &str,
    user_id: &str,
    kind: TokenKind,
    now: i64,
) -> Result<Option<i64>, StorageError> {
    Ok(db
        .query(
            "SELECT MAX(created_at) FROM user_tokens WHERE tenant_id = ? AND user_id = ? \
             AND kind = ? AND used_at IS NULL AND expires_at > ?",
            &[
                tenant_id.into(),
                user_id.into(),
                kind.as_str().into(),
                now.into(),
            ],
        )?
        .first()
        .and_then(|r| r.first())
        .and_then(|v| v.as_i64()))
}

/// Uses a token: of this kind, this tenant, unused and unexpired. Answers its user id; the
/// token cannot be used again.
pub fn use_user_token(
    db: &dyn Sql,
    tenant_id: &str,
    kind: TokenKind,
    token_hash: &str,
    now: i64,
) -> Result<Option<String>, StorageError> {
    let Some(user) = find_user_token(db, tenant_id, kind, token_hash, now)? else {
        return Ok(None);
    };
    let changed = db.execute(
        "UPDATE user_tokens SET used_at = ? WHERE token_hash = ? AND used_at IS NULL",
        &[now.into(), token_hash.into()],
    )?;
    Ok((changed == 1).then_some(user))
}

// ---- the access-token blacklist ----

pub fn blacklist(
    db: &dyn Sql,
    tenant_id: &str,
    jti: &str,
    expires_at: i64,
    reason: &str,
    now: i64,
) -> Result<(), StorageError> {
    db.execute(
        "INSERT INTO token_blacklist (jti, tenant_id, expires_at, reason, created_at) \
         VALUES (?, ?, ?, ?, ?) ON CONFLICT (jti) DO NOTHING",
        &[
            jti.into(),
            tenant_id.into(),
            expires_at.into(),
            reason.into(),
            now.into(),
        ],
    )?;
    // Entries whose token has expired anyway are no longer needed.
    db.execute(
        "DELETE FROM token_blacklist WHERE expires_at <= ?",
        &[now.into()],
    )
    .map(drop)
}

pub fn is_blacklisted(db: &dyn Sql, jti: &str) -> Result<bool, StorageError> {
    Ok(!db
        .query("SELECT 1 FROM token_blacklist WHERE jti = ?", &[jti.into()])?
        .is_empty())
}

#[cfg(test)]
mod tests {
    use super::UserStatus;

    #[test]
    fn user_status_reads_back_what_it_writes_and_fails_closed_on_anything_else() {
        for status in [
            UserStatus::Active,
            UserStatus::Suspended,
            UserStatus::Deleted,
        ] {
            assert_eq!(UserStatus::from_column(status.as_str()), status);
        }
        assert_eq!(UserStatus::from_column("ACTIVE"), UserStatus::Suspended);
        assert_eq!(UserStatus::from_column(""), UserStatus::Suspended);
    }
}
