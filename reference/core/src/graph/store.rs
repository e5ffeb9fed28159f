//! The graph's tables in the object's own SQLite database, over the [`Sql`] port.
//!
//! - `edges`: every edge, live or revoked (`revoked_at` set), with the version at which it
//!   last became live;
//! - `meta`: one row (`id = 1`): current version, time of the last reload, live edge count
//!   (the count is a convenience for operators; `load` recounts from `edges`);
//! - `mutation_log`: one row per logged op, keyed by `(version, seq)`, so the records of one
//!   version stay together and in order.
//!
//! Writes are batched a few rows per statement: a reload may write 200,000 edges, and one
//! statement per row would be slow, while very wide statements run into the platform's
//! bound-parameter limit (100 per statement on Cloudflare's SQL). Every statement text is a
//! constant or built by [`batch_insert`], which the unit tests' fake SQL relies on.

use crate::ports::{Row, Sql, SqlValue, StorageError};

use super::index::StoredEdge;

/// Rows per batched `INSERT`: 16 rows of 6 values is 96 bound parameters, under 100.
pub const ROWS_PER_STATEMENT: usize = 16;

pub(crate) const CREATE_EDGES: &str = "CREATE TABLE IF NOT EXISTS edges (\
     id TEXT PRIMARY KEY, subject TEXT NOT NULL, relation TEXT NOT NULL, object TEXT NOT NULL, \
     revoked_at INTEGER, added_version INTEGER NOT NULL)";
pub(crate) const CREATE_META: &str = "CREATE TABLE IF NOT EXISTS meta (\
     id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL, loaded_at INTEGER, \
     edge_count INTEGER NOT NULL)";
pub(crate) const CREATE_LOG: &str = "CREATE TABLE IF NOT EXISTS mutation_log (\
     version INTEGER NOT NULL, seq INTEGER NOT NULL, at INTEGER NOT NULL, op TEXT NOT NULL, \
     edge_id TEXT, actor_key_id TEXT NOT NULL, PRIMARY KEY (version, seq))";

pub(crate) const SELECT_META: &str = "SELECT version, loaded_at FROM meta WHERE id = 1";
pub(crate) const SELECT_EDGES: &str =
    "SELECT id, subject, relation, object, revoked_at, added_version FROM edges";
pub(crate) const DELETE_EDGES: &str = "DELETE FROM edges";
pub(crate) const UPSERT_META: &str = "INSERT INTO meta (id, version, loaded_at, edge_count) \
     VALUES (1, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET version = excluded.version, \
     loaded_at = excluded.loaded_at, edge_count = excluded.edge_count";
pub(crate) const EDGES_INSERT: &str =
    "INSERT INTO edges (id, subject, relation, object, revoked_at, added_version) VALUES ";
/// An edge written by a mutation replaces its stored state (revoked, or live again).
pub(crate) const EDGES_UPSERT_TAIL: &str = " ON CONFLICT (id) DO UPDATE SET \
     revoked_at = excluded.revoked_at, added_version = excluded.added_version";
pub(crate) const LOG_INSERT: &str =
    "INSERT INTO mutation_log (version, seq, at, op, edge_id, actor_key_id) VALUES ";
pub(crate) const SELECT_LOG_AFTER: &str = "SELECT version, seq, at, op, edge_id, actor_key_id \
     FROM mutation_log WHERE version > ? ORDER BY version, seq LIMIT ?";
pub(crate) const DELETE_LOG_THROUGH: &str = "DELETE FROM mutation_log WHERE version <= ?";
pub(crate) const SELECT_LOG_OF: &str = "SELECT version, seq, at, op, edge_id, actor_key_id \
     FROM mutation_log WHERE version = ? ORDER BY seq";

/// The version and last reload time; `(0, None)` before anything was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Meta {
    pub version: i64,
    pub loaded_at: Option<i64>,
}

/// One row of the mutation log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRow {
    pub version: i64,
    pub seq: i64,
    pub at: i64,
    pub op: String,
    pub edge_id: Option<String>,
    pub actor_key_id: String,
}

fn bad(what: &str) -> StorageError {
    StorageError::Other(format!("unreadable {what} in a stored graph row"))
}

fn int(row: &Row, i: usize, what: &str) -> Result<i64, StorageError> {
    row.get(i)
        .and_then(SqlValue::as_i64)
        .ok_or_else(|| bad(what))
}

fn text(row: &Row, i: usize, what: &str) -> Result<String, StorageError> {
    row.get(i)
        .and_then(SqlValue::as_str)
        .map(str::to_owned)
        .ok_or_else(|| bad(what))
}

/// Creates the tables when missing. Run on every load: cheap, and an object that was never
/// used has no tables yet.
pub fn ensure_schema(sql: &dyn Sql) -> Result<(), StorageError> {
    for stmt in [CREATE_EDGES, CREATE_META, CREATE_LOG] {
        sql.execute(stmt, &[])?;
    }
    Ok(())
}

pub fn read_meta(sql: &dyn Sql) -> Result<Meta, StorageError> {
    let rows = sql.query(SELECT_META, &[])?;
    let Some(row) = rows.first() else {
        return Ok(Meta::default());
    };
    Ok(Meta {
        version: int(row, 0, "version")?,
        loaded_at: row.get(1).and_then(SqlValue::as_i64),
    })
}

