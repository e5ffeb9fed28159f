//! The relational tables in D1 (`DB`): every row the objects write, copied through a
//! transactional outbox.
//!
//! The objects decide (see `docs/worker.md` for why D1 cannot: the core's rules are synchronous
//! read-modify-writes, and D1 is asynchronous with no interactive transactions). D1 holds the
//! same tables, created by the same migration files, so operators and other services get the
//! whole relational state with `wrangler d1 execute`, D1's backups and its time travel.
//!
//! How a row gets there: SQLite triggers on each table an object owns record the primary key of
//! every inserted, updated or deleted row in `_d1_outbox`, inside the object's own transaction,
//! so a change and its outbox entry commit together or not at all. After the call, before its
//! answer, the object takes the outbox and sends D1 one batch (atomic there) with the current
//! image of each changed row, or its deletion. A failed batch goes back into the outbox and is
//! retried by the object's alarm, so D1 may trail the objects but never loses a change. One
//! drain at a time per object keeps batches in order (a second waits for the first, so an
//! answer leaves only after its rows were offered to D1); foreign keys are checked at the end
//! of each batch (`defer_foreign_keys`), because rows of one tenant come from two objects.

use std::cell::Cell;
use std::collections::HashSet;

use auth_core::ports::{Sql, SqlValue, StorageError};
use wasm_bindgen::JsValue;
use worker::Env;

use crate::storage::DoSql;

/// Tables an earlier version copied to D1 and this one does not: their triggers are dropped
/// and their pending entries forgotten when an object opens.
const NO_LONGER_MIRRORED: &[&str] = &["mail_outbox"];

/// Tables with no primary key, and the UNIQUE constraint that identifies their rows
/// (0001_initial.sql).
const UNIQUE_KEYS: &[(&str, &[&str])] = &[(
    "platform_admin_tenant_permissions",
    &["admin_id", "tenant_id"],
)];

/// How long a drain waits for another one of the same object to finish, and how often it looks.
const DRAIN_WAIT_MS: u64 = 5_000;
const DRAIN_POLL_MS: u64 = 2;

/// Retry delay of a batch D1 refused or could not be reached for.
pub const RETRY_MS: i64 = 1_000;

struct Table {
    name: &'static str,
    columns: Vec<String>,
    key: Vec<String>,
}

/// One object's copy to D1.
pub struct Mirror {
    tables: Vec<Table>,
    draining: Cell<bool>,
}

