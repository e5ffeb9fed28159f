//! Shipping to the directory and to D1: the tenant's changed keys and its usage counts go to
//! the directory's mirror, the changed rows to D1.

use auth_core::ports::{Sql, StorageError};
use worker::console_error;

use super::state::Inner;
use super::TenantState;
use crate::internal::{self, InternalAnswer, InternalCall, Shipment};
use crate::rows;

impl TenantState {
    /// Sends rows to the directory ([`InternalCall::MergeKeys`], [`InternalCall::MergeUsage`]);
    /// answers whether it took them.
    pub(super) async fn send_to_directory(&self, call: &InternalCall) -> bool {
        let Ok(stub) = internal::directory_stub(&self.env) else {
            return false;
        };
        matches!(
            internal::ask(&stub, call).await,
            Ok(asked) if asked.answer == InternalAnswer::Done
        )
    }

    /// Sends the keys to the directory's mirror (after an alarm ended a grace period, or a
    /// direct call changed them); what it does not take is marked changed again.
    pub(super) async fn push_keys(&self) {
        let take = |db: &dyn Sql, tenant_id: &str| rows::take_changed_keys(db, tenant_id, false);
        let call = |shipment| InternalCall::MergeKeys { shipment };
        self.ship("the tenant's keys", take, true, call, |inner, rows| {
            for id in rows.iter().filter_map(|r| r.id.as_str()) {
                let _ = inner.db.execute(
                    "INSERT OR IGNORE INTO _key_changes (id) VALUES (?)",
                    &[id.into()],
                );
            }
        })
        .await;
    }

    /// Moves the flushed usage counts to the directory; puts them back if it cannot take them.
    pub(super) async fn push_usage(&self) {
        let take = |db: &dyn Sql, _: &str| rows::take_usage(db);
        let call = |shipment| InternalCall::MergeUsage { shipment };
        self.ship("usage counts", take, false, call, |inner, rows| {
            let _ = rows::merge_usage(&inner.db, rows);
        })
        .await;
    }

    /// Takes rows in one transaction and sends them to the directory as `call` (an empty
    /// take only when `send_empty`); if the directory does not take them, `put_back` keeps
    /// them for the next time.
    async fn ship<T: Clone>(
        &self,
        what: &str,
        take: impl Fn(&dyn Sql, &str) -> Result<Vec<T>, StorageError>,
        send_empty: bool,
        call: impl Fn(Shipment<T>) -> InternalCall,
        put_back: impl Fn(&Inner, &[T]),
    ) {
        let shipment = {
            let guard = self.inner.borrow();
            let Some(inner) = guard.as_ref() else { return };
            let tenant_id = inner.tenant_id.borrow().clone();
            let mut taken = None;
            let r = inner.db.transaction(&mut |db| {
                taken = Some(take(db, &tenant_id)?);
                Ok(())
            });
            match (r, taken) {
                (Ok(()), Some(rows)) if send_empty || !rows.is_empty() => {
                    Shipment { tenant_id, rows }
                }
                (Ok(()), _) => return,
                (Err(e), _) => {
                    console_error!("reading {what} for the directory: {e}");
                    return;
                }
            }
        };
        let rows = shipment.rows.clone();
        if !self.send_to_directory(&call(shipment)).await {
            console_error!("the directory did not take {what}; kept for next time");
            if let Some(inner) = self.inner.borrow().as_ref() {
                put_back(inner, &rows);
            }
        }
    }

    /// Sends the changed rows to D1 before the answer leaves (see [`crate::mirror`]); what D1
    /// does not take stays in the outbox for the alarm.
    // The shared borrow is held across the drain's awaits on purpose: `inner` is only ever
    // borrowed mutably while it is first built, before any call.
    #[allow(clippy::await_holding_refcell_ref)]
    pub(super) async fn copy_to_d1(&self) {
        let guard = self.inner.borrow();
        let Some(inner) = guard.as_ref() else { return };
        if let Some(m) = inner.mirror.as_ref().filter(|m| m.pending(&inner.db)) {
            m.drain(&self.env, &inner.db).await;
        }
    }
}
