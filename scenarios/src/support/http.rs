//! The HTTP transport of the steps: a request as a step describes it ([`Req`]), one exchange
//! as the target answered it ([`Exchange`]), and [`send`], which sends a prepared request and
//! times it. It knows nothing of scenarios: leak checks and the tenant ledger belong to the
//! World, which every step sends through.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::context::RunContext;

/// How a request authenticates.
#[derive(Debug, Clone)]
pub enum Cred {
    /// No `Authorization` header.
    None,
    /// `Authorization: Bearer <value>`; the label appears in reports instead of the value.
    Bearer {
        /// Report label.
        label: String,
        /// The token.
        value: String,
    },
    /// A literal `Authorization` header value.
    Raw(String),
}

/// A request body.
#[derive(Debug, Clone)]
pub enum Body {
    /// No body.
    None,
    /// A JSON text sent as `application/json`.
    Json(String),
    /// Bytes with an optional content type.
    Raw {
        /// `Content-Type`, if any.
        content_type: Option<String>,
        /// The bytes.
        bytes: Vec<u8>,
    },
}

/// A request as a step describes it.
#[derive(Debug, Clone)]
pub struct Req {
    /// HTTP method.
    pub method: String,
    /// Path template, placeholders expanded by [`crate::AuthWorld::send`].
    pub path: String,
    /// Credential.
    pub cred: Cred,
    /// Extra headers (values expanded).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Body,
    /// `Host` override (subdomain routing).
    pub host: Option<String>,
    /// The path before expansion (for endpoint names), set by [`crate::AuthWorld::prepare`].
    pub template: Option<String>,
}

impl Req {
    /// A request without body or extra headers.
    pub fn new(method: &str, path: &str, cred: Cred) -> Self {
        Req {
            method: method.to_ascii_uppercase(),
            path: path.to_owned(),
            cred,
            headers: Vec::new(),
            body: Body::None,
            host: None,
            template: None,
        }
    }

    /// Adds a JSON body.
    pub fn json(mut self, body: &str) -> Self {
        self.body = Body::Json(body.to_owned());
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Whether the request creates a tenant (`POST /admin/tenants`, as a setup step or a
    /// feature writes it): the World sends it through its tenant-creation path, so the
    /// tenant is in the ledger and cleaned up whichever step created it.
    pub fn creates_tenant(&self) -> bool {
        self.method == "POST" && self.template() == "/admin/tenants"
    }

    /// The path template a step wrote (the path itself before expansion).
    pub fn template(&self) -> &str {
        self.template.as_deref().unwrap_or(&self.path)
    }
}

/// One request and its response, as the target saw and answered it.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// Run-wide sequence number.
    pub id: u64,
    /// Method.
    pub method: String,
    /// Endpoint template (`GET /v1/api-keys/{id}`), for latency figures.
    pub endpoint: String,
    /// Path and query as sent.
    pub path: String,
    /// Request headers as sent, `Authorization` shown by label.
    pub request_headers: Vec<(String, String)>,
    /// Request body (first 2 KiB).
    pub request_body: Option<String>,
    /// Status code (0: no response).
    pub status: u16,
    /// Response headers.
    pub headers: Vec<(String, String)>,
    /// Response body as text.
    pub body: String,
    /// Response body as JSON, if it is.
    pub json: Option<Value>,
    /// Time to the full response.
    pub elapsed: Duration,
}

impl Exchange {
    /// A response header, case-insensitive.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The JSON body or `null`.
    pub fn json(&self) -> &Value {
        static NULL: Value = Value::Null;
        self.json.as_ref().unwrap_or(&NULL)
    }

    /// The exchange as text for a report (not yet redacted).
    pub fn describe(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "> {} {}", self.method, self.path);
        for (k, v) in &self.request_headers {
            let _ = writeln!(s, "> {k}: {v}");
        }
        if let Some(b) = &self.request_body {
            let _ = writeln!(s, ">\n> {b}");
        }
        let _ = writeln!(s, "< {} ({} ms)", self.status, self.elapsed.as_millis());
        for (k, v) in &self.headers {
            let _ = writeln!(s, "< {k}: {v}");
        }
        let body: String = self.body.chars().take(2048).collect();
        let _ = writeln!(s, "<\n< {body}");
        s
    }
}

