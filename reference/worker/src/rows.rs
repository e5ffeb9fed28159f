//! Row images: how the directory object and a tenant's object hand each other rows.
//!
//! Both objects apply the same migrations, so a table has the same columns in the same order
//! on both sides and a row travels as a JSON array of its values. Which side owns which rows
//! (see `docs/worker.md`) decides how an image is applied:
//! - rows the directory wrote for a tenant (the tenant's creation, a key the admin minted) are
//!   *new* to the tenant's object: `INSERT OR IGNORE`, so a row the tenant's object has since
//!   changed is never rolled back;
//! - the tenant's keys come back to the directory's mirror with [`merge_keys`], which only
//!   ever moves a key towards its end (revocation and expiry take the earlier time), so images
//!   that arrive out of order cannot revive a key.

use auth_core::ports::{Row, Sql, SqlValue, StorageError};
use serde_json::Value;

/// Tables whose rows belong to one tenant and live in that tenant's object. The directory
/// writes some of them once (creation, onboarding, admin-minted keys) and ships them over.
/// In an order that satisfies their foreign keys.
pub const TENANT_TABLES: &[&str] = &[
    "api_keys",
    "tenant_users",
    "user_tokens",
    "tenant_data_schemas",
    "mail_outbox",
    "tenant_onboarding",
];

/// The key columns the mirror keeps (all but `last_used_at`), in [`merge_keys`]'s order.
pub const KEY_COLUMNS: &str = "id, tenant_id, key_prefix, key_hash, name, type, environment, \
     permissions, created_at, revoked_at, expires_at, replaced_by";

/// A tenant's keys as [`merge_keys`] takes them.
pub fn key_rows(db: &dyn Sql, tenant_id: &str) -> Result<Image, StorageError> {
    Ok(db
        .query(
            &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant_id = ?"),
            &[tenant_id.into()],
        )?
        .iter()
        .map(to_json)
        .collect())
}

/// Writes the directory's image of a tenant row into a tenant's object. An upsert, not a
/// replace: replacing would delete the row first and cascade to the tenant's keys and users.
pub fn upsert_tenant(db: &dyn Sql, row: &[Value]) -> Result<(), StorageError> {
    // tenants has 15 columns (0001_initial.sql).
    if row.len() != 15 {
        return Err(StorageError::Other(
            "a tenants image of the wrong width".into(),
        ));
    }
    db.execute(
        "INSERT INTO tenants VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (id) DO UPDATE SET slug = excluded.slug, name = excluded.name, \
           parent_id = excluded.parent_id, depth = excluded.depth, plan = excluded.plan, \
           status = excluded.status, public_key = excluded.public_key, \
           secret_key = excluded.secret_key, branding = excluded.branding, \
           limits = excluded.limits, schema_version = excluded.schema_version, \
           created_at = excluded.created_at, updated_at = excluded.updated_at, \
           deleted_at = excluded.deleted_at",
        &from_json(row),
    )
    .map(drop)
}

/// Replaces a tenant object's copy of the JWT keyring (`jwt_keys`: kid, status, created_at,
/// retired_at) with the directory's.
pub fn replace_keyring(db: &dyn Sql, rows: &Image) -> Result<(), StorageError> {
    db.execute("DELETE FROM jwt_keys", &[])?;
    for row in rows {
        db.execute(
            "INSERT INTO jwt_keys (kid, status, created_at, retired_at) VALUES (?, ?, ?, ?)",
            &from_json(row),
        )?;
    }
    Ok(())
}

/// One table's rows as JSON arrays.
pub type Image = Vec<Vec<Value>>;

pub fn to_json(row: &Row) -> Vec<Value> {
    row.iter()
        .map(|v| match v {
            SqlValue::Null => Value::Null,
            SqlValue::Integer(i) => Value::from(*i),
            SqlValue::Text(s) => Value::from(s.as_str()),
        })
        .collect()
}

fn from_json(values: &[Value]) -> Vec<SqlValue> {
    values
        .iter()
        .map(|v| match v {
            Value::Number(n) => n.as_i64().map_or(SqlValue::Null, SqlValue::Integer),
            Value::String(s) => SqlValue::Text(s.clone()),
            Value::Bool(b) => SqlValue::Integer(i64::from(*b)),
            _ => SqlValue::Null,
        })
        .collect()
}

