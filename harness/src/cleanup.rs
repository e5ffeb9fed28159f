//! Cleanup that tells the truth: the run's tenants (and `authconf cleanup`'s leftovers) are
//! deleted, a tenant counts as deleted only when the DELETE answered 2xx and a GET then shows
//! it deleted or gone, and one key of each deleted tenant is tried on routes that need a key:
//! a key that still authenticates after its tenant was deleted is a security finding.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use authconf_scenarios::{extract, AuthWorld, FailureClass, RunContext, SecretRegistry};
use futures::StreamExt as _;

use crate::error::RunError;
use crate::http::{client, url_segment, with_headers};

/// Tenant id -> one bearer key of that tenant, gathered from each scenario's World when it
/// finishes (the run context keeps tenant ids only). Never written anywhere.
pub type TenantKeys = Arc<Mutex<BTreeMap<String, String>>>;

/// Routes a tenant key authenticates on: the contract's `GET /v1/tenant`, and `GET
/// /admin/tenants` (where the upstream dialect's tenant keys are admin keys).
const KEY_ROUTES: &[&str] = &["/v1/tenant", "/admin/tenants?limit=1"];

/// What deleting the run's tenants did.
#[derive(Debug, Default, Clone)]
pub struct Deleted {
    /// Tenants this cleanup deleted (DELETE 2xx, then gone or `deleted`).
    pub deleted: usize,
    /// Tenants that were already gone (never created, or deleted by a scenario).
    pub already_gone: usize,
    /// What could not be deleted, or was said deleted but is still there.
    pub errors: Vec<String>,
    /// Tenant ids confirmed gone (by this cleanup or before it).
    pub gone: Vec<String>,
}

/// The state of one tenant after (or before) a DELETE, read with the admin key.
#[derive(Debug, PartialEq, Eq)]
enum State {
    /// 404, or the tenant's status is `deleted`.
    Gone,
    /// Still there, with this status (or none readable).
    Live(Option<String>),
    /// The GET failed otherwise.
    Unknown(String),
}

async fn state(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    headers: &[(String, String)],
    id: &str,
) -> State {
    let rb = http
        .get(format!("{base}/admin/tenants/{}", url_segment(id)))
        .bearer_auth(key);
    match with_headers(rb, headers).send().await {
        Ok(r) if r.status().as_u16() == 404 || r.status().as_u16() == 410 => State::Gone,
        Ok(r) if r.status().is_success() => {
            let v: serde_json::Value = r.json().await.unwrap_or_default();
            match extract::tenant_status(&v) {
                Some(s) if s == "deleted" => State::Gone,
                s => State::Live(s),
            }
        }
        Ok(r) => State::Unknown(format!("GET /admin/tenants/{{id}} answered {}", r.status())),
        Err(e) => State::Unknown(format!("GET /admin/tenants/{{id}}: {e}")),
    }
}

/// One tenant: DELETE, then GET to see whether it is really gone.
async fn delete_one(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    headers: &[(String, String)],
    id: &str,
) -> Result<bool, String> {
    let rb = http
        .delete(format!("{base}/admin/tenants/{}", url_segment(id)))
        .bearer_auth(key);
    let status = match with_headers(rb, headers).send().await {
        Ok(r) => r.status().as_u16(),
        Err(e) => return Err(format!("DELETE /admin/tenants/{id}: {e}")),
    };
    let after = state(http, base, key, headers, id).await;
    match (status, after) {
        (200..=299, State::Gone) => Ok(true),
        (404 | 410, State::Gone) => Ok(false),
        (200..=299, State::Live(s)) => Err(format!(
            "DELETE /admin/tenants/{id} answered {status}, but GET /admin/tenants/{id} still shows it {}",
            s.map(|s| format!("with status {s:?}")).unwrap_or_else(|| "(no status)".into())
        )),
        (_, State::Gone) => Ok(false),
        (s, State::Live(_)) => Err(format!("DELETE /admin/tenants/{id} answered {s}")),
        (s, State::Unknown(why)) => Err(format!(
            "DELETE /admin/tenants/{id} answered {s}; then {why}"
        )),
    }
}

