//! Storage of tenants and keys over the [`Sql`] port, and the tenant scope that isolates them.
//!
//! Isolation rule: every read or write of tenant-owned rows goes through a [`TenantScope`],
//! which adds the `tenant_id = ?` condition itself. A scope can only be made by the
//! authentication layer (for the tenant a key belongs to) or by the admin handlers (for the
//! tenant an admin names), so a handler cannot forget the condition or pass the wrong tenant
//! as a string.

use auth_contract::RateLimit;

use crate::keys::{Environment, KeyType};
use crate::model::{KeyRecord, Plan, TenantRecord, TenantStatus};
use crate::ports::{Row, Sql, SqlValue, StorageError};

const TENANT_COLUMNS: &str =
    "id, slug, name, plan, status, limits, created_at, updated_at, deleted_at";
const KEY_COLUMNS: &str = "id, tenant_id, key_prefix, key_hash, name, type, environment, \
     permissions, created_at, revoked_at, expires_at, replaced_by";

fn text(row: &Row, i: usize) -> Result<String, StorageError> {
    row.get(i)
        .and_then(SqlValue::as_str)
        .map(str::to_owned)
        .ok_or_else(|| StorageError::Other(format!("column {i} is not text")))
}

fn int(row: &Row, i: usize) -> Result<i64, StorageError> {
    row.get(i)
        .and_then(SqlValue::as_i64)
        .ok_or_else(|| StorageError::Other(format!("column {i} is not an integer")))
}

fn opt_int(row: &Row, i: usize) -> Option<i64> {
    row.get(i).and_then(SqlValue::as_i64)
}

fn opt_text(row: &Row, i: usize) -> Option<String> {
    row.get(i).and_then(SqlValue::as_str).map(str::to_owned)
}

fn bad(what: &str) -> StorageError {
    StorageError::Other(format!("unreadable {what} in a stored row"))
}

fn tenant_from_row(row: &Row) -> Result<TenantRecord, StorageError> {
    let rate_limit = match opt_text(row, 5) {
        Some(json) => {
            serde_json::from_str::<Option<RateLimit>>(&json).map_err(|_| bad("limits"))?
        }
        None => None,
    };
    Ok(TenantRecord {
        id: text(row, 0)?,
        slug: text(row, 1)?,
        name: text(row, 2)?,
        plan: Plan::parse(&text(row, 3)?).ok_or_else(|| bad("plan"))?,
        status: TenantStatus::parse(&text(row, 4)?).ok_or_else(|| bad("status"))?,
        rate_limit,
        created_at: int(row, 6)?,
        updated_at: int(row, 7)?,
        deleted_at: opt_int(row, 8),
    })
}

fn key_from_row(row: &Row) -> Result<KeyRecord, StorageError> {
    Ok(KeyRecord {
        id: text(row, 0)?,
        tenant_id: text(row, 1)?,
        display_prefix: text(row, 2)?,
        key_hash: text(row, 3)?,
        name: text(row, 4)?,
        key_type: KeyType::parse(&text(row, 5)?).ok_or_else(|| bad("type"))?,
        environment: Environment::parse(&text(row, 6)?).ok_or_else(|| bad("environment"))?,
        permissions: serde_json::from_str(&text(row, 7)?).map_err(|_| bad("permissions"))?,
        created_at: int(row, 8)?,
        revoked_at: opt_int(row, 9),
        expires_at: opt_int(row, 10),
        replaced_by: opt_text(row, 11),
    })
}

fn limits_json(rate_limit: &Option<RateLimit>) -> SqlValue {
    rate_limit
        .as_ref()
        .map(|r| serde_json::to_string(r).expect("plain struct serialises"))
        .into()
}

// ---- tenants (platform-level: only the admin API and authentication read these) ----

pub fn insert_tenant(db: &dyn Sql, t: &TenantRecord) -> Result<(), StorageError> {
    db.execute(
        "INSERT INTO tenants (id, slug, name, plan, status, limits, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        &[
            t.id.as_str().into(),
            t.slug.as_str().into(),
            t.name.as_str().into(),
            t.plan.as_str().into(),
            t.status.as_str().into(),
            limits_json(&t.rate_limit),
            t.created_at.into(),
            t.updated_at.into(),
        ],
    )
    .map(drop)
}