pub fn read_edges(sql: &dyn Sql) -> Result<Vec<StoredEdge>, StorageError> {
    sql.query(SELECT_EDGES, &[])?
        .iter()
        .map(|row| {
            Ok(StoredEdge {
                id: text(row, 0, "edge id")?,
                subject: text(row, 1, "subject")?,
                relation: text(row, 2, "relation")?,
                object: text(row, 3, "object")?,
                revoked_at: row.get(4).and_then(SqlValue::as_i64),
                added_version: int(row, 5, "added_version")?,
            })
        })
        .collect()
}

/// `INSERT ... VALUES (?, ...), (?, ...)` for `rows` rows of `cols` values, plus `tail`.
pub(crate) fn batch_insert(head: &str, cols: usize, rows: usize, tail: &str) -> String {
    let one = format!("({})", vec!["?"; cols].join(", "));
    format!("{head}{}{tail}", vec![one; rows].join(", "))
}

fn insert_batched(
    sql: &dyn Sql,
    head: &str,
    cols: usize,
    tail: &str,
    rows: impl Iterator<Item = Vec<SqlValue>>,
) -> Result<(), StorageError> {
    let mut params: Vec<SqlValue> = Vec::with_capacity(cols * ROWS_PER_STATEMENT);
    let flush = |params: &mut Vec<SqlValue>| -> Result<(), StorageError> {
        if !params.is_empty() {
            let stmt = batch_insert(head, cols, params.len() / cols, tail);
            sql.execute(&stmt, params)?;
            params.clear();
        }
        Ok(())
    };
    for row in rows {
        params.extend(row);
        if params.len() == cols * ROWS_PER_STATEMENT {
            flush(&mut params)?;
        }
    }
    flush(&mut params)
}

fn edge_row(e: &StoredEdge) -> Vec<SqlValue> {
    vec![
        e.id.as_str().into(),
        e.subject.as_str().into(),
        e.relation.as_str().into(),
        e.object.as_str().into(),
        e.revoked_at.into(),
        e.added_version.into(),
    ]
}

/// Replaces every edge. Call inside a transaction.
pub fn replace_edges<'a>(
    sql: &dyn Sql,
    edges: impl Iterator<Item = &'a StoredEdge>,
) -> Result<(), StorageError> {
    sql.execute(DELETE_EDGES, &[])?;
    insert_batched(sql, EDGES_INSERT, 6, "", edges.map(edge_row))
}

/// Writes the new state of each edge, inserting or replacing. Call inside a transaction.
pub fn upsert_edges(sql: &dyn Sql, edges: &[StoredEdge]) -> Result<(), StorageError> {
    insert_batched(
        sql,
        EDGES_INSERT,
        6,
        EDGES_UPSERT_TAIL,
        edges.iter().map(edge_row),
    )
}

pub fn write_meta(
    sql: &dyn Sql,
    version: i64,
    loaded_at: Option<i64>,
    edge_count: usize,
) -> Result<(), StorageError> {
    sql.execute(
        UPSERT_META,
        &[
            version.into(),
            loaded_at.into(),
            SqlValue::Integer(edge_count as i64),
        ],
    )?;
    Ok(())
}

/// Appends one record per `(op, edge id)`, numbered from 0 within the version.
pub fn append_log(
    sql: &dyn Sql,
    version: i64,
    at: i64,
    actor_key_id: &str,
    entries: &[(&str, Option<&str>)],
) -> Result<(), StorageError> {
    insert_batched(
        sql,
        LOG_INSERT,
        6,
        "",
        entries.iter().enumerate().map(|(seq, (op, edge_id))| {
            vec![
                version.into(),
                SqlValue::Integer(seq as i64),
                at.into(),
                (*op).into(),
                (*edge_id).into(),
                actor_key_id.into(),
            ]
        }),
    )
}

fn log_row(row: &Row) -> Result<LogRow, StorageError> {
    Ok(LogRow {
        version: int(row, 0, "log version")?,
        seq: int(row, 1, "log seq")?,
        at: int(row, 2, "log time")?,
        op: text(row, 3, "log op")?,
        edge_id: row.get(4).and_then(SqlValue::as_str).map(str::to_owned),
        actor_key_id: text(row, 5, "log actor")?,
    })
}

/// Up to `limit` records of versions after `since`, oldest first.
/// Drops the log records of versions up to and including `through` (the window moved on).
pub fn prune_log(sql: &dyn Sql, through: i64) -> Result<(), StorageError> {
    if through > 0 {
        sql.execute(DELETE_LOG_THROUGH, &[through.into()])?;
    }
    Ok(())
}

pub fn log_after(sql: &dyn Sql, since: i64, limit: usize) -> Result<Vec<LogRow>, StorageError> {
    sql.query(
        SELECT_LOG_AFTER,
        &[since.into(), SqlValue::Integer(limit as i64)],
    )?
    .iter()
    .map(log_row)
    .collect()
}

/// Every record of one version, in order.
pub fn log_of(sql: &dyn Sql, version: i64) -> Result<Vec<LogRow>, StorageError> {
    sql.query(SELECT_LOG_OF, &[version.into()])?
        .iter()
        .map(log_row)
        .collect()
}
