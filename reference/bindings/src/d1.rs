//! The D1 protocol of the embedded `cloudflare-internal:d1-api` module, over one SQLite file per
//! binding.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{Batch, Connection};
use serde_json::{json, Map, Value};

use crate::kv::json_response;
use crate::util::{lock, param, query_pairs};
use crate::{bad, blocking, Error};

type Db = Arc<Mutex<Connection>>;

pub(crate) struct D1 {
    dir: PathBuf,
    dbs: Mutex<HashMap<String, Db>>,
}

impl D1 {
    pub(crate) fn new(data_dir: &Path) -> Result<D1, Error> {
        let dir = data_dir.join("d1");
        std::fs::create_dir_all(&dir)?;
        Ok(D1 {
            dir,
            dbs: Mutex::new(HashMap::new()),
        })
    }

    fn db(&self, name: &str) -> Result<Db, Error> {
        let mut dbs = lock(&self.dbs);
        if let Some(db) = dbs.get(name) {
            return Ok(db.clone());
        }
        let conn = Connection::open(self.dir.join(format!("{name}.sqlite")))?;
        // D1 enforces foreign keys; WAL lets the sqlite3 CLI read while the Worker runs.
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON;")?;
        let db = Arc::new(Mutex::new(conn));
        dbs.insert(name.to_owned(), db.clone());
        Ok(db)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    RowsAndColumns,
    ArrayOfObjects,
    None,
}

struct Statement {
    sql: String,
    params: Vec<SqlValue>,
}

pub(crate) async fn handle(d1: &D1, name: &str, parts: &Parts, body: Bytes) -> Response {
    match route(d1, name, parts, body).await {
        Ok(r) => r,
        Err(e) => {
            let status = e.status();
            (
                status,
                [("content-type", "application/json")],
                failure(&e.to_string()).to_string(),
            )
                .into_response()
        }
    }
}

fn failure(msg: &str) -> Value {
    json!({ "success": false, "error": msg, "meta": {} })
}

async fn route(d1: &D1, name: &str, parts: &Parts, body: Bytes) -> Result<Response, Error> {
    if parts.method != Method::POST {
        return Ok(StatusCode::METHOD_NOT_ALLOWED.into_response());
    }
    match parts.uri.path() {
        "/query" | "/execute" => {}
        "/dump" => return Err(Error::NotImplemented("dump".into())),
        _ => return Ok(StatusCode::NOT_FOUND.into_response()),
    }
    let query = query_pairs(parts.uri.query())?;
    let format = match param(&query, "resultsFormat") {
        None | Some("ARRAY_OF_OBJECTS") => Format::ArrayOfObjects,
        Some("ROWS_AND_COLUMNS") => Format::RowsAndColumns,
        Some("NONE") => Format::None,
        Some(_) => return Err(bad("unknown resultsFormat")),
    };
    let body: Value = serde_json::from_slice(&body).map_err(|_| bad("body is not JSON"))?;
    let (batch, statements) = match &body {
        Value::Array(items) => (true, items.iter().map(statement).collect::<Result<_, _>>()?),
        one => (false, vec![statement(one)?]),
    };
    let db = d1.db(name)?;
    let outcome = blocking(move || Ok(run(&mut lock(&db), &statements, format))).await?;
    Ok(match outcome {
        Ok(mut results) if !batch && results.len() == 1 => json_response(&results.remove(0)),
        Ok(results) => json_response(&Value::Array(results)),
        // SQL errors are the caller's, hence 400; the client reads only the JSON anyway.
        Err(msg) => (
            StatusCode::BAD_REQUEST,
            [("content-type", "application/json")],
            failure(&msg).to_string(),
        )
            .into_response(),
    })
}

fn statement(v: &Value) -> Result<Statement, Error> {
    let sql = v
        .get("sql")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("each statement needs a string sql"))?
        .to_owned();
    let params = match v.get("params") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(ps)) => ps.iter().map(to_sql).collect::<Result<_, _>>()?,
        Some(_) => return Err(bad("params must be an array")),
    };
    Ok(Statement { sql, params })
}

