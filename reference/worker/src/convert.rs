//! Requests and responses between workers-rs and the core's `http` types.

use auth_core::graph::MAX_CSV_BYTES;
use auth_core::http::MAX_BODY_BYTES;
use auth_core::ApiError;
use futures::StreamExt;
use worker::{Headers, Request, RequestInit, Response};

/// The body of `req`, read as a stream and never more than `limit + 1` bytes of it (enough for
/// the core to answer 413): a body declared larger is refused before a byte is read, and one
/// that fails to arrive is an error, never an empty body.
async fn read_capped(req: &mut Request, limit: usize) -> Result<Vec<u8>, ApiError> {
    let declared = req
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::PayloadTooLarge);
    }
    let unreadable = || ApiError::InvalidJson("The request body could not be read.".into());
    let mut stream = match req.stream() {
        Ok(s) => s,
        Err(worker::Error::BodyUsed) => return Err(unreadable()),
        // No body at all.
        Err(_) => return Ok(Vec::new()),
    };
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| unreadable())?;
        let room = limit + 1 - out.len();
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() > limit {
            break;
        }
    }
    Ok(out)
}

/// The path whose body may exceed [`MAX_BODY_BYTES`]: it is read only once the directory's
/// front has found the key's tenant ([`read_upload`]), so a caller without a valid key never
/// gets a byte of it read.
pub const UPLOAD_PATH: &str = "/v1/graph/csv";

/// A core request from a Worker request's method, path and query, and headers, with an empty
/// body.
pub fn head_to_core(req: &Request) -> Result<auth_core::Request, ApiError> {
    let url = req.url().map_err(|_| ApiError::Internal)?;
    let mut path_and_query = url.path().to_owned();
    if let Some(q) = url.query() {
        path_and_query.push('?');
        path_and_query.push_str(q);
    }
    let mut builder = http::Request::builder()
        .method(req.method().to_string().as_str())
        .uri(path_and_query);
    for (name, value) in req.headers().entries() {
        builder = builder.header(name, value);
    }
    builder.body(Vec::new()).map_err(|_| ApiError::Internal)
}

/// A core request from a Worker request: method, path and query, headers, and the body up to
/// the route's limit (64 KiB; 8 MiB for `PUT /v1/graph/csv`).
pub async fn to_core(req: &mut Request) -> Result<auth_core::Request, ApiError> {
    let mut core = head_to_core(req)?;
    *core.body_mut() = read_capped(req, body_limit(core.uri().path())).await?;
    Ok(core)
}

/// [`to_core`] for a request that carries a client's to an object (`crate::internal`): the
/// client's path and query `target` instead of the internal route, the body up to its limit.
pub async fn to_core_at(req: &mut Request, target: &str) -> Result<auth_core::Request, ApiError> {
    let mut core = head_to_core(req)?;
    *core.uri_mut() = target.parse().map_err(|_| ApiError::Internal)?;
    *core.body_mut() = read_capped(req, body_limit(core.uri().path())).await?;
    Ok(core)
}

/// The body limit of a path: 8 MiB for the CSV upload, 64 KiB for everything else.
fn body_limit(path: &str) -> usize {
    if path == UPLOAD_PATH {
        MAX_CSV_BYTES
    } else {
        MAX_BODY_BYTES
    }
}

/// A client's request as the core's, and whether it is a CSV upload: an upload's body (up to
/// 8 MiB) is left unread until the key's tenant is known ([`read_upload`]), as on the native
/// host, so a caller without a valid key never has a byte of it read; every other body is
/// read now, up to 64 KiB.
pub async fn client_to_core(req: &mut Request) -> Result<(auth_core::Request, bool), ApiError> {
    if req.path() == UPLOAD_PATH {
        Ok((head_to_core(req)?, true))
    } else {
        Ok((to_core(req).await?, false))
    }
}

/// Reads the body of a CSV upload, up to its 8 MiB, into `core` (made by [`head_to_core`]).
pub async fn read_upload(req: &mut Request, core: &mut auth_core::Request) -> Result<(), ApiError> {
    *core.body_mut() = read_capped(req, MAX_CSV_BYTES).await?;
    Ok(())
}

/// A Worker response from a core response. Bodiless statuses get a null body, as the
/// platform's `Response` constructor insists.
pub fn to_worker(resp: auth_core::Response) -> worker::Result<Response> {
    let (parts, body) = resp.into_parts();
    let headers = Headers::new();
    for (name, value) in &parts.headers {
        if let Ok(v) = value.to_str() {
            headers.append(name.as_str(), v)?;
        }
    }
    let status = parts.status.as_u16();
    let response = if body.is_empty() {
        Response::empty()?
    } else {
        Response::from_bytes(body)?
    };
    Ok(response.with_status(status).with_headers(headers))
}

/// A core response from a Worker response (the graph object's answer).
pub async fn from_worker(mut resp: Response) -> auth_core::Response {
    let status = resp.status_code();
    let body = resp.bytes().await.unwrap_or_default();
    let mut out = http::Response::new(body);
    *out.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in resp.headers().entries() {
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            out.headers_mut().append(n, v);
        }
    }
    out
}

/// A request to a Durable Object's stub at `url` that carries a core request: its method, the
/// headers `keep` lets through plus `extra`, and its body.
pub fn to_stub_request(
    req: &auth_core::Request,
    url: &str,
    keep: impl Fn(&http::HeaderName) -> bool,
    extra: &[(&str, &str)],
) -> worker::Result<Request> {
    let headers = Headers::new();
    for (name, value) in req.headers() {
        if let (true, Ok(v)) = (keep(name), value.to_str()) {
            headers.append(name.as_str(), v)?;
        }
    }
    for (name, value) in extra {
        headers.set(name, value)?;
    }
    let mut init = RequestInit::new();
    init.with_method(worker::Method::from(req.method().to_string()))
        .with_headers(headers);
    let bodiless = req.method() == http::Method::GET || req.method() == http::Method::HEAD;
    if !req.body().is_empty() && !bodiless {
        init.with_body(Some(js_sys::Uint8Array::from(req.body().as_slice()).into()));
    }
    Request::new_with_init(url, &init)
}

/// A problem document for `e`, outside any client request (no request id to name).
pub fn problem(e: ApiError) -> worker::Result<Response> {
    to_worker(auth_core::finish(e.into_response(), "-", false))
}

/// 503 for a Worker deployed without its secrets: the reason names the missing setting. Built
/// here rather than by the core because the core's `Service` cannot be made without those
/// settings; the body is the contract's `Problem` with the contract's 503 code, like any other.
pub fn not_configured(reason: &str) -> worker::Result<Response> {
    let code = "service_unavailable";
    let body = auth_contract::Problem {
        problem_type: format!("urn:auth-service:problem:{code}"),
        title: "Service Unavailable".into(),
        status: 503,
        code: code.into(),
        detail: format!("The service is not configured: {reason}."),
        field: None,
        errors: Vec::new(),
    };
    let headers = Headers::new();
    headers.set("content-type", auth_contract::PROBLEM_JSON)?;
    Ok(Response::from_bytes(serde_json::to_vec(&body)?)?
        .with_status(503)
        .with_headers(headers))
}
