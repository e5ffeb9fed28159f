//! Requests and responses between workers-rs and the core's `http` types.

use worker::{Headers, Request, Response};

/// A core request from a Worker request: method, path and query, headers, the whole body
/// (the core refuses bodies over its limits itself).
pub async fn to_core(req: &mut Request) -> Result<auth_core::Request, String> {
    let url = req.url().map_err(|e| e.to_string())?;
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
    let body = req.bytes().await.unwrap_or_default();
    builder.body(body).map_err(|e| e.to_string())
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
