//! The core's ports on Durable Object storage: SQL over `ctx.storage.sql`, transactions via
//! `ctx.storage.transactionSync`, per-object table namespaces, the clock and the CSPRNG.

use std::cell::RefCell;
use std::collections::HashMap;

use auth_core::ports::{Clock, Entropy, Row, Sql, SqlValue, StorageError};
use sha2::{Digest, Sha256};
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

/// Tables an object keeps in its own storage. On Workers every `TenantState` lives in the one
/// platform object (see `platform.rs`), so each gets these tables under a prefix of its own.
const OBJECT_TABLES: &[&str] = &["audit_log", "rate_window", "usage_pending"];

/// A view of [`DoSql`] in which an object's own tables carry its prefix. SQL is rewritten
/// token by token (identifiers outside quotes only); the rewritten text is cached.
pub struct PrefixedSql<'a> {
    inner: &'a DoSql,
    prefix: String,
    cache: &'a RefCell<HashMap<(String, String), String>>,
}

impl<'a> PrefixedSql<'a> {
    pub fn new(
        inner: &'a DoSql,
        object_name: &str,
        cache: &'a RefCell<HashMap<(String, String), String>>,
    ) -> Self {
        Self {
            inner,
            prefix: table_prefix(object_name),
            cache,
        }
    }

    fn rewrite(&self, sql: &str) -> String {
        let key = (self.prefix.clone(), sql.to_owned());
        if let Some(hit) = self.cache.borrow().get(&key) {
            return hit.clone();
        }
        let out = rewrite_tables(sql, &self.prefix);
        let mut cache = self.cache.borrow_mut();
        // Bounded: statements are few, prefixes are one per tenant.
        if cache.len() > 4096 {
            cache.clear();
        }
        cache.insert(key, out.clone());
        out
    }
}

/// `ts_` plus 16 hex digits of the SHA-256 of the object's name: a valid identifier whatever
/// the name holds.
pub fn table_prefix(object_name: &str) -> String {
    let digest = Sha256::digest(object_name.as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("ts_{hex}_")
}

/// Prefixes every identifier token equal to one of [`OBJECT_TABLES`], leaving string literals
/// and quoted identifiers alone. The core's object SQL is fixed text, so this never sees user
/// input.
pub fn rewrite_tables(sql: &str, prefix: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 32);
    let mut chars = sql.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '\'' || c == '"' {
            out.push(c);
            for (_, d) in chars.by_ref() {
                out.push(d);
                if d == c {
                    break;
                }
            }
        } else if c.is_ascii_alphabetic() || c == '_' {
            let mut end = i + c.len_utf8();
            while let Some(&(j, d)) = chars.peek() {
                if d.is_ascii_alphanumeric() || d == '_' {
                    end = j + d.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            let word = &sql[i..end];
            if OBJECT_TABLES.contains(&word) {
                out.push_str(prefix);
            }
            out.push_str(word);
        } else {
            out.push(c);
        }
    }
    out
}

impl Sql for PrefixedSql<'_> {
    fn execute(&self, sql: &str, params: &[SqlValue]) -> Result<usize, StorageError> {
        self.inner.execute(&self.rewrite(sql), params)
    }

    fn query(&self, sql: &str, params: &[SqlValue]) -> Result<Vec<Row>, StorageError> {
        self.inner.query(&self.rewrite(sql), params)
    }

    fn transaction(
        &self,
        work: &mut dyn FnMut(&dyn Sql) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        self.inner.transaction(&mut |_| work(self))
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_tables_get_the_prefix_and_nothing_else_does() {
        let sql = "INSERT INTO audit_log (created_at, action) SELECT 'audit_log', x FROM usage_metrics JOIN usage_pending ON 1";
        assert_eq!(
            rewrite_tables(sql, "ts_ab_"),
            "INSERT INTO ts_ab_audit_log (created_at, action) SELECT 'audit_log', x FROM usage_metrics JOIN ts_ab_usage_pending ON 1"
        );
    }

    #[test]
    fn prefixes_are_identifiers_and_differ_by_name() {
        let a = table_prefix("ten_1");
        let b = table_prefix("ten_2");
        assert_ne!(a, b);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        assert_eq!(a.len(), 3 + 16 + 1);
    }
}