/// Records the display prefixes of a tenant's first keys (the seed's `public_key`/`secret_key`).
pub fn set_tenant_key_prefixes(
    db: &dyn Sql,
    tenant_id: &str,
    public_prefix: &str,
    secret_prefix: &str,
) -> Result<(), StorageError> {
    db.execute(
        "UPDATE tenants SET public_key = ?, secret_key = ? WHERE id = ?",
        &[public_prefix.into(), secret_prefix.into(), tenant_id.into()],
    )
    .map(drop)
}

pub fn find_tenant(db: &dyn Sql, id: &str) -> Result<Option<TenantRecord>, StorageError> {
    let rows = db.query(
        &format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE id = ?"),
        &[id.into()],
    )?;
    rows.first().map(tenant_from_row).transpose()
}

pub fn update_tenant(db: &dyn Sql, t: &TenantRecord) -> Result<(), StorageError> {
    db.execute(
        "UPDATE tenants SET name = ?, plan = ?, status = ?, limits = ?, updated_at = ?, \
         deleted_at = ? WHERE id = ?",
        &[
            t.name.as_str().into(),
            t.plan.as_str().into(),
            t.status.as_str().into(),
            limits_json(&t.rate_limit),
            t.updated_at.into(),
            t.deleted_at.into(),
            t.id.as_str().into(),
        ],
    )
    .map(drop)
}

/// Filters of the admin tenant list.
#[derive(Debug, Default, Clone)]
pub struct TenantFilter {
    pub status: Option<TenantStatus>,
    pub plan: Option<Plan>,
    /// Only these tenants (a platform admin limited to some tenants); `None` is every tenant.
    pub only: Option<Vec<String>>,
}

/// `AND column IN (?, ...)` restricting rows to `only` (no restriction for `None`, nothing at
/// all for an empty list), with its parameters.
pub fn only_tenants_sql(column: &str, only: Option<&[String]>) -> (String, Vec<SqlValue>) {
    match only {
        None => (String::new(), Vec::new()),
        Some([]) => (" AND 0".to_owned(), Vec::new()),
        Some(ids) => (
            format!(" AND {column} IN ({})", vec!["?"; ids.len()].join(", ")),
            ids.iter().map(|i| SqlValue::from(i.as_str())).collect(),
        ),
    }
}

/// Filters of the cross-tenant key list (`GET /admin/api-keys`).
#[derive(Debug, Default)]
pub struct KeyFilter {
    pub only: Option<Vec<String>>,
    pub tenant_id: Option<String>,
    pub key_type: Option<String>,
    /// `active`, `revoked` or `expired`, judged at `now`.
    pub status: Option<String>,
    pub now: i64,
}

/// One page of keys across tenants, oldest first, plus the total matching the filter. The
/// platform admin's view only: every other key read goes through [`TenantScope`].
pub fn list_keys_across_tenants(
    db: &dyn Sql,
    filter: &KeyFilter,
    offset: u64,
    limit: u32,
) -> Result<(Vec<KeyRecord>, u64), StorageError> {
    let (mut where_sql, mut params) = only_tenants_sql("tenant_id", filter.only.as_deref());
    if let Some(t) = &filter.tenant_id {
        where_sql.push_str(" AND tenant_id = ?");
        params.push(t.as_str().into());
    }
    if let Some(t) = &filter.key_type {
        where_sql.push_str(" AND type = ?");
        params.push(t.as_str().into());
    }
    match filter.status.as_deref() {
        Some("active") => {
            where_sql.push_str(
                " AND (revoked_at IS NULL OR revoked_at > ?) AND (expires_at IS NULL OR expires_at > ?)",
            );
            params.push(filter.now.into());
            params.push(filter.now.into());
        }
        Some("revoked") => {
            where_sql.push_str(" AND revoked_at IS NOT NULL AND revoked_at <= ?");
            params.push(filter.now.into());
        }
        Some("expired") => {
            where_sql.push_str(
                " AND (revoked_at IS NULL OR revoked_at > ?) AND expires_at IS NOT NULL AND expires_at <= ?",
            );
            params.push(filter.now.into());
            params.push(filter.now.into());
        }
        _ => {}
    }
    let total = db
        .query(
            &format!("SELECT COUNT(*) FROM api_keys WHERE 1{where_sql}"),
            &params,
        )?
        .first()
        .and_then(|r| r.first())
        .and_then(SqlValue::as_i64)
        .unwrap_or(0) as u64;
    params.push(i64::from(limit).into());
    params.push((offset as i64).into());
    let rows = db.query(
        &format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE 1{where_sql} \
             ORDER BY created_at, rowid LIMIT ? OFFSET ?"
        ),
        &params,
    )?;
    let keys = rows.iter().map(key_from_row).collect::<Result<_, _>>()?;
    Ok((keys, total))
}