/// A taken outbox: the statements for D1 and the entries to put back if they fail.
pub struct Batch {
    statements: Vec<(String, Vec<SqlValue>)>,
    taken: Vec<(String, String, String)>,
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Opens an object's storage: the migrations, the object's own `tables` (DDL), and the copy of
/// `mirrored` to D1 when the Worker has a `DB` binding (without one, nothing is copied and no
/// outbox grows).
pub fn open_storage(
    state: &worker::State,
    env: &Env,
    tables: &[&str],
    mirrored: &[&'static str],
) -> Result<(DoSql, Option<Mirror>), String> {
    let db = DoSql::new(&state.storage());
    crate::storage::apply_migrations(&db).map_err(|e| format!("migrations: {e}"))?;
    for ddl in tables {
        db.execute(ddl, &[]).map_err(|e| format!("storage: {e}"))?;
    }
    let mirror = match env.d1("DB") {
        Ok(_) => Some(Mirror::install(&db, mirrored).map_err(|e| format!("D1 copy: {e}"))?),
        Err(_) => None,
    };
    Ok((db, mirror))
}

impl Mirror {
    /// Creates the outbox and the triggers that fill it, and reads each table's columns.
    pub fn install(db: &DoSql, names: &[&'static str]) -> Result<Mirror, StorageError> {
        db.execute(
            "CREATE TABLE IF NOT EXISTS _d1_outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, \
             tbl TEXT NOT NULL, op TEXT NOT NULL, pk TEXT NOT NULL)",
            &[],
        )?;
        for name in NO_LONGER_MIRRORED {
            for event in ["INSERT", "UPDATE", "DELETE"] {
                db.execute(&format!("DROP TRIGGER IF EXISTS _d1_{name}_{event}"), &[])?;
            }
            db.execute("DELETE FROM _d1_outbox WHERE tbl = ?", &[(*name).into()])?;
        }
        let mut tables = Vec::new();
        for name in names {
            let info = db.query(&format!("PRAGMA table_info({name})"), &[])?;
            let mut columns = Vec::new();
            let mut key = Vec::new();
            // PRAGMA table_info: cid, name, type, notnull, dflt_value, pk (1-based key position).
            let mut keyed: Vec<(i64, String)> = Vec::new();
            for row in &info {
                let column = row
                    .get(1)
                    .and_then(SqlValue::as_str)
                    .unwrap_or("")
                    .to_owned();
                if !is_identifier(&column) {
                    return Err(StorageError::Other(format!("odd column in {name}")));
                }
                let position = row.get(5).and_then(SqlValue::as_i64).unwrap_or(0);
                if position > 0 {
                    keyed.push((position, column.clone()));
                }
                columns.push(column);
            }
            keyed.sort();
            key.extend(keyed.into_iter().map(|(_, c)| c));
            if key.is_empty() {
                // A table without a primary key is identified by its one UNIQUE constraint.
                if let Some((_, unique)) = UNIQUE_KEYS.iter().find(|(t, _)| t == name) {
                    key.extend(unique.iter().map(|c| (*c).to_owned()));
                }
            }
            if columns.is_empty() || key.is_empty() {
                return Err(StorageError::Other(format!("{name} has no primary key")));
            }
            for (op, event, row) in [
                ("u", "INSERT", "NEW"),
                ("u", "UPDATE", "NEW"),
                ("d", "DELETE", "OLD"),
            ] {
                let values: Vec<String> = key.iter().map(|k| format!("{row}.{k}")).collect();
                db.execute(
                    &format!(
                        "CREATE TRIGGER IF NOT EXISTS _d1_{name}_{event} AFTER {event} ON {name} \
                         BEGIN INSERT INTO _d1_outbox (tbl, op, pk) \
                         VALUES ('{name}', '{op}', json_array({})); END",
                        values.join(", ")
                    ),
                    &[],
                )?;
            }
            tables.push(Table { name, columns, key });
        }
        Ok(Mirror {
            tables,
            draining: Cell::new(false),
        })
    }

    /// Whether changes wait for D1.
    pub fn pending(&self, db: &dyn Sql) -> bool {
        db.query("SELECT 1 FROM _d1_outbox LIMIT 1", &[])
            .is_ok_and(|r| !r.is_empty())
    }

    /// Takes the outbox (one transaction) and builds the statements that bring D1 up to date:
    /// the current image of every changed row, or its deletion.
    pub fn take(&self, db: &DoSql) -> Result<Option<Batch>, StorageError> {
        let mut batch = None;
        db.transaction(&mut |db| {
            let entries = db.query("SELECT tbl, op, pk FROM _d1_outbox ORDER BY seq", &[])?;
            if entries.is_empty() {
                return Ok(());
            }
            db.execute("DELETE FROM _d1_outbox", &[])?;
            let mut statements = vec![("PRAGMA defer_foreign_keys = on".to_owned(), vec![])];
            let mut taken = Vec::new();
            let mut seen = HashSet::new();
            // The newest entry of a row wins: walk backwards, then restore the order.
            let mut ordered = Vec::new();
            for e in entries.iter().rev() {
                let text = |i: usize| e.get(i).and_then(SqlValue::as_str).unwrap_or("").to_owned();
                let (tbl, op, pk) = (text(0), text(1), text(2));
                taken.push((tbl.clone(), op.clone(), pk.clone()));
                if seen.insert((tbl.clone(), pk.clone())) {
                    ordered.push((tbl, pk));
                }
            }
            ordered.reverse();
            taken.reverse();
            for (tbl, pk) in ordered {
                let Some(table) = self.tables.iter().find(|t| t.name == tbl) else {
                    continue;
                };
                let key: Vec<SqlValue> = serde_json::from_str::<Vec<serde_json::Value>>(&pk)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|v| match v {
                        serde_json::Value::Number(n) => {
                            n.as_i64().map_or(SqlValue::Null, SqlValue::Integer)
                        }
                        serde_json::Value::String(s) => SqlValue::Text(s),
                        _ => SqlValue::Null,
                    })
                    .collect();
                let matches: Vec<String> = table.key.iter().map(|k| format!("{k} = ?")).collect();
                let matches = matches.join(" AND ");
                let image = db.query(
                    &format!(
                        "SELECT {} FROM {} WHERE {matches}",
                        table.columns.join(", "),
                        table.name
                    ),
                    &key,
                )?;
                statements.push(match image.into_iter().next() {
                    Some(row) => (table.upsert(), row),
                    None => (format!("DELETE FROM {} WHERE {matches}", table.name), key),
                });
            }
            batch = Some(Batch { statements, taken });
            Ok(())
        })?;
        Ok(batch)
    }

    /// Puts a batch D1 did not take back into the outbox, ahead of anything newer.
    pub fn put_back(&self, db: &DoSql, batch: &Batch) {
        let r = db.transaction(&mut |db| {
            for (tbl, op, pk) in &batch.taken {
                db.execute(
                    "INSERT INTO _d1_outbox (tbl, op, pk) VALUES (?, ?, ?)",
                    &[tbl.as_str().into(), op.as_str().into(), pk.as_str().into()],
                )?;
            }
            Ok(())
        });
        if let Err(e) = r {
            worker::console_error!("could not keep changes for D1: {e}");
        }
    }

    /// Sends the outbox to D1 until it is empty, one drain at a time per object (so batches
    /// arrive in order). A call that finds a drain running waits for it, then sends what is
    /// left: when this returns, every change committed before the call has been offered to D1.
    /// Answers false when a batch failed (it is back in the outbox: retry later).
    pub async fn drain(&self, env: &Env, db: &DoSql) -> bool {
        let mut waited = 0;
        while self.draining.get() {
            if waited >= DRAIN_WAIT_MS {
                return false; // D1 is slow: the alarm retries what is left
            }
            worker::Delay::from(std::time::Duration::from_millis(DRAIN_POLL_MS)).await;
            waited += DRAIN_POLL_MS;
        }
        self.draining.set(true);
        let mut ok = true;
        loop {
            let batch = match self.take(db) {
                Ok(Some(b)) => b,
                Ok(None) => break,
                Err(e) => {
                    worker::console_error!("reading the D1 outbox: {e}");
                    ok = false;
                    break;
                }
            };
            if let Err(e) = send(env, &batch).await {
                // The first line is the reason (a foreign key whose row has not arrived yet,
                // say); the rest is a JavaScript stack.
                let reason = e.lines().next().unwrap_or("").to_owned();
                worker::console_error!("D1 did not take a batch ({reason}); will retry");
                self.put_back(db, &batch);
                ok = false;
                break;
            }
        }
        self.draining.set(false);
        ok
    }
}

impl Table {
    fn upsert(&self) -> String {
        let marks = vec!["?"; self.columns.len()].join(", ");
        let updates: Vec<String> = self
            .columns
            .iter()
            .filter(|c| !self.key.contains(c))
            .map(|c| format!("{c} = excluded.{c}"))
            .collect();
        let action = if updates.is_empty() {
            "DO NOTHING".to_owned()
        } else {
            format!("DO UPDATE SET {}", updates.join(", "))
        };
        format!(
            "INSERT INTO {} ({}) VALUES ({marks}) ON CONFLICT ({}) {action}",
            self.name,
            self.columns.join(", "),
            self.key.join(", ")
        )
    }
}

fn js(v: &SqlValue) -> JsValue {
    match v {
        SqlValue::Null => JsValue::NULL,
        // Every integer the schema holds (milliseconds, counts, flags) is below 2^53.
        SqlValue::Integer(i) => JsValue::from_f64(*i as f64),
        SqlValue::Text(s) => JsValue::from_str(s),
    }
}

async fn send(env: &Env, batch: &Batch) -> Result<(), String> {
    let d1 = env.d1("DB").map_err(|e| e.to_string())?;
    let mut statements = Vec::with_capacity(batch.statements.len());
    for (sql, params) in &batch.statements {
        let params: Vec<JsValue> = params.iter().map(js).collect();
        statements.push(d1.prepare(sql).bind(&params).map_err(|e| e.to_string())?);
    }
    d1.batch(statements).await.map_err(|e| e.to_string())?;
    Ok(())
}

/// The migration files' statements, one by one (D1's `exec` splits on newlines, which would
/// cut the multi-line `CREATE TABLE`s apart).
fn statements_of(script: &str) -> Vec<String> {
    let without_comments: String = script
        .lines()
        .map(|l| l.split("--").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    without_comments
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Applies the migrations D1 lacks and records them in `d1_migrations`, as
/// `wrangler d1 migrations apply` does (a deployment may have run that already: then nothing
/// is left to do).
pub async fn migrate_d1(env: &Env) -> Result<(), String> {
    let d1 = env.d1("DB").map_err(|e| e.to_string())?;
    d1.prepare(
        "CREATE TABLE IF NOT EXISTS d1_migrations (id INTEGER PRIMARY KEY AUTOINCREMENT, \
         name TEXT UNIQUE, applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL)",
    )
    .run()
    .await
    .map_err(|e| e.to_string())?;
    let applied: Vec<String> = d1
        .prepare("SELECT name FROM d1_migrations")
        .raw::<String>()
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter_map(|r| r.into_iter().next())
        .collect();
    for (name, script) in auth_core::migrations::MIGRATIONS {
        if applied.iter().any(|a| a == name) {
            continue;
        }
        let mut statements = Vec::new();
        for sql in statements_of(script) {
            statements.push(d1.prepare(sql));
        }
        statements.push(
            d1.prepare("INSERT INTO d1_migrations (name) VALUES (?)")
                .bind(&[JsValue::from_str(name)])
                .map_err(|e| e.to_string())?,
        );
        d1.batch(statements).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The mail outbox is the object's work queue, not relational state: it is not copied to
    /// D1 (issue 14: codes at rest), and objects of an earlier version drop its triggers.
    #[test]
    fn the_mail_outbox_is_not_copied_to_d1() {
        use crate::tables::{copied_to_d1, Owner};
        assert!(!copied_to_d1(Owner::Tenant).contains(&"mail_outbox"));
        assert!(!copied_to_d1(Owner::Directory).contains(&"mail_outbox"));
        assert!(NO_LONGER_MIRRORED.contains(&"mail_outbox"));
    }

    #[test]
    fn migration_scripts_split_into_whole_statements() {
        for (name, script) in auth_core::migrations::MIGRATIONS {
            let statements = statements_of(script);
            assert!(!statements.is_empty(), "{name}");
            for s in &statements {
                assert!(!s.contains("--"), "{name}: a comment survived: {s}");
                let opens = s.matches('(').count();
                assert_eq!(opens, s.matches(')').count(), "{name}: cut apart: {s}");
            }
        }
        let creates: usize = auth_core::migrations::MIGRATIONS
            .iter()
            .map(|(_, s)| s.matches("CREATE TABLE").count())
            .sum();
        let split: usize = auth_core::migrations::MIGRATIONS
            .iter()
            .map(|(_, s)| {
                statements_of(s)
                    .iter()
                    .filter(|t| t.starts_with("CREATE TABLE"))
                    .count()
            })
            .sum();
        assert_eq!(creates, split);
    }
}
