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

/// Everything that ends a request early. Each maps to one problem document; none carries an
/// internal message to the client.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    Unauthorized,
    Forbidden(&'static str),
    TenantMismatch,
    TenantSuspended,
    NotFound,
    MethodNotAllowed(&'static str),
    Conflict(&'static str),
    PayloadTooLarge,
    UnsupportedMediaType,
    InvalidJson(String),
    InvalidField { field: String, message: String },
    InvalidQuery { field: String, message: String },
    CredentialsInQuery,
    /// A storage failure. The cause goes to the host's log through [`crate::Outcome`].
    Internal,
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
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) | ApiError::TenantMismatch | ApiError::TenantSuspended => {
                StatusCode::FORBIDDEN
            }
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::InvalidJson(_)
            | ApiError::InvalidField { .. }
            | ApiError::InvalidQuery { .. }
            | ApiError::CredentialsInQuery => StatusCode::BAD_REQUEST,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code_and_detail(&self) -> (&'static str, String) {
        match self {
            ApiError::Unauthorized => ("unauthorized", "A valid API key is required.".into()),
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
            ApiError::Internal => ("internal", "The service could not complete the request.".into()),
        }
    }

    /// The problem document for this error.
    pub fn to_problem(&self) -> Problem {
        let status = self.status();
        let (code, detail) = self.code_and_detail();
        let (field, errors) = match self {
            ApiError::InvalidField { field, message } | ApiError::InvalidQuery { field, message } => (
                Some(field.clone()),
                vec![FieldError {
                    field: field.clone(),
                    message: message.clone(),
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
            ApiError::Unauthorized => {
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
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
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            let essence = v.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
            essence == "application/json" || essence.ends_with("+json")
        })
        .unwrap_or(false);
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
        let mut unknown: Vec<&String> = map.keys().filter(|k| !allowed.contains(&k.as_str())).collect();
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
            return Err(ApiError::field(name, format!("must be at most {max} characters")));
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
pub fn allow(method: &Method, allowed: &[Method], allow_header: &'static str) -> Result<(), ApiError> {
    if allowed.contains(method) {
        Ok(())
    } else {
        Err(ApiError::MethodNotAllowed(allow_header))
    }
}
