//! Alarm multiplexing: the object's one platform alarm serves the core object's alarm (grace
//! periods, usage flushes), the mail outbox and the D1 retries, whichever is due first.

use auth_core::objects::ObjectStorage;
use worker::{console_error, Response};

use super::state::Storage;
use super::TenantState;

/// Retry delay of a failed alarm, doubled per attempt up to a minute.
const ALARM_RETRY_MS: i64 = 500;

impl TenantState {
    /// Points the platform alarm at the earliest of the core object's alarm and the mail due.
    pub(super) async fn sync_alarm(&self) {
        let (next, offset) = {
            let guard = self.inner.borrow();
            let Some(inner) = guard.as_ref() else { return };
            let next = inner.next_alarm();
            if inner.alarm_set.get() == next {
                return;
            }
            inner.alarm_set.set(next);
            (next, inner.offset_ms.get())
        };
        let storage = self.state.storage();
        let r = match next {
            // The test clock runs ahead of the platform's by `offset`.
            Some(at) => {
                let real = (at - offset).max(worker::Date::now().as_millis() as i64 + 1);
                storage
                    .set_alarm(worker::ScheduledTime::new(js_sys::Date::new(
                        &js_sys::Number::from(real as f64),
                    )))
                    .await
            }
            None => storage.delete_alarm().await,
        };
        if let Err(e) = r {
            console_error!("could not set the alarm: {e}");
            if let Some(inner) = self.inner.borrow().as_ref() {
                inner.alarm_set.set(None);
            }
        }
    }

    pub(super) async fn on_alarm(&self) -> worker::Result<Response> {
        if self.ensure_open().is_err() {
            return Response::ok("");
        }
        let keys_changed = {
            let guard = self.inner.borrow();
            let Some(inner) = guard.as_ref() else {
                return Response::ok("");
            };
            inner.alarm_set.set(None);
            let due = Storage(&inner.db)
                .alarm()
                .is_some_and(|at| at <= inner.now_ms());
            if due && !inner.tenant_id.borrow().is_empty() {
                match inner.run_core_alarm(&self.state) {
                    Ok(()) => inner.failed_alarms.set(0),
                    Err(e) => {
                        console_error!("alarm of a tenant object failed: {e}");
                        let attempts = inner.failed_alarms.get().min(7);
                        inner.failed_alarms.set(attempts + 1);
                        let delay = (ALARM_RETRY_MS << attempts).min(60_000);
                        Storage(&inner.db).set_alarm(Some(inner.now_ms() + delay));
                    }
                }
            }
            inner.keys_pending()
        };
        if keys_changed {
            self.push_keys().await;
        }
        self.push_usage().await;
        self.deliver_mail().await;
        self.copy_to_d1().await;
        self.sync_alarm().await;
        Response::ok("")
    }
}
