//! Resident memory of the reference holding many tenants and keys, and the time it takes to
//! answer again after a restart with that data.
//!
//! The data is made through the admin API (so it is exactly what the service itself writes:
//! hashed keys, audit records), [`FILL_CONCURRENCY`] requests at a time; progress goes to
//! stderr, since a million keys take minutes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::fixtures::{self, Admin};
use super::report::Target;
use super::targets::Service;

/// Admin requests in flight at once while filling.
const FILL_CONCURRENCY: usize = 32;
/// Longest wait for the first answer after a restart.
const RESTART_WAIT: Duration = Duration::from_secs(600);

/// What the memory measurement gave. The first six fields are the report's original schema.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MemoryReport {
    pub tenants: usize,
    pub keys: usize,
    /// After the fill, every tenant touched once.
    pub rss_mib: f64,
    pub rss_before_mib: f64,
    pub fill_seconds: f64,
    pub note: String,
    /// From starting the process again on the same data to its `listening on` line.
    #[serde(default)]
    pub restart_listening_ms: Option<f64>,
    /// From starting the process again to the first 2xx answer to a tenant's key.
    #[serde(default)]
    pub restart_first_answer_ms: Option<f64>,
    /// Resident memory right after that first answer.
    #[serde(default)]
    pub rss_after_restart_mib: Option<f64>,
    /// The memory goal and whether it is met (computed here, rendered by scripts/bench-report).
    #[serde(default)]
    pub targets: Vec<Target>,
}

/// Fills a reference with `tenants` tenants and `keys` keys in all (two per tenant come with
/// it, the rest are minted through the admin API), touches every tenant once so its object is
/// loaded, reads the service's resident memory, then restarts it on the same data and times
/// the first answer.
pub async fn measure(
    tenants: usize,
    keys: usize,
    parent: Option<&std::path::Path>,
) -> anyhow::Result<MemoryReport> {
    let dir = super::data_dir(parent)?;
    let admin_key = fixtures::admin_key();
    let (service, base) = Service::start(dir.path(), &admin_key).await?;
    let before = service.rss_mib();
    let admin = Admin::new(&base, &admin_key);
    let started = Instant::now();
    let extra_per_tenant = keys.saturating_sub(tenants * 2).div_ceil(tenants.max(1));
    let sample = fill(&admin, tenants, extra_per_tenant).await?;
    let fill_seconds = started.elapsed().as_secs_f64();
    let rss = service.rss_mib();
    let scope = service.scope();
    eprintln!("bench: memory: filled in {fill_seconds:.0} s, {rss:.0} MiB resident");
    service.stop().await;

    let restart = Instant::now();
    let (service, base) = Service::start(dir.path(), &admin_key).await?;
    let listening_ms = restart.elapsed().as_secs_f64() * 1000.0;
    let first_ms = first_answer(&Admin::new(&base, &admin_key), &sample, restart).await?;
    let after = service.rss_mib();
    service.stop().await;

    let keys_made = tenants * (2 + extra_per_tenant);
    let mut report = MemoryReport {
        tenants,
        keys: keys_made,
        rss_mib: rss,
        rss_before_mib: before,
        fill_seconds,
        note: format!(
            "{scope}; at most {} objects stay in memory",
            auth_service::MAX_LIVE_OBJECTS
        ),
        restart_listening_ms: Some(listening_ms),
        restart_first_answer_ms: Some(first_ms),
        rss_after_restart_mib: Some(after),
        targets: Vec::new(),
    };
    report.targets = super::report::memory_targets(&report);
    Ok(report)
}

/// Makes the tenants and their keys; answers one tenant's secret key for the restart check.
async fn fill(admin: &Admin, tenants: usize, extra_per_tenant: usize) -> anyhow::Result<String> {
    let run = fixtures::run_id();
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..FILL_CONCURRENCY.min(tenants.max(1)) {
        let (admin, run, next, done) = (admin.clone(), run.clone(), next.clone(), done.clone());
        workers.push(tokio::spawn(async move {
            let mut sample = String::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= tenants {
                    return Ok::<String, anyhow::Error>(sample);
                }
                let t = admin.tenant(&format!("authconf-{run}-m{i}"), None).await?;
                let path = format!("/admin/tenants/{}/keys", t.id.replace(':', "%3A"));
                for _ in 0..extra_per_tenant {
                    admin
                        .call(
                            reqwest::Method::POST,
                            &path,
                            Some(json!({"name": "m", "type": "secret"})),
                        )
                        .await?;
                }
                admin
                    .http
                    .get(format!("{}/v1/tenant", admin.base))
                    .bearer_auth(&t.secret_key)
                    .send()
                    .await?
                    .error_for_status()?;
                sample = t.secret_key;
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_multiple_of((tenants / 20).max(1)) {
                    eprintln!("bench: memory: {n} of {tenants} tenants filled");
                }
            }
        }));
    }
    let mut sample = String::new();
    for w in workers {
        let s = w.await??;
        if !s.is_empty() {
            sample = s;
        }
    }
    Ok(sample)
}

/// Polls `GET /v1/tenant` with `key` until it is answered 2xx; the time since `since` in ms.
async fn first_answer(admin: &Admin, key: &str, since: Instant) -> anyhow::Result<f64> {
    let url = format!("{}/v1/tenant", admin.base);
    loop {
        if let Ok(r) = admin.http.get(&url).bearer_auth(key).send().await {
            if r.status().is_success() {
                return Ok(since.elapsed().as_secs_f64() * 1000.0);
            }
        }
        if since.elapsed() > RESTART_WAIT {
            return Err(anyhow::anyhow!("no answer")).context(format!(
                "GET /v1/tenant: no 2xx answer within {} s of the restart",
                RESTART_WAIT.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
