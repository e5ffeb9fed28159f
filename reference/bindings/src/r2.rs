//! The R2 protocol of `workerd`'s `r2Bucket` binding: metadata in SQLite, payloads in files.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::util::{decode_cursor, hex, lock, now_ms, random_hex};
use crate::{bad, blocking, Error};

const REQUEST_HEADER: &str = "cf-r2-request";
const METADATA_SIZE_HEADER: &str = "cf-r2-metadata-size";
const ERROR_HEADER: &str = "cf-r2-error";
const MAX_KEY: usize = 1024;
const MAX_LIST: u64 = 1000;
/// workerd refuses metadata blocks above 1 MiB; stay well below for requests too.
const MAX_METADATA: usize = 1024 * 1024;

/// The v4 error codes the binding understands (`get`/`head` turn 10007 into `null`).
const NO_SUCH_KEY: u32 = 10007;
/// Every other failure: the binding only shows the message, so one generic code is enough.
const OTHER_ERROR: u32 = 10001;

pub(crate) struct R2 {
    dir: PathBuf,
    conn: Arc<Mutex<Connection>>,
}

impl R2 {
    pub(crate) fn open(data_dir: &Path) -> Result<R2, Error> {
        let dir = data_dir.join("r2");
        std::fs::create_dir_all(&dir)?;
        let conn = Connection::open(data_dir.join("r2.sqlite"))?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE IF NOT EXISTS objects (
               bucket TEXT NOT NULL,
               key TEXT NOT NULL,
               version TEXT NOT NULL,
               size INTEGER NOT NULL,
               etag TEXT NOT NULL,
               uploaded INTEGER NOT NULL,
               http_fields TEXT NOT NULL,
               custom_fields TEXT NOT NULL,
               PRIMARY KEY (bucket, key)
             ) WITHOUT ROWID;",
        )?;
        Ok(R2 {
            dir,
            conn: Arc::new(Mutex::new(conn)),
        })
    }
}

struct Object {
    key: String,
    version: String,
    size: u64,
    etag: String,
    uploaded: i64,
    http_fields: String,
    custom_fields: String,
}

const COLUMNS: &str = "key, version, size, etag, uploaded, http_fields, custom_fields";

fn object_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Object> {
    Ok(Object {
        key: r.get(0)?,
        version: r.get(1)?,
        size: r.get(2)?,
        etag: r.get(3)?,
        uploaded: r.get(4)?,
        http_fields: r.get(5)?,
        custom_fields: r.get(6)?,
    })
}

impl Object {
    /// The `R2HeadResponse` JSON. 64-bit numbers are strings, as capnp's JSON codec writes them.
    fn metadata(&self, http: bool, custom: bool) -> Value {
        let mut v = json!({
            "name": self.key,
            "version": self.version,
            "size": self.size.to_string(),
            "etag": self.etag,
            "uploaded": self.uploaded.to_string(),
            "storageClass": "Standard",
        });
        if http {
            v["httpFields"] = serde_json::from_str(&self.http_fields).unwrap_or(json!({}));
        }
        if custom {
            v["customFields"] = serde_json::from_str(&self.custom_fields).unwrap_or(json!([]));
        }
        v
    }
}

fn r2_error(status: StatusCode, code: u32, message: &str) -> Response {
    let header = json!({ "version": 0, "v4code": code, "message": message }).to_string();
    Response::builder()
        .status(status)
        .header(ERROR_HEADER, header)
        .body(Body::empty())
        .unwrap_or_else(|_| status.into_response())
}

fn no_such_key() -> Response {
    r2_error(
        StatusCode::NOT_FOUND,
        NO_SUCH_KEY,
        "The specified key does not exist.",
    )
}