/// Deletes the run's tenants (8 at a time).
pub async fn delete_tenants(ctx: &RunContext, headers: &[(String, String)]) -> Deleted {
    let ids = ctx.take_tenants();
    let Some(key) = ctx.admin_key.clone() else {
        return Deleted::default();
    };
    let results: Vec<(String, Result<bool, String>)> = futures::stream::iter(ids)
        .map(|id| {
            let key = key.clone();
            async move {
                let r = delete_one(&ctx.client, &ctx.base_url, &key, headers, &id).await;
                (id, r)
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let mut out = Deleted::default();
    for (id, r) in results {
        match r {
            Ok(by_us) => {
                if let Some(slug) = id.strip_prefix("tenant:") {
                    let _ = ctx.ledger.append(slug, "deleted");
                }
                if by_us {
                    out.deleted += 1;
                } else {
                    out.already_gone += 1;
                }
                out.gone.push(id);
            }
            Err(e) => out.errors.push(ctx.secrets.redact(&e)),
        }
    }
    out.gone.sort();
    out
}

/// Tries one key of each deleted tenant on [`KEY_ROUTES`]; every route that still accepts
/// such keys becomes one security finding in the run context (no secret is named: the
/// tenants are).
pub async fn check_deleted_keys(
    ctx: &RunContext,
    headers: &[(String, String)],
    gone: &[String],
    keys: &BTreeMap<String, String>,
) -> usize {
    let probes: Vec<(&str, &str, &str)> = gone
        .iter()
        .filter_map(|id| keys.get(id).map(|k| (id.as_str(), k.as_str())))
        .flat_map(|(id, k)| KEY_ROUTES.iter().map(move |r| (id, k, *r)))
        .collect();
    let checked = probes.len() / KEY_ROUTES.len();
    let accepted: Vec<(String, String, u16)> = futures::stream::iter(probes)
        .map(|(id, k, route)| async move {
            let rb = ctx
                .client
                .get(format!("{}{route}", ctx.base_url))
                .bearer_auth(k);
            match with_headers(rb, headers).send().await {
                Ok(r) if r.status().is_success() => {
                    Some((route.to_owned(), id.to_owned(), r.status().as_u16()))
                }
                _ => None,
            }
        })
        .buffer_unordered(8)
        .filter_map(|x| async move { x })
        .collect()
        .await;
    let mut by_route: BTreeMap<String, Vec<(String, u16)>> = BTreeMap::new();
    for (route, id, status) in accepted {
        by_route.entry(route).or_default().push((id, status));
    }
    for (route, mut hits) in by_route {
        hits.sort();
        let route = route.split('?').next().unwrap_or_default();
        ctx.record_finding(
            FailureClass::Security,
            format!(
                "keys of deleted tenants still authenticate: GET {route} answered {} with the key of {} of {checked} deleted tenants checked (expected 401; e.g. {})",
                hits[0].1,
                hits.len(),
                hits[0].0
            ),
        );
    }
    checked
}

/// Keeps one key of each tenant the scenario created (its secret key, else any of its
/// keys), so that cleanup can check the key stops working once the tenant is deleted.
pub fn remember_tenant_keys(w: &AuthWorld, keys: &TenantKeys) {
    let mut k = keys.lock().expect("tenant keys poisoned");
    for (name, t) in &w.tenants {
        let secret = w
            .keys
            .get(&format!("{name}:secret"))
            .and_then(|r| r.secret.clone())
            .or_else(|| {
                w.keys
                    .values()
                    .filter(|r| &r.tenant == name)
                    .find_map(|r| r.secret.clone())
            });
        if let Some(s) = secret {
            k.entry(t.id.clone()).or_insert(s);
        }
    }
}

/// What the cleanup phase of a run did.
#[derive(Debug, Default, Clone)]
pub struct RunCleanup {
    /// What deleting the run's tenants did.
    pub deleted: Deleted,
    /// Deleted tenants whose key was tried after the delete.
    pub keys_checked: usize,
    /// Time spent.
    pub time: Duration,
}

/// The cleanup phase of a run: deletes every ledger tenant, then tries one key of each
/// deleted tenant (a key that still works is recorded as a security finding).
pub async fn after_run(
    ctx: &RunContext,
    headers: &[(String, String)],
    tenant_keys: &TenantKeys,
    progress: bool,
) -> RunCleanup {
    let started = Instant::now();
    let deleted = delete_tenants(ctx, headers).await;
    if progress && !deleted.errors.is_empty() {
        eprintln!(
            "{} tenants could not be deleted; run `authconf cleanup`",
            deleted.errors.len()
        );
    }
    let keys = std::mem::take(&mut *tenant_keys.lock().expect("tenant keys poisoned"));
    let keys_checked = check_deleted_keys(ctx, headers, &deleted.gone, &keys).await;
    RunCleanup {
        deleted,
        keys_checked,
        time: started.elapsed(),
    }
}

/// What `authconf cleanup` did.
#[derive(Debug, Default, Clone)]
pub struct CleanupOutcome {
    /// Tenant ids deleted and confirmed gone (or that would be, with `dry_run`).
    pub deleted: Vec<String>,
    /// Failures, a DELETE that answered 2xx for a tenant still there included.
    pub errors: Vec<String>,
}

/// Slugs of this harness named in the ledgers under `report_dir`.
fn ledger_ids(report_dir: &Path) -> std::collections::BTreeSet<String> {
    let mut ids = std::collections::BTreeSet::new();
    let Ok(runs) = std::fs::read_dir(report_dir) else {
        return ids;
    };
    for run in runs.flatten() {
        let Ok(text) = std::fs::read_to_string(run.path().join("ledger.jsonl")) else {
            continue;
        };
        for line in text.lines() {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
                if let Some(slug) = v.get("slug").and_then(|s| s.as_str()) {
                    if slug.starts_with(authconf_scenarios::SLUG_PREFIX) {
                        ids.insert(format!("tenant:{slug}"));
                    }
                }
            }
        }
    }
    ids
}

/// Deletes every tenant left by interrupted runs: those with the `authconf-` slug prefix in
/// `GET /admin/tenants` (all pages) and those in ledgers under `report_dir`. The ledgers
/// hold no keys (they never hold secrets), so this command cannot try the deleted tenants'
/// keys; `authconf run` does.
pub async fn cleanup(
    target: &str,
    admin_key: &str,
    headers: &[(String, String)],
    report_dir: &Path,
    dry_run: bool,
) -> Result<CleanupOutcome, RunError> {
    let http = client(headers)?;
    let base = target.trim_end_matches('/');
    crate::preflight::check_reachable(&http, base, headers).await?;
    // Ledgers first: they name tenants even if the listing is unavailable.
    let mut ids = ledger_ids(report_dir);
    for page in 1..=10_000u32 {
        let rb = http
            .get(format!("{base}/admin/tenants?page={page}&limit=100"))
            .bearer_auth(admin_key);
        let resp = with_headers(rb, headers)
            .send()
            .await
            .map_err(|e| RunError::Unreachable(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(RunError::Usage(format!(
                "GET /admin/tenants answered {} (is AUTHCONF_ADMIN_KEY right?)",
                resp.status()
            )));
        }
        let v: serde_json::Value = resp.json().await.unwrap_or_default();
        let list = extract::list(&v, "tenants").cloned().unwrap_or_default();
        for t in &list {
            let slug = t.get("slug").and_then(|s| s.as_str()).unwrap_or_default();
            if !slug.starts_with(authconf_scenarios::SLUG_PREFIX) {
                continue;
            }
            let Some(id) = t.get("id").and_then(|s| s.as_str()) else {
                continue;
            };
            if extract::tenant_status(t).as_deref() == Some("deleted") {
                ids.remove(id);
            } else {
                ids.insert(id.to_owned());
            }
        }
        let pages = extract::field(&v, "pagination.pages")
            .and_then(|p| p.as_u64())
            .unwrap_or(0);
        if list.is_empty() || u64::from(page) >= pages {
            break;
        }
    }
    let redactor = SecretRegistry::default();
    redactor.remember(admin_key, "admin", 0);
    let mut out = CleanupOutcome::default();
    for id in ids {
        // Ledgers also name tenants that were never created (refused slugs) or are already
        // deleted: only live tenants are deleted and reported.
        if state(&http, base, admin_key, headers, &id).await == State::Gone {
            continue;
        }
        if dry_run {
            out.deleted.push(id);
            continue;
        }
        match delete_one(&http, base, admin_key, headers, &id).await {
            Ok(true) => out.deleted.push(id),
            Ok(false) => {}
            Err(e) => out.errors.push(redactor.redact(&e)),
        }
    }
    Ok(out)
}
