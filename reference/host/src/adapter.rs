//! The native host of the core's request driver ([`auth_core::driver::Host`]): the shared
//! database behind its lock on the blocking pool, the objects in [`Runtime`]s, the blobs on
//! disk, the key index in memory.
//!
//! A tenant request with a key whose owner the index holds crosses one thread hand-off: the
//! stateless front runs inline on the async worker, and the object's runner is the only
//! blocking-pool hop. The shared database is locked only for admin routes, keyless end-user
//! routes, test controls and index misses.

use std::sync::{Arc, Mutex};

use auth_contract::testing::TestControlAnswer;
use auth_core::driver::{GraphRun, Host, SharedWork};
use auth_core::graph::{GraphState, MAX_CSV_BYTES};
use auth_core::ports::{Clock, Entropy};
use auth_core::route::TenantRoute;
use auth_core::test_controls::TestControl;
use auth_core::{
    ApiError, Front, FrontStep, Notice, Ports, Request, Response, Resume, TenantCall,
    TenantOutcome, TenantState,
};

use crate::body::{declared_over, linger, read_limited, Unread};
use crate::listener::ClientAddr;
use crate::objects::Accepted;
use crate::state::AppState;
use crate::OsEntropy;

/// Seconds a client is asked to wait before retrying a failed object call.
const RETRY_AFTER_SECS: u64 = 1;

/// The host of one request.
pub struct Native<'a> {
    pub state: &'a Arc<AppState>,
    /// The body of an upload, read only if the front lets it through ([`Host::read_upload`]).
    pub upload: Mutex<Unread>,
    /// The request asks for a WebSocket (`GET /v1/events` with a valid upgrade).
    pub accept: bool,
}

/// What a tenant call hands back with a 101: the tenant and its accepted socket.
pub struct Upgrade {
    pub tenant_id: String,
    pub accepted: Accepted,
}

/// An object call that failed: a client may retry.
fn unavailable(what: &str, tenant_id: &str, e: impl std::fmt::Display) -> ApiError {
    tracing::error!(tenant = %tenant_id, error = %e, "{what} failed");
    ApiError::Unavailable(RETRY_AFTER_SECS)
}

impl Native<'_> {
    /// Runs `work` with the shared database on the blocking pool.
    async fn with_db<R: Send + 'static>(
        &self,
        work: impl FnOnce(&AppState, &Ports) -> R + Send + 'static,
    ) -> Result<R, ApiError> {
        let st = Arc::clone(self.state);
        tokio::task::spawn_blocking(move || {
            let conn = st.db.lock();
            let sql = crate::sqlite::SqliteSql(&conn);
            let ports = Ports {
                db: &sql,
                clock: &*st.clock,
                entropy: &OsEntropy,
            };
            work(&st, &ports)
        })
        .await
        .map_err(|_| ApiError::Internal)
    }

    /// Refuses a keyless end-user auth request over its client address's budget.
    fn keyless_by_address(&self, call: &TenantCall) -> Result<(), ApiError> {
        let keyless = call.key_hash.is_empty()
            && matches!(call.route, TenantRoute::User(u) if !u.uses_access_token());
        let Some(ClientAddr(ip)) = call.request.extensions().get::<ClientAddr>().copied() else {
            return Ok(());
        };
        if !keyless {
            return Ok(());
        }
        self.state
            .keyless_by_address
            .check_key(&ip)
            .map_err(|not_until| {
                use governor::clock::{Clock, DefaultClock};
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                ApiError::RateLimited(wait.as_secs().max(1))
            })
    }
}

