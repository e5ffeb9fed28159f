//! Mail capture for the embedded reference: a `wiremock` mail API that accepts every mail
//! and keeps it, so that steps can read verification, reset and welcome tokens by recipient.

use std::sync::Arc;

use authconf_scenarios::{CapturedMail, MailCapture};
use futures::future::BoxFuture;
use serde_json::Value;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The path the reference POSTs mail to.
pub const MAIL_PATH: &str = "/send";

/// A started mail API.
#[derive(Debug, Clone)]
pub struct WiremockMail {
    server: Arc<MockServer>,
}

impl WiremockMail {
    /// Starts a mail API answering 202 to every POST, on a port of its choosing.
    pub async fn start() -> Self {
        Self::serve(MockServer::start().await).await
    }

    /// Starts it on `addr`, for a target started beforehand with that address as its mail API.
    pub async fn start_on(addr: std::net::SocketAddr) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind(addr)?;
        Ok(Self::serve(MockServer::builder().listener(listener).start().await).await)
    }

    async fn serve(server: MockServer) -> Self {
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(202))
            .mount(&server)
            .await;
        WiremockMail {
            server: Arc::new(server),
        }
    }

    /// The URL to give the reference as `MAIL_API_URL`.
    pub fn url(&self) -> String {
        format!("{}{MAIL_PATH}", self.server.uri())
    }
}

impl MailCapture for WiremockMail {
    fn messages(&self) -> BoxFuture<'_, Vec<CapturedMail>> {
        Box::pin(async move {
            let reqs = self.server.received_requests().await.unwrap_or_default();
            reqs.iter()
                .map(|r| {
                    let body: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
                    let s = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
                    let mut raw = String::from_utf8_lossy(&r.body).into_owned();
                    for (k, v) in r.headers.iter() {
                        if k.as_str().eq_ignore_ascii_case("authorization") {
                            continue;
                        }
                        raw.push('\n');
                        raw.push_str(k.as_str());
                        raw.push_str(": ");
                        raw.push_str(&String::from_utf8_lossy(v.as_bytes()));
                    }
                    CapturedMail {
                        to: s("to").to_ascii_lowercase(),
                        subject: s("subject"),
                        text: s("text"),
                        template: s("template"),
                        tenant_id: body
                            .get("tenantId")
                            .and_then(Value::as_str)
                            .map(str::to_owned),
                        raw,
                    }
                })
                .collect()
        })
    }
}
