//! Row images: how the directory object and a tenant's object hand each other rows.
//!
//! Both objects apply the same migrations, so a table has the same columns on both sides, and
//! a row travels as its table's named image ([`crate::tables`]: one struct per table, a field
//! per column, made from the one table list). Which side owns which rows
//! (see `docs/worker.md`) decides how an image is applied:
//! - rows the directory wrote for a tenant (the tenant's creation, a key the admin minted) are
//!   *new* to the tenant's object: `INSERT OR IGNORE`, so a row the tenant's object has since
//!   changed is never rolled back;
//! - the tenant's keys come back to the directory's mirror with [`merge_keys`], which only
//!   ever moves a key towards its end (revocation and expiry take the earlier time), so images
//!   that arrive out of order cannot revive a key.

use auth_core::ports::{Sql, SqlValue, StorageError};

use crate::tables::{self, KeyRow, KeyringRow, RowImage, TableRows, TenantRow, UsageRow};

/// Every row of `T`'s table that `condition` (with `params`) selects, as named images.
pub fn select<T: RowImage>(
    db: &dyn Sql,
    condition: &str,
    params: &[SqlValue],
) -> Result<Vec<T>, StorageError> {
    db.query(
        &format!("SELECT * FROM {} WHERE {condition}", T::TABLE),
        params,
    )?
    .iter()
    .map(|row| T::from_sql(row).ok_or_else(|| short(T::TABLE)))
    .collect()
}

fn short(table: &str) -> StorageError {
    StorageError::Other(format!("a {table} row shorter than its table"))
}

/// A tenant's keys as [`merge_keys`] takes them.
pub fn key_rows(db: &dyn Sql, tenant_id: &str) -> Result<Vec<KeyRow>, StorageError> {
    select(db, "tenant_id = ?", &[tenant_id.into()])
}

/// Writes the directory's image of a tenant row into a tenant's object. An upsert, not a
/// replace: replacing would delete the row first and cascade to the tenant's keys and users.
pub fn upsert_tenant(db: &dyn Sql, row: &TenantRow) -> Result<(), StorageError> {
    db.execute(
        "INSERT INTO tenants VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (id) DO UPDATE SET slug = excluded.slug, name = excluded.name, \
           parent_id = excluded.parent_id, depth = excluded.depth, plan = excluded.plan, \
           status = excluded.status, public_key = excluded.public_key, \
           secret_key = excluded.secret_key, branding = excluded.branding, \
           limits = excluded.limits, schema_version = excluded.schema_version, \
           created_at = excluded.created_at, updated_at = excluded.updated_at, \
           deleted_at = excluded.deleted_at",
        &row.params(),
    )
    .map(drop)
}

/// The directory's keyring (`jwt_keys`), oldest first.
pub fn keyring(db: &dyn Sql) -> Result<Vec<KeyringRow>, StorageError> {
    select(db, "1 ORDER BY created_at, rowid", &[])
}

/// Replaces a tenant object's copy of the JWT keyring with the directory's.
pub fn replace_keyring(db: &dyn Sql, rows: &[KeyringRow]) -> Result<(), StorageError> {
    db.execute("DELETE FROM jwt_keys", &[])?;
    for row in rows {
        db.execute(
            "INSERT INTO jwt_keys (kid, status, created_at, retired_at) VALUES (?, ?, ?, ?)",
            &row.params(),
        )?;
    }
    Ok(())
}

/// The rows an admin change wrote for a tenant, which its notice carries to the tenant's
/// object: every row of the tenant when it was just created (a handful: two keys and the
/// onboarding rows), the one key when the admin minted a key, nothing for other changes (the
/// tenant's row itself travels with every call). Shipping only these keeps a notice's size
/// independent of how many keys the tenant has.
pub fn rows_of_notice(
    db: &dyn Sql,
    tenant_id: &str,
    notice: &auth_core::Notice,
) -> Result<Vec<TableRows>, StorageError> {
    match notice.action.as_str() {
        "tenant.created" => tenant_rows(db, tenant_id),
        "api_key.created" => Ok(vec![TableRows::KeyRow(select(
            db,
            "tenant_id = ? AND id = ?",
            &[tenant_id.into(), notice.target.as_str().into()],
        )?)]),
        _ => Ok(Vec::new()),
    }
}