pub(crate) fn ex_text(ex: &Exchange) -> String {
    let mut t = ex.body.clone();
    for (k, v) in &ex.headers {
        t.push('\n');
        t.push_str(k);
        t.push_str(": ");
        t.push_str(v);
    }
    t
}

pub(crate) fn endpoint_of(method: &str, template: &str) -> String {
    let path = template.split('?').next().unwrap_or("");
    let mut out = String::new();
    let mut in_ph = false;
    for c in path.chars() {
        match c {
            '{' => {
                in_ph = true;
                out.push_str("{id}");
            }
            '}' => in_ph = false,
            c if !in_ph => out.push(c),
            _ => {}
        }
    }
    format!("{method} {out}")
}

/// Sends a prepared request and times the answer; no answer at all is status 0 with the
/// transport's error as the body.
pub(crate) async fn send(ctx: &RunContext, req: &Req) -> Exchange {
    let path = req.path.as_str();
    let headers = &req.headers;
    let body = &req.body;
    let host = req.host.as_deref();
    let template = req.template();
    let id = ctx.next_exchange();
    let url = format!("{}{}", ctx.base_url, path);
    let method = reqwest::Method::from_bytes(req.method.as_bytes()).unwrap_or(reqwest::Method::GET);
    let mut rb = ctx.client.request(method, &url);
    let mut shown: Vec<(String, String)> = Vec::new();
    for (k, v) in &ctx.extra_headers {
        rb = rb.header(k, v);
        shown.push((k.clone(), "‹from --header›".into()));
    }
    match &req.cred {
        Cred::None => {}
        Cred::Bearer { label, value } => {
            rb = rb.header("Authorization", format!("Bearer {value}"));
            shown.push(("Authorization".into(), format!("Bearer ‹{label}›")));
        }
        Cred::Raw(v) => {
            rb = rb.header("Authorization", v);
            shown.push(("Authorization".into(), v.clone()));
        }
    }
    if let Some(h) = host {
        rb = rb.header("Host", h);
        shown.push(("Host".into(), h.to_owned()));
    }
    for (k, v) in headers {
        rb = rb.header(k, v);
        shown.push((k.clone(), v.clone()));
    }
    let mut request_body = None;
    match body {
        Body::None => {}
        Body::Json(s) => {
            rb = rb
                .header("Content-Type", "application/json")
                .body(s.clone());
            shown.push(("Content-Type".into(), "application/json".into()));
            request_body = Some(s.chars().take(2048).collect());
        }
        Body::Raw {
            content_type,
            bytes,
        } => {
            if let Some(ct) = content_type {
                rb = rb.header("Content-Type", ct);
                shown.push(("Content-Type".into(), ct.clone()));
            }
            request_body = Some(format!(
                "{}{}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(256)]),
                if bytes.len() > 256 {
                    format!("… ({} bytes)", bytes.len())
                } else {
                    String::new()
                }
            ));
            rb = rb.body(bytes.clone());
        }
    }
    let start = Instant::now();
    let endpoint = endpoint_of(&req.method, template);
    let result = rb.send().await;
    let mut ex = Exchange {
        id,
        method: req.method.clone(),
        endpoint: endpoint.clone(),
        path: path.to_owned(),
        request_headers: shown,
        request_body,
        status: 0,
        headers: Vec::new(),
        body: String::new(),
        json: None,
        elapsed: Duration::ZERO,
    };
    match result {
        Ok(resp) => {
            ex.status = resp.status().as_u16();
            ex.headers = resp
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
                .collect();
            let bytes = resp.bytes().await.unwrap_or_default();
            ex.elapsed = start.elapsed();
            ex.body = String::from_utf8_lossy(&bytes).into_owned();
            ex.json = serde_json::from_slice(&bytes).ok();
            ctx.record_latency(&endpoint, ex.elapsed);
        }
        Err(e) => {
            ex.elapsed = start.elapsed();
            ex.body = format!("(no response: {e})");
        }
    }
    ex
}
