//! Every early end of a request ([`ApiError`]) and the one `application/problem+json`
//! document (RFC 9457) each becomes: status, stable `code`, bounded texts, and the headers
//! some of them need (`WWW-Authenticate`, `Retry-After`, `Allow`, `Upgrade`).

use auth_contract::{FieldError, Problem, PROBLEM_JSON};
use http::{header, HeaderValue, StatusCode};

use super::{with_body, Response, MAX_BODY_BYTES};

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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

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
