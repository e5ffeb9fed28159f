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

/// The rows an admin change wrote for a tenant, which its notice carries to the tenant's
/// object: every row of the tenant when it was just created (a handful: two keys and the
/// onboarding rows), the one key when the admin minted a key, nothing for other changes (the
/// tenant's row itself travels with every call). Shipping only these keeps a notice's size
/// independent of how many keys the tenant has.
pub fn rows_of_notice(
    db: &dyn Sql,
    tenant_id: &str,
    notice: &auth_core::Notice,
) -> Result<Vec<(String, Image)>, StorageError> {
    match notice.action.as_str() {
        "tenant.created" => tenant_rows(db, tenant_id),
        "api_key.created" => Ok(vec![(
            "api_keys".to_owned(),
            select(
                db,
                "api_keys",
                "tenant_id = ? AND id = ?",
                &[tenant_id.into(), notice.target.as_str().into()],
            )?,
        )]),
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
pub fn take_changed_keys(db: &dyn Sql, tenant_id: &str, all: bool) -> Result<Image, StorageError> {
    let rows = if all {
        key_rows(db, tenant_id)?
    } else {
        db.query(
            &format!(
                "SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant_id = ? \
                 AND id IN (SELECT id FROM _key_changes)"
            ),
            &[tenant_id.into()],
        )?
        .iter()
        .map(to_json)
        .collect()
    };
    db.execute("DELETE FROM _key_changes", &[])?;
    Ok(rows)
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

#[cfg(test)]
mod tests {
    use super::*;
    use auth_core::ports::Row;
    use serde_json::json;

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

    fn key(
        revoked_at: Option<i64>,
        expires_at: Option<i64>,
        replaced_by: Option<&str>,
    ) -> Vec<Value> {
        vec![
            json!("key_1"),
            json!("t1"),
            json!("sk_test_abcd"),
            json!("hash-1"),
            json!("main"),
            json!("secret"),
            json!("test"),
            json!("[]"),
            json!(10),
            revoked_at.map_or(Value::Null, Value::from),
            expires_at.map_or(Value::Null, Value::from),
            replaced_by.map_or(Value::Null, Value::from),
        ]
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
        merge_keys(&db, &vec![key(None, None, None)]).expect("new key");
        // Rotated (grace until 500), then the grace ended (revoked at 500)...
        merge_keys(&db, &vec![key(Some(500), Some(500), Some("key_2"))]).expect("ended");
        // ...and only then does the image of the rotation, or the very first one, arrive.
        merge_keys(&db, &vec![key(None, Some(500), Some("key_2"))]).expect("late");
        merge_keys(&db, &vec![key(None, None, None)]).expect("later");
        assert_eq!(
            ends(&db),
            vec![
                SqlValue::Integer(500),
                SqlValue::Integer(500),
                SqlValue::Text("key_2".into())
            ]
        );
        // An earlier end always wins: a revocation before the grace ran out.
        merge_keys(&db, &vec![key(Some(300), Some(500), Some("key_2"))]).expect("earlier");
        assert_eq!(ends(&db)[0], SqlValue::Integer(300));
    }

    #[test]
    fn the_directory_takes_each_changed_key_once() {
        let db = Memory::new();
        for ddl in KEY_CHANGES_DDL {
            db.execute(ddl, &[]).expect("ddl");
        }
        tenant(&db);
        let ids = |image: &Image| -> Vec<String> {
            image
                .iter()
                .filter_map(|r| r[0].as_str().map(str::to_owned))
                .collect()
        };
        assert!(take_changed_keys(&db, "t1", false)
            .expect("take")
            .is_empty());
        merge_keys(&db, &vec![key(None, None, None)]).expect("insert");
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
        assert_eq!(changed[0][9], json!(7), "the image carries the revocation");
        assert_eq!(
            ids(&take_changed_keys(&db, "t1", true).expect("all")),
            ["key_1"]
        );
    }

    #[test]
    fn a_tenant_row_is_updated_in_place_and_keeps_its_keys() {
        let db = Memory::new();
        tenant(&db);
        merge_keys(&db, &vec![key(None, None, None)]).expect("key");
        let mut row = select(&db, "tenants", "id = ?", &["t1".into()]).expect("row");
        let mut row = row.remove(0);
        row[2] = json!("Renamed");
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
            upsert_tenant(&db, &row[..3]).is_err(),
            "a short image is refused"
        );
        assert!(insert(&db, "INSERT OR IGNORE", "tenants; DROP TABLE x", &vec![]).is_err());
    }
}
