//! The KV protocol of `workerd`'s `kvNamespace` binding, over one SQLite file for every namespace.

use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use percent_encoding::percent_decode_str;
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{json, Map, Value};

use crate::util::{decode_cursor, hex, lock, now_ms, param, query_pairs};
use crate::{bad, blocking, plain, Error};

const METADATA_HEADER: &str = "cf-kv-metadata";
/// Cloudflare's limits, kept so the Worker cannot rely on more than production allows.
const MAX_VALUE: usize = 25 * 1024 * 1024;
const MAX_KEY: usize = 512;
const MAX_METADATA: usize = 1024;
const MAX_LIST: u32 = 1000;

pub(crate) struct Kv {
    conn: Arc<Mutex<Connection>>,
}

impl Kv {
    pub(crate) fn open(dir: &Path) -> Result<Kv, Error> {
        let conn = Connection::open(dir.join("kv.sqlite"))?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE IF NOT EXISTS kv (
               ns TEXT NOT NULL,
               key TEXT NOT NULL,
               value BLOB NOT NULL,
               metadata TEXT,
               expiration INTEGER,
               PRIMARY KEY (ns, key)
             ) WITHOUT ROWID;",
        )?;
        Ok(Kv {
            conn: Arc::new(Mutex::new(conn)),
        })
    }
}

pub(crate) async fn handle(kv: &Kv, ns: &str, parts: &Parts, body: Bytes) -> Response {
    match route(kv, ns, parts, body).await {
        Ok(r) => r,
        Err(e) => plain(e.status(), format!("{e}\n")),
    }
}

/// Seconds since the epoch: KV expirations are whole seconds.
fn now_s() -> i64 {
    now_ms() / 1000
}

async fn route(kv: &Kv, ns: &str, parts: &Parts, body: Bytes) -> Result<Response, Error> {
    let path = parts.uri.path();
    let query = query_pairs(parts.uri.query())?;
    let conn = kv.conn.clone();
    let ns = ns.to_owned();
    if path == "/" {
        if parts.method != Method::GET {
            return Ok(StatusCode::METHOD_NOT_ALLOWED.into_response());
        }
        return list(conn, ns, &query).await;
    }
    if path == "/bulk/get" && parts.method == Method::POST {
        return bulk_get(conn, ns, body).await;
    }
    // The key is exactly one segment; a raw `/` means the client did not encode it.
    let raw = path.strip_prefix('/').unwrap_or(path);
    if raw.contains('/') {
        return Err(bad("the key must be a single percent-encoded path segment"));
    }
    let key = percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| bad("key is not UTF-8"))?
        .into_owned();
    if key.is_empty() || key.len() > MAX_KEY {
        return Err(bad("key must be 1 to 512 bytes"));
    }
    match parts.method {
        Method::GET => get(conn, ns, key).await,
        Method::PUT => put(conn, ns, key, parts, &query, body).await,
        Method::DELETE => {
            blocking(move || {
                lock(&conn).execute(
                    "DELETE FROM kv WHERE ns = ?1 AND key = ?2",
                    params![ns, key],
                )?;
                Ok(())
            })
            .await?;
            Ok(StatusCode::OK.into_response())
        }
        _ => Ok(StatusCode::METHOD_NOT_ALLOWED.into_response()),
    }
}

type Row = (Vec<u8>, Option<String>);