/// A read answer: `CF-R2-Metadata-Size`, the metadata JSON, then the payload.
fn framed(metadata: &Value, payload: &[u8]) -> Response {
    let meta = metadata.to_string();
    let mut body = Vec::with_capacity(meta.len() + payload.len());
    body.extend_from_slice(meta.as_bytes());
    body.extend_from_slice(payload);
    Response::builder()
        .status(StatusCode::OK)
        .header(METADATA_SIZE_HEADER, meta.len())
        .body(Body::from(body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

pub(crate) async fn handle(r2: &R2, bucket: &str, parts: &Parts, body: Bytes) -> Response {
    match route(r2, bucket, parts, body).await {
        Ok(r) => r,
        Err(e) => r2_error(e.status(), OTHER_ERROR, &e.to_string()),
    }
}

async fn route(r2: &R2, bucket: &str, parts: &Parts, body: Bytes) -> Result<Response, Error> {
    // Reads carry the request in a header; writes put it before the payload.
    let (request, payload, is_put_form) = match parts.method {
        Method::GET => {
            let header = parts
                .headers
                .get(REQUEST_HEADER)
                .ok_or_else(|| bad("missing CF-R2-Request header"))?;
            let request: Value = serde_json::from_slice(header.as_bytes())
                .map_err(|_| bad("CF-R2-Request is not JSON"))?;
            (request, Bytes::new(), false)
        }
        Method::PUT => {
            let size: usize = parts
                .headers
                .get(METADATA_SIZE_HEADER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .filter(|n| *n <= MAX_METADATA && *n <= body.len())
                .ok_or_else(|| bad("missing or invalid CF-R2-Metadata-Size header"))?;
            let request: Value = serde_json::from_slice(&body[..size])
                .map_err(|_| bad("R2 request metadata is not JSON"))?;
            (request, body.slice(size..), true)
        }
        _ => return Ok(StatusCode::METHOD_NOT_ALLOWED.into_response()),
    };
    let method = request
        .get("method")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("R2 request without a method"))?
        .to_owned();
    let conn = r2.conn.clone();
    let dir = r2.dir.join(bucket);
    let bucket = bucket.to_owned();
    match method.as_str() {
        "head" | "get" => {
            let key = object_key(&request)?;
            let get = method == "get";
            blocking(move || read(&conn, &dir, &bucket, &key, get, &request)).await
        }
        "put" => {
            let key = object_key(&request)?;
            blocking(move || put(&conn, &dir, &bucket, key, &request, &payload)).await
        }
        "delete" => {
            let keys = match (request.get("object"), request.get("objects")) {
                (Some(_), _) => vec![object_key(&request)?],
                (None, Some(Value::Array(items))) => items
                    .iter()
                    .map(|k| k.as_str().map(str::to_owned))
                    .collect::<Option<_>>()
                    .ok_or_else(|| bad("objects must be strings"))?,
                _ => return Err(bad("delete needs object or objects")),
            };
            blocking(move || delete(&conn, &dir, &bucket, &keys)).await?;
            // The PUT form reads the whole body as metadata; the GET form expects the framing.
            Ok(if is_put_form {
                (StatusCode::OK, "{}").into_response()
            } else {
                framed(&json!({}), &[])
            })
        }
        "list" => blocking(move || list(&conn, &bucket, &request)).await,
        other => Err(Error::NotImplemented(format!("R2 method {other}"))),
    }
}

fn object_key(request: &Value) -> Result<String, Error> {
    let key = request
        .get("object")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("R2 request without an object key"))?;
    if key.is_empty() || key.len() > MAX_KEY {
        return Err(bad("object keys must be 1 to 1024 bytes"));
    }
    Ok(key.to_owned())
}

fn find(conn: &Connection, bucket: &str, key: &str) -> Result<Option<Object>, Error> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM objects WHERE bucket = ?1 AND key = ?2"),
            params![bucket, key],
            object_row,
        )
        .optional()?)
}

