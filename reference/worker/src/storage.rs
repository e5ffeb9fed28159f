//! The core's ports on Durable Object storage: SQL over `ctx.storage.sql`, transactions via
//! `ctx.storage.transactionSync`, migrations, the clock and the CSPRNG.

use auth_core::ports::{Clock, Entropy, Row, Sql, SqlValue, StorageError};
use wasm_bindgen::prelude::*;
use worker::{SqlStorage, SqlStorageValue};

#[wasm_bindgen]
extern "C" {
    /// `ctx.storage`, for the one method workers-rs 0.8.7 does not wrap.
    pub type RawStorage;

    /// Runs the callback in a SQLite transaction (a savepoint when nested): a thrown error,
    /// which is what an `Err` of the callback becomes, rolls it back. The SQL API refuses
    /// `BEGIN` and `SAVEPOINT` statements, so this is the only way to roll back.
    #[wasm_bindgen(method, catch, js_name = transactionSync)]
    fn transaction_sync(
        this: &RawStorage,
        work: &mut dyn FnMut() -> Result<JsValue, JsValue>,
    ) -> Result<JsValue, JsValue>;
}

/// The [`Sql`] port over a Durable Object's SQLite storage.
pub struct DoSql {
    sql: SqlStorage,
    raw: RawStorage,
}

impl DoSql {
    pub fn new(storage: &worker::Storage) -> Self {
        let raw: &JsValue = storage.as_raw().as_ref();
        Self {
            sql: storage.sql(),
            raw: raw.clone().unchecked_into(),
        }
    }

    fn exec(&self, sql: &str, params: &[SqlValue]) -> Result<worker::SqlCursor, StorageError> {
        let bindings: Vec<SqlStorageValue> = params
            .iter()
            .map(|p| match p {
                SqlValue::Null => SqlStorageValue::Null,
                SqlValue::Integer(i) => SqlStorageValue::Integer(*i),
                SqlValue::Text(s) => SqlStorageValue::String(s.clone()),
            })
            .collect();
        self.sql.exec(sql, Some(bindings)).map_err(storage_error)
    }
}

fn storage_error(e: worker::Error) -> StorageError {
    let message = e.to_string();
    // SQLite's own wording, which the platform passes through.
    if message.contains("constraint failed") {
        StorageError::Constraint(message)
    } else {
        StorageError::Other(message)
    }
}

fn from_storage_value(v: SqlStorageValue) -> SqlValue {
    match v {
        SqlStorageValue::Null => SqlValue::Null,
        SqlStorageValue::Integer(i) => SqlValue::Integer(i),
        SqlStorageValue::Boolean(b) => SqlValue::Integer(i64::from(b)),
        // JavaScript has one number type: whole numbers come back as floats.
        SqlStorageValue::Float(f) if f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15 => {
            SqlValue::Integer(f as i64)
        }
        SqlStorageValue::Float(f) => SqlValue::Text(f.to_string()),
        SqlStorageValue::String(s) => SqlValue::Text(s),
        SqlStorageValue::Blob(b) => SqlValue::Text(String::from_utf8_lossy(&b).into_owned()),
    }
}

impl Sql for DoSql {
    fn execute(&self, sql: &str, params: &[SqlValue]) -> Result<usize, StorageError> {
        let cursor = self.exec(sql, params)?;
        // Statements run as the cursor is read.
        for row in cursor.raw() {
            row.map_err(storage_error)?;
        }
        // `rowsWritten` also counts index rows; `changes()` is what rusqlite reports.
        let changed = self
            .exec("SELECT changes()", &[])?
            .raw()
            .next()
            .and_then(Result::ok)
            .and_then(|r| r.into_iter().next())
            .map(from_storage_value)
            .and_then(|v| v.as_i64())
            .unwrap_or(0);
        Ok(usize::try_from(changed).unwrap_or(0))
    }

    fn query(&self, sql: &str, params: &[SqlValue]) -> Result<Vec<Row>, StorageError> {
        let cursor = self.exec(sql, params)?;
        cursor
            .raw()
            .map(|row| {
                row.map(|values| values.into_iter().map(from_storage_value).collect())
                    .map_err(storage_error)
            })
            .collect()
    }

    fn transaction(
        &self,
        work: &mut dyn FnMut(&dyn Sql) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        let mut failure: Option<StorageError> = None;
        let mut run = || match work(self) {
            Ok(()) => Ok(JsValue::UNDEFINED),
            Err(e) => {
                let message = e.to_string();
                failure = Some(e);
                Err(JsValue::from_str(&message))
            }
        };
        match self.raw.transaction_sync(&mut run) {
            Ok(_) => Ok(()),
            Err(js) => Err(failure
                .take()
                .unwrap_or_else(|| StorageError::Other(format!("transaction failed: {js:?}")))),
        }
    }
}

/// Applies every migration not yet in `d1_migrations` (the table wrangler keeps), as the native
/// host does. Both the directory and every tenant's object run it, so rows shipped between them
/// have the same columns in the same order.
pub fn apply_migrations(db: &DoSql) -> Result<(), StorageError> {
    db.execute(
        "CREATE TABLE IF NOT EXISTS d1_migrations (id INTEGER PRIMARY KEY AUTOINCREMENT, \
         name TEXT UNIQUE, applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL)",
        &[],
    )?;
    for (name, sql) in auth_core::migrations::MIGRATIONS {
        let done = !db
            .query(
                "SELECT 1 FROM d1_migrations WHERE name = ?",
                &[(*name).into()],
            )?
            .is_empty();
        if !done {
            db.transaction(&mut |tx| {
                tx.execute(sql, &[])?;
                tx.execute(
                    "INSERT INTO d1_migrations (name) VALUES (?)",
                    &[(*name).into()],
                )
                .map(drop)
            })?;
        }
    }
    Ok(())
}

/// A database an object must not use: `GraphStateCSV` keeps everything in its own storage.
pub struct NoSharedDb;

impl Sql for NoSharedDb {
    fn execute(&self, _: &str, _: &[SqlValue]) -> Result<usize, StorageError> {
        Err(StorageError::Other(
            "no shared database in this object".into(),
        ))
    }
    fn query(&self, _: &str, _: &[SqlValue]) -> Result<Vec<Row>, StorageError> {
        Err(StorageError::Other(
            "no shared database in this object".into(),
        ))
    }
    fn transaction(
        &self,
        _: &mut dyn FnMut(&dyn Sql) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        Err(StorageError::Other(
            "no shared database in this object".into(),
        ))
    }
}

/// `Date.now()` plus an offset the test clock control moves forward. No `Instant` on Workers.
pub struct WorkerClock {
    pub offset_ms: i64,
}

impl Clock for WorkerClock {
    fn now_ms(&self) -> i64 {
        worker::Date::now().as_millis() as i64 + self.offset_ms
    }
}

/// `crypto.getRandomValues`, through getrandom's `js` backend.
pub struct WorkerEntropy;

impl Entropy for WorkerEntropy {
    fn fill(&self, buf: &mut [u8]) {
        // The platform's CSPRNG does not fail for buffers this small; if it ever did, zeroes
        // would be a silent disaster, so stop the request instead.
        if getrandom::getrandom(buf).is_err() {
            wasm_bindgen::throw_str("crypto.getRandomValues failed");
        }
    }
}