impl Host for Native<'_> {
    type Upgrade = Upgrade;
    type Shared = Self;

    fn shared(&self) -> Option<&Self> {
        Some(self)
    }

    fn clock(&self) -> &dyn Clock {
        &*self.state.clock
    }

    fn entropy(&self) -> &dyn Entropy {
        &OsEntropy
    }

    async fn front(&self, step: FrontStep) -> Result<Front, ApiError> {
        self.with_db(move |st, ports| st.service.front(ports, step))
            .await
    }

    async fn key_owner(&self, key_hash: &str) -> Result<Option<String>, ApiError> {
        if let Some(tenant_id) = self.state.key_index.get(key_hash) {
            return Ok(Some(tenant_id));
        }
        let hash = key_hash.to_owned();
        let owner = self
            .with_db(move |st, ports| st.service.key_owner(ports.db, &hash))
            .await??;
        if let Some(tenant_id) = &owner {
            self.state.key_index.remember(key_hash, tenant_id);
        }
        Ok(owner)
    }

    async fn read_upload(&self, request: &Request) -> Result<Vec<u8>, ApiError> {
        let body = self
            .upload
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .body
            .take();
        let Some(body) = body else {
            return Ok(Vec::new());
        };
        if declared_over(request.headers(), MAX_CSV_BYTES) {
            linger(body, MAX_CSV_BYTES, self.state.limits.linger);
            return Err(ApiError::PayloadTooLarge);
        }
        read_limited(body, MAX_CSV_BYTES, self.state.limits.body_read_timeout).await
    }

    async fn tenant(
        &self,
        call: &Arc<TenantCall>,
    ) -> Result<(TenantOutcome, Option<Upgrade>), ApiError> {
        self.keyless_by_address(call)?;
        let (st, call2) = (Arc::clone(self.state), Arc::clone(call));
        let called = self
            .state
            .tenants
            .call(
                &call.tenant_id,
                self.accept,
                move |o: &mut TenantState, env| o.fetch(env, &st.service.tenant_context(), &call2),
            )
            .await;
        let (outcome, accepted) =
            called.map_err(|e| unavailable("tenant object", &call.tenant_id, e))?;
        let upgrade = accepted.map(|accepted| Upgrade {
            tenant_id: call.tenant_id.clone(),
            accepted,
        });
        Ok((outcome, upgrade))
    }

    async fn graph(&self, run: GraphRun) -> Result<Response, ApiError> {
        let tenant_id = run.call.tenant_id.clone();
        let graph_limits = self.state.limits.graph;
        let called = self
            .state
            .graphs
            .call(&tenant_id, false, move |g: &mut GraphState, env| {
                g.set_limits(graph_limits);
                g.handle(env, run.route, &run.call.request, &run.actor)
            })
            .await;
        match called {
            Ok((answer, _)) => answer,
            Err(e) => Err(unavailable("graph object", &tenant_id, e)),
        }
    }

    async fn store_upload(&self, call: &Arc<TenantCall>) -> Result<usize, ApiError> {
        // Parsing up to 8 MiB and the fsynced write take long enough to stall the async
        // workers (and every other request on them): the blocking pool does both.
        let (st, call2) = (Arc::clone(self.state), Arc::clone(call));
        tokio::task::spawn_blocking(move || {
            let edges = auth_core::graph::check_upload(&call2.request)?;
            let key = auth_core::graph::blob_key(&call2.tenant_id);
            match st.blobs.put(&key, call2.request.body()) {
                Ok(()) => Ok(edges),
                Err(e) => {
                    tracing::error!(error = %e, "blob write failed");
                    Err(ApiError::Internal)
                }
            }
        })
        .await
        .unwrap_or(Err(ApiError::Internal))
    }

    async fn read_blob(&self, key: &str) -> Result<Option<Vec<u8>>, ApiError> {
        // File IO off the async workers.
        let (st, key) = (Arc::clone(self.state), key.to_owned());
        let read = tokio::task::spawn_blocking(move || st.blobs.get(&key))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        read.map_err(|e| {
            tracing::error!(error = %e, "blob read failed");
            ApiError::Internal
        })
    }

    async fn audit(&self, tenant_id: &str, notice: Notice) -> Result<(), ApiError> {
        let action = notice.action.clone();
        let r = self
            .state
            .tenants
            .call(tenant_id, false, move |o: &mut TenantState, env| {
                o.record(env, &notice)
            })
            .await;
        match r {
            Ok((Ok(()), _)) => Ok(()),
            _ => {
                tracing::error!(tenant = %tenant_id, action, "could not write the audit record");
                Err(ApiError::Unavailable(RETRY_AFTER_SECS))
            }
        }
    }
}

impl SharedWork for Native<'_> {
    async fn notify(&self, notices: Vec<(String, Notice)>) -> Result<(), ApiError> {
        for (tenant_id, notice) in notices {
            let r = self
                .state
                .tenants
                .call(&tenant_id, false, move |o: &mut TenantState, env| {
                    o.notice(env, &notice)
                })
                .await;
            match r {
                Ok((Ok(()), _)) => {}
                Ok((Err(e), _)) => return Err(unavailable("notifying", &tenant_id, e)),
                Err(e) => return Err(unavailable("notifying", &tenant_id, e)),
            }
        }
        Ok(())
    }

    async fn resume(&self, resume: Resume) -> Result<Response, ApiError> {
        self.with_db(move |st, ports| st.service.resume(ports, resume))
            .await
    }

    /// Objects with counts always have an alarm set, so only those are called.
    async fn flush_usage(&self) {
        let tenants = &self.state.tenants;
        for name in tenants.scheduled_names() {
            let r = tenants
                .call(&name, false, |o: &mut TenantState, env| {
                    o.flush_metrics(env)
                })
                .await;
            if !matches!(r, Ok((Ok(_), _))) {
                tracing::warn!(tenant = %name, "could not flush usage counts; the alarm will");
            }
        }
    }

    async fn test_control(&self, control: TestControl) -> Result<TestControlAnswer, ApiError> {
        let state = self.state;
        Ok(match control {
            TestControl::AdvanceClock { ms } => {
                let now = state.clock.advance(ms);
                // Alarms due under the new time fire now.
                state.tenants.fire_due().await;
                TestControlAnswer::Clock { now_ms: now }
            }
            TestControl::Evict { tenant } => {
                let n = state.tenants.evict_idle(0, tenant.as_deref())
                    + state.graphs.evict_idle(0, tenant.as_deref());
                TestControlAnswer::Evicted { evicted: n as u64 }
            }
            TestControl::FireAlarms { tenant } => {
                let n = state.tenants.fire_all_now(tenant.as_deref()).await;
                TestControlAnswer::Fired { fired: n as u64 }
            }
        })
    }
}
