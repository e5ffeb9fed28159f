//! Keyed JSON requests to the Worker and their answers: a status check that names the request.

use serde_json::Value;

use super::Stack;

/// A request's answer: the status and the body (JSON, or the text as a JSON string), with the
/// method and path that got it, for the messages of [`Answer::expect`].
pub struct Answer {
    pub method: String,
    pub path: String,
    pub status: u16,
    pub body: Value,
}

impl Answer {
    /// Asserts the status; the answer, for its body.
    #[track_caller]
    pub fn expect(self, status: u16) -> Answer {
        assert_eq!(
            self.status, status,
            "{} {}: expected {status}, got {}: {}",
            self.method, self.path, self.status, self.body
        );
        self
    }

    /// [`Answer::expect`], saying what the status shows.
    #[track_caller]
    pub fn expect_because(self, status: u16, why: &str) -> Answer {
        assert_eq!(
            self.status, status,
            "{why}: {} {}: expected {status}, got {}: {}",
            self.method, self.path, self.status, self.body
        );
        self
    }

    /// Asserts a status under 300; the answer, for its body.
    #[track_caller]
    pub fn expect_success(self) -> Answer {
        assert!(
            self.status < 300,
            "{} {}: expected a success, got {}: {}",
            self.method,
            self.path,
            self.status,
            self.body
        );
        self
    }
}

impl Stack {
    /// `method path` with `key` as the bearer credential and `body`, if any, as JSON.
    pub async fn call(&self, key: &str, method: &str, path: &str, body: Option<Value>) -> Answer {
        let mut rb = self
            .client
            .request(method.parse().expect("method"), self.url(path))
            .bearer_auth(key);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.expect("the Worker answers");
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        Answer {
            method: method.to_owned(),
            path: path.to_owned(),
            status,
            body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
        }
    }

    pub async fn get(&self, key: &str, path: &str) -> Answer {
        self.call(key, "GET", path, None).await
    }

    pub async fn post(&self, key: &str, path: &str, body: Value) -> Answer {
        self.call(key, "POST", path, Some(body)).await
    }

    pub async fn patch(&self, key: &str, path: &str, body: Value) -> Answer {
        self.call(key, "PATCH", path, Some(body)).await
    }

    pub async fn delete(&self, key: &str, path: &str) -> Answer {
        self.call(key, "DELETE", path, None).await
    }
}
