//! Shipping to the directory and to D1: the tenant's changed keys and its usage counts go to
//! the directory's mirror, the changed rows to D1.

use auth_core::ports::Sql;
use worker::console_error;

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

    /// Sends the keys to the directory's mirror (after an alarm ended a grace period).
    pub(super) async fn push_keys(&self) {
        let shipment = {
            let guard = self.inner.borrow();
            let Some(inner) = guard.as_ref() else { return };
            let tenant_id = inner.tenant_id.borrow().clone();
            let mut taken = None;
            let r = inner.db.transaction(&mut |db| {
                taken = Some(rows::take_changed_keys(db, &tenant_id, false)?);
                Ok(())
            });
            match r.map(|()| taken.unwrap_or_default()) {
                Ok(rows) => Shipment { tenant_id, rows },
                Err(e) => {
                    console_error!("reading keys for the directory: {e}");
                    return;
                }
            }
        };
        if !self
            .send_to_directory(&InternalCall::MergeKeys {
                shipment: shipment.clone(),
            })
            .await
        {
            console_error!("the directory did not take the tenant's keys; kept for next time");
            if let Some(inner) = self.inner.borrow().as_ref() {
                for row in &shipment.rows {
                    if let Some(id) = row.id.as_str() {
                        let _ = inner.db.execute(
                            "INSERT OR IGNORE INTO _key_changes (id) VALUES (?)",
                            &[id.into()],
                        );
                    }
                }
            }
        }
    }

    /// Moves the flushed usage counts to the directory; puts them back if it cannot take them.
    pub(super) async fn push_usage(&self) {
        let shipment = {
            let guard = self.inner.borrow();
            let Some(inner) = guard.as_ref() else { return };
            let mut taken = None;
            let r = inner.db.transaction(&mut |db| {
                taken = Some(rows::take_usage(db)?);
                Ok(())
            });
            match (r, taken) {
                (Ok(()), Some(rows)) if !rows.is_empty() => Shipment {
                    tenant_id: inner.tenant_id.borrow().clone(),
                    rows,
                },
                (Ok(()), _) => return,
                (Err(e), _) => {
                    console_error!("reading usage counts: {e}");
                    return;
                }
            }
        };
        if !self
            .send_to_directory(&InternalCall::MergeUsage {
                shipment: shipment.clone(),
            })
            .await
        {
            console_error!("the directory did not take usage counts; kept for the next alarm");
            if let Some(inner) = self.inner.borrow().as_ref() {
                let _ = rows::merge_usage(&inner.db, &shipment.rows);
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
