//! Delivery of the mail outbox to an HTTP mail API.
//!
//! One task per service polls the outbox (`mail_outbox`) for due mail and POSTs each as JSON
//! `{to, subject, text, template, tenantId}` to `MAIL_API_URL` with
//! `Authorization: Bearer MAIL_API_KEY` and `Idempotency-Key: <outbox id>`. A 2xx answer marks
//! the mail sent, so it is never sent again; any other answer, a connection failure or a
//! timeout schedules a retry with exponential backoff (1 s, 2 s, 4 s, ... at most 5 min). Mail
//! is sent one at a time, in order. A crash between the API's answer and the mark resends the
//! mail with the same `Idempotency-Key`, which lets the API drop the duplicate. The single-use
//! code a mail carries is put into its body here, just before the POST, and exists nowhere else
//! (see `auth_core::users::mail`).

use std::sync::Arc;
use std::time::Duration;

use auth_core::keys::KeyHasher;
use auth_core::ports::Clock;
use auth_core::users::mail;
use tokio::task::JoinHandle;

use crate::sqlite::SqliteSql;
use crate::{Database, HostClock};

/// Where and how to deliver mail.
#[derive(Clone)]
pub struct MailConfig {
    /// The mail API endpoint (`MAIL_API_URL`), POSTed to as is.
    pub url: String,
    /// Its bearer key (`MAIL_API_KEY`). Never logged.
    pub api_key: String,
    /// How long one delivery attempt may take before it counts as failed.
    pub timeout: Duration,
    /// How often the outbox is polled for due mail.
    pub poll_interval: Duration,
}

impl MailConfig {
    /// A mail API with the default timeout (10 s) and poll interval (200 ms).
    pub fn new(url: impl Into<String>, api_key: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            api_key: api_key.into(),
            timeout: Duration::from_secs(10),
            poll_interval: Duration::from_millis(200),
        }
    }
}

impl std::fmt::Debug for MailConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailConfig")
            .field("url", &self.url)
            .field("api_key", &"..")
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Starts the delivery task. `hasher` (keyed with the pepper) turns each mail's code seed into
/// its code.
pub fn start(
    config: MailConfig,
    db: Arc<Database>,
    clock: Arc<HostClock>,
    hasher: KeyHasher,
) -> anyhow::Result<JoinHandle<()>> {
    let client = reqwest::Client::builder().timeout(config.timeout).build()?;
    Ok(tokio::spawn(async move {
        let mut tick = tokio::time::interval(config.poll_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let due = {
                let conn = db.lock();
                mail::due(&SqliteSql(&conn), clock.now_ms(), 20)
            };
            let due = match due {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(error = %e, "reading the mail outbox failed");
                    continue;
                }
            };
            for m in due {
                let result = client
                    .post(&config.url)
                    .bearer_auth(&config.api_key)
                    .header("idempotency-key", &m.id)
                    .json(&m.to_json(&hasher))
                    .send()
                    .await;
                let outcome = match result {
                    Ok(r) if r.status().is_success() => Ok(()),
                    Ok(r) => Err(format!("status {}", r.status().as_u16())),
                    Err(e) if e.is_timeout() => Err("timeout".to_owned()),
                    Err(_) => Err("connection failed".to_owned()),
                };
                let conn = db.lock();
                let sql = SqliteSql(&conn);
                let now = clock.now_ms();
                let written = match &outcome {
                    Ok(()) => mail::mark_sent(&sql, &m.id, now),
                    Err(why) => {
                        tracing::warn!(mail = %m.id, attempt = m.attempts + 1, error = %why, "mail delivery failed; will retry");
                        mail::mark_failed(&sql, &m.id, now, why)
                    }
                };
                if let Err(e) = written {
                    tracing::error!(mail = %m.id, error = %e, "recording a mail delivery failed");
                }
                if outcome.is_ok() {
                    tracing::info!(mail = %m.id, template = %m.template, "mail delivered");
                }
            }
        }
    }))
}
