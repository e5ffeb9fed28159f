//! Local backends for the KV, D1 and R2 bindings of a Worker running in raw `workerd`.
//!
//! # Why
//!
//! `workerd` on its own has no storage behind `kvNamespace`, `r2Bucket` or the wrapped D1
//! binding: each binding is a small HTTP protocol spoken to whatever service the config names.
//! Miniflare and wrangler supply those services in JavaScript; this crate supplies them in Rust
//! (axum on tokio, SQLite and a directory), so the project's Worker can run under the pinned npm
//! `workerd` with nothing else installed, and so tests can inspect or reset the data on disk.
//!
//! # One port, one header
//!
//! One server backs every binding. Each binding gets its own `external` service in the workerd
//! config, all pointing at the same address, and each service injects the header
//! [`BINDING_HEADER`] (`x-authconf-binding`) with the value `kind:NAME`, e.g. `kv:SESSION_CACHE`,
//! `d1:DB` or `r2:TENANT_DATA` (capnp `http = (injectRequestHeaders = [...])`, checked against
//! `workerd 2026-11-17` by `tests/against_workerd.rs`). A header rather than a path prefix because
//! the KV and R2 clients build their own URLs (`https://fake-host/<key>`) and would not keep a
//! prefix. Requests without a valid header get 400. [`capnp_services`] and [`capnp_bindings`]
//! render the config lines so no script has to repeat this convention.
//!
//! Names are limited to `[A-Za-z0-9_-]{1,64}` because they become file names.
//!
//! # On disk (`data_dir`)
//!
//! - `kv.sqlite`: every KV namespace, keyed by (namespace, key).
//! - `d1/<NAME>.sqlite`: one SQLite database per D1 binding, used as is by the Worker's SQL.
//! - `r2.sqlite` plus `r2/<BUCKET>/<version>`: object metadata in SQLite, payloads as files
//!   named by a random version id (never by the key, which may contain `/` or `..`).
//!
//! # The protocols
//!
//! - **KV** (`workerd` `kv.c++`): `GET|PUT|DELETE /<key>?urlencoded=true`, the key being one
//!   percent-encoded path segment, decoded exactly once here. `PUT` takes `expiration` (unix
//!   seconds) or `expiration_ttl` and a `CF-KV-Metadata` JSON header; `GET` answers the value with
//!   that header, or 404 when missing or expired. `GET /?prefix=&key_count_limit=&cursor=` lists
//!   as `{"keys":[{"name","expiration"?,"metadata"?}],"list_complete","cursor"?}`, where
//!   `metadata` is the metadata JSON *as a string*. `POST /bulk/get` answers a JSON object of
//!   key to value (or `{value, metadata}` with `withMetadata`). Unlike Cloudflare, expirations
//!   less than 60 s ahead are accepted, so tests need no long sleeps.
//! - **D1** (the embedded `cloudflare-internal:d1-api` module): `POST /query` or `/execute` with
//!   `resultsFormat` `ROWS_AND_COLUMNS`, `ARRAY_OF_OBJECTS` or `NONE`, and a body of one
//!   `{"sql","params"}` or an array of them. An array runs in one transaction: all or nothing.
//!   Success is `{"success":true,"meta":{..},"results":..}` (an array of those for an array);
//!   failure is a single `{"success":false,"error":"..","meta":{}}` (status 400), because the
//!   client only inspects the first element of an array and ignores the status. Blobs travel as
//!   arrays of byte values. One `sql` may hold several statements: all run, the last one's rows
//!   are returned, and parameters are then refused.
//! - **R2** (`workerd` `r2-rpc.c++`, `r2-api.capnp`): reads are `GET /` with the request as JSON
//!   in the `CF-R2-Request` header; writes are `PUT /` whose body is `CF-R2-Metadata-Size` bytes
//!   of JSON followed by the payload. Read answers carry `CF-R2-Metadata-Size` and the metadata
//!   JSON before the payload; write answers are the JSON alone. Failures carry a `CF-R2-Error`
//!   header (`{"version":0,"v4code":10007,..}` for a missing key, which `get`/`head` turn into
//!   `null`). 64-bit numbers (`size`, `uploaded` in ms) are written as JSON strings, as capnp's
//!   JSON codec does. Supported: head, get (with `range`/`rangeHeader`), put, delete (single or
//!   many; this workerd sends it in the `PUT` form, the `GET` form is accepted too), list
//!   (prefix, cursor, startAfter, limit, delimiter, include). Conditional requests (`onlyIf`)
//!   and checksums are ignored, and multipart uploads answer 501.
//!
//! Values are never logged, nor keys: they may be secrets. The log has method, binding, status.

mod d1;
mod kv;
mod r2;
mod util;

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;

/// The header each workerd `external` service injects to say which binding a request is for.
pub const BINDING_HEADER: &str = "x-authconf-binding";

/// Largest request body accepted: KV values are at most 25 MiB, R2 single puts are bounded
/// here only to keep a runaway test from filling memory.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// Errors of the library. Request handlers map them to protocol-specific answers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request does not follow the binding protocol.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The request is well formed but this backend does not implement it.
    #[error("not implemented: {0}")]
    NotImplemented(String),
    /// The storage failed.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The file system failed.
    #[error("io: {0}")]
    Io(#[from] io::Error),
    /// A blocking task panicked or was cancelled.
    #[error("internal: {0}")]
    Internal(String),
}

impl Error {
    fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            Error::Sqlite(_) | Error::Io(_) | Error::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }
}

pub(crate) fn bad(msg: impl Into<String>) -> Error {
    Error::BadRequest(msg.into())
}