fn read(
    conn: &Mutex<Connection>,
    dir: &Path,
    bucket: &str,
    key: &str,
    with_body: bool,
    request: &Value,
) -> Result<Response, Error> {
    // Held across the file read so that a concurrent put cannot remove the version we read.
    let conn = lock(conn);
    let Some(object) = find(&conn, bucket, key)? else {
        return Ok(no_such_key());
    };
    let mut metadata = object.metadata(true, true);
    if !with_body {
        return Ok(framed(&metadata, &[]));
    }
    let data = std::fs::read(dir.join(&object.version))?;
    let (offset, length) = match range(request, data.len() as u64)? {
        Some((o, l)) => {
            metadata["range"] = json!({ "offset": o.to_string(), "length": l.to_string() });
            (o as usize, l as usize)
        }
        None => (0, data.len()),
    };
    Ok(framed(&metadata, &data[offset..offset + length]))
}

/// The requested byte range, clamped to the object, from either `range` or `rangeHeader`.
fn range(request: &Value, size: u64) -> Result<Option<(u64, u64)>, Error> {
    let num = |v: Option<&Value>| -> Option<u64> {
        match v? {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        }
    };
    if let Some(r) = request.get("range").filter(|r| r.is_object()) {
        if let Some(suffix) = num(r.get("suffix")) {
            let len = suffix.min(size);
            return Ok(Some((size - len, len)));
        }
        let offset = num(r.get("offset")).unwrap_or(0).min(size);
        let length = num(r.get("length"))
            .unwrap_or(size - offset)
            .min(size - offset);
        return Ok(Some((offset, length)));
    }
    if let Some(h) = request.get("rangeHeader").and_then(Value::as_str) {
        let spec = h
            .trim()
            .strip_prefix("bytes=")
            .filter(|s| !s.contains(','))
            .ok_or_else(|| Error::NotImplemented("only single bytes= ranges".into()))?;
        let (a, b) = spec.split_once('-').ok_or_else(|| bad("invalid range"))?;
        let parse = |s: &str| s.trim().parse::<u64>().map_err(|_| bad("invalid range"));
        return Ok(Some(match (a.trim().is_empty(), b.trim().is_empty()) {
            (true, false) => {
                let len = parse(b)?.min(size);
                (size - len, len)
            }
            (false, true) => {
                let o = parse(a)?.min(size);
                (o, size - o)
            }
            (false, false) => {
                let (o, e) = (parse(a)?.min(size), parse(b)?);
                (o, e.saturating_add(1).min(size).saturating_sub(o))
            }
            (true, true) => return Err(bad("invalid range")),
        }));
    }
    Ok(None)
}

fn put(
    conn: &Mutex<Connection>,
    dir: &Path,
    bucket: &str,
    key: String,
    request: &Value,
    payload: &[u8],
) -> Result<Response, Error> {
    let http_fields = match request.get("httpFields") {
        None | Some(Value::Null) => json!({}),
        Some(v @ Value::Object(_)) => v.clone(),
        Some(_) => return Err(bad("httpFields must be an object")),
    };
    let custom_fields = match request.get("customFields") {
        None | Some(Value::Null) => json!([]),
        Some(v @ Value::Array(_)) => v.clone(),
        Some(_) => return Err(bad("customFields must be an array")),
    };
    std::fs::create_dir_all(dir)?;
    let version = random_hex(16)?;
    // Written under a temporary name first, so a crash never leaves a half file under a version
    // the database points to.
    let tmp = dir.join(format!("{version}.tmp"));
    std::fs::write(&tmp, payload)?;
    std::fs::rename(&tmp, dir.join(&version))?;
    let object = Object {
        key,
        version,
        size: payload.len() as u64,
        // R2's etag is the MD5; any content hash serves the same purpose here.
        etag: hex(&Sha256::digest(payload)[..16]),
        uploaded: now_ms(),
        http_fields: http_fields.to_string(),
        custom_fields: custom_fields.to_string(),
    };
    let conn = lock(conn);
    let old = find(&conn, bucket, &object.key)?;
    conn.execute(
        &format!(
            "INSERT OR REPLACE INTO objects (bucket, {COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
        ),
        params![
            bucket,
            object.key,
            object.version,
            object.size,
            object.etag,
            object.uploaded,
            object.http_fields,
            object.custom_fields
        ],
    )?;
    if let Some(old) = old {
        let _ = std::fs::remove_file(dir.join(old.version));
    }
    Ok((StatusCode::OK, object.metadata(true, true).to_string()).into_response())
}

