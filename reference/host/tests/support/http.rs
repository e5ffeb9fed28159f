//! One answer type for every test, and the checks every answer must pass.

use reqwest::header::HeaderMap;
use reqwest::{Client, Method, RequestBuilder};
use serde_json::Value;

/// One answer, read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Resp {
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }

    pub fn field(&self) -> &str {
        self.body["field"].as_str().unwrap_or("")
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn num_header(&self, name: &str) -> u64 {
        self.header(name)
            .parse()
            .unwrap_or_else(|_| panic!("header {name} is a whole number: {:?}", self.headers))
    }

    pub fn request_id(&self) -> String {
        self.header("x-request-id").to_owned()
    }

    /// Asserts status and problem code.
    #[track_caller]
    pub fn expect(&self, status: u16, code: &str) -> &Self {
        assert_eq!(
            (self.status, self.code()),
            (status, code),
            "unexpected answer: {}",
            self.text
        );
        self
    }

    /// Asserts a 400 `code` (`invalid_field` or `invalid_query`) naming `field`, in `field`
    /// and in `errors`.
    #[track_caller]
    pub fn expect_field(&self, code: &str, field: &str) -> &Self {
        self.expect(400, code);
        assert_eq!(self.field(), field, "field of {}", self.text);
        let errors = self.body["errors"].as_array().expect("errors list");
        assert!(
            errors
                .iter()
                .any(|e| e["field"] == field && e["message"].is_string()),
            "errors of {}",
            self.text
        );
        self
    }

    /// Asserts a status and returns the body.
    #[track_caller]
    pub fn ok(&self, status: u16) -> &Value {
        assert_eq!(self.status, status, "unexpected answer: {}", self.text);
        &self.body
    }

    /// Asserts the four RateLimit headers are there and consistent; answers
    /// `(limit, remaining, reset)`.
    #[track_caller]
    pub fn rate_headers(&self) -> (u64, u64, u64) {
        let limit = self.num_header("ratelimit-limit");
        let remaining = self.num_header("ratelimit-remaining");
        let reset = self.num_header("ratelimit-reset");
        let policy = self.header("ratelimit-policy");
        assert!(
            policy.starts_with(&format!("{limit};w=")),
            "RateLimit-Policy {policy:?} names the limit {limit}"
        );
        assert!(remaining <= limit, "remaining {remaining} <= limit {limit}");
        assert!(reset >= 1, "RateLimit-Reset is at least 1");
        (limit, remaining, reset)
    }
}

/// Sends `rb` and checks what every answer must satisfy: no 5xx (a 503 `service_busy` only
/// when `busy_ok`, for the load tests; a 500 never), an `X-Request-Id`, and errors as problem
/// documents (with `WWW-Authenticate: Bearer` on a 401 and `Allow` on a 405).
pub async fn send_checked(rb: RequestBuilder, busy_ok: bool) -> Resp {
    let (client, req) = rb.build_split();
    let req = req.expect("a valid request");
    let what = format!("{} {}", req.method(), req.url());
    let r = client.execute(req).await.expect("request goes through");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    assert_ne!(status, 500, "no input yields a 500: {what}: {text}");
    assert!(
        status < 500 || (busy_ok && status == 503),
        "no input yields a 5xx: {what}: {status} {text}"
    );
    assert!(
        headers.get("x-request-id").is_some_and(|v| !v.is_empty()),
        "every response carries X-Request-Id ({what}: {status} {text})"
    );
    if status >= 400 && !text.is_empty() {
        check_problem(&what, status, &headers, &body, &text);
    }
    Resp {
        status,
        headers,
        body,
        text,
    }
}

/// The rules of an error answer with a body.
#[track_caller]
fn check_problem(what: &str, status: u16, headers: &HeaderMap, body: &Value, text: &str) {
    assert_eq!(
        headers.get("content-type").map(|v| v.to_str().unwrap()),
        Some("application/problem+json"),
        "errors are problem documents: {what}: {text}"
    );
    let code = body["code"].as_str().expect("problem code");
    assert_eq!(body["type"], format!("urn:auth-service:problem:{code}"));
    assert_eq!(body["status"], status);
    assert!(
        body["title"].is_string() && body["detail"].is_string(),
        "{text}"
    );
    if status == 401 {
        assert_eq!(
            headers.get("www-authenticate").map(|v| v.to_str().unwrap()),
            Some("Bearer"),
            "{what}"
        );
    }
    if status == 405 {
        assert!(headers.contains_key("allow"), "405 sets Allow: {what}");
    }
}
