//! `/_test/*` at the directory: the test controls, for the platform admin only.

use auth_contract::testing::{DirectoryCalls, TestControlAnswer};
use auth_core::ports::{Sql, StorageError};
use auth_core::test_controls::TestControl;
use auth_core::{ApiError, Ports};
use http::StatusCode;
use worker::Response;

use super::directory::Platform;
use super::{AuthPlatform, DIRECTORY_CALLS};
use crate::convert::problem;
use crate::convert::to_worker;
use crate::internal::{InternalAnswer, TenantOp};
use crate::storage::WorkerEntropy;

impl AuthPlatform {
    /// `/_test/*`: the native host's test controls, for the platform admin only.
    pub(super) async fn test_control(&self, req: auth_core::Request) -> worker::Result<Response> {
        let parsed = self.with(|p| {
            let clock = p.clock.borrow();
            let ports = Ports {
                db: &p.db,
                clock: &*clock,
                entropy: &WorkerEntropy,
            };
            p.settings.service.authenticator().admin(&ports, &req)?;
            if req.uri().path() == DIRECTORY_CALLS {
                return Ok(None);
            }
            TestControl::parse(&req).map(Some)
        });
        let control = match parsed {
            Some(Ok(Some(c))) => c,
            Some(Ok(None)) => {
                let body = DirectoryCalls {
                    client_requests: self.client_calls.get(),
                    internal_calls: self.internal_calls.get(),
                };
                return to_worker(auth_core::http::json(StatusCode::OK, &body));
            }
            Some(Err(e)) => return problem(e),
            None => return problem(ApiError::Internal),
        };
        let body = match control {
            TestControl::AdvanceClock { ms } => {
                let moved = self.with(|p| {
                    let offset = p.clock.borrow().offset_ms + ms;
                    p.db.execute(
                        "INSERT INTO _test_clock (id, offset_ms) VALUES (1, ?) \
                         ON CONFLICT (id) DO UPDATE SET offset_ms = excluded.offset_ms",
                        &[offset.into()],
                    )?;
                    p.clock.borrow_mut().offset_ms = offset;
                    Ok::<_, StorageError>(())
                });
                if !matches!(moved, Some(Ok(()))) {
                    return problem(ApiError::Internal);
                }
                // Every tenant's object takes the new clock (a direct request runs with the
                // object's copy), and fires the alarms due under it.
                let failed = self.call_all(TenantOp::Clock).await;
                if failed > 0 {
                    return problem(ApiError::Internal);
                }
                TestControlAnswer::Clock {
                    now_ms: self.with(Platform::now_ms).unwrap_or(0),
                }
            }
            TestControl::FireAlarms { tenant } => {
                let fired = self.tally(self.targets(tenant), TenantOp::Fire).await;
                TestControlAnswer::Fired { fired }
            }
            TestControl::Evict { tenant } => {
                let targets = self.targets(tenant);
                let mut evicted = self.tally(targets.clone(), TenantOp::Evict).await;
                // Graph objects are separate Durable Objects: ask the tenant's too.
                for tenant_id in targets {
                    evicted += crate::graph::evict(&self.env, &tenant_id)
                        .await
                        .unwrap_or(0);
                }
                TestControlAnswer::Evicted { evicted }
            }
        };
        let id = auth_core::keys::random_hex(8, &WorkerEntropy);
        to_worker(auth_core::finish(
            auth_core::http::json(StatusCode::OK, &body),
            &id,
            false,
        ))
    }

    /// The one tenant a test control names, or every tenant the directory has created.
    fn targets(&self, tenant: Option<String>) -> Vec<String> {
        match tenant {
            Some(t) => vec![t],
            None => self.with(Platform::tenant_ids).unwrap_or_default(),
        }
    }

    /// Runs `op` in each target's object and adds up the counts they answer (alarms fired,
    /// objects evicted); an object that fails counts nothing.
    async fn tally(&self, targets: Vec<String>, op: TenantOp) -> u64 {
        let mut total = 0;
        for tenant_id in targets {
            total += match self.call_tenant(&tenant_id, op.clone()).await {
                Ok(InternalAnswer::Fired { fired }) => fired,
                Ok(InternalAnswer::Evicted { evicted }) => evicted,
                _ => 0,
            };
        }
        total
    }
}