fn delete(
    conn: &Mutex<Connection>,
    dir: &Path,
    bucket: &str,
    keys: &[String],
) -> Result<(), Error> {
    let conn = lock(conn);
    for key in keys {
        if let Some(old) = find(&conn, bucket, key)? {
            conn.execute(
                "DELETE FROM objects WHERE bucket = ?1 AND key = ?2",
                params![bucket, key],
            )?;
            let _ = std::fs::remove_file(dir.join(old.version));
        }
    }
    Ok(())
}

/// Cursors name what the previous page ended on: an object (`o` + hex key) or a delimited
/// prefix (`p` + hex prefix, so the next page skips everything under it).
fn list(conn: &Mutex<Connection>, bucket: &str, request: &Value) -> Result<Response, Error> {
    let text = |name: &str| request.get(name).and_then(Value::as_str).unwrap_or("");
    let prefix = text("prefix").to_owned();
    let delimiter = text("delimiter").to_owned();
    let limit = match request.get("limit") {
        None | Some(Value::Null) => MAX_LIST,
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .ok_or_else(|| bad("limit must be a number"))?
            .clamp(1, MAX_LIST),
    };
    let include: Vec<u64> = request
        .get("include")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    let (with_http, with_custom) = (include.contains(&0), include.contains(&1));
    let mut after = text("startAfter").to_owned();
    let mut skip_under: Option<String> = None;
    match text("cursor") {
        "" => {}
        c if c.starts_with('o') => after = after.max(decode_cursor(&c[1..])?),
        c if c.starts_with('p') => {
            let p = decode_cursor(&c[1..])?;
            after = after.max(p.clone());
            skip_under = Some(p);
        }
        _ => return Err(bad("invalid cursor")),
    }

    let conn = lock(conn);
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM objects
         WHERE bucket = ?1 AND key > ?2 AND substr(key, 1, length(?3)) = ?3
         ORDER BY key"
    ))?;
    let mut rows = stmt.query(params![bucket, after, prefix])?;
    let mut objects = Vec::new();
    let mut prefixes: Vec<String> = Vec::new();
    let mut last_cursor = String::new();
    let mut truncated = false;
    let mut count = 0u64;
    while let Some(row) = rows.next()? {
        let object = object_row(row)?;
        if skip_under
            .as_deref()
            .is_some_and(|p| object.key.starts_with(p))
        {
            continue;
        }
        let rest = &object.key[prefix.len()..];
        let group = (!delimiter.is_empty())
            .then(|| rest.find(&delimiter))
            .flatten()
            .map(|i| format!("{prefix}{}", &rest[..i + delimiter.len()]));
        if let Some(g) = &group {
            if prefixes.last() == Some(g) {
                continue;
            }
        }
        if count == limit {
            truncated = true;
            break;
        }
        count += 1;
        match group {
            Some(g) => {
                last_cursor = format!("p{}", hex(g.as_bytes()));
                skip_under = Some(g.clone());
                prefixes.push(g);
            }
            None => {
                last_cursor = format!("o{}", hex(object.key.as_bytes()));
                objects.push(object.metadata(with_http, with_custom));
            }
        }
    }
    let mut out = json!({
        "objects": objects,
        "truncated": truncated,
        "delimitedPrefixes": prefixes,
    });
    if truncated {
        out["cursor"] = json!(last_cursor);
    }
    Ok(framed(&out, &[]))
}