/// The kind of binding a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A `kvNamespace` binding.
    Kv,
    /// A wrapped `cloudflare-internal:d1-api` binding.
    D1,
    /// An `r2Bucket` binding.
    R2,
}

impl Kind {
    /// The prefix used in [`BINDING_HEADER`] values.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Kv => "kv",
            Kind::D1 => "d1",
            Kind::R2 => "r2",
        }
    }
}

/// One binding of a Worker: its kind and the name the Worker sees in `env`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding<'a> {
    /// KV, D1 or R2.
    pub kind: Kind,
    /// The `env` name, also the namespace / database / bucket name on disk.
    pub name: &'a str,
}

/// The bindings of the project's Worker.
pub const WORKER_BINDINGS: [Binding<'static>; 5] = [
    Binding {
        kind: Kind::Kv,
        name: "TOKEN_BLACKLIST",
    },
    Binding {
        kind: Kind::Kv,
        name: "SESSION_CACHE",
    },
    Binding {
        kind: Kind::Kv,
        name: "MUTATION_LOG",
    },
    Binding {
        kind: Kind::D1,
        name: "DB",
    },
    Binding {
        kind: Kind::R2,
        name: "TENANT_DATA",
    },
];

/// The workerd service name used for a binding.
pub fn service_name(binding: &Binding<'_>) -> String {
    format!("bindings-{}-{}", binding.kind.as_str(), binding.name)
}

/// Lines for the `services = [...]` list of a workerd config: one `external` service per
/// binding, all at `address` (`host:port`), each injecting [`BINDING_HEADER`].
pub fn render_services(address: &str, bindings: &[Binding<'_>]) -> String {
    bindings
        .iter()
        .map(|b| {
            format!(
                "    (name = \"{}\", external = (address = \"{address}\", http = (injectRequestHeaders = [(name = \"{BINDING_HEADER}\", value = \"{}:{}\")]))),\n",
                service_name(b),
                b.kind.as_str(),
                b.name
            )
        })
        .collect()
}

/// Lines for a worker's `bindings = [...]` list, naming the services of [`render_services`].
pub fn render_bindings(bindings: &[Binding<'_>]) -> String {
    bindings
        .iter()
        .map(|b| {
            let service = service_name(b);
            match b.kind {
                Kind::Kv => format!("    (name = \"{}\", kvNamespace = \"{service}\"),\n", b.name),
                Kind::R2 => format!("    (name = \"{}\", r2Bucket = \"{service}\"),\n", b.name),
                Kind::D1 => format!(
                    "    (name = \"{}\", wrapped = (moduleName = \"cloudflare-internal:d1-api\", innerBindings = [(name = \"fetcher\", service = \"{service}\")])),\n",
                    b.name
                ),
            }
        })
        .collect()
}

/// [`render_services`] for the project's Worker ([`WORKER_BINDINGS`]) at `127.0.0.1:port`.
pub fn capnp_services(port: u16) -> String {
    render_services(&format!("127.0.0.1:{port}"), &WORKER_BINDINGS)
}

/// [`render_bindings`] for the project's Worker ([`WORKER_BINDINGS`]).
pub fn capnp_bindings() -> String {
    render_bindings(&WORKER_BINDINGS)
}

/// Serves every binding on `listener` until `shutdown` completes, storing under `data_dir`
/// (created if missing). Open requests are allowed to finish before it returns.
pub async fn serve(
    listener: tokio::net::TcpListener,
    data_dir: PathBuf,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let app = Arc::new(App::open(data_dir).map_err(io::Error::other)?);
    let router = Router::new().fallback(dispatch).with_state(app);
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

pub(crate) struct App {
    kv: kv::Kv,
    d1: d1::D1,
    r2: r2::R2,
}

impl App {
    fn open(data_dir: PathBuf) -> Result<App, Error> {
        std::fs::create_dir_all(&data_dir)?;
        Ok(App {
            kv: kv::Kv::open(&data_dir)?,
            d1: d1::D1::new(&data_dir)?,
            r2: r2::R2::open(&data_dir)?,
        })
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn parse_binding(value: Option<&axum::http::HeaderValue>) -> Option<(Kind, String)> {
    let value = value?.to_str().ok()?;
    let (kind, name) = value.split_once(':')?;
    let kind = match kind {
        "kv" => Kind::Kv,
        "d1" => Kind::D1,
        "r2" => Kind::R2,
        _ => return None,
    };
    valid_name(name).then(|| (kind, name.to_owned()))
}

async fn dispatch(State(app): State<Arc<App>>, req: Request) -> Response {
    let method = req.method().clone();
    let Some((kind, name)) = parse_binding(req.headers().get(BINDING_HEADER)) else {
        tracing::warn!(%method, "request without a valid {BINDING_HEADER} header");
        return (
            StatusCode::BAD_REQUEST,
            format!(
                "missing or invalid {BINDING_HEADER} header (want kv:NAME, d1:NAME or r2:NAME)\n"
            ),
        )
            .into_response();
    };
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            tracing::warn!(%method, binding = %name, "body too large or unreadable");
            return StatusCode::PAYLOAD_TOO_LARGE.into_response();
        }
    };
    let response = match kind {
        Kind::Kv => kv::handle(&app.kv, &name, &parts, body).await,
        Kind::D1 => d1::handle(&app.d1, &name, &parts, body).await,
        Kind::R2 => r2::handle(&app.r2, &name, &parts, body).await,
    };
    tracing::info!(%method, kind = kind.as_str(), binding = %name, status = response.status().as_u16());
    response
}

/// Runs blocking storage work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
}

pub(crate) fn plain(status: StatusCode, text: String) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(Body::from(text))
        .unwrap_or_else(|_| status.into_response())
}
