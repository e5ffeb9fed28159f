//! The directory's outboxes: its rows to D1, the keys it learns of to the index (KV), and the
//! key-owner answer that writes an index entry on a miss.

use auth_core::ports::Sql;
use auth_core::ApiError;
use worker::{console_error, Response};

use super::AuthPlatform;
use crate::convert::problem;
use crate::internal::{self, InternalAnswer};
use crate::mirror;

impl AuthPlatform {
    /// Copies the keys the mirror learned of to the index (KV), before the answer; what KV
    /// does not take stays in `_kv_outbox` for the next call or the alarm. Answers whether
    /// the outbox is empty.
    pub(super) async fn index_keys(&self) -> bool {
        let Ok(kv) = self.env.kv(crate::edge::KEY_INDEX) else {
            return true; // no index bound: the Worker sends every tenant request here
        };
        loop {
            let batch = self.with(|p| p.unindexed(64)).unwrap_or_default();
            if batch.is_empty() {
                return true;
            }
            for (hash, tenant_id) in batch {
                let put = match kv.put(&hash, tenant_id.as_str()) {
                    Ok(p) => p.execute().await,
                    Err(e) => Err(e),
                };
                if let Err(e) = put {
                    console_error!("writing the key index failed: {e}; retried later");
                    self.retry_later().await;
                    return false;
                }
                self.with(|p| {
                    p.db.execute(
                        "DELETE FROM _kv_outbox WHERE key_hash = ? AND tenant_id = ?",
                        &[hash.as_str().into(), tenant_id.as_str().into()],
                    )
                });
            }
        }
    }

    /// Sets the directory's alarm to retry what D1 or the index did not take.
    pub(super) async fn retry_later(&self) {
        let at = worker::Date::now().as_millis() as i64 + mirror::RETRY_MS;
        let _ = self
            .state
            .storage()
            .set_alarm(worker::ScheduledTime::new(js_sys::Date::new(
                &js_sys::Number::from(at as f64),
            )))
            .await;
    }

    /// Brings D1 up to date with the directory's tables: its migrations once per instance,
    /// then the outbox. A failure leaves the changes in the outbox and retries from the alarm.
    // The shared borrow of the platform is held across the drain's awaits on purpose: the
    // platform is only ever borrowed mutably while it is first built, before any request.
    #[allow(clippy::await_holding_refcell_ref)]
    pub(super) async fn copy_to_d1(&self) {
        let (has_mirror, ready) = self
            .with(|p| (p.mirror.is_some(), p.d1_ready.get()))
            .unwrap_or((false, true));
        if !has_mirror {
            return;
        }
        if !ready {
            match mirror::migrate_d1(&self.env).await {
                Ok(()) => {
                    self.with(|p| p.d1_ready.set(true));
                }
                Err(e) => console_error!("D1 migrations: {e}"),
            }
        }
        let drained = {
            let guard = self.platform.borrow();
            let Some(p) = guard.as_ref() else { return };
            let Some(m) = p.mirror.as_ref() else { return };
            if !m.pending(&p.db) {
                return;
            }
            m.drain(&self.env, &p.db).await
        };
        if !drained {
            self.retry_later().await;
        }
    }

    /// [`crate::internal::InternalCall::KeyOwner`]: the tenant of a key hash from the mirror, for the stateless
    /// Worker after an index miss; writes the index entry too.
    pub(super) async fn key_owner(&self, hash: &str) -> worker::Result<Response> {
        let owner = self.with(|p| p.settings.service.key_owner(&p.db, hash));
        let tenant = match owner {
            Some(Ok(t)) => t,
            _ => return problem(ApiError::Internal),
        };
        if let Some(t) = &tenant {
            self.index_one(hash, t).await;
        }
        internal::answer(&InternalAnswer::Owner { tenant_id: tenant })
    }

    /// Points the index at `tenant_id` for `key_hash` (found in the mirror by the front).
    pub(super) async fn index_one(&self, key_hash: &str, tenant_id: &str) {
        let Ok(kv) = self.env.kv(crate::edge::KEY_INDEX) else {
            return;
        };
        let put = match kv.put(key_hash, tenant_id) {
            Ok(p) => p.execute().await,
            Err(e) => Err(e),
        };
        if let Err(e) = put {
            console_error!("writing the key index failed: {e}");
        }
    }
}