/// One page of tenants, oldest first, plus the total that matches the filter.
pub fn list_tenants(
    db: &dyn Sql,
    filter: &TenantFilter,
    offset: u64,
    limit: u32,
) -> Result<(Vec<TenantRecord>, u64), StorageError> {
    let mut clauses = Vec::new();
    let mut params: Vec<SqlValue> = Vec::new();
    if let Some(s) = filter.status {
        clauses.push("status = ?");
        params.push(s.as_str().into());
    }
    if let Some(p) = filter.plan {
        clauses.push("plan = ?");
        params.push(p.as_str().into());
    }
    let (only_sql, only_params) = only_tenants_sql("id", filter.only.as_deref());
    params.extend(only_params);
    let where_sql = format!(
        " WHERE 1{}{only_sql}",
        clauses
            .iter()
            .map(|c| format!(" AND {c}"))
            .collect::<String>()
    );
    let total = db
        .query(&format!("SELECT COUNT(*) FROM tenants{where_sql}"), &params)?
        .first()
        .and_then(|r| r.first())
        .and_then(SqlValue::as_i64)
        .unwrap_or(0) as u64;
    params.push(i64::from(limit).into());
    params.push((offset as i64).into());
    let rows = db.query(
        &format!(
            "SELECT {TENANT_COLUMNS} FROM tenants{where_sql} \
             ORDER BY created_at, rowid LIMIT ? OFFSET ?"
        ),
        &params,
    )?;
    let tenants = rows.iter().map(tenant_from_row).collect::<Result<_, _>>()?;
    Ok((tenants, total))
}

// ---- keys: the one unscoped lookup, used to find out whose key a request carries ----

/// Finds a key by its keyed hash. Only authentication may call this: it is how a request's
/// tenant is learnt in the first place. The SQL equality on the hash is not a timing risk
/// (an attacker cannot choose hash prefixes); the caller still compares in constant time.
pub fn find_key_by_hash(db: &dyn Sql, hash: &str) -> Result<Option<KeyRecord>, StorageError> {
    let rows = db.query(
        &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = ?"),
        &[hash.into()],
    )?;
    rows.first().map(key_from_row).transpose()
}

/// A proof that the current request acts for one tenant; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantScope {
    tenant_id: String,
}

impl TenantScope {
    /// Only the authentication layer and the admin handlers make scopes.
    pub(crate) fn new(tenant_id: &str) -> Self {
        Self {
            tenant_id: tenant_id.to_owned(),
        }
    }

    pub fn tenant_id(&self) -> &str {
        &self.tenant_id
    }

    /// The tenant's keys, oldest first; only test keys when `only` says so.
    pub fn list_keys(
        &self,
        db: &dyn Sql,
        only: Option<Environment>,
    ) -> Result<Vec<KeyRecord>, StorageError> {
        let rows = match only {
            Some(env) => db.query(
                &format!(
                    "SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant_id = ? AND environment = ? \
                     ORDER BY created_at, rowid"
                ),
                &[self.tenant_id.as_str().into(), env.as_str().into()],
            )?,
            None => db.query(
                &format!(
                    "SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant_id = ? \
                     ORDER BY created_at, rowid"
                ),
                &[self.tenant_id.as_str().into()],
            )?,
        };
        rows.iter().map(key_from_row).collect()
    }

    pub fn get_key(&self, db: &dyn Sql, id: &str) -> Result<Option<KeyRecord>, StorageError> {
        let rows = db.query(
            &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant_id = ? AND id = ?"),
            &[self.tenant_id.as_str().into(), id.into()],
        )?;
        rows.first().map(key_from_row).transpose()
    }