/// What a tenant's object needs to record which of its keys changed since the directory last
/// took them (inserts and updates of `api_keys`, by triggers, inside the change's transaction).
pub const KEY_CHANGES_DDL: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS _key_changes (id TEXT PRIMARY KEY)",
    "CREATE TRIGGER IF NOT EXISTS _key_changes_insert AFTER INSERT ON api_keys \
     BEGIN INSERT OR IGNORE INTO _key_changes (id) VALUES (NEW.id); END",
    "CREATE TRIGGER IF NOT EXISTS _key_changes_update AFTER UPDATE ON api_keys \
     BEGIN INSERT OR IGNORE INTO _key_changes (id) VALUES (NEW.id); END",
];

/// Takes the keys changed since the last take (every key of the tenant when `all`), for the
/// directory's mirror; run it in a transaction.
pub fn take_changed_keys(
    db: &dyn Sql,
    tenant_id: &str,
    all: bool,
) -> Result<Vec<KeyRow>, StorageError> {
    let rows = if all {
        key_rows(db, tenant_id)?
    } else {
        select(
            db,
            "tenant_id = ? AND id IN (SELECT id FROM _key_changes)",
            &[tenant_id.into()],
        )?
    };
    db.execute("DELETE FROM _key_changes", &[])?;
    Ok(rows)
}

/// The tenant's rows of every shipped table ([`tables::shipped`]), by table.
pub fn tenant_rows(db: &dyn Sql, tenant_id: &str) -> Result<Vec<TableRows>, StorageError> {
    tables::shipped()
        .map(|t| {
            let rows = db.query(
                &format!("SELECT * FROM {} WHERE tenant_id = ?", t.name),
                &[tenant_id.into()],
            )?;
            TableRows::from_sql(t.name, &rows).ok_or_else(|| short(t.name))
        })
        .collect()
}

/// Writes shipped rows into their table: `verb` is `INSERT OR IGNORE` or `INSERT OR REPLACE`.
pub fn insert(db: &dyn Sql, verb: &str, rows: &TableRows) -> Result<(), StorageError> {
    let table = rows.table();
    if !table.shipped {
        // Only the tables the directory writes for a tenant travel; refuse anything else
        // rather than let one object overwrite the other's rows.
        return Err(StorageError::Other(format!(
            "not a shipped table: {}",
            table.name
        )));
    }
    let columns = table.columns();
    let marks = vec!["?"; columns.len()].join(", ");
    let sql = format!(
        "{verb} INTO {} ({}) VALUES ({marks})",
        table.name,
        columns.join(", ")
    );
    for params in rows.params() {
        db.execute(&sql, &params)?;
    }
    Ok(())
}

