//! Preflight: what must hold before any scenario runs. A target that does not answer exits
//! 3; a target without an admin API, or refusing the admin key, exits 2 with that message
//! (otherwise every scenario would fail at its first step with the same words, and cleanup
//! would "delete" tenants that were never created).

use std::time::Duration;

use crate::error::RunError;
use crate::http::with_headers;

/// Fails with [`RunError::Unreachable`] when the target does not answer HTTP at all; any
/// status counts as an answer.
pub async fn check_reachable(
    client: &reqwest::Client,
    base: &str,
    headers: &[(String, String)],
) -> Result<(), RunError> {
    let rb = with_headers(client.get(format!("{base}/health")), headers)
        .timeout(Duration::from_secs(10));
    rb.send()
        .await
        .map(|_| ())
        .map_err(|e| RunError::Unreachable(format!("{base}: {e}")))
}

/// `GET /admin/tenants?limit=1` with the admin key must answer 2xx: 401/403 mean the key is
/// refused, 404/405/501 that the target has no admin API at this path.
pub async fn check_admin_api(
    client: &reqwest::Client,
    base: &str,
    admin_key: Option<&str>,
    headers: &[(String, String)],
) -> Result<(), RunError> {
    let Some(key) = admin_key else {
        return Ok(());
    };
    let rb = client
        .get(format!("{base}/admin/tenants?limit=1"))
        .bearer_auth(key);
    let status = match with_headers(rb, headers).send().await {
        Ok(r) => r.status().as_u16(),
        Err(e) => return Err(RunError::Unreachable(format!("GET /admin/tenants: {e}"))),
    };
    match status {
        401 | 403 => Err(RunError::Usage(format!(
            "the target refuses the platform admin key: GET /admin/tenants with AUTHCONF_ADMIN_KEY answered {status} (expected 200); check the key"
        ))),
        404 | 405 | 501 => Err(RunError::Usage(format!(
            "the target has no admin API: GET /admin/tenants with the admin key answered {status} (expected 200); authconf needs it to create and delete the run's tenants"
        ))),
        _ => Ok(()),
    }
}
