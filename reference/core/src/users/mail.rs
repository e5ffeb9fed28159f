//! The mail outbox. Mail is queued in the same transaction as whatever it announces (the
//! token it carries, say); the host delivers it later with retries, so a request succeeds even
//! while the mail API is down. A mail never carries a secret other than its own single-use
//! token: no password, no API key, no access or refresh token.
//!
//! The single-use code never rests in plaintext, not even in the outbox. The queued body holds
//! [`CODE_SLOT`] where the code goes, and the row holds a random seed; the code is
//! `HMAC(pepper, seed)` ([`code_of`]), computed when the mail is POSTed ([`OutboxMail::to_json`])
//! and nowhere stored. `user_tokens` keeps only `HMAC(pepper, code)`. The pepper lives outside
//! the database (a file beside it natively, a secret on the Worker), so a copy of the database
//! reveals no live code, and the seed is cleared once the mail is sent.

use auth_contract::MailMessage;

use crate::keys::{self, KeyHasher};
use crate::ports::{Entropy, Sql, SqlValue, StorageError};

/// Where a queued body puts the single-use code; replaced when the mail is sent.
pub const CODE_SLOT: &str = "{{code}}";

/// A new single-use code: the seed the outbox keeps and the code itself (`<prefix>_<hex>`),
/// for the caller to hash into `user_tokens` and then forget.
pub fn new_code(entropy: &dyn Entropy, hasher: &KeyHasher, prefix: &str) -> (String, String) {
    let seed = format!("{prefix}.{}", keys::random_hex(32, entropy));
    let code = code_of(hasher, &seed);
    (seed, code)
}

/// The code a seed stands for. The prefix (`ev`, `pr`) travels in the seed, before its dot.
pub fn code_of(hasher: &KeyHasher, seed: &str) -> String {
    let prefix = seed.split_once('.').map_or("", |(p, _)| p);
    format!("{prefix}_{}", hasher.hash(&format!("mail-code:{seed}")))
}

/// One queued mail.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxMail {
    pub id: String,
    pub tenant_id: Option<String>,
    pub to: String,
    pub subject: String,
    /// The body, with [`CODE_SLOT`] where the code goes (when the mail carries one).
    pub text: String,
    pub template: String,
    pub attempts: i64,
    /// The seed of the single-use code the mail carries ([`code_of`]); `None` once sent.
    pub code_seed: Option<String>,
}

impl OutboxMail {
    /// The body as sent: the code put in its slot. Only ever built to be sent.
    pub fn render(&self, hasher: &KeyHasher) -> String {
        match &self.code_seed {
            Some(seed) => self.text.replace(CODE_SLOT, &code_of(hasher, seed)),
            None => self.text.clone(),
        }
    }

    /// The JSON body POSTed to the mail API, rendered now.
    pub fn to_json(&self, hasher: &KeyHasher) -> serde_json::Value {
        crate::http::sorted(&MailMessage {
            to: self.to.clone(),
            subject: self.subject.clone(),
            text: self.render(hasher),
            template: self.template.clone(),
            tenant_id: self.tenant_id.clone(),
        })
    }
}

/// A verification mail carrying the code of `seed` ([`new_code`]).
pub fn verification(
    entropy: &dyn Entropy,
    tenant_id: &str,
    tenant_name: &str,
    to: &str,
    seed: &str,
) -> OutboxMail {
    OutboxMail {
        id: format!("mail:{}", keys::random_hex(16, entropy)),
        tenant_id: Some(tenant_id.to_owned()),
        to: to.to_owned(),
        subject: "Verify your email address".into(),
        text: format!(
            "Confirm your email address for {tenant_name} with this single-use code, valid for \
             24 hours:\n\n{CODE_SLOT}\n\nIf you did not create an account, ignore this email."
        ),
        template: "verify_email".into(),
        attempts: 0,
        code_seed: Some(seed.to_owned()),
    }
}

/// A password-reset mail carrying the code of `seed` ([`new_code`]).
pub fn reset(
    entropy: &dyn Entropy,
    tenant_id: &str,
    tenant_name: &str,
    to: &str,
    seed: &str,
) -> OutboxMail {
    OutboxMail {
        id: format!("mail:{}", keys::random_hex(16, entropy)),
        tenant_id: Some(tenant_id.to_owned()),
        to: to.to_owned(),
        subject: "Reset your password".into(),
        text: format!(
            "Someone asked to reset your password for {tenant_name}. Use this single-use code \
             within 1 hour:\n\n{CODE_SLOT}\n\nIf it was not you, ignore this email: your password \
             stays as it is."
        ),
        template: "reset_password".into(),
        attempts: 0,
        code_seed: Some(seed.to_owned()),
    }
}

/// Queues a mail, due at once.
pub fn enqueue(db: &dyn Sql, mail: &OutboxMail, now: i64) -> Result<(), StorageError> {
    db.execute(
        "INSERT INTO mail_outbox (id, tenant_id, to_email, subject, body_text, template, \
         created_at, attempts, next_attempt_at, sent_at, last_error, code_seed) \
         VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, NULL, NULL, ?)",
        &[
            mail.id.as_str().into(),
            mail.tenant_id.clone().into(),
            mail.to.as_str().into(),
            mail.subject.as_str().into(),
            mail.text.as_str().into(),
            mail.template.as_str().into(),
            now.into(),
            now.into(),
            mail.code_seed.clone().into(),
        ],
    )
    .map(drop)
}

/// Unsent mail due at `now`, oldest first.
pub fn due(db: &dyn Sql, now: i64, limit: i64) -> Result<Vec<OutboxMail>, StorageError> {
    let rows = db.query(
        "SELECT id, tenant_id, to_email, subject, body_text, template, attempts, code_seed \
         FROM mail_outbox \
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
            code_seed: r[7].as_str().map(str::to_owned),
        })
        .collect())
}

/// Marks a mail delivered; it is never sent again, so the seed of its code goes.
pub fn mark_sent(db: &dyn Sql, id: &str, now: i64) -> Result<(), StorageError> {
    db.execute(
        "UPDATE mail_outbox SET sent_at = ?, attempts = attempts + 1, last_error = NULL, \
         code_seed = NULL \
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

    struct Counter(std::cell::Cell<u8>);
    impl Entropy for Counter {
        fn fill(&self, buf: &mut [u8]) {
            for b in buf {
                self.0.set(self.0.get().wrapping_add(1));
                *b = self.0.get();
            }
        }
    }

    /// The queued mail holds no code; the code appears only in what is sent, and it is the
    /// code the caller hashed.
    #[test]
    fn the_code_is_rendered_only_when_sent() {
        let hasher = KeyHasher::new(b"pepper");
        let entropy = Counter(std::cell::Cell::new(0));
        let (seed, code) = new_code(&entropy, &hasher, "pr");
        assert!(code.starts_with("pr_") && code.len() == 67, "{code}");
        assert!(!seed.contains(&code[3..]));
        let m = reset(&entropy, "t1", "Acme", "a@example.com", &seed);
        assert!(!m.text.contains(&code) && m.text.contains(CODE_SLOT));
        let sent = m.to_json(&hasher);
        let text = sent["text"].as_str().unwrap();
        assert!(text.contains(&code) && !text.contains(CODE_SLOT), "{text}");
        // Another pepper, another code: the seed alone does not give it away.
        assert!(!m.render(&KeyHasher::new(b"other")).contains(&code));
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff_ms(0), 1000);
        assert_eq!(backoff_ms(1), 2000);
        assert_eq!(backoff_ms(3), 8000);
        assert_eq!(backoff_ms(50), 300_000);
    }
}
