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
        // (rusqlite's transactions and `OpenTransaction` roll back on drop), so a poisoned lock
        // is still safe to use.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Opens a SQLite file with the settings every database of the host uses.
pub fn open_connection(path: &Path) -> anyhow::Result<Connection> {
    make_private(path)?;
    configure(Connection::open(path)?)
}

/// Creates the database file readable by the owner only (0600), or narrows an existing one
/// to that. SQLite gives its `-wal` and `-shm` files the mode of the database file, so they
/// follow. The files hold hashes of keys and tokens, and tenant data: nobody else on the
/// machine needs to read them.
fn make_private(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        if file.metadata()?.permissions().mode() & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        for suffix in ["-wal", "-shm"] {
            let mut side = path.as_os_str().to_owned();
            side.push(suffix);
            match std::fs::set_permissions(&side, std::fs::Permissions::from_mode(0o600)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Opens one Durable Object's database. Up to a thousand are open at once and each is small,
/// so SQLite's per-connection defaults, sized for one big database, dominate the host's memory:
/// the lookaside allocator reserves 1,200 slots of 128 bytes (150 KiB) per connection up front,
/// and the page cache may grow to 2 MiB. An object's statements are short and its database a
/// few pages, so 32 slots and a 128 KiB cache lose nothing measurable.
pub fn open_object_connection(path: &Path) -> anyhow::Result<Connection> {
    make_private(path)?;
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

/// A transaction begun with raw SQL on a connection that outlives it. Until it is committed,
/// dropping the guard rolls it back: on an error from `work`, on a failed `COMMIT` and while a
/// panic unwinds through `work`. Without it a panic would leave the shared connection inside
/// the transaction, every later write would join it, and all of them would be lost when the
/// connection closed.
struct OpenTransaction<'c> {
    conn: &'c Connection,
    rollback: &'static str,
}

impl Drop for OpenTransaction<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.conn.execute_batch(self.rollback) {
            tracing::error!(error = %e, "rolling back an abandoned transaction failed");
        }
    }
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
        let guard = OpenTransaction {
            conn: self.0,
            rollback,
        };
        work(self)?;
        self.0.execute_batch(commit).map_err(storage_error)?;
        // Committed: nothing left to roll back.
        std::mem::forget(guard);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(db: &Database) -> i64 {
        db.lock()
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap()
    }

    /// A panic inside a transaction leaves no open transaction on the shared connection: the
    /// next write is durable, as a reopened database shows.
    #[test]
    fn a_panic_inside_a_transaction_leaves_none_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.sqlite3");
        {
            let db = Database::open(&path).unwrap();
            db.lock().execute_batch("CREATE TABLE t (v TEXT)").unwrap();
            let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let conn = db.lock();
                let _ = SqliteSql(&conn).transaction(&mut |sql| {
                    sql.execute("INSERT INTO t (v) VALUES ('inside')", &[])?;
                    panic!("a handler bug");
                });
            }));
            assert!(panicked.is_err());
            let conn = db.lock();
            assert!(conn.is_autocommit(), "the transaction is still open");
            SqliteSql(&conn)
                .execute("INSERT INTO t (v) VALUES ('after')", &[])
                .unwrap();
        }
        let db = Database::open(&path).unwrap();
        assert_eq!(count(&db), 1, "the write after the panic was lost");
        let v: String = db
            .lock()
            .query_row("SELECT v FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, "after");
    }

    #[cfg(unix)]
    #[test]
    fn database_files_are_private_to_the_owner() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mode = |name: &str| {
            std::fs::metadata(dir.path().join(name))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        let db = Database::open(&dir.path().join("auth.sqlite3")).unwrap();
        db.lock().execute_batch("CREATE TABLE t (v TEXT)").unwrap();
        let object = open_object_connection(&dir.path().join("o.sqlite3")).unwrap();
        object.execute_batch("CREATE TABLE t (v TEXT)").unwrap();
        for name in [
            "auth.sqlite3",
            "auth.sqlite3-wal",
            "auth.sqlite3-shm",
            "o.sqlite3",
            "o.sqlite3-wal",
        ] {
            assert_eq!(mode(name), 0o600, "{name}");
        }
        // A file an older version created world-readable is narrowed on open.
        drop(db);
        let old = dir.path().join("auth.sqlite3");
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
        let _db = Database::open(&old).unwrap();
        assert_eq!(mode("auth.sqlite3"), 0o600);
    }

    /// An error inside a transaction rolls it back and leaves none open.
    #[test]
    fn an_error_inside_a_transaction_rolls_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(&dir.path().join("auth.sqlite3")).unwrap();
        let conn = db.lock();
        conn.execute_batch("CREATE TABLE t (v TEXT)").unwrap();
        let sql = SqliteSql(&conn);
        let r = sql.transaction(&mut |sql| {
            sql.execute("INSERT INTO t (v) VALUES ('x')", &[])?;
            Err(StorageError::Other("no".into()))
        });
        assert!(r.is_err());
        assert!(conn.is_autocommit());
        drop(conn);
        assert_eq!(count(&db), 0);
    }
}
