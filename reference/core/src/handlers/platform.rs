//! Platform admins (`/admin/admins`), the dashboard (`/admin/dashboard`), usage metrics
//! (`/admin/metrics`, `/admin/tenants/{id}/metrics`) and the cross-tenant key list
//! (`/admin/api-keys`).
//!
//! Who may do what:
//! - the root key (`PLATFORM_ADMIN_KEY`) is the unlimited superadmin;
//! - an admin key from `platform_admins` acts with its role and, when it has a tenant list,
//!   only on those tenants: any other tenant is 404 exactly like an unknown one, and every list
//!   and figure only covers its tenants;
//! - `readonly` only reads; creating tenants needs a superadmin without a tenant limit; the
//!   JWT keyring needs an admin without a tenant limit (rotation: a superadmin); creating and
//!   revoking admins needs the root key, listing them a superadmin without a tenant limit.

use std::collections::BTreeMap;

use auth_contract::{
    AdminApiKey, AdminApiKeyList, AdminCredentials, Dashboard, EndpointUsage, KeyCounts,
    Pagination, PlatformAdmin, PlatformAdminCreated, PlatformAdminEnvelope, PlatformAdminList,
    RequestCounts, TenantCounts, UsageDay, UsageMetrics, UsageTotals,
};
use http::StatusCode;
use serde_json::Value;

use crate::auth::admins::{admin_from_row, admin_tenants, AdminRow, ADMIN_COLUMNS};
pub use crate::auth::admins::{AdminCaller, AdminRole};
use crate::handlers::admin::page_param;
use crate::http::{json_object, json_sorted, ApiError, ApiResult, Fields, Request, Response};
use crate::keys::{self, KeyHasher, KeyType};
use crate::metrics::{self, DAY_MS, HOUR_MS};
use crate::model::{rfc3339, TenantStatus};
use crate::ports::{Ports, Sql, SqlValue, StorageError};
use crate::store::{self, KeyFilter};

fn admin_wire(db: &dyn Sql, a: &AdminRow) -> Result<PlatformAdmin, ApiError> {
    let tenants = if a.listed {
        Some(admin_tenants(db, &a.id)?)
    } else {
        None
    };
    let status = if a.revoked_at.is_some() {
        "revoked"
    } else if a.active {
        "active"
    } else {
        "suspended"
    };
    Ok(PlatformAdmin {
        id: a.id.clone(),
        email: a.email.clone(),
        name: a.name.clone(),
        role: a.role.as_str().into(),
        status: status.into(),
        tenants,
        created_at: rfc3339(a.created_at),
        revoked_at: a.revoked_at.map(rfc3339),
    })
}

