//! The directory's calls to the tenants' objects: notices, key pulls, usage flushes, onboarding
//! refreshes, and calls to every object (a keyring rotation, a test-clock step).

use auth_core::ports::Sql;
use auth_core::{Notice, Ports};
use worker::{console_error, Response};

use super::directory::Platform;
use super::AuthPlatform;
use crate::internal::{self, NoticeCall, Shipment};
use crate::rows;
use crate::storage::WorkerEntropy;

/// How many tenants' objects the directory calls at once when it calls them all.
pub(super) const FAN_OUT: usize = 16;

/// Reads a JSON answer of a tenant's object.
pub(super) async fn answer_json(mut resp: Response) -> Option<serde_json::Value> {
    if resp.status_code() != 200 {
        return None;
    }
    resp.json::<serde_json::Value>().await.ok()
}

impl AuthPlatform {
    /// POSTs an internal call to a tenant's object with its [`Sync`]; pulls its keys into the
    /// mirror when it says they changed.
    pub(super) async fn call_tenant(
        &self,
        tenant_id: &str,
        path: &str,
        body: Option<String>,
    ) -> Result<Response, String> {
        let sync = self
            .with(|p| p.sync_for(tenant_id))
            .ok_or("not open")?
            .map_err(|e| e.to_string())?;
        let stub = internal::tenant_stub(&self.env, tenant_id).map_err(|e| e.to_string())?;
        let resp = internal::post(&stub, path, Some(&sync), body)
            .await
            .map_err(|e| e.to_string())?;
        self.after_tenant_call(tenant_id, &resp).await;
        Ok(resp)
    }

    pub(super) async fn after_tenant_call(&self, tenant_id: &str, resp: &Response) {
        let keys_changed = resp
            .headers()
            .get(internal::KEYS_CHANGED_HEADER)
            .ok()
            .flatten()
            .is_some();
        if keys_changed {
            self.pull_keys(tenant_id).await;
        }
    }

    /// Brings the mirror of a tenant's keys up to date from its object: the keys changed since
    /// the last pull, or, if that answer is lost, all of them.
    pub(super) async fn pull_keys(&self, tenant_id: &str) {
        for path in [internal::KEYS, internal::ALL_KEYS] {
            let pulled = match Box::pin(self.call_tenant(tenant_id, path, None)).await {
                Ok(resp) => answer_json(resp).await,
                Err(e) => {
                    console_error!("pulling a tenant's keys: {e}");
                    None
                }
            };
            let rows = pulled.and_then(|v| serde_json::from_value::<rows::Image>(v).ok());
            if let Some(rows) = rows {
                let shipment = Shipment {
                    tenant_id: tenant_id.to_owned(),
                    rows,
                };
                match self.with(|p| p.merge_keys(&shipment)) {
                    Some(Ok(())) => return,
                    Some(Err(e)) => console_error!("merging a tenant's keys: {e}"),
                    None => return,
                }
            }
        }
    }

    /// Before `GET /admin/tenants/{id}`: the onboarding state changes in the tenant's object
    /// (password set, welcome mail sent), so its rows are copied back first. Only for a
    /// platform admin, so that nobody else can make the directory call tenants' objects; the
    /// front checks the admin's tenant list afterwards as for any other request.
    pub(super) async fn refresh_onboarding(&self, req: &auth_core::Request, tenant_id: &str) {
        let onboarded = self
            .with(|p| {
                let clock = p.clock.borrow();
                let ports = Ports {
                    db: &p.db,
                    clock: &*clock,
                    entropy: &WorkerEntropy,
                };
                p.settings
                    .service
                    .authenticator()
                    .admin(&ports, req)
                    .is_ok()
                    && p.db
                        .query(
                            "SELECT 1 FROM tenant_onboarding WHERE tenant_id = ?",
                            &[tenant_id.into()],
                        )
                        .is_ok_and(|r| !r.is_empty())
            })
            .unwrap_or(false);
        if !onboarded {
            return;
        }
        let Ok(resp) = self
            .call_tenant(tenant_id, internal::ONBOARDING, None)
            .await
        else {
            return;
        };
        let Some(value) = answer_json(resp).await else {
            return;
        };
        let written = self.with(|p| {
            p.db.transaction(&mut |db| {
                for table in ["tenant_users", "mail_outbox", "tenant_onboarding"] {
                    if let Ok(image) = serde_json::from_value::<rows::Image>(value[table].clone()) {
                        rows::insert(db, "INSERT OR REPLACE", table, &image)?;
                    }
                }
                Ok(())
            })
        });
        if let Some(Err(e)) = written {
            console_error!("copying the onboarding state: {e}");
        }
    }

    /// Moves the pending usage counts of `targets`' objects into `usage_metrics`, a few
    /// objects at a time. The directory does not see tenant requests any more, so it cannot
    /// tell which objects hold counts: it asks the ones an answer needs exactly.
    pub(super) async fn flush_metrics(&self, targets: Vec<String>) {
        for chunk in targets.chunks(FAN_OUT) {
            futures::future::join_all(chunk.iter().map(|t| self.flush_one(t))).await;
        }
    }

    pub(super) async fn flush_one(&self, tenant_id: &str) {
        let answered = match self.call_tenant(tenant_id, internal::FLUSH, None).await {
            Ok(resp) => answer_json(resp).await,
            Err(_) => None,
        };
        let Some(rows) = answered.and_then(|v| serde_json::from_value::<rows::Image>(v).ok())
        else {
            console_error!("could not flush a tenant's usage counts; its alarm will");
            return;
        };
        if rows.is_empty() {
            return;
        }
        let shipment = Shipment {
            tenant_id: tenant_id.to_owned(),
            rows,
        };
        if !matches!(self.with(|p| p.merge_usage(&shipment)), Some(Ok(()))) {
            console_error!("could not record a tenant's usage counts");
        }
    }

    /// Calls `path` on every tenant's object with the directory's [`Sync`], a few at a time,
    /// before the answer that needs it: a keyring rotation, a test-clock step. Answers how
    /// many calls failed.
    pub(super) async fn call_all(&self, path: &str) -> (usize, Vec<Option<serde_json::Value>>) {
        let ids = self.with(Platform::tenant_ids).unwrap_or_default();
        let mut failed = 0;
        let mut answers = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(FAN_OUT) {
            let called =
                futures::future::join_all(chunk.iter().map(|t| self.call_tenant(t, path, None)))
                    .await;
            for r in called {
                match r {
                    Ok(resp) if resp.status_code() == 200 => answers.push(answer_json(resp).await),
                    Ok(resp) => {
                        console_error!("a tenant's object answered {}", resp.status_code());
                        failed += 1;
                    }
                    Err(e) => {
                        console_error!("calling a tenant's object: {e}");
                        failed += 1;
                    }
                }
            }
        }
        (failed, answers)
    }

    /// Hands a notice, with the rows the admin API wrote for the tenant, to its object.
    pub(super) async fn deliver_notice(
        &self,
        tenant_id: &str,
        notice: Notice,
    ) -> Result<(), String> {
        let shipped = self
            .with(|p| rows::rows_of_notice(&p.db, tenant_id, &notice))
            .ok_or("not open")?
            .map_err(|e| e.to_string())?;
        let body = serde_json::to_string(&NoticeCall {
            notice,
            rows: shipped,
        })
        .map_err(|e| e.to_string())?;
        let resp = self
            .call_tenant(tenant_id, internal::NOTICE, Some(body))
            .await?;
        if resp.status_code() == 200 {
            Ok(())
        } else {
            Err(format!("status {}", resp.status_code()))
        }
    }
}
