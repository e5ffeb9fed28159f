//! The directory's calls to this object: notices, key and onboarding pulls, usage flushes,
//! alarm firing, eviction, and the Worker's graph audit record.

use auth_core::objects::ObjectStorage;
use auth_core::ports::{SqlValue, StorageError};
use auth_core::{ApiError, Notice};
use serde_json::json;
use worker::{console_error, Request, Response};

use super::state::{Inner, Storage};
use super::{json_response, problem, TenantState};
use crate::internal::{self, NoticeCall};
use crate::rows;

impl TenantState {
    pub(super) fn read(
        &self,
        f: impl FnOnce(&Inner) -> Result<serde_json::Value, StorageError>,
    ) -> worker::Result<Response> {
        let guard = self.inner.borrow();
        let Some(inner) = guard.as_ref() else {
            return problem(ApiError::Internal);
        };
        match f(inner) {
            Ok(v) => json_response(&v),
            Err(e) => {
                console_error!("reading for the directory failed: {e}");
                problem(ApiError::Internal)
            }
        }
    }

    /// A change the admin API made: store the rows it wrote, then audit and push it.
    pub(super) async fn notice(&self, req: &mut Request) -> worker::Result<Response> {
        let Ok(call) = req.json::<NoticeCall>().await else {
            return problem(ApiError::Internal);
        };
        let guard = self.inner.borrow();
        let Some(inner) = guard.as_ref() else {
            return problem(ApiError::Internal);
        };
        let r = inner.call(&self.state, false, |o, env| {
            for (table, image) in &call.rows {
                rows::insert(env.db, "INSERT OR IGNORE", table, image)?;
                if table == "api_keys" {
                    // The directory wrote these keys itself: not changes to send it back.
                    for id in image
                        .iter()
                        .filter_map(|r| r.first().and_then(|v| v.as_str()))
                    {
                        env.db
                            .execute("DELETE FROM _key_changes WHERE id = ?", &[id.into()])?;
                    }
                }
            }
            o.notice(env, &call.notice)
        });
        match r {
            Ok(_) => with_alarm(json_response(&json!({"ok": true})), inner),
            Err(e) => {
                console_error!("a notice failed: {e}");
                problem(ApiError::Internal)
            }
        }
    }

    /// Moves the pending usage counts out (for an admin metrics answer) and answers them.
    pub(super) fn flush(&self) -> worker::Result<Response> {
        let guard = self.inner.borrow();
        let Some(inner) = guard.as_ref() else {
            return problem(ApiError::Internal);
        };
        let r = inner.call(&self.state, false, |o, env| {
            o.flush_metrics(env)?;
            rows::take_usage(env.db)
        });
        match r {
            Ok((rows, _)) => json_response(&json!(rows)),
            Err(e) => {
                console_error!("flushing usage counts failed: {e}");
                problem(ApiError::Internal)
            }
        }
    }

    /// Fires the core object's alarm: now if `force` (and one is set), else only if it is due.
    pub(super) async fn fire(&self, force: bool) -> worker::Result<Response> {
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
        with_alarm(json_response(&json!({"fired": usize::from(ran)})), inner)
    }

    /// `/_internal/audit`: appends a graph change's audit record.
    pub(super) async fn audit(&self, req: &mut Request) -> worker::Result<Response> {
        let Ok(notice) = req.json::<Notice>().await else {
            return problem(ApiError::Internal);
        };
        let guard = self.inner.borrow();
        let Some(inner) = guard.as_ref() else {
            return problem(ApiError::Internal);
        };
        match inner.call(&self.state, false, |o, env| o.record(env, &notice)) {
            Ok(_) => json_response(&json!({"ok": true})),
            Err(e) => {
                console_error!("could not write the graph audit record: {e}");
                problem(ApiError::Internal)
            }
        }
    }
}

/// The rows `GET /admin/tenants/{id}` shows as the onboarding state: the onboarding record,
/// its admin user and its welcome mail, which change here (password set, mail sent).
pub(super) fn onboarding_rows(inner: &Inner) -> Result<serde_json::Value, StorageError> {
    let tenant_id = inner.tenant_id.borrow().clone();
    let t: &[SqlValue] = &[tenant_id.as_str().into()];
    Ok(json!({
        "tenant_users": rows::select(&inner.db, "tenant_users",
            "id IN (SELECT admin_user_id FROM tenant_onboarding WHERE tenant_id = ?)", t)?,
        "mail_outbox": rows::select(&inner.db, "mail_outbox",
            "id IN (SELECT welcome_mail_id FROM tenant_onboarding WHERE tenant_id = ?)", t)?,
        "tenant_onboarding": rows::select(&inner.db, "tenant_onboarding", "tenant_id = ?", t)?,
    }))
}

/// Adds the internal answer headers: the object's next alarm (for the directory's test
/// controls) and whether the tenant's keys changed.
pub(super) fn with_alarm(
    resp: worker::Result<Response>,
    inner: &Inner,
) -> worker::Result<Response> {
    let resp = resp?;
    let headers = resp.headers().clone();
    let alarm = Storage(&inner.db)
        .alarm()
        .map_or_else(|| "none".to_owned(), |a| a.to_string());
    headers.set(internal::ALARM_HEADER, &alarm)?;
    if inner.keys_pending() {
        headers.set(internal::KEYS_CHANGED_HEADER, "1")?;
    }
    Ok(resp.with_headers(headers))
}