fn valid_email(email: &str) -> bool {
    let mut parts = email.split('@');
    matches!(
        (parts.next(), parts.next(), parts.next()),
        (Some(local), Some(domain), None)
            if !local.is_empty() && domain.contains('.') && !domain.starts_with('.')
                && !domain.ends_with('.')
    ) && email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// `POST /admin/admins`: 201 `{"admin":{...},"credentials":{"adminKey"}}`; the key is shown
/// here only and stored as its keyed hash.
pub fn create_admin(ports: &Ports, hasher: &KeyHasher, req: &Request) -> ApiResult {
    let f = Fields::new(
        json_object(req, false)?,
        &["email", "name", "role", "tenants"],
    )?;
    let email = f.req_str("email")?.trim().to_ascii_lowercase();
    if !valid_email(&email) {
        return Err(ApiError::field("email", "must be an email address"));
    }
    let name = f.text("name", 200, false)?;
    let role = match f.opt_str("role")? {
        None => AdminRole::Readonly,
        Some(r) => AdminRole::parse(&r).ok_or_else(|| {
            ApiError::field("role", "must be superadmin, support, billing or readonly")
        })?,
    };
    let tenants = match f.get("tenants") {
        None | Some(Value::Null) => None,
        Some(_) => {
            let mut list = f.opt_str_list("tenants")?.unwrap_or_default();
            list.sort();
            list.dedup();
            if list.is_empty() || list.len() > 1000 {
                return Err(ApiError::field(
                    "tenants",
                    "must name 1 to 1000 tenants (leave it out for every tenant)",
                ));
            }
            for t in &list {
                match store::find_tenant(ports.db, t)? {
                    Some(found) if found.status != TenantStatus::Deleted => {}
                    _ => {
                        return Err(ApiError::field(
                            "tenants",
                            format!("names an unknown or deleted tenant: {t}"),
                        ))
                    }
                }
            }
            Some(list)
        }
    };
    let token = format!("sk_live_{}", keys::random_base62(48, ports.entropy));
    let now = ports.clock.now_ms();
    let id = format!("admin_{}", keys::random_hex(12, ports.entropy));
    let key_hash = hasher.hash(&token);
    let mut duplicate = false;
    ports
        .db
        .transaction(&mut |db| {
            if !db
                .query(
                    "SELECT 1 FROM platform_admins WHERE email = ?",
                    &[email.as_str().into()],
                )?
                .is_empty()
            {
                duplicate = true;
                return Ok(());
            }
            db.execute(
                "INSERT INTO platform_admins (id, email, name, role, key_hash, status, \
                   tenant_scope, created_at) VALUES (?, ?, ?, ?, ?, 'active', ?, ?)",
                &[
                    id.as_str().into(),
                    email.as_str().into(),
                    name.clone().into(),
                    role.as_str().into(),
                    key_hash.as_str().into(),
                    if tenants.is_some() { "listed" } else { "all" }.into(),
                    now.into(),
                ],
            )?;
            for t in tenants.iter().flatten() {
                db.execute(
                    "INSERT INTO platform_admin_tenant_permissions \
                       (admin_id, tenant_id, permission, granted_at) VALUES (?, ?, ?, ?)",
                    &[
                        id.as_str().into(),
                        t.as_str().into(),
                        role.as_str().into(),
                        now.into(),
                    ],
                )?;
            }
            Ok(())
        })
        .map_err(|e| match e {
            StorageError::Constraint(_) => ApiError::Conflict("An admin with this email exists."),
            _ => ApiError::Internal,
        })?;
    if duplicate {
        return Err(ApiError::Conflict("An admin with this email exists."));
    }
    let admin = find_admin(ports.db, &id)?.ok_or(ApiError::Internal)?;
    Ok(json_sorted(
        StatusCode::CREATED,
        &PlatformAdminCreated {
            admin: admin_wire(ports.db, &admin)?,
            credentials: AdminCredentials { admin_key: token },
        },
    ))
}

fn find_admin(db: &dyn Sql, id: &str) -> Result<Option<AdminRow>, StorageError> {
    Ok(db
        .query(
            &format!("SELECT {ADMIN_COLUMNS} FROM platform_admins WHERE id = ?"),
            &[id.into()],
        )?
        .first()
        .map(|r| admin_from_row(r)))
}

/// `GET /admin/admins`: every admin, revoked ones included; never a key or a hash.
pub fn list_admins(ports: &Ports) -> ApiResult {
    let rows = ports.db.query(
        &format!("SELECT {ADMIN_COLUMNS} FROM platform_admins ORDER BY created_at, rowid"),
        &[],
    )?;
    let admins = rows
        .iter()
        .map(|r| admin_wire(ports.db, &admin_from_row(r)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(json_sorted(StatusCode::OK, &PlatformAdminList { admins }))
}

/// `DELETE /admin/admins/{id}`: revokes the admin's key at once (idempotent).
pub fn revoke_admin(ports: &Ports, id: &str) -> ApiResult {
    let now = ports.clock.now_ms();
    find_admin(ports.db, id)?.ok_or(ApiError::NotFound)?;
    ports.db.execute(
        "UPDATE platform_admins SET status = 'suspended', \
           revoked_at = COALESCE(revoked_at, ?) WHERE id = ?",
        &[now.into(), id.into()],
    )?;
    let admin = find_admin(ports.db, id)?.ok_or(ApiError::NotFound)?;
    Ok(json_sorted(
        StatusCode::OK,
        &PlatformAdminEnvelope {
            admin: admin_wire(ports.db, &admin)?,
        },
    ))
}

fn count(db: &dyn Sql, sql: &str, params: &[SqlValue]) -> Result<i64, StorageError> {
    Ok(db
        .query(sql, params)?
        .first()
        .and_then(|r| r.first())
        .and_then(SqlValue::as_i64)
        .unwrap_or(0))
}

/// `GET /admin/dashboard`: tenants by status and plan, keys active and revoked, requests in
/// the last 24 hours (the current UTC hour and the 23 before it), over the caller's tenants.
pub fn dashboard(ports: &Ports, caller: &AdminCaller) -> ApiResult {
    let db = ports.db;
    let now = ports.clock.now_ms();
    let (only_id, p_id) = store::only_tenants_sql("id", caller.only());
    // Every status and plan is named, zeros included.
    let zeros = |names: &[&str]| -> BTreeMap<String, i64> {
        names.iter().map(|n| ((*n).to_owned(), 0)).collect()
    };
    let mut by_status = zeros(&["active", "suspended", "deleted"]);
    let mut by_plan = zeros(&["free", "pro", "enterprise"]);
    let mut total = 0i64;
    for row in db.query(
        &format!(
            "SELECT status, plan, COUNT(*) FROM tenants WHERE 1{only_id} GROUP BY status, plan"
        ),
        &p_id,
    )? {
        let status = row.first().and_then(SqlValue::as_str).unwrap_or("");
        let plan = row.get(1).and_then(SqlValue::as_str).unwrap_or("");
        let n = row.get(2).and_then(SqlValue::as_i64).unwrap_or(0);
        total += n;
        if let Some(v) = by_status.get_mut(status) {
            *v += n;
        }
        if let Some(v) = by_plan.get_mut(plan) {
            *v += n;
        }
    }
    let (only_t, p_t) = store::only_tenants_sql("tenant_id", caller.only());
    let keys_by = |cond: &str, extra: &[SqlValue]| {
        let mut params = extra.to_vec();
        params.extend(p_t.iter().cloned());
        count(
            db,
            &format!("SELECT COUNT(*) FROM api_keys WHERE {cond}{only_t}"),
            &params,
        )
    };
    let active = keys_by(
        "(revoked_at IS NULL OR revoked_at > ?) AND (expires_at IS NULL OR expires_at > ?)",
        &[now.into(), now.into()],
    )?;
    let revoked = keys_by("revoked_at IS NOT NULL AND revoked_at <= ?", &[now.into()])?;
    let expired = keys_by(
        "(revoked_at IS NULL OR revoked_at > ?) AND expires_at IS NOT NULL AND expires_at <= ?",
        &[now.into(), now.into()],
    )?;
    let since = now - now.rem_euclid(HOUR_MS) - 23 * HOUR_MS;
    let mut params: Vec<SqlValue> = vec![metrics::API_CALLS.into(), since.into()];
    params.extend(p_t.iter().cloned());
    let rows = db.query(
        &format!(
            "SELECT COALESCE(SUM(count), 0), COALESCE(SUM(rate_limited), 0) FROM usage_metrics \
             WHERE metric_type = ? AND period_start >= ?{only_t}"
        ),
        &params,
    )?;
    let first = rows.first();
    let n = |i: usize| {
        first
            .and_then(|r| r.get(i))
            .and_then(SqlValue::as_i64)
            .unwrap_or(0)
    };
    Ok(json_sorted(
        StatusCode::OK,
        &Dashboard {
            tenants: TenantCounts {
                total,
                by_status,
                by_plan,
            },
            api_keys: KeyCounts {
                active,
                revoked,
                expired,
            },
            requests: RequestCounts {
                last_24h: n(0),
                rate_limited_last_24h: n(1),
            },
            generated_at: rfc3339(now),
        },
    ))
}

fn days_param(query: &[(String, String)], allowed: &[&str]) -> Result<i64, ApiError> {
    let mut days = 7;
    for (k, v) in query {
        match k.as_str() {
            "days" => {
                days = v
                    .parse::<i64>()
                    .ok()
                    .filter(|d| (1..=90).contains(d))
                    .ok_or_else(|| ApiError::query("days", "must be a whole number from 1 to 90"))?
            }
            k if allowed.contains(&k) => {}
            other => return Err(ApiError::query(other, "is not a known parameter")),
        }
    }
    Ok(days)
}

/// The dates of the last `days` UTC days, oldest first, and the start of the first.
fn day_range(now: i64, days: i64) -> (Vec<String>, i64) {
    let first = metrics::day_start(now) - (days - 1) * DAY_MS;
    (
        (0..days)
            .map(|i| metrics::day_of(first + i * DAY_MS))
            .collect(),
        first,
    )
}

/// A metrics answer: the days of `dates` (never empty: `days` is at least 1) and their totals.
fn usage_answer(
    tenant_id: Option<String>,
    days: i64,
    dates: &[String],
    daily: Vec<UsageDay>,
    now: i64,
) -> Response {
    let at = |d: Option<&String>| d.cloned().unwrap_or_default();
    let totals = UsageTotals {
        requests: daily.iter().map(|d| d.requests).sum(),
        rate_limited: daily.iter().map(|d| d.rate_limited).sum(),
    };
    json_sorted(
        StatusCode::OK,
        &UsageMetrics {
            tenant_id,
            days,
            from: at(dates.first()),
            to: at(dates.last()),
            daily,
            totals,
            generated_at: rfc3339(now),
        },
    )
}

/// `GET /admin/metrics?days=N`: requests per UTC day across the caller's tenants.
pub fn all_metrics(ports: &Ports, caller: &AdminCaller, query: &[(String, String)]) -> ApiResult {
    let days = days_param(query, &[])?;
    let now = ports.clock.now_ms();
    let (dates, first) = day_range(now, days);
    let (only_t, p_t) = store::only_tenants_sql("tenant_id", caller.only());
    let mut params: Vec<SqlValue> = vec![metrics::API_CALLS.into(), first.into()];
    params.extend(p_t);
    let rows = ports.db.query(
        &format!(
            "SELECT day, SUM(count), SUM(rate_limited), COUNT(DISTINCT tenant_id) \
             FROM usage_metrics WHERE metric_type = ? AND period_start >= ?{only_t} \
             GROUP BY day"
        ),
        &params,
    )?;
    let daily: Vec<UsageDay> = dates
        .iter()
        .map(|d| {
            let row = rows
                .iter()
                .find(|r| r.first().and_then(SqlValue::as_str) == Some(d.as_str()));
            let n = |i: usize| {
                row.and_then(|r| r.get(i))
                    .and_then(SqlValue::as_i64)
                    .unwrap_or(0)
            };
            UsageDay {
                date: d.clone(),
                requests: n(1),
                rate_limited: n(2),
                tenants: Some(n(3)),
                endpoints: None,
            }
        })
        .collect();
    Ok(usage_answer(None, days, &dates, daily, now))
}

/// `GET /admin/tenants/{id}/metrics?days=N`: the tenant's requests per UTC day and endpoint.
pub fn tenant_metrics(ports: &Ports, id: &str, query: &[(String, String)]) -> ApiResult {
    let days = days_param(query, &[])?;
    let tenant = store::find_tenant(ports.db, id)?.ok_or(ApiError::NotFound)?;
    let now = ports.clock.now_ms();
    let (dates, first) = day_range(now, days);
    let rows = ports.db.query(
        "SELECT day, endpoint, SUM(count), SUM(rate_limited) FROM usage_metrics \
         WHERE tenant_id = ? AND metric_type = ? AND period_start >= ? \
         GROUP BY day, endpoint ORDER BY day, endpoint",
        &[
            tenant.id.as_str().into(),
            metrics::API_CALLS.into(),
            first.into(),
        ],
    )?;
    let daily: Vec<UsageDay> = dates
        .iter()
        .map(|d| {
            let (mut req, mut lim) = (0, 0);
            let endpoints: Vec<EndpointUsage> = rows
                .iter()
                .filter(|r| r.first().and_then(SqlValue::as_str) == Some(d.as_str()))
                .map(|r| {
                    let n = |i: usize| r.get(i).and_then(SqlValue::as_i64).unwrap_or(0);
                    req += n(2);
                    lim += n(3);
                    EndpointUsage {
                        endpoint: r
                            .get(1)
                            .and_then(SqlValue::as_str)
                            .unwrap_or("other")
                            .into(),
                        requests: n(2),
                        rate_limited: n(3),
                    }
                })
                .collect();
            UsageDay {
                date: d.clone(),
                requests: req,
                rate_limited: lim,
                tenants: None,
                endpoints: Some(endpoints),
            }
        })
        .collect();
    Ok(usage_answer(Some(tenant.id), days, &dates, daily, now))
}

/// `GET /admin/api-keys`: every key of the caller's tenants, filtered by `tenantId`, `type`
/// and `status` (`active`, `revoked`, `expired`), paginated; never a secret or a hash.
pub fn list_keys(ports: &Ports, caller: &AdminCaller, query: &[(String, String)]) -> ApiResult {
    let mut filter = KeyFilter {
        only: caller.tenants.clone(),
        now: ports.clock.now_ms(),
        ..KeyFilter::default()
    };
    for (k, v) in query {
        match k.as_str() {
            "tenantId" => filter.tenant_id = Some(v.clone()),
            "type" => {
                let t = KeyType::parse(v).ok_or_else(|| {
                    ApiError::query("type", "must be publishable, secret or restricted")
                })?;
                filter.key_type = Some(t.as_str().to_owned());
            }
            "status" => {
                if !["active", "revoked", "expired"].contains(&v.as_str()) {
                    return Err(ApiError::query(
                        "status",
                        "must be active, revoked or expired",
                    ));
                }
                filter.status = Some(v.clone());
            }
            "page" | "limit" => {}
            other => return Err(ApiError::query(other, "is not a known parameter")),
        }
    }
    let page = page_param(query, "page", 1, u32::MAX)?;
    let limit = page_param(query, "limit", 20, 100)?;
    let offset = u64::from(page - 1) * u64::from(limit);
    let (keys, total) = store::list_keys_across_tenants(ports.db, &filter, offset, limit)?;
    let api_keys = keys
        .iter()
        .map(|k| AdminApiKey {
            key: k.to_wire(),
            tenant_id: k.tenant_id.clone(),
        })
        .collect();
    Ok(json_sorted(
        StatusCode::OK,
        &AdminApiKeyList {
            api_keys,
            pagination: Pagination {
                page,
                limit,
                total,
                pages: total.div_ceil(u64::from(limit)),
            },
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limited_admins_see_only_their_tenants() {
        let root = AdminCaller::root();
        assert!(root.sees("tenant:any") && root.is_root());
        assert!(root.require_global_superadmin().is_ok());
        let limited = AdminCaller {
            id: Some("admin_1".into()),
            role: AdminRole::Support,
            tenants: Some(vec!["tenant:a".into()]),
        };
        assert!(limited.sees("tenant:a"));
        assert!(!limited.sees("tenant:b"));
        assert!(limited.require_write().is_ok());
        assert!(limited.require_global_superadmin().is_err());
        assert!(limited.require_root().is_err());
        let ro = AdminCaller {
            role: AdminRole::Readonly,
            tenants: None,
            ..limited
        };
        assert!(ro.require_write().is_err());
    }

    #[test]
    fn emails_and_roles() {
        assert!(valid_email("ops@example.com"));
        for bad in ["", "a", "a@b", "@b.c", "a@@b.c", "a b@c.d", "a@.c"] {
            assert!(!valid_email(bad), "{bad}");
        }
        for r in ["superadmin", "support", "billing", "readonly"] {
            assert_eq!(AdminRole::parse(r).unwrap().as_str(), r);
        }
        assert!(AdminRole::parse("root").is_none());
    }

    #[test]
    fn day_ranges_end_today() {
        let (dates, first) = day_range(3 * DAY_MS + 5, 2);
        assert_eq!(dates, ["1970-01-03", "1970-01-04"]);
        assert_eq!(first, 2 * DAY_MS);
    }
}
