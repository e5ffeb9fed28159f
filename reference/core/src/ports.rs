//! The ports through which the core reaches the outside world.
//!
//! The core never performs IO itself. A host (the native binary, the Worker adapter, a unit
//! test) hands it an implementation of each port. The storage port is synchronous on purpose:
//! both platforms it maps onto are synchronous underneath (rusqlite natively, the SQL API of
//! SQLite-backed Durable Objects on Workers), which spares async traits with and without
//! `Send`.

use thiserror::Error;

/// A value bound to, or read from, a SQL statement.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Null,
    Integer(i64),
    Text(String),
}

impl SqlValue {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            SqlValue::Text(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            SqlValue::Integer(i) => Some(*i),
            _ => None,
        }
    }
}

impl From<&str> for SqlValue {
    fn from(s: &str) -> Self {
        SqlValue::Text(s.to_owned())
    }
}
impl From<String> for SqlValue {
    fn from(s: String) -> Self {
        SqlValue::Text(s)
    }
}
impl From<i64> for SqlValue {
    fn from(i: i64) -> Self {
        SqlValue::Integer(i)
    }
}
impl<T: Into<SqlValue>> From<Option<T>> for SqlValue {
    fn from(v: Option<T>) -> Self {
        v.map_or(SqlValue::Null, Into::into)
    }
}

/// One result row, columns in the order of the `SELECT`.
pub type Row = Vec<SqlValue>;

/// A storage failure. Its message is for logs only and never reaches a client.
#[derive(Debug, Error)]
pub enum StorageError {
    /// A uniqueness constraint refused the write (a duplicate slug, say).
    #[error("constraint violated: {0}")]
    Constraint(String),
    /// Anything else the storage engine reported.
    #[error("storage failure: {0}")]
    Other(String),
    /// The write could not be made durable (an object's batch commit failed): nothing of the
    /// call was kept, and trying again later may succeed. A host answers it with 503.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

/// Relational storage: SQLite dialect, positional `?` parameters.
pub trait Sql {
    /// Runs a statement that returns no rows; answers the number of rows changed.
    fn execute(&self, sql: &str, params: &[SqlValue]) -> Result<usize, StorageError>;
    /// Runs a query and returns every row.
    fn query(&self, sql: &str, params: &[SqlValue]) -> Result<Vec<Row>, StorageError>;
    /// Runs `work` atomically: every write inside it lands, or none does. `work` returning an
    /// error rolls back. Callers pass results out through captured variables, which keeps the
    /// trait object-safe.
    fn transaction(
        &self,
        work: &mut dyn FnMut(&dyn Sql) -> Result<(), StorageError>,
    ) -> Result<(), StorageError>;
    /// Long work that touches no storage follows (a password hash): a host whose storage is
    /// behind a lock shared with other requests may let it go now; the next statement takes it
    /// again. Never called inside [`Sql::transaction`]. Does nothing by default.
    fn pause(&self) {}
}

/// Wall-clock time. The core never reads a clock of its own, so hosts and tests can set it.
pub trait Clock {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// Cryptographically secure randomness from the platform (the OS CSPRNG natively,
/// `crypto.getRandomValues` on Workers).
pub trait Entropy {
    fn fill(&self, buf: &mut [u8]);
}

/// Everything one request may touch.
pub struct Ports<'a> {
    pub db: &'a dyn Sql,
    pub clock: &'a dyn Clock,
    pub entropy: &'a dyn Entropy,
}