fn read(conn: &Connection, ns: &str, key: &str, now: i64) -> Result<Option<Row>, Error> {
    Ok(conn
        .query_row(
            "SELECT value, metadata FROM kv
             WHERE ns = ?1 AND key = ?2 AND (expiration IS NULL OR expiration > ?3)",
            params![ns, key, now],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
}

async fn get(conn: Arc<Mutex<Connection>>, ns: String, key: String) -> Result<Response, Error> {
    let row = blocking(move || read(&lock(&conn), &ns, &key, now_s())).await?;
    let Some((value, metadata)) = row else {
        return Ok(StatusCode::NOT_FOUND.into_response());
    };
    let mut builder = Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/octet-stream");
    if let Some(m) = metadata {
        builder = builder.header(METADATA_HEADER, m);
    }
    builder
        .body(Body::from(value))
        .map_err(|e| Error::Internal(e.to_string()))
}

fn parse_seconds(v: &str, what: &str) -> Result<i64, Error> {
    // JavaScript numbers may arrive as `1.7e9` or `1700000000.5`; KV truncates to seconds.
    let n: f64 = v
        .parse()
        .map_err(|_| bad(format!("{what} must be a number")))?;
    if !n.is_finite() || n <= 0.0 || n > 1e13 {
        return Err(bad(format!("{what} out of range")));
    }
    Ok(n as i64)
}

async fn put(
    conn: Arc<Mutex<Connection>>,
    ns: String,
    key: String,
    parts: &Parts,
    query: &[(String, String)],
    body: Bytes,
) -> Result<Response, Error> {
    if body.len() > MAX_VALUE {
        return Ok(StatusCode::PAYLOAD_TOO_LARGE.into_response());
    }
    let now = now_s();
    let expiration = match (param(query, "expiration"), param(query, "expiration_ttl")) {
        (_, Some(ttl)) => Some(now + parse_seconds(ttl, "expiration_ttl")?),
        (Some(at), None) => Some(parse_seconds(at, "expiration")?),
        (None, None) => None,
    };
    let metadata = match parts.headers.get(METADATA_HEADER) {
        None => None,
        Some(v) => {
            let text = std::str::from_utf8(v.as_bytes())
                .map_err(|_| bad("metadata is not UTF-8"))?
                .to_owned();
            if text.len() > MAX_METADATA {
                return Err(bad("metadata is larger than 1024 bytes"));
            }
            serde_json::from_str::<Value>(&text).map_err(|_| bad("metadata is not JSON"))?;
            Some(text)
        }
    };
    blocking(move || {
        lock(&conn).execute(
            "INSERT INTO kv (ns, key, value, metadata, expiration) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (ns, key) DO UPDATE SET
               value = excluded.value, metadata = excluded.metadata, expiration = excluded.expiration",
            params![ns, key, body.to_vec(), metadata, expiration],
        )?;
        Ok(())
    })
    .await?;
    Ok(StatusCode::OK.into_response())
}

async fn list(
    conn: Arc<Mutex<Connection>>,
    ns: String,
    query: &[(String, String)],
) -> Result<Response, Error> {
    let prefix = param(query, "prefix").unwrap_or("").to_owned();
    let limit = match param(query, "key_count_limit") {
        None => MAX_LIST,
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_LIST).contains(n))
            .ok_or_else(|| bad("key_count_limit must be 1 to 1000"))?,
    };
    let after = match param(query, "cursor") {
        None | Some("") => String::new(),
        Some(c) => decode_cursor(c)?,
    };
    let rows = blocking(move || {
        let conn = lock(&conn);
        let mut stmt = conn.prepare(
            "SELECT key, expiration, metadata FROM kv
             WHERE ns = ?1 AND key > ?2 AND substr(key, 1, length(?3)) = ?3
               AND (expiration IS NULL OR expiration > ?4)
             ORDER BY key LIMIT ?5",
        )?;
        let rows = stmt
            .query_map(
                params![ns, after, prefix, now_s(), i64::from(limit) + 1],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Option<i64>>(1)?,
                        r.get::<_, Option<String>>(2)?,
                    ))
                },
            )?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    })
    .await?;
    let complete = rows.len() <= limit as usize;
    let keys: Vec<Value> = rows
        .iter()
        .take(limit as usize)
        .map(|(name, expiration, metadata)| {
            let mut o = Map::new();
            o.insert("name".into(), json!(name));
            if let Some(e) = expiration {
                o.insert("expiration".into(), json!(e));
            }
            if let Some(m) = metadata {
                o.insert("metadata".into(), json!(m));
            }
            Value::Object(o)
        })
        .collect();
    let mut out = json!({ "keys": keys, "list_complete": complete });
    if !complete {
        if let Some((last, _, _)) = rows.get(limit as usize - 1) {
            out["cursor"] = json!(hex(last.as_bytes()));
        }
    }
    Ok(json_response(&out))
}

async fn bulk_get(
    conn: Arc<Mutex<Connection>>,
    ns: String,
    body: Bytes,
) -> Result<Response, Error> {
    let req: Value = serde_json::from_slice(&body).map_err(|_| bad("body is not JSON"))?;
    let keys: Vec<String> = req
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("keys must be an array"))?
        .iter()
        .map(|k| k.as_str().map(str::to_owned))
        .collect::<Option<_>>()
        .ok_or_else(|| bad("keys must be strings"))?;
    if keys.is_empty() || keys.len() > 100 {
        return Err(bad("bulk get takes 1 to 100 keys"));
    }
    let as_json = req.get("type").and_then(Value::as_str) == Some("json");
    let with_metadata = req.get("withMetadata").and_then(Value::as_bool) == Some(true);
    let found = blocking(move || {
        let conn = lock(&conn);
        let now = now_s();
        keys.into_iter()
            .map(|k| {
                let row = read(&conn, &ns, &k, now)?;
                Ok((k, row))
            })
            .collect::<Result<Vec<_>, Error>>()
    })
    .await?;
    let mut out = Map::new();
    for (key, row) in found {
        let entry = match row {
            None => Value::Null,
            Some((value, metadata)) => {
                let text = String::from_utf8(value).map_err(|_| bad("value is not UTF-8"))?;
                let value = if as_json {
                    serde_json::from_str(&text).map_err(|_| bad("value is not JSON"))?
                } else {
                    Value::String(text)
                };
                if with_metadata {
                    let metadata = metadata
                        .and_then(|m| serde_json::from_str(&m).ok())
                        .unwrap_or(Value::Null);
                    json!({ "value": value, "metadata": metadata })
                } else {
                    value
                }
            }
        };
        out.insert(key, entry);
    }
    Ok(json_response(&Value::Object(out)))
}

pub(crate) fn json_response(v: &Value) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        v.to_string(),
    )
        .into_response()
}