fn to_sql(v: &Value) -> Result<SqlValue, Error> {
    Ok(match v {
        Value::Null => SqlValue::Null,
        Value::Bool(b) => SqlValue::Integer(i64::from(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => SqlValue::Integer(i),
            None => SqlValue::Real(n.as_f64().ok_or_else(|| bad("unsupported number"))?),
        },
        Value::String(s) => SqlValue::Text(s.clone()),
        // The client sends ArrayBuffers and typed arrays as arrays of byte values.
        Value::Array(items) => SqlValue::Blob(
            items
                .iter()
                .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                .collect::<Option<_>>()
                .ok_or_else(|| bad("blob params must be arrays of bytes"))?,
        ),
        Value::Object(_) => return Err(bad("Type 'object' not supported for value")),
    })
}

fn from_sql(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => json!(i),
        ValueRef::Real(f) => json!(f),
        ValueRef::Text(t) => Value::String(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Array(b.iter().map(|x| json!(x)).collect()),
    }
}

/// Runs every statement in one transaction, so a batch is all or nothing. The error is a
/// message for the client, not an [`Error`]: it is the expected answer to bad SQL.
fn run(
    conn: &mut Connection,
    statements: &[Statement],
    format: Format,
) -> Result<Vec<Value>, String> {
    let tx = conn.transaction().map_err(|e| e.to_string())?;
    let mut results = Vec::with_capacity(statements.len());
    for s in statements {
        results.push(run_one(&tx, s, format).map_err(|e| e.to_string())?);
    }
    tx.commit().map_err(|e| e.to_string())?;
    let size = database_size(conn);
    for r in &mut results {
        r["meta"]["size_after"] = json!(size);
    }
    Ok(results)
}

fn database_size(conn: &Connection) -> i64 {
    conn.query_row(
        "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
        [],
        |r| r.get(0),
    )
    .unwrap_or(0)
}

/// One `{"sql","params"}`. The SQL may hold several statements (as D1 allows): all run, the
/// answer has the last one's rows and the sum of their changes. Parameters are refused then,
/// since it would be a guess which statement they belong to.
fn run_one(conn: &Connection, s: &Statement, format: Format) -> rusqlite::Result<Value> {
    let start = Instant::now();
    let before = conn.total_changes();
    let mut batch = Batch::new(conn, &s.sql);
    let mut columns: Vec<String> = Vec::new();
    let mut rows: Vec<Vec<Value>> = Vec::new();
    let mut rows_read = 0;
    let mut count = 0;
    while let Some(mut stmt) = batch.next()? {
        count += 1;
        if count > 1 && !s.params.is_empty() {
            return Err(rusqlite::Error::MultipleStatement);
        }
        let params: &[SqlValue] = if count == 1 { &s.params } else { &[] };
        if stmt.parameter_count() != params.len() {
            return Err(rusqlite::Error::InvalidParameterCount(
                params.len(),
                stmt.parameter_count(),
            ));
        }
        for (i, p) in params.iter().enumerate() {
            stmt.raw_bind_parameter(i + 1, p)?;
        }
        columns = stmt.column_names().into_iter().map(str::to_owned).collect();
        rows.clear();
        let mut cursor = stmt.raw_query();
        while let Some(row) = cursor.next()? {
            let cells = (0..columns.len())
                .map(|i| row.get_ref(i).map(from_sql))
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.push(cells);
        }
        rows_read += rows.len();
    }
    let changes = conn.total_changes().saturating_sub(before);
    let m = meta(start, changes, conn.last_insert_rowid(), rows_read);
    Ok(result(format, columns, rows, m))
}

fn meta(start: Instant, changes: u64, last_row_id: i64, rows_out: usize) -> Value {
    json!({
        "served_by": "binding-services",
        "duration": start.elapsed().as_secs_f64() * 1000.0,
        "changes": changes,
        "last_row_id": last_row_id,
        "changed_db": changes > 0,
        // SQLite does not count rows scanned; rows returned is the closest cheap figure.
        "rows_read": rows_out as u64,
        "rows_written": changes,
        "size_after": 0,
    })
}

fn result(format: Format, columns: Vec<String>, rows: Vec<Vec<Value>>, meta: Value) -> Value {
    match format {
        Format::None => json!({ "success": true, "meta": meta }),
        Format::RowsAndColumns => {
            json!({ "success": true, "meta": meta, "results": { "columns": columns, "rows": rows } })
        }
        Format::ArrayOfObjects => {
            let objects: Vec<Value> = rows
                .into_iter()
                .map(|r| Value::Object(columns.iter().cloned().zip(r).collect::<Map<_, _>>()))
                .collect();
            json!({ "success": true, "meta": meta, "results": objects })
        }
    }
}