/// Folds images of a tenant's keys into the directory's mirror. Key rows are never deleted;
/// an existing row keeps the earlier of each end time and the first successor it learned of.
/// The mirror does not keep `last_used_at`.
pub fn merge_keys(db: &dyn Sql, rows: &[KeyRow]) -> Result<(), StorageError> {
    for r in rows {
        let values: Vec<SqlValue> = [
            &r.id,
            &r.tenant_id,
            &r.key_prefix,
            &r.key_hash,
            &r.name,
            &r.r#type,
            &r.environment,
            &r.permissions,
            &r.created_at,
            &r.revoked_at,
            &r.expires_at,
            &r.replaced_by,
        ]
        .into_iter()
        .map(tables::to_sql)
        .collect();
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

/// Adds shipped usage counts to the directory's `usage_metrics`, as the core's flush does.
pub fn merge_usage(db: &dyn Sql, rows: &[UsageRow]) -> Result<(), StorageError> {
    let columns = tables::table(UsageRow::TABLE)
        .map(|t| t.columns().join(", "))
        .unwrap_or_default();
    for row in rows {
        db.execute(
            &format!(
                "INSERT INTO usage_metrics ({columns}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (tenant_id, metric_type, endpoint, period_start) DO UPDATE SET \
                   count = count + excluded.count, \
                   rate_limited = rate_limited + excluded.rate_limited, \
                   recorded_at = excluded.recorded_at"
            ),
            &row.params(),
        )?;
    }
    Ok(())
}

/// Takes every usage row out of a tenant object's `usage_metrics` (select and delete in the
/// caller's transaction), for shipping to the directory.
pub fn take_usage(db: &dyn Sql) -> Result<Vec<UsageRow>, StorageError> {
    let rows = select(db, "1", &[])?;
    db.execute("DELETE FROM usage_metrics", &[])?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use auth_core::ports::Row;
    use serde_json::{json, Value};

    /// The port over an in-memory SQLite with the migrations applied (what the objects run).
    struct Memory(rusqlite::Connection);

    impl Memory {
        fn new() -> Self {
            let conn = rusqlite::Connection::open_in_memory().expect("sqlite");
            conn.execute_batch("PRAGMA foreign_keys = ON;")
                .expect("pragma");
            for (_, script) in auth_core::migrations::MIGRATIONS {
                conn.execute_batch(script).expect("migration");
            }
            Memory(conn)
        }
    }

    fn bind(params: &[SqlValue]) -> Vec<rusqlite::types::Value> {
        params
            .iter()
            .map(|p| match p {
                SqlValue::Null => rusqlite::types::Value::Null,
                SqlValue::Integer(i) => rusqlite::types::Value::Integer(*i),
                SqlValue::Text(s) => rusqlite::types::Value::Text(s.clone()),
            })
            .collect()
    }

    impl Sql for Memory {
        fn execute(&self, sql: &str, params: &[SqlValue]) -> Result<usize, StorageError> {
            self.0
                .execute(sql, rusqlite::params_from_iter(bind(params)))
                .map_err(|e| StorageError::Other(e.to_string()))
        }
        fn query(&self, sql: &str, params: &[SqlValue]) -> Result<Vec<Row>, StorageError> {
            let mut stmt = self
                .0
                .prepare(sql)
                .map_err(|e| StorageError::Other(e.to_string()))?;
            let n = stmt.column_count();
            let rows = stmt
                .query_map(rusqlite::params_from_iter(bind(params)), |r| {
                    (0..n)
                        .map(|i| {
                            Ok(match r.get::<_, rusqlite::types::Value>(i)? {
                                rusqlite::types::Value::Integer(v) => SqlValue::Integer(v),
                                rusqlite::types::Value::Text(v) => SqlValue::Text(v),
                                _ => SqlValue::Null,
                            })
                        })
                        .collect()
                })
                .map_err(|e| StorageError::Other(e.to_string()))?;
            rows.collect::<Result<_, _>>()
                .map_err(|e| StorageError::Other(e.to_string()))
        }
        fn transaction(
            &self,
            work: &mut dyn FnMut(&dyn Sql) -> Result<(), StorageError>,
        ) -> Result<(), StorageError> {
            work(self)
        }
    }

    fn tenant(db: &Memory) {
        db.execute(
            "INSERT INTO tenants (id, slug, name, created_at, updated_at) \
             VALUES ('t1', 'one', 'One', 1, 1)",
            &[],
        )
        .expect("tenant");
    }

    fn key(revoked_at: Option<i64>, expires_at: Option<i64>, replaced_by: Option<&str>) -> KeyRow {
        KeyRow {
            id: json!("key_1"),
            tenant_id: json!("t1"),
            key_prefix: json!("sk_test_abcd"),
            key_hash: json!("hash-1"),
            name: json!("main"),
            r#type: json!("secret"),
            environment: json!("test"),
            permissions: json!("[]"),
            created_at: json!(10),
            last_used_at: Value::Null,
            revoked_at: revoked_at.map_or(Value::Null, Value::from),
            expires_at: expires_at.map_or(Value::Null, Value::from),
            replaced_by: replaced_by.map_or(Value::Null, Value::from),
        }
    }

    fn ends(db: &Memory) -> Row {
        db.query(
            "SELECT revoked_at, expires_at, replaced_by FROM api_keys WHERE id = 'key_1'",
            &[],
        )
        .expect("query")
        .remove(0)
    }

    #[test]
    fn a_late_image_never_revives_a_key() {
        let db = Memory::new();
        tenant(&db);
        merge_keys(&db, &[key(None, None, None)]).expect("new key");
        // Rotated (grace until 500), then the grace ended (revoked at 500)...
        merge_keys(&db, &[key(Some(500), Some(500), Some("key_2"))]).expect("ended");
        // ...and only then does the image of the rotation, or the very first one, arrive.
        merge_keys(&db, &[key(None, Some(500), Some("key_2"))]).expect("late");
        merge_keys(&db, &[key(None, None, None)]).expect("later");
        assert_eq!(
            ends(&db),
            vec![
                SqlValue::Integer(500),
                SqlValue::Integer(500),
                SqlValue::Text("key_2".into())
            ]
        );
        // An earlier end always wins: a revocation before the grace ran out.
        merge_keys(&db, &[key(Some(300), Some(500), Some("key_2"))]).expect("earlier");
        assert_eq!(ends(&db)[0], SqlValue::Integer(300));
    }

    #[test]
    fn the_directory_takes_each_changed_key_once() {
        let db = Memory::new();
        for ddl in KEY_CHANGES_DDL {
            db.execute(ddl, &[]).expect("ddl");
        }
        tenant(&db);
        let ids = |image: &[KeyRow]| -> Vec<String> {
            image
                .iter()
                .filter_map(|r| r.id.as_str().map(str::to_owned))
                .collect()
        };
        assert!(take_changed_keys(&db, "t1", false)
            .expect("take")
            .is_empty());
        merge_keys(&db, &[key(None, None, None)]).expect("insert");
        assert_eq!(
            ids(&take_changed_keys(&db, "t1", false).expect("take")),
            ["key_1"]
        );
        assert!(take_changed_keys(&db, "t1", false)
            .expect("again")
            .is_empty());
        db.execute("UPDATE api_keys SET revoked_at = 7 WHERE id = 'key_1'", &[])
            .expect("revoke");
        let changed = take_changed_keys(&db, "t1", false).expect("take");
        assert_eq!(
            changed[0].revoked_at,
            json!(7),
            "the image carries the revocation"
        );
        assert_eq!(
            ids(&take_changed_keys(&db, "t1", true).expect("all")),
            ["key_1"]
        );
    }

    #[test]
    fn a_tenant_row_is_updated_in_place_and_keeps_its_keys() {
        let db = Memory::new();
        tenant(&db);
        merge_keys(&db, &[key(None, None, None)]).expect("key");
        let mut row = select::<TenantRow>(&db, "id = ?", &["t1".into()]).expect("row");
        let mut row = row.remove(0);
        row.name = json!("Renamed");
        upsert_tenant(&db, &row).expect("upsert");
        let name = db
            .query("SELECT name FROM tenants WHERE id = 't1'", &[])
            .expect("name");
        assert_eq!(name[0][0], SqlValue::Text("Renamed".into()));
        assert_eq!(
            db.query("SELECT COUNT(*) FROM api_keys", &[])
                .expect("count")[0][0],
            SqlValue::Integer(1),
            "an upsert, not a replace: the cascade would have deleted the key"
        );
        assert!(
            serde_json::from_value::<TenantRow>(json!({"id": "t1", "slug": "one", "name": "x"}))
                .is_err(),
            "a short image is refused"
        );
        assert!(
            insert(&db, "INSERT OR IGNORE", &TableRows::TenantRow(vec![row])).is_err(),
            "only shipped tables are written from another object's rows"
        );
    }
}
