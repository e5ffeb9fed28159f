//! Counting against the tenant's quota: the fixed window every keyed request and every inbound
//! WebSocket frame spends (persisted, so a restart does not refill it), the in-memory window of
//! keyless end-user auth requests, the `RateLimit-*` headers, and the per-endpoint usage counts
//! the alarm moves to `usage_metrics`. Kept apart from the routes so that a route never
//! decides whether it counts.

use http::{HeaderMap, HeaderValue};

use super::{Refusal, TenantState, CLOSE_CREDENTIAL_ENDED};
use crate::http::ApiError;
use crate::model::TenantRecord;
use crate::objects::{ObjectEnv, SocketId};
use crate::ports::{Sql, StorageError};
use crate::ratelimit::{Decision, FixedWindow, Quota};

/// Creates the window's table on the object's first load and reads the window it holds.
pub(super) fn load_window(sql: &dyn Sql) -> Result<FixedWindow, StorageError> {
    sql.execute(
        "CREATE TABLE IF NOT EXISTS rate_window (\
           id INTEGER PRIMARY KEY CHECK (id = 1), window_start_ms INTEGER NOT NULL, \
           window_ms INTEGER NOT NULL, count INTEGER NOT NULL)",
        &[],
    )?;
    Ok(sql
        .query(
            "SELECT window_start_ms, window_ms, count FROM rate_window WHERE id = 1",
            &[],
        )?
        .first()
        .map(|r| FixedWindow {
            window_start_ms: r[0].as_i64().unwrap_or(0),
            window_ms: r[1].as_i64().unwrap_or(0),
            count: r[2].as_i64().unwrap_or(0) as u32,
        })
        .unwrap_or_default())
}

pub(super) fn rate_headers(quota: Quota, d: &Decision) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let num = |n: u64| HeaderValue::from_str(&n.to_string()).expect("digits");
    headers.insert("ratelimit-limit", num(u64::from(d.limit)));
    headers.insert("ratelimit-remaining", num(u64::from(d.remaining)));
    headers.insert("ratelimit-reset", num(d.reset_seconds));
    headers.insert(
        "ratelimit-policy",
        HeaderValue::from_str(&quota.policy()).expect("ascii"),
    );
    if !d.allowed {
        headers.insert(http::header::RETRY_AFTER, num(d.reset_seconds));
    }
    headers
}

impl TenantState {
    pub(super) fn persist_window(&self, env: &ObjectEnv) -> Result<(), StorageError> {
        env.storage
            .sql()
            .execute(
                "INSERT INTO rate_window (id, window_start_ms, window_ms, count) VALUES (1, ?, ?, ?) \
                 ON CONFLICT (id) DO UPDATE SET window_start_ms = excluded.window_start_ms, \
                 window_ms = excluded.window_ms, count = excluded.count",
                &[
                    self.window.window_start_ms.into(),
                    self.window.window_ms.into(),
                    i64::from(self.window.count).into(),
                ],
            )
            .map(drop)
    }

    /// Counts a request in the object's storage and makes sure the alarm flushes it within
    /// [`crate::metrics::FLUSH_INTERVAL_MS`] (an earlier alarm, a grace end, is kept).
    pub(super) fn count_usage(
        &mut self,
        env: &ObjectEnv,
        endpoint: &str,
        limited: bool,
    ) -> Result<(), StorageError> {
        let now = env.clock.now_ms();
        crate::metrics::record(env.storage.sql(), now, endpoint, limited)?;
        let flush_at = now + crate::metrics::FLUSH_INTERVAL_MS;
        if env.storage.alarm().is_none_or(|a| a > flush_at) {
            env.storage.set_alarm(Some(flush_at));
        }
        Ok(())
    }

    /// Counts one inbound WebSocket frame (a message or a ping) against the tenant's quota,
    /// like a request. Over the quota the socket is closed (1008): frames cannot go past the
    /// limit requests are held to. Answers whether the frame may be handled.
    pub fn meter_frame(&mut self, env: &ObjectEnv, socket: SocketId) -> bool {
        let Ok(Some(tenant)) = self.tenant(env) else {
            return false;
        };
        let now = env.clock.now_ms();
        let quota = Quota::for_tenant(tenant.plan, tenant.rate_limit);
        if !self.window.admit(quota, now).allowed {
            env.sockets
                .close(socket, CLOSE_CREDENTIAL_ENDED, "rate limited");
            return false;
        }
        // A lost count is the lesser harm, as for requests.
        let _ = self.persist_window(env);
        true
    }

    /// Moves the counted requests to the shared `usage_metrics` table now (the alarm does it
    /// every few seconds; admin metric routes ask for it before they read).
    pub fn flush_metrics(&mut self, env: &ObjectEnv) -> Result<usize, StorageError> {
        crate::metrics::flush(
            env.storage.sql(),
            env.db,
            &self.tenant_id,
            env.clock.now_ms(),
        )
    }

    /// Counts a request against the tenant's quota: the decision and its headers, or the 429.
    pub(super) fn count(
        &mut self,
        env: &ObjectEnv,
        tenant: &TenantRecord,
        now: i64,
    ) -> Result<(Decision, HeaderMap), Refusal> {
        let quota = Quota::for_tenant(tenant.plan, tenant.rate_limit);
        let decision = self.window.admit(quota, now);
        let headers = rate_headers(quota, &decision);
        if !decision.allowed {
            return Err(Box::new((
                ApiError::RateLimited(decision.reset_seconds),
                headers,
            )));
        }
        self.persist_window(env)
            .map_err(|e| Box::new((e.into(), headers.clone())))?;
        Ok((decision, headers))
    }

    /// Counts a keyless end-user auth request in its own window: the tenant's quota capped at
    /// `cap`, so a flood without a key never spends what the tenant's keys are allowed.
    pub(super) fn count_keyless(
        &mut self,
        tenant: &TenantRecord,
        now: i64,
        cap: u32,
    ) -> Result<(Decision, HeaderMap), Refusal> {
        let mut quota = Quota::for_tenant(tenant.plan, tenant.rate_limit);
        quota.requests = quota.requests.min(cap);
        let decision = self.keyless_window.admit(quota, now);
        let headers = rate_headers(quota, &decision);
        if !decision.allowed {
            return Err(Box::new((
                ApiError::RateLimited(decision.reset_seconds),
                headers,
            )));
        }
        Ok((decision, headers))
    }
}
