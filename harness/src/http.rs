//! The harness's own HTTP requests (preflight, capability probes, cleanup): one client
//! configuration, the operator's extra headers on every request, and path-segment escaping.

use std::time::Duration;

use crate::error::RunError;

/// The HTTP client of the harness's own requests: bounded timeouts, redirects not followed.
pub(crate) fn client(headers: &[(String, String)]) -> Result<reqwest::Client, RunError> {
    let _ = headers;
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(32)
        .build()
        .map_err(|e| RunError::Usage(format!("HTTP client: {e}")))
}

/// Adds the operator's `--header`s (e.g. access-proxy tokens) to a request.
pub(crate) fn with_headers(
    rb: reqwest::RequestBuilder,
    headers: &[(String, String)],
) -> reqwest::RequestBuilder {
    headers.iter().fold(rb, |rb, (k, v)| rb.header(k, v))
}

/// `s` percent-encoded for one path segment (unreserved characters kept).
pub(crate) fn url_segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
