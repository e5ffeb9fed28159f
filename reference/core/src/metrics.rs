//! Usage metrics: counted in each tenant's `TenantState` object, written to the shared
//! `usage_metrics` table in batches.
//!
//! Every request the object answers (rate-limited ones included) adds one to a row of the
//! object's own `usage_pending` table, keyed by the UTC hour and the endpoint (the route
//! template, `GET /v1/api-keys/{id}`). That write is part of the object's storage transaction
//! the request already has; nothing touches the shared tables per request. The pending rows
//! move to `usage_metrics` (one row per tenant, endpoint and hour, added to) when the object's
//! alarm fires, at most [`FLUSH_INTERVAL_MS`] after the first uncounted request, and on demand
//! before an admin reads metrics. A flush adds to the shared rows and then empties the pending
//! table in the same object call.

use crate::ports::{Sql, SqlValue, StorageError};
use crate::route::Endpoint;

/// Longest time counted requests wait in an object before they reach `usage_metrics`.
pub const FLUSH_INTERVAL_MS: i64 = 5_000;

pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 86_400_000;

/// The `metric_type` of request counts.
pub const API_CALLS: &str = "api_calls";

/// The route template of a tenant request, as `METHOD /path/{id}`: the key of its counts.
/// HEAD counts as GET (a HEAD request parses to the GET row).
pub fn endpoint_template(endpoint: Endpoint) -> String {
    format!("{} {}", endpoint.method(), endpoint.template())
}

/// The UTC date of an instant, `YYYY-MM-DD`.
pub fn day_of(ms: i64) -> String {
    crate::model::rfc3339(ms)[..10].to_owned()
}

/// Start of the UTC day holding `ms`.
pub fn day_start(ms: i64) -> i64 {
    ms - ms.rem_euclid(DAY_MS)
}

/// Creates the object's pending-counts table.
pub fn ensure_pending_table(sql: &dyn Sql) -> Result<(), StorageError> {
    sql.execute(
        "CREATE TABLE IF NOT EXISTS usage_pending (\
           period_start INTEGER NOT NULL, endpoint TEXT NOT NULL, \
           count INTEGER NOT NULL, rate_limited INTEGER NOT NULL, \
           PRIMARY KEY (period_start, endpoint))",
        &[],
    )
    .map(drop)
}

/// Counts one request in the object's own storage.
pub fn record(
    sql: &dyn Sql,
    now: i64,
    endpoint: &str,
    rate_limited: bool,
) -> Result<(), StorageError> {
    let hour = now - now.rem_euclid(HOUR_MS);
    sql.execute(
        "INSERT INTO usage_pending (period_start, endpoint, count, rate_limited) \
         VALUES (?, ?, 1, ?) ON CONFLICT (period_start, endpoint) DO UPDATE SET \
         count = count + 1, rate_limited = rate_limited + excluded.rate_limited",
        &[hour.into(), endpoint.into(), i64::from(rate_limited).into()],
    )
    .map(drop)
}

/// Whether the object holds counts not yet flushed.
pub fn has_pending(sql: &dyn Sql) -> Result<bool, StorageError> {
    Ok(!sql
        .query("SELECT 1 FROM usage_pending LIMIT 1", &[])?
        .is_empty())
}

/// Adds the object's pending counts to `usage_metrics` (one transaction of the shared
/// database) and empties the pending table. Answers the number of rows flushed.
pub fn flush(
    object: &dyn Sql,
    db: &dyn Sql,
    tenant_id: &str,
    now: i64,
) -> Result<usize, StorageError> {
    let rows = object.query(
        "SELECT period_start, endpoint, count, rate_limited FROM usage_pending",
        &[],
    )?;
    if rows.is_empty() {
        return Ok(0);
    }
    db.transaction(&mut |db| {
        for row in &rows {
            let start = row.first().and_then(SqlValue::as_i64).unwrap_or(0);
            let endpoint = row.get(1).and_then(SqlValue::as_str).unwrap_or("other");
            let count = row.get(2).and_then(SqlValue::as_i64).unwrap_or(0);
            let limited = row.get(3).and_then(SqlValue::as_i64).unwrap_or(0);
            let id = format!("um:{tenant_id}:{start}:{endpoint}");
            // A tenant row always exists for an object's name; the guard keeps a flush from
            // failing (and its alarm from retrying forever) if it ever does not.
            db.execute(
                "INSERT INTO usage_metrics (id, tenant_id, metric_type, endpoint, count, \
                   rate_limited, period_start, period_end, day, recorded_at) \
                 SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ? \
                 WHERE EXISTS (SELECT 1 FROM tenants WHERE id = ?) \
                 ON CONFLICT (tenant_id, metric_type, endpoint, period_start) DO UPDATE SET \
                   count = count + excluded.count, \
                   rate_limited = rate_limited + excluded.rate_limited, \
                   recorded_at = excluded.recorded_at",
                &[
                    id.into(),
                    tenant_id.into(),
                    API_CALLS.into(),
                    endpoint.into(),
                    count.into(),
                    limited.into(),
                    start.into(),
                    (start + HOUR_MS).into(),
                    day_of(start).into(),
                    now.into(),
                    tenant_id.into(),
                ],
            )?;
        }
        Ok(())
    })?;
    object.execute("DELETE FROM usage_pending", &[])?;
    Ok(rows.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_route_templates() {
        let t = |m: http::Method, p: &str| {
            let route = crate::route::Route::parse(&m, p).expect("a route");
            endpoint_template(route.endpoint())
        };
        assert_eq!(t(http::Method::GET, "/v1/api-keys"), "GET /v1/api-keys");
        assert_eq!(t(http::Method::HEAD, "/v1/tenant"), "GET /v1/tenant");
        assert_eq!(
            t(http::Method::DELETE, "/v1/api-keys/key%3Aabc"),
            "DELETE /v1/api-keys/{id}"
        );
        assert_eq!(
            t(http::Method::POST, "/v1/api-keys/k/rotate"),
            "POST /v1/api-keys/{id}/rotate"
        );
        assert_eq!(
            t(http::Method::POST, "/v1/auth/login"),
            "POST /v1/auth/login"
        );
        assert_eq!(
            t(http::Method::GET, "/v1/graph/state"),
            "GET /v1/graph/state"
        );
    }

    #[test]
    fn days_are_utc_dates() {
        assert_eq!(day_of(0), "1970-01-01");
        assert_eq!(day_of(DAY_MS - 1), "1970-01-01");
        assert_eq!(day_of(DAY_MS), "1970-01-02");
        assert_eq!(day_start(DAY_MS + 5), DAY_MS);
    }
}