    /// Inserts a key for this tenant, whatever `tenant_id` the record carries.
    pub fn insert_key(&self, db: &dyn Sql, k: &KeyRecord) -> Result<(), StorageError> {
        let permissions =
            serde_json::to_string(&k.permissions).expect("a list of strings serialises");
        db.execute(
            &format!(
                "INSERT INTO api_keys ({KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            ),
            &[
                k.id.as_str().into(),
                self.tenant_id.as_str().into(),
                k.display_prefix.as_str().into(),
                k.key_hash.as_str().into(),
                k.name.as_str().into(),
                k.key_type.as_str().into(),
                k.environment.as_str().into(),
                permissions.into(),
                k.created_at.into(),
                k.revoked_at.into(),
                k.expires_at.into(),
                k.replaced_by.clone().into(),
            ],
        )
        .map(drop)
    }

    /// Sets `revoked_at` unless already set. Answers whether this call revoked it.
    pub fn revoke_key(&self, db: &dyn Sql, id: &str, now: i64) -> Result<bool, StorageError> {
        let changed = db.execute(
            "UPDATE api_keys SET revoked_at = ? \
             WHERE tenant_id = ? AND id = ? AND revoked_at IS NULL",
            &[now.into(), self.tenant_id.as_str().into(), id.into()],
        )?;
        Ok(changed == 1)
    }

    /// Marks `id` as replaced by `successor`, ending at `ends_at` (now, or after a grace
    /// period). The condition makes it a compare-and-set: of two concurrent rotations of one
    /// key only one changes the row, so only one successor survives.
    pub fn retire_key(
        &self,
        db: &dyn Sql,
        id: &str,
        successor: &str,
        ends_at: i64,
        immediate: bool,
    ) -> Result<bool, StorageError> {
        let sql = if immediate {
            "UPDATE api_keys SET replaced_by = ?, revoked_at = ? \
             WHERE tenant_id = ? AND id = ? AND revoked_at IS NULL AND replaced_by IS NULL"
        } else {
            "UPDATE api_keys SET replaced_by = ?, expires_at = ? \
             WHERE tenant_id = ? AND id = ? AND revoked_at IS NULL AND replaced_by IS NULL"
        };
        let changed = db.execute(
            sql,
            &[
                successor.into(),
                ends_at.into(),
                self.tenant_id.as_str().into(),
                id.into(),
            ],
        )?;
        Ok(changed == 1)
    }
}

/// Whether any tenant, deleted ones included, holds `slug`: deleted tenants keep their slug.
pub fn find_tenant_by_slug_exists(db: &dyn Sql, slug: &str) -> Result<bool, StorageError> {
    Ok(!db
        .query("SELECT 1 FROM tenants WHERE slug = ?", &[slug.into()])?
        .is_empty())
}

impl TenantScope {
    /// This tenant's key with the given hash, for the tenant object's cache.
    pub fn find_key_by_hash(
        &self,
        db: &dyn Sql,
        hash: &str,
    ) -> Result<Option<KeyRecord>, StorageError> {
        let rows = db.query(
            &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant_id = ? AND key_hash = ?"),
            &[self.tenant_id.as_str().into(), hash.into()],
        )?;
        rows.first().map(key_from_row).transpose()
    }

    /// Ends the grace period of every rotated key whose `expires_at` has passed, by setting
    /// `revoked_at`. Answers the keys it ended.
    pub fn end_expired_grace_periods(
        &self,
        db: &dyn Sql,
        now: i64,
    ) -> Result<Vec<KeyRecord>, StorageError> {
        let rows = db.query(
            &format!(
                "SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant_id = ? AND revoked_at IS NULL \
                 AND expires_at IS NOT NULL AND expires_at <= ?"
            ),
            &[self.tenant_id.as_str().into(), now.into()],
        )?;
        let ended: Vec<KeyRecord> = rows.iter().map(key_from_row).collect::<Result<_, _>>()?;
        for k in &ended {
            db.execute(
                "UPDATE api_keys SET revoked_at = expires_at WHERE tenant_id = ? AND id = ? \
                 AND revoked_at IS NULL",
                &[self.tenant_id.as_str().into(), k.id.as_str().into()],
            )?;
        }
        Ok(ended)
    }

    /// The earliest future end of a grace period, for the next alarm.
    pub fn next_grace_end(&self, db: &dyn Sql) -> Result<Option<i64>, StorageError> {
        Ok(db
            .query(
                "SELECT MIN(expires_at) FROM api_keys WHERE tenant_id = ? AND revoked_at IS NULL \
                 AND expires_at IS NOT NULL",
                &[self.tenant_id.as_str().into()],
            )?
            .first()
            .and_then(|r| r.first())
            .and_then(SqlValue::as_i64))
    }
}
