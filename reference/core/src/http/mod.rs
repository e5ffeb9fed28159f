//! HTTP plumbing of the core: request parsing, JSON bodies with field-level errors, and
//! `application/problem+json` answers.
//!
//! This file holds the request and response types, the answers every route builds (JSON
//! bodies, `Allow`, the headers every answer carries) and the path and query parsing; the two
//! larger jobs have a module each: [`problem`] (every early end of a request, as one problem
//! document) and [`body`] (reading a JSON request body and its fields, each error naming the
//! field).

mod body;
mod problem;

pub use body::{json_object, media_type, Fields, MAX_BODY_BYTES};
pub use problem::{ApiError, ApiResult, MAX_PROBLEM_TEXT};

use http::{header, HeaderValue, Method, StatusCode};
use serde_json::Value;

/// The request type hosts hand to the core.
pub type Request = http::Request<Vec<u8>>;
/// The response type the core hands back.
pub type Response = http::Response<Vec<u8>>;

fn with_body(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response {
    let mut resp = http::Response::new(body);
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// A JSON answer.
pub fn json(status: StatusCode, value: &impl serde::Serialize) -> Response {
    with_body(
        status,
        "application/json",
        serde_json::to_vec(value).expect("response bodies serialise"),
    )
}

/// A JSON answer with the object keys in sorted order at every level.
///
/// The bodies that used to be built as `serde_json::Value`s (with `json!`) have always gone out
/// with their keys sorted, since serde_json's map keeps them in order; now that they are built
/// from `auth-contract` types they pass through a `Value` so that not one byte changes.
pub fn json_sorted(status: StatusCode, value: &impl serde::Serialize) -> Response {
    json(status, &sorted(value))
}

/// `value` as a `Value`: its object keys in sorted order (see [`json_sorted`]).
pub fn sorted(value: &impl serde::Serialize) -> Value {
    serde_json::to_value(value).expect("wire types serialise")
}

/// A request's path split into percent-decoded segments.
pub fn path_segments(path: &str) -> Option<Vec<String>> {
    let trimmed = path.trim_start_matches('/');
    if trimmed.is_empty() {
        return Some(Vec::new());
    }
    trimmed
        .split('/')
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .ok()
                .map(|c| c.into_owned())
        })
        .collect()
}

/// Query parameters, percent-decoded (`+` as space).
pub fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    let Some(q) = query else { return Vec::new() };
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode_component(k), decode_component(v))
        })
        .collect()
}

fn decode_component(s: &str) -> String {
    let spaced = s.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

/// The first value of a header as text, if it is valid text.
pub fn header_str<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Answers 405 unless the method is one of `allowed`.
pub fn allow(
    method: &Method,
    allowed: &[Method],
    allow_header: &'static str,
) -> Result<(), ApiError> {
    if allowed.contains(method) {
        Ok(())
    } else {
        Err(ApiError::MethodNotAllowed(allow_header))
    }
}

/// The id of the request being handled, carried in the request's extensions from the front
/// to the objects, so audit records name the request that caused them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// Adds the headers every answer carries, and empties HEAD answers.
pub fn finish(mut resp: Response, request_id: &str, head: bool) -> Response {
    if head {
        resp.body_mut().clear();
    }
    let headers = resp.headers_mut();
    headers.insert(
        "x-request-id",
        HeaderValue::from_str(request_id).unwrap_or(HeaderValue::from_static("-")),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    resp
}

/// The request id the front gave a request.
pub fn request_id(req: &Request) -> String {
    req.extensions()
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_percent_decoded() {
        assert_eq!(path_segments("/"), Some(vec![]));
        assert_eq!(path_segments(""), Some(vec![]));
        assert_eq!(
            path_segments("/admin/tenants/tenant%3Aacme"),
            Some(vec!["admin".into(), "tenants".into(), "tenant:acme".into()])
        );
        assert_eq!(
            path_segments("/admin/tenants/tenant:acme/keys"),
            Some(vec![
                "admin".into(),
                "tenants".into(),
                "tenant:acme".into(),
                "keys".into()
            ])
        );
        // An encoded slash stays inside its segment.
        assert_eq!(path_segments("/a%2Fb"), Some(vec!["a/b".into()]));
        assert_eq!(path_segments("/a/"), Some(vec!["a".into(), "".into()]));
        assert_eq!(path_segments("/%FF"), None, "not UTF-8");
    }

    #[test]
    fn query_pairs_decode_and_keep_order() {
        assert!(query_pairs(None).is_empty());
        assert!(query_pairs(Some("")).is_empty());
        assert_eq!(
            query_pairs(Some("a=1&b=x+y&&c&tenant_id=tenant%3Aacme&a=2")),
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "x y".into()),
                ("c".into(), "".into()),
                ("tenant_id".into(), "tenant:acme".into()),
                ("a".into(), "2".into()),
            ]
        );
        assert_eq!(
            query_pairs(Some("k=%FF")),
            vec![("k".into(), "\u{fffd}".into())]
        );
        assert_eq!(query_pairs(Some("a=b=c")), vec![("a".into(), "b=c".into())]);
    }
}
