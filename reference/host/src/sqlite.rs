//! The storage port on embedded SQLite (rusqlite, bundled), in WAL mode.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use auth_core::migrations::MIGRATIONS;
use auth_core::ports::{Row, Sql, SqlValue, StorageError};
use rusqlite::types::{Value, ValueRef};
use rusqlite::{params_from_iter, Connection, ErrorCode};

/// One connection behind a mutex. SQLite has a single writer anyway, and holding the lock for a
/// whole request gives every request the one-at-a-time isolation the core assumes.
pub struct Database {
    conn: Mutex<Connection>,
}

impl Database {
    /// Opens (or creates) the database file and applies pending migrations.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let conn = open_connection(path)?;
        apply_migrations(&conn)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    pub fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a half-written transaction behind
        // (rusqlite rolls back on drop), so a poisoned lock is still safe to use.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Opens a SQLite file with the settings every database of the host uses.
pub fn open_connection(path: &Path) -> anyhow::Result<Connection> {
    configure(Connection::open(path)?)
}

/// Opens one Durable Object's database. Up to a thousand are open at once and each is small,
/// so SQLite's per-connection defaults, sized for one big database, dominate the host's memory:
/// the lookaside allocator reserves 1,200 slots of 128 bytes (150 KiB) per connection up front,
/// and the page cache may grow to 2 MiB. An object's statements are short and its database a
/// few pages, so 32 slots and a 128 KiB cache lose nothing measurable.
pub fn open_object_connection(path: &Path) -> anyhow::Result<Connection> {
    let conn = Connection::open(path)?;
    // rusqlite exposes only the boolean `sqlite3_db_config` options, hence the direct call.
    // SAFETY: the handle is valid for the life of `conn`; right after open no lookaside memory
    // is in use, which this option requires; a null buffer makes SQLite allocate its own.
    let rc = unsafe {
        rusqlite::ffi::sqlite3_db_config(
            conn.handle(),
            rusqlite::ffi::SQLITE_DBCONFIG_LOOKASIDE,
            std::ptr::null_mut::<std::ffi::c_void>(),
            128 as std::ffi::c_int,
            32 as std::ffi::c_int,
        )
    };
    if rc != rusqlite::ffi::SQLITE_OK {
        // Only memory is at stake: keep the defaults.
        tracing::debug!(rc, "could not shrink the lookaside allocator");
    }
    conn.pragma_update(None, "cache_size", -128)?;
    configure(conn)
}

fn configure(conn: Connection) -> anyhow::Result<Connection> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // NORMAL is durable across process crashes in WAL mode; FULL would also survive power
    // loss at a large cost per commit. A reference service on one machine takes NORMAL.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // Closing the last connection to a WAL database checkpoints it, with an fsync. Objects
    // close connections on every eviction and all at once at shutdown, so that would cost an
    // fsync per object; the WAL is durable as it is and is checkpointed on the next open.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
        true,
    )?;
    Ok(conn)
}

/// Applies every migration not yet recorded in `d1_migrations`, the table wrangler keeps, so a
/// database is interchangeable between this host and `wrangler d1 migrations apply`.
fn apply_migrations(conn: &Connection) -> anyhow::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS d1_migrations (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT UNIQUE,
            applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL)",
    )?;
    for (name, sql) in MIGRATIONS {
        let done: bool = conn.query_row(
            "SELECT EXISTS(SELECT 1 FROM d1_migrations WHERE name = ?1)",
            [name],
            |r| r.get(0),
        )?;
        if !done {
            let tx = conn.unchecked_transaction()?;
            tx.execute_batch(sql)?;
            tx.execute("INSERT INTO d1_migrations (name) VALUES (?1)", [name])?;
            tx.commit()?;
        }
    }
    Ok(())
}

/// The [`Sql`] port over a locked connection.
pub struct SqliteSql<'c>(pub &'c Connection);

fn to_value(v: &SqlValue) -> Value {
    match v {
        SqlValue::Null => Value::Null,
        SqlValue::Integer(i) => Value::Integer(*i),
        SqlValue::Text(s) => Value::Text(s.clone()),
    }
}

fn from_ref(v: ValueRef<'_>) -> SqlValue {
    match v {
        ValueRef::Null => SqlValue::Null,
        ValueRef::Integer(i) => SqlValue::Integer(i),
        // The schema stores no reals or blobs that the core reads; map them to text rather
        // than fail, so a hand-edited row cannot crash a request.
        ValueRef::Real(f) => SqlValue::Text(f.to_string()),
        ValueRef::Text(t) | ValueRef::Blob(t) => {
            SqlValue::Text(String::from_utf8_lossy(t).into_owned())
        }
    }
}

fn storage_error(e: rusqlite::Error) -> StorageError {
    match e.sqlite_error_code() {
        Some(ErrorCode::ConstraintViolation) => StorageError::Constraint(e.to_string()),
        _ => StorageError::Other(e.to_string()),
    }
}

impl Sql for SqliteSql<'_> {
    fn execute(&self, sql: &str, params: &[SqlValue]) -> Result<usize, StorageError> {
        let mut stmt = self.0.prepare_cached(sql).map_err(storage_error)?;
        stmt.execute(params_from_iter(params.iter().map(to_value)))
            .map_err(storage_error)
    }

    fn query(&self, sql: &str, params: &[SqlValue]) -> Result<Vec<Row>, StorageError> {
        let mut stmt = self.0.prepare_cached(sql).map_err(storage_error)?;
        let columns = stmt.column_count();
        let mut rows = stmt
            .query(params_from_iter(params.iter().map(to_value)))
            .map_err(storage_error)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(storage_error)? {
            out.push(
                (0..columns)
                    .map(|i| row.get_ref(i).map(from_ref))
                    .collect::<Result<Row, _>>()
                    .map_err(storage_error)?,
            );
        }
        Ok(out)
    }

    fn transaction(
        &self,
        work: &mut dyn FnMut(&dyn Sql) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        // Inside an open transaction (an object call always has one) nest with a savepoint,
        // so `work` still commits or rolls back as a whole.
        let (begin, commit, rollback) = if self.0.is_autocommit() {
            ("BEGIN IMMEDIATE", "COMMIT", "ROLLBACK")
        } else {
            (
                "SAVEPOINT core_tx",
                "RELEASE core_tx",
                "ROLLBACK TO core_tx; RELEASE core_tx",
            )
        };
        self.0.execute_batch(begin).map_err(storage_error)?;
        match work(self) {
            Ok(()) => self.0.execute_batch(commit).map_err(storage_error),
            Err(e) => {
                let _ = self.0.execute_batch(rollback);
                Err(e)
            }
        }
    }
}
