//! The directory's calls to the tenants' objects ([`TenantOp`], each with the directory's
//! [`crate::internal::Sync`]): notices, key pulls, usage flushes, onboarding refreshes, and
//! calls to every object (a keyring rotation, a test-clock step).

use auth_core::ports::Sql;
use auth_core::{Notice, Ports};
use worker::console_error;

use super::directory::Platform;
use super::AuthPlatform;
use crate::internal::{self, InternalAnswer, InternalCall, Shipment, TenantOp};
use crate::rows;
use crate::storage::WorkerEntropy;
use crate::tables::TableRows;

/// How many tenants' objects the directory calls at once when it calls them all.
const FAN_OUT: usize = 16;

impl AuthPlatform {
    /// Runs `op` in a tenant's object with the directory's sync; pulls its keys into the
    /// mirror when it says they changed. Anything but a 200 with an answer is an error.
    pub(super) async fn call_tenant(
        &self,
        tenant_id: &str,
        op: TenantOp,
    ) -> Result<InternalAnswer, String> {
        let sync = self
            .with(|p| p.sync_for(tenant_id))
            .ok_or("not open")?
            .map_err(|e| e.to_string())?;
        let stub = internal::tenant_stub(&self.env, tenant_id).map_err(|e| e.to_string())?;
        let asked = internal::ask(&stub, &InternalCall::Tenant { sync, op }).await?;
        if asked.keys_changed {
            self.pull_keys(tenant_id).await;
        }
        Ok(asked.answer)
    }

    /// Brings the mirror of a tenant's keys up to date from its object: the keys changed since
    /// the last pull, or, if that answer is lost, all of them.
    pub(super) async fn pull_keys(&self, tenant_id: &str) {
        for all in [false, true] {
            let pulled = Box::pin(self.call_tenant(tenant_id, TenantOp::Keys { all })).await;
            let rows = match pulled {
                Ok(InternalAnswer::Keys { rows }) => rows,
                Ok(_) => continue,
                Err(e) => {
                    console_error!("pulling a tenant's keys: {e}");
                    continue;
                }
            };
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
        let Ok(InternalAnswer::Onboarding {
            tenant_users,
            mail_outbox,
            tenant_onboarding,
        }) = self.call_tenant(tenant_id, TenantOp::Onboarding).await
        else {
            return;
        };
        let written = self.with(|p| {
            p.db.transaction(&mut |db| {
                for rows in [
                    TableRows::TenantUserRow(tenant_users.clone()),
                    TableRows::MailRow(mail_outbox.clone()),
                    TableRows::OnboardingRow(tenant_onboarding.clone()),
                ] {
                    rows::insert(db, "INSERT OR REPLACE", &rows)?;
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

    async fn flush_one(&self, tenant_id: &str) {
        let Ok(InternalAnswer::Usage { rows }) = self.call_tenant(tenant_id, TenantOp::Flush).await
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

    /// Runs `op` in every tenant's object with the directory's sync, a few at a time, before
    /// the answer that needs it: a keyring rotation, a test-clock step. Answers how many calls
    /// failed.
    pub(super) async fn call_all(&self, op: TenantOp) -> usize {
        let ids = self.with(Platform::tenant_ids).unwrap_or_default();
        let mut failed = 0;
        for chunk in ids.chunks(FAN_OUT) {
            let called =
                futures::future::join_all(chunk.iter().map(|t| self.call_tenant(t, op.clone())))
                    .await;
            for r in called {
                if let Err(e) = r {
                    console_error!("calling a tenant's object: {e}");
                    failed += 1;
                }
            }
        }
        failed
    }

    /// Hands a notice, with the rows the admin API wrote for the tenant, to its object.
    pub(super) async fn deliver_notice(
        &self,
        tenant_id: &str,
        notice: Notice,
    ) -> Result<(), String> {
        let rows = self
            .with(|p| rows::rows_of_notice(&p.db, tenant_id, &notice))
            .ok_or("not open")?
            .map_err(|e| e.to_string())?;
        match self
            .call_tenant(tenant_id, TenantOp::Notice { notice, rows })
            .await?
        {
            InternalAnswer::Done => Ok(()),
            other => Err(format!("an unexpected answer: {other:?}")),
        }
    }
}
