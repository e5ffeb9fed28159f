//! HTTP plumbing of the core: request parsing, JSON bodies with field-level errors, and
//! `application/problem+json` answers.

use auth_contract::{FieldError, Problem, PROBLEM_JSON};
use http::{header, HeaderValue, Method, StatusCode};
use serde_json::{Map, Value};

/// The request type hosts hand to the core.
pub type Request = http::Request<Vec<u8>>;
/// The response type the core hands back.
pub type Response = http::Response<Vec<u8>>;

/// Largest request body accepted. Hosts should stop reading after one byte more.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Longest `detail`, `field` or error `message` a problem document carries, in bytes. Messages
/// may quote client input (a field name, a parser's complaint); the answer to bad input stays
/// small whatever the input was.
pub const MAX_PROBLEM_TEXT: usize = 512;

/// `text` cut to [`MAX_PROBLEM_TEXT`] bytes (on a character boundary), marked when cut.
fn bounded(mut text: String) -> String {
    if text.len() > MAX_PROBLEM_TEXT {
        let mut end = MAX_PROBLEM_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("...");
    }
    text
}

/// Everything that ends a request early. Each maps to one problem document; none carries an
/// internal message to the client.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    Unauthorized,
    /// End-user auth: unknown user, wrong password, or any bad, expired or revoked user token.
    /// One identical body for all of them, so no answer tells which.
    UserUnauthorized,
    Forbidden(&'static str),
    TenantMismatch,
    TenantSuspended,
    NotFound,
    MethodNotAllowed(&'static str),
    Conflict(&'static str),
    PayloadTooLarge,
    UnsupportedMediaType,
    /// 410: what the request asks for existed and is gone for good (a pruned log window).
    Gone {
        code: &'static str,
        detail: String,
    },
    InvalidJson(String),
    InvalidField {
        field: String,
        message: String,
    },
    InvalidQuery {
        field: String,
        message: String,
    },
    CredentialsInQuery,
    /// Over the tenant's quota; the figure is `Retry-After` in seconds.
    RateLimited(u64),
    /// `GET /v1/events` without a WebSocket upgrade.
    UpgradeRequired,
    /// The body did not arrive within the host's body read deadline.
    RequestTimeout,
    /// A bounded resource (the password workers) stayed full; the figure is `Retry-After`.
    Busy(u64),
    /// The caller's tenant or key holds as many WebSockets as it may.
    TooManySockets,
    /// A storage failure. The cause goes to the host's log through [`crate::Outcome`].
    Internal,
    /// An object call failed in a way a retry can get past (its storage batch did not commit,
    /// the object is being rebuilt); the figure is `Retry-After` in seconds.
    Unavailable(u64),
}

impl ApiError {
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::InvalidField {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn query(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::InvalidQuery {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized | ApiError::UserUnauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) | ApiError::TenantMismatch | ApiError::TenantSuspended => {
                StatusCode::FORBIDDEN
            }
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Gone { .. } => StatusCode::GONE,
            ApiError::InvalidJson(_)
            | ApiError::InvalidField { .. }
            | ApiError::InvalidQuery { .. }
            | ApiError::CredentialsInQuery => StatusCode::BAD_REQUEST,
            ApiError::RateLimited(_) | ApiError::TooManySockets => StatusCode::TOO_MANY_REQUESTS,
            ApiError::UpgradeRequired => StatusCode::UPGRADE_REQUIRED,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::Busy(_) | ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code_and_detail(&self) -> (&'static str, String) {
        match self {
            ApiError::Unauthorized => ("unauthorized", "A valid API key is required.".into()),
            ApiError::UserUnauthorized => (
                "unauthorized",
                "The credentials or the token are not valid.".into(),
            ),
            ApiError::Forbidden(why) => ("forbidden", (*why).into()),
            ApiError::TenantMismatch => (
                "tenant_mismatch",
                "The request names more than one tenant.".into(),
            ),
            ApiError::TenantSuspended => ("tenant_suspended", "The tenant is suspended.".into()),
            ApiError::NotFound => ("not_found", "No such resource.".into()),
            ApiError::MethodNotAllowed(_) => (
                "method_not_allowed",
                "The resource does not support this method.".into(),
            ),
            ApiError::Conflict(why) => ("conflict", (*why).into()),
            ApiError::PayloadTooLarge => (
                "payload_too_large",
                format!("Request bodies are limited to {MAX_BODY_BYTES} bytes."),
            ),
            ApiError::UnsupportedMediaType => (
                "unsupported_media_type",
                "Request bodies must be application/json.".into(),
            ),
            ApiError::InvalidJson(why) => ("invalid_json", why.clone()),
            ApiError::Gone { code, detail } => (code, detail.clone()),
            ApiError::InvalidField { field, message } => {
                ("invalid_field", format!("{field}: {message}"))
            }
            ApiError::InvalidQuery { field, message } => {
                ("invalid_query", format!("{field}: {message}"))
            }
            ApiError::CredentialsInQuery => (
                "credentials_in_query",
                "API keys are accepted only in the Authorization header.".into(),
            ),
            ApiError::RateLimited(secs) => (
                "rate_limited",
                format!("The tenant's quota is used up; retry in {secs} s."),
            ),
            ApiError::UpgradeRequired => (
                "upgrade_required",
                "This endpoint speaks WebSocket only.".into(),
            ),
            ApiError::RequestTimeout => (
                "request_timeout",
                "The request body did not arrive in time.".into(),
            ),
            ApiError::TooManySockets => (
                "too_many_sockets",
                "The tenant or the key holds as many WebSockets as it may.".into(),
            ),
            ApiError::Busy(secs) => (
                "service_busy",
                format!("The service is busy; retry in {secs} s."),
            ),
            ApiError::Unavailable(secs) => (
                "service_unavailable",
                format!("The service could not complete the request; retry in {secs} s."),
            ),
            ApiError::Internal => (
                "internal",
                "The service could not complete the request.".into(),
            ),
        }
    }

    /// The problem document for this error. Its texts are bounded ([`MAX_PROBLEM_TEXT`]),
    /// whatever input a message quotes.
    pub fn to_problem(&self) -> Problem {
        let status = self.status();
        let (code, detail) = self.code_and_detail();
        let detail = bounded(detail);
        let (field, errors) = match self {
            ApiError::InvalidField { field, message }
            | ApiError::InvalidQuery { field, message } => (
                Some(bounded(field.clone())),
                vec![FieldError {
                    field: bounded(field.clone()),
                    message: bounded(message.clone()),
                }],
            ),
            _ => (None, Vec::new()),
        };
        Problem {
            problem_type: format!("urn:auth-service:problem:{code}"),
            title: status.canonical_reason().unwrap_or("Error").into(),
            status: status.as_u16(),
            code: code.into(),
            detail,
            field,
            errors,
        }
    }

    pub fn into_response(self) -> Response {
        let mut resp = with_body(
            self.status(),
            PROBLEM_JSON,
            serde_json::to_vec(&self.to_problem()).expect("problem serialises"),
        );
        match self {
            ApiError::Unauthorized | ApiError::UserUnauthorized => {
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::RateLimited(secs) | ApiError::Busy(secs) | ApiError::Unavailable(secs) => {
                resp.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from_str(&secs.to_string()).expect("digits"),
                );
            }
            ApiError::UpgradeRequired => {
                resp.headers_mut()
                    .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            }
            ApiError::MethodNotAllowed(allow) => {
                resp.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            _ => {}
        }
        resp
    }
}

impl From<crate::ports::StorageError> for ApiError {
    fn from(_: crate::ports::StorageError) -> Self {
        ApiError::Internal
    }
}

pub type ApiResult = Result<Response, ApiError>;

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

/// The declared media type without parameters, lower-cased (`text/csv` for
/// `Text/CSV; charset=utf-8`); `None` without a readable `Content-Type`.
pub fn media_type(req: &Request) -> Option<String> {
    let value = req.headers().get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(
        value
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase(),
    )
}

/// The JSON object in a request body, checked for size, media type and syntax.
/// `optional` allows an empty body (read as `{}`), for routes whose body may be omitted.
pub fn json_object(req: &Request, optional: bool) -> Result<Map<String, Value>, ApiError> {
    let body = req.body();
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError::PayloadTooLarge);
    }
    if body.is_empty() && optional {
        return Ok(Map::new());
    }
    let is_json = media_type(req)
        .is_some_and(|essence| essence == "application/json" || essence.ends_with("+json"));
    if !is_json {
        return Err(ApiError::UnsupportedMediaType);
    }
    if body.is_empty() {
        return Err(ApiError::InvalidJson("The request body is empty.".into()));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::InvalidJson(
            "The request body must be a JSON object.".into(),
        )),
        Err(e) => Err(ApiError::InvalidJson(format!(
            "Malformed JSON at line {}, column {}.",
            e.line(),
            e.column()
        ))),
    }
}

/// Typed access to the fields of a JSON object, with errors that name the field.
pub struct Fields {
    map: Map<String, Value>,
}

impl Fields {
    /// Refuses any field not in `allowed`, so a misspelt field (`parent_id` for `parentId`) is
    /// an error rather than silently ignored.
    pub fn new(map: Map<String, Value>, allowed: &[&str]) -> Result<Self, ApiError> {
        let mut unknown: Vec<&String> = map
            .keys()
            .filter(|k| !allowed.contains(&k.as_str()))
            .collect();
        unknown.sort();
        if let Some(k) = unknown.first() {
            return Err(ApiError::field(k.as_str(), "is not a known field"));
        }
        Ok(Self { map })
    }

    pub fn has(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.map.get(name)
    }

    /// A string field; `None` when absent. `null` counts as absent only if `null_ok`.
    pub fn opt_str(&self, name: &str) -> Result<Option<String>, ApiError> {
        match self.map.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(ApiError::field(name, "must be a string")),
        }
    }

    pub fn req_str(&self, name: &str) -> Result<String, ApiError> {
        self.opt_str(name)?
            .ok_or_else(|| ApiError::field(name, "is required"))
    }

    /// A string of 1..=max characters after trimming.
    pub fn text(&self, name: &str, max: usize, required: bool) -> Result<Option<String>, ApiError> {
        let Some(v) = self.opt_str(name)? else {
            return if required {
                Err(ApiError::field(name, "is required"))
            } else {
                Ok(None)
            };
        };
        let t = v.trim();
        if t.is_empty() {
            return Err(ApiError::field(name, "must not be empty"));
        }
        if t.chars().count() > max {
            return Err(ApiError::field(
                name,
                format!("must be at most {max} characters"),
            ));
        }
        if t.chars().any(char::is_control) {
            return Err(ApiError::field(name, "must not contain control characters"));
        }
        Ok(Some(t.to_owned()))
    }

    /// A whole number in `min..=max`.
    pub fn opt_int(&self, name: &str, min: i64, max: i64) -> Result<Option<i64>, ApiError> {
        match self.map.get(name) {
            None => Ok(None),
            Some(Value::Number(n)) => match n.as_i64() {
                Some(i) if (min..=max).contains(&i) => Ok(Some(i)),
                _ => Err(ApiError::field(
                    name,
                    format!("must be a whole number from {min} to {max}"),
                )),
            },
            Some(_) => Err(ApiError::field(name, "must be a number")),
        }
    }

    /// A list of strings.
    pub fn opt_str_list(&self, name: &str) -> Result<Option<Vec<String>>, ApiError> {
        match self.map.get(name) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| ApiError::field(name, "must be a list of strings"))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(ApiError::field(name, "must be a list of strings")),
        }
    }
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

    /// A failed object call is a retryable 503 problem, never a 500.
    #[test]
    fn an_unavailable_object_is_a_503_with_retry_after() {
        let resp = ApiError::Unavailable(1).into_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
        assert_eq!(resp.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        let body: serde_json::Value = serde_json::from_slice(resp.body()).expect("JSON");
        assert_eq!(body["code"], "service_unavailable");
        assert_eq!(body["status"], 503);
    }

    /// A message quoting megabytes of input still makes a small problem document.
    #[test]
    fn problem_texts_are_bounded() {
        let long = "é".repeat(100_000);
        let e = ApiError::field(long.clone(), long.clone());
        let p = e.to_problem();
        assert!(p.detail.len() <= MAX_PROBLEM_TEXT + 3);
        assert!(p.field.as_ref().unwrap().len() <= MAX_PROBLEM_TEXT + 3);
        assert!(p.errors[0].message.len() <= MAX_PROBLEM_TEXT + 3);
        assert!(p.detail.ends_with("..."));
        let body = ApiError::InvalidJson(long).into_response();
        assert!(body.body().len() < 2048, "{}", body.body().len());
    }
    use serde_json::json;

    fn req(content_type: Option<&str>, body: &[u8]) -> Request {
        let mut b = http::Request::builder().method("POST").uri("/x");
        if let Some(ct) = content_type {
            b = b.header(header::CONTENT_TYPE, ct);
        }
        b.body(body.to_vec()).unwrap()
    }

    fn fields(v: Value, allowed: &[&str]) -> Result<Fields, ApiError> {
        match v {
            Value::Object(m) => Fields::new(m, allowed),
            _ => panic!("not an object"),
        }
    }

    fn field_of(e: ApiError) -> String {
        match e {
            ApiError::InvalidField { field, .. } | ApiError::InvalidQuery { field, .. } => field,
            other => panic!("not a field error: {other:?}"),
        }
    }

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

    #[test]
    fn json_bodies_are_checked_for_size_type_and_syntax() {
        let ok = json_object(&req(Some("application/json"), br#"{"a":1}"#), false).unwrap();
        assert_eq!(ok["a"], 1);
        assert!(json_object(&req(Some("Application/JSON; charset=utf-8"), b"{}"), false).is_ok());
        assert!(json_object(&req(Some("application/merge-patch+json"), b"{}"), false).is_ok());
        assert_eq!(
            json_object(&req(Some("text/plain"), b"{}"), false),
            Err(ApiError::UnsupportedMediaType)
        );
        assert_eq!(
            json_object(&req(None, b"{}"), false),
            Err(ApiError::UnsupportedMediaType)
        );
        let big = vec![b' '; MAX_BODY_BYTES + 1];
        assert_eq!(
            json_object(&req(Some("application/json"), &big), false),
            Err(ApiError::PayloadTooLarge)
        );
        // Exactly the limit is still read.
        let mut at_limit = b"{}".to_vec();
        at_limit.resize(MAX_BODY_BYTES, b' ');
        assert!(json_object(&req(Some("application/json"), &at_limit), false).is_ok());
        assert!(json_object(&req(None, b""), true).unwrap().is_empty());
        assert!(matches!(
            json_object(&req(Some("application/json"), b""), false),
            Err(ApiError::InvalidJson(_))
        ));
        assert!(matches!(
            json_object(&req(Some("application/json"), b"[1]"), false),
            Err(ApiError::InvalidJson(_))
        ));
        match json_object(&req(Some("application/json"), b"{\n \"a\": }"), false) {
            Err(ApiError::InvalidJson(d)) => assert!(d.contains("line 2"), "{d}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn fields_refuse_unknown_names_and_name_the_field() {
        let e = fields(json!({"name": "x", "zeta": 1, "alpha": 2}), &["name"])
            .err()
            .unwrap();
        assert_eq!(field_of(e), "alpha", "the first unknown field in order");
        let f = fields(
            json!({"s": "  hi  ", "n": 5, "l": ["a", "b"], "bad": 1.5, "e": " ", "ctl": "a\u{7}"}),
            &["s", "n", "l", "bad", "e", "ctl"],
        )
        .unwrap();
        assert!(f.has("s") && !f.has("missing"));
        assert_eq!(f.text("s", 10, true).unwrap().as_deref(), Some("hi"));
        assert_eq!(field_of(f.text("s", 1, true).unwrap_err()), "s");
        assert_eq!(field_of(f.text("e", 10, true).unwrap_err()), "e");
        assert_eq!(field_of(f.text("ctl", 10, true).unwrap_err()), "ctl");
        assert_eq!(f.text("missing", 10, false).unwrap(), None);
        assert_eq!(
            field_of(f.text("missing", 10, true).unwrap_err()),
            "missing"
        );
        assert_eq!(field_of(f.opt_str("n").unwrap_err()), "n");
        assert_eq!(field_of(f.req_str("missing").unwrap_err()), "missing");
        assert_eq!(f.opt_int("n", 0, 5).unwrap(), Some(5));
        assert_eq!(field_of(f.opt_int("n", 0, 4).unwrap_err()), "n");
        assert_eq!(field_of(f.opt_int("bad", 0, 4).unwrap_err()), "bad");
        assert_eq!(field_of(f.opt_int("s", 0, 4).unwrap_err()), "s");
        assert_eq!(f.opt_int("missing", 0, 4).unwrap(), None);
        assert_eq!(
            f.opt_str_list("l").unwrap(),
            Some(vec!["a".to_owned(), "b".to_owned()])
        );
        assert_eq!(field_of(f.opt_str_list("n").unwrap_err()), "n");
        let g = fields(json!({"l": ["a", 1]}), &["l"]).unwrap();
        assert_eq!(field_of(g.opt_str_list("l").unwrap_err()), "l");
    }

    #[test]
    fn problems_carry_code_field_and_errors() {
        let p = ApiError::field("plan", "must be free").to_problem();
        assert_eq!(p.status, 400);
        assert_eq!(p.code, "invalid_field");
        assert_eq!(p.problem_type, "urn:auth-service:problem:invalid_field");
        assert_eq!(p.field.as_deref(), Some("plan"));
        assert_eq!(p.errors.len(), 1);
        assert_eq!(p.errors[0].field, "plan");
        let u = ApiError::Unauthorized.into_response();
        assert_eq!(u.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(u.headers()[header::WWW_AUTHENTICATE], "Bearer");
        assert_eq!(u.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        let body: Value = serde_json::from_slice(u.body()).unwrap();
        assert!(body.get("field").is_none() && body.get("errors").is_none());
        let m = ApiError::MethodNotAllowed("GET, HEAD").into_response();
        assert_eq!(m.headers()[header::ALLOW], "GET, HEAD");
        assert_eq!(
            ApiError::Internal.to_problem().detail,
            "The service could not complete the request."
        );
    }
}
