//! The directory's calls to this object ([`TenantOp`]: notices, key and onboarding pulls,
//! usage flushes, alarm firing, eviction) and the Worker's graph audit record, each answered
//! with its [`InternalAnswer`]. The client requests that reach the object are `forward`'s.

use auth_core::objects::ObjectStorage;
use auth_core::ports::{Sql, SqlValue, StorageError};
use auth_core::{ApiError, Notice};
use worker::{console_error, Response};

use super::state::{Inner, Storage};
use super::TenantState;
use crate::convert::problem;
use crate::internal::{self, InternalAnswer, TenantOp};
use crate::rows;
use crate::tables::{MailRow, OnboardingRow, TableRows, TenantUserRow};

impl TenantState {
    /// Runs what the directory asked for, its sync already applied.
    pub(super) async fn run_op(&self, op: TenantOp) -> worker::Result<Response> {
        match op {
            TenantOp::Apply => internal::answer(&InternalAnswer::Done),
            TenantOp::Notice { notice, rows } => self.notice(&notice, &rows),
            TenantOp::Keys { all } => self.read("taking the changed keys", |inner| {
                let tenant_id = inner.tenant_id.borrow().clone();
                let mut rows = None;
                inner.db.transaction(&mut |db| {
                    rows = Some(rows::take_changed_keys(db, &tenant_id, all)?);
                    Ok(())
                })?;
                Ok(InternalAnswer::Keys {
                    rows: rows.unwrap_or_default(),
                })
            }),
            TenantOp::Onboarding => self.read("reading the onboarding rows", onboarding_rows),
            TenantOp::Flush => self.read("flushing usage counts", |inner| {
                let (rows, _) = inner.call(&self.state, false, |o, env| {
                    o.flush_metrics(env)?;
                    rows::take_usage(env.db)
                })?;
                Ok(InternalAnswer::Usage { rows })
            }),
            TenantOp::Fire => self.fire(true).await,
            TenantOp::Clock => self.fire(false).await,
            TenantOp::Evict => {
                let was_live = self
                    .inner
                    .borrow()
                    .as_ref()
                    .is_some_and(|i| i.object.borrow_mut().take().is_some());
                internal::answer(&InternalAnswer::Evicted {
                    evicted: u64::from(was_live),
                })
            }
        }
    }

    /// Answers what `f` reads from the open object; `what` names it in the log on failure.
    fn read(
        &self,
        what: &str,
        f: impl FnOnce(&Inner) -> Result<InternalAnswer, StorageError>,
    ) -> worker::Result<Response> {
        let guard = self.inner.borrow();
        let Some(inner) = guard.as_ref() else {
            return problem(ApiError::Internal);
        };
        match f(inner) {
            Ok(answer) => internal::answer(&answer),
            Err(e) => {
                console_error!("{what} failed: {e}");
                problem(ApiError::Internal)
            }
        }
    }

    /// A change the admin API made: store the rows it wrote, then audit and push it.
    fn notice(&self, notice: &Notice, shipped: &[TableRows]) -> worker::Result<Response> {
        let guard = self.inner.borrow();
        let Some(inner) = guard.as_ref() else {
            return problem(ApiError::Internal);
        };
        let r = inner.call(&self.state, false, |o, env| {
            for rows in shipped {
                rows::insert(env.db, "INSERT OR IGNORE", rows)?;
                if let TableRows::KeyRow(keys) = rows {
                    // The directory wrote these keys itself: not changes to send it back.
                    for id in keys.iter().filter_map(|k| k.id.as_str()) {
                        env.db
                            .execute("DELETE FROM _key_changes WHERE id = ?", &[id.into()])?;
                    }
                }
            }
            o.notice(env, notice)
        });
        match r {
            Ok(_) => with_keys_flag(internal::answer(&InternalAnswer::Done), inner),
            Err(e) => {
                console_error!("a notice failed: {e}");
                problem(ApiError::Internal)
            }
        }
    }

    /// Fires the core object's alarm: now if `force` (and one is set), else only if it is due.
    async fn fire(&self, force: bool) -> worker::Result<Response> {
        let ran = {
            let guard = self.inner.borrow();
            let Some(inner) = guard.as_ref() else {
                return problem(ApiError::Internal);
            };
            let due = Storage(&inner.db)
                .alarm()
                .is_some_and(|at| force || at <= inner.now_ms());
            if due {
                if let Err(e) = inner.run_core_alarm(&self.state) {
                    console_error!("alarm of a tenant object failed: {e}");
                    return problem(ApiError::Internal);
                }
            }
            due
        };
        self.push_usage().await;
        let guard = self.inner.borrow();
        let Some(inner) = guard.as_ref() else {
            return problem(ApiError::Internal);
        };
        let fired = InternalAnswer::Fired {
            fired: u64::from(ran),
        };
        with_keys_flag(internal::answer(&fired), inner)
    }

    /// [`internal::InternalCall::Audit`]: appends a graph change's audit record.
    pub(super) fn audit(&self, notice: &Notice) -> worker::Result<Response> {
        let guard = self.inner.borrow();
        let Some(inner) = guard.as_ref() else {
            return problem(ApiError::Internal);
        };
        match inner.call(&self.state, false, |o, env| o.record(env, notice)) {
            Ok(_) => internal::answer(&InternalAnswer::Done),
            Err(e) => {
                console_error!("could not write the graph audit record: {e}");
                problem(ApiError::Internal)
            }
        }
    }
}

/// The rows `GET /admin/tenants/{id}` shows as the onboarding state: the onboarding record,
/// its admin user and its welcome mail, which change here (password set, mail sent).
fn onboarding_rows(inner: &Inner) -> Result<InternalAnswer, StorageError> {
    let tenant_id = inner.tenant_id.borrow().clone();
    let t: &[SqlValue] = &[tenant_id.as_str().into()];
    Ok(InternalAnswer::Onboarding {
        tenant_users: rows::select::<TenantUserRow>(
            &inner.db,
            "id IN (SELECT admin_user_id FROM tenant_onboarding WHERE tenant_id = ?)",
            t,
        )?,
        mail_outbox: rows::select::<MailRow>(
            &inner.db,
            "id IN (SELECT welcome_mail_id FROM tenant_onboarding WHERE tenant_id = ?)",
            t,
        )?,
        tenant_onboarding: rows::select::<OnboardingRow>(&inner.db, "tenant_id = ?", t)?,
    })
}

/// Marks an answer with [`internal::KEYS_CHANGED_HEADER`] when the tenant's keys changed and
/// the directory has not taken them yet.
pub(super) fn with_keys_flag(
    resp: worker::Result<Response>,
    inner: &Inner,
) -> worker::Result<Response> {
    let resp = resp?;
    if !inner.keys_pending() {
        return Ok(resp);
    }
    let headers = resp.headers().clone();
    headers.set(internal::KEYS_CHANGED_HEADER, "1")?;
    Ok(resp.with_headers(headers))
}