/// Every row of `table` that `condition` (with `params`) selects, columns in table order.
pub fn select(
    db: &dyn Sql,
    table: &str,
    condition: &str,
    params: &[SqlValue],
) -> Result<Image, StorageError> {
    Ok(db
        .query(&format!("SELECT * FROM {table} WHERE {condition}"), params)?
        .iter()
        .map(to_json)
        .collect())
}

/// The tenant's rows of every table in [`TENANT_TABLES`], by table.
pub fn tenant_rows(db: &dyn Sql, tenant_id: &str) -> Result<Vec<(String, Image)>, StorageError> {
    TENANT_TABLES
        .iter()
        .map(|t| {
            Ok((
                (*t).to_owned(),
                select(db, t, "tenant_id = ?", &[tenant_id.into()])?,
            ))
        })
        .collect()
}

/// Writes rows into `table`: `verb` is `INSERT OR IGNORE` or `INSERT OR REPLACE`.
pub fn insert(db: &dyn Sql, verb: &str, table: &str, rows: &Image) -> Result<(), StorageError> {
    if !TENANT_TABLES.contains(&table) {
        // Table names come from the other object, never from a client; refuse anything else
        // all the same rather than splice an unknown name into SQL.
        return Err(StorageError::Other(format!("not a shipped table: {table}")));
    }
    for row in rows {
        let marks = vec!["?"; row.len()].join(", ");
        db.execute(
            &format!("{verb} INTO {table} VALUES ({marks})"),
            &from_json(row),
        )?;
    }
    Ok(())
}

/// Folds images of a tenant's keys into the directory's mirror. Key rows are never deleted;
/// an existing row keeps the earlier of each end time and the first successor it learned of.
pub fn merge_keys(db: &dyn Sql, rows: &Image) -> Result<(), StorageError> {
    // api_keys columns: id, tenant_id, key_prefix, key_hash, name, type, environment,
    // permissions, created_at, revoked_at, expires_at, replaced_by (0001_initial.sql).
    for row in rows {
        let values = from_json(row);
        if values.len() != 12 {
            return Err(StorageError::Other(
                "an api_keys image of the wrong width".into(),
            ));
        }
        db.execute(
            "INSERT INTO api_keys (id, tenant_id, key_prefix, key_hash, name, type, environment, \
               permissions, created_at, revoked_at, expires_at, replaced_by) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (id) DO UPDATE SET \
               revoked_at = CASE WHEN api_keys.revoked_at IS NULL THEN excluded.revoked_at \
                 WHEN excluded.revoked_at IS NULL THEN api_keys.revoked_at \
                 ELSE MIN(api_keys.revoked_at, excluded.revoked_at) END, \
               expires_at = CASE WHEN api_keys.expires_at IS NULL THEN excluded.expires_at \
                 WHEN excluded.expires_at IS NULL THEN api_keys.expires_at \
                 ELSE MIN(api_keys.expires_at, excluded.expires_at) END, \
               replaced_by = COALESCE(api_keys.replaced_by, excluded.replaced_by)",
            &values,
        )?;
    }
    Ok(())
}

/// Columns of a usage row as shipped (`usage_metrics`, 0001 and 0003).
pub const USAGE_COLUMNS: &str = "id, tenant_id, metric_type, endpoint, count, rate_limited, \
     period_start, period_end, day, recorded_at";

/// Adds shipped usage counts to the directory's `usage_metrics`, as the core's flush does.
pub fn merge_usage(db: &dyn Sql, rows: &Image) -> Result<(), StorageError> {
    for row in rows {
        let values = from_json(row);
        if values.len() != 10 {
            return Err(StorageError::Other(
                "a usage image of the wrong width".into(),
            ));
        }
        db.execute(
            &format!(
                "INSERT INTO usage_metrics ({USAGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (tenant_id, metric_type, endpoint, period_start) DO UPDATE SET \
                   count = count + excluded.count, \
                   rate_limited = rate_limited + excluded.rate_limited, \
                   recorded_at = excluded.recorded_at"
            ),
            &values,
        )?;
    }
    Ok(())
}

/// Takes every usage row out of a tenant object's `usage_metrics` (select and delete in the
/// caller's transaction), for shipping to the directory.
pub fn take_usage(db: &dyn Sql) -> Result<Image, StorageError> {
    let rows = db.query(&format!("SELECT {USAGE_COLUMNS} FROM usage_metrics"), &[])?;
    db.execute("DELETE FROM usage_metrics", &[])?;
    Ok(rows.iter().map(to_json).collect())
}
