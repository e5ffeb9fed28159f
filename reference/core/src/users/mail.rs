//! The mail outbox. Mail is queued in the same transaction as whatever it announces (the
//! token it carries, say); the host delivers it later with retries, so a request succeeds even
//! while the mail API is down. A mail never carries a secret other than its own single-use
//! token: no password, no API key, no access or refresh token.

use serde_json::json;

use crate::keys;
use crate::ports::{Entropy, Sql, SqlValue, StorageError};

/// One queued mail.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxMail {
    pub id: String,
    pub tenant_id: Option<String>,
    pub to: String,
    pub subject: String,
    pub text: String,
    pub template: String,
    pub attempts: i64,
}

impl OutboxMail {
    /// The JSON body POSTed to the mail API.
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "to": self.to,
            "subject": self.subject,
            "text": self.text,
            "template": self.template,
            "tenantId": self.tenant_id,
        })
    }
}

/// A verification mail carrying `token`.
pub fn verification(
    entropy: &dyn Entropy,
    tenant_id: &str,
    tenant_name: &str,
    to: &str,
    token: &str,
) -> OutboxMail {
    OutboxMail {
        id: format!("mail:{}", keys::random_hex(16, entropy)),
        tenant_id: Some(tenant_id.to_owned()),
        to: to.to_owned(),
        subject: "Verify your email address".into(),
        text: format!(
            "Confirm your email address for {tenant_name} with this single-use code, valid for \
             24 hours:\n\n{token}\n\nIf you did not create an account, ignore this email."
        ),
        template: "verify_email".into(),
        attempts: 0,
    }
}

/// A password-reset mail carrying `token`.
pub fn reset(
    entropy: &dyn Entropy,
    tenant_id: &str,
    tenant_name: &str,
    to: &str,
    token: &str,
) -> OutboxMail {
    OutboxMail {
        id: format!("mail:{}", keys::random_hex(16, entropy)),
        tenant_id: Some(tenant_id.to_owned()),
        to: to.to_owned(),
        subject: "Reset your password".into(),
        text: format!(
            "Someone asked to reset your password for {tenant_name}. Use this single-use code \
             within 1 hour:\n\n{token}\n\nIf it was not you, ignore this email: your password \
             stays as it is."
        ),
        template: "reset_password".into(),
        attempts: 0,
    }
}

/// Queues a mail, due at once.
pub fn enqueue(db: &dyn Sql, mail: &OutboxMail, now: i64) -> Result<(), StorageError> {
    db.execute(
        "INSERT INTO mail_outbox (id, tenant_id, to_email, subject, body_text, template, \
         created_at, attempts, next_attempt_at, sent_at, last_error) \
         VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, NULL, NULL)",
        &[
            mail.id.as_str().into(),
            mail.tenant_id.clone().into(),
            mail.to.as_str().into(),
            mail.subject.as_str().into(),
            mail.text.as_str().into(),
            mail.template.as_str().into(),
            now.into(),
            now.into(),
        ],
    )
    .map(drop)
}

/// Unsent mail due at `now`, oldest first.
pub fn due(db: &dyn Sql, now: i64, limit: i64) -> Result<Vec<OutboxMail>, StorageError> {
    let rows = db.query(
        "SELECT id, tenant_id, to_email, subject, body_text, template, attempts FROM mail_outbox \
         WHERE sent_at IS NULL AND next_attempt_at <= ? ORDER BY next_attempt_at, rowid LIMIT ?",
        &[now.into(), limit.into()],
    )?;
    let text = |r: &Vec<SqlValue>, i: usize| r[i].as_str().unwrap_or_default().to_owned();
    Ok(rows
        .iter()
        .map(|r| OutboxMail {
            id: text(r, 0),
            tenant_id: r[1].as_str().map(str::to_owned),
            to: text(r, 2),
            subject: text(r, 3),
            text: text(r, 4),
            template: text(r, 5),
            attempts: r[6].as_i64().unwrap_or(0),
        })
        .collect())
}

/// Marks a mail delivered; it is never sent again.
pub fn mark_sent(db: &dyn Sql, id: &str, now: i64) -> Result<(), StorageError> {
    db.execute(
        "UPDATE mail_outbox SET sent_at = ?, attempts = attempts + 1, last_error = NULL \
         WHERE id = ? AND sent_at IS NULL",
        &[now.into(), id.into()],
    )
    .map(drop)
}

/// Backoff after `attempts` failed attempts: 1 s, 2 s, 4 s, ... capped at 5 minutes.
pub fn backoff_ms(attempts: i64) -> i64 {
    (1000i64 << attempts.clamp(0, 20)).min(300_000)
}

/// Records a failed attempt and schedules the next one with exponential backoff. `error` is
/// for operators (a status code or "timeout"), never a response body.
pub fn mark_failed(db: &dyn Sql, id: &str, now: i64, error: &str) -> Result<(), StorageError> {
    let attempts = db
        .query(
            "SELECT attempts FROM mail_outbox WHERE id = ?",
            &[id.into()],
        )?
        .first()
        .and_then(|r| r[0].as_i64())
        .unwrap_or(0)
        + 1;
    db.execute(
        "UPDATE mail_outbox SET attempts = ?, next_attempt_at = ?, last_error = ? \
         WHERE id = ? AND sent_at IS NULL",
        &[
            attempts.into(),
            (now + backoff_ms(attempts - 1)).into(),
            error.into(),
            id.into(),
        ],
    )
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff_ms(0), 1000);
        assert_eq!(backoff_ms(1), 2000);
        assert_eq!(backoff_ms(3), 8000);
        assert_eq!(backoff_ms(50), 300_000);
    }
}
