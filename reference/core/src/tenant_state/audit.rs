//! The tenant's audit log, kept in the object's own storage: appended (ordered by a sequence
//! number) on every change, pushed to the tenant's WebSockets as it is written, and paged by
//! `GET /v1/audit-log`. One module so the row layout ([`AUDIT_COLUMNS`]) and its wire shape
//! are read and written in one place.

use auth_contract::{AuditPage, AuditRecord, EventFrame};
use http::StatusCode;
use serde_json::Value;

use super::TenantState;
use crate::http::{self as h, ApiError, Response};
use crate::model::rfc3339;
use crate::notice::Notice;
use crate::objects::ObjectEnv;
use crate::ports::{Sql, SqlValue, StorageError};

/// Creates the audit table on the object's first load.
pub(super) fn ensure_table(sql: &dyn Sql) -> Result<(), StorageError> {
    sql.execute(
        "CREATE TABLE IF NOT EXISTS audit_log (\
           seq INTEGER PRIMARY KEY AUTOINCREMENT, created_at INTEGER NOT NULL, \
           action TEXT NOT NULL, actor_key_id TEXT NOT NULL, target TEXT NOT NULL, \
           request_id TEXT NOT NULL, detail TEXT NOT NULL)",
        &[],
    )
    .map(drop)
}

/// One audit record as the API shows it.
pub(super) fn audit_record(tenant_id: &str, row: &[SqlValue]) -> AuditRecord {
    let text = |i: usize| {
        row.get(i)
            .and_then(SqlValue::as_str)
            .unwrap_or("")
            .to_owned()
    };
    AuditRecord {
        seq: row.first().and_then(SqlValue::as_i64).unwrap_or(0),
        tenant_id: tenant_id.to_owned(),
        created_at: rfc3339(row.get(1).and_then(SqlValue::as_i64).unwrap_or(0)),
        action: text(2),
        actor_key_id: text(3),
        target: text(4),
        request_id: text(5),
        detail: serde_json::from_str::<Value>(&text(6)).unwrap_or(Value::Null),
    }
}

pub(super) const AUDIT_COLUMNS: &str =
    "seq, created_at, action, actor_key_id, target, request_id, detail";

impl TenantState {
    /// Appends an audit record and pushes it to every socket of this tenant.
    pub(super) fn append(&mut self, env: &ObjectEnv, n: &Notice) -> Result<(), StorageError> {
        let sql = env.storage.sql();
        sql.execute(
            "INSERT INTO audit_log (created_at, action, actor_key_id, target, request_id, detail) \
             VALUES (?, ?, ?, ?, ?, ?)",
            &[
                env.clock.now_ms().into(),
                n.action.as_str().into(),
                n.actor.as_str().into(),
                n.target.as_str().into(),
                n.request_id.as_str().into(),
                n.detail.to_string().into(),
            ],
        )?;
        let row = sql.query(
            &format!("SELECT {AUDIT_COLUMNS} FROM audit_log ORDER BY seq DESC LIMIT 1"),
            &[],
        )?;
        if let Some(row) = row.first() {
            let event = EventFrame::Event {
                record: audit_record(&self.tenant_id, row),
            };
            let text = h::sorted(&event).to_string();
            for (socket, _) in env.sockets.sockets() {
                env.sockets.send(socket, &text);
            }
        }
        Ok(())
    }

    pub(super) fn audit_page(
        &self,
        env: &ObjectEnv,
        query: &[(String, String)],
    ) -> Result<Response, ApiError> {
        let mut after = 0i64;
        let mut limit = 100i64;
        for (k, v) in query {
            match k.as_str() {
                "after" => {
                    after =
                        v.parse().ok().filter(|n: &i64| *n >= 0).ok_or_else(|| {
                            ApiError::query("after", "must be a whole number >= 0")
                        })?
                }
                "limit" => {
                    limit = v
                        .parse()
                        .ok()
                        .filter(|n: &i64| (1..=1000).contains(n))
                        .ok_or_else(|| {
                            ApiError::query("limit", "must be a whole number from 1 to 1000")
                        })?
                }
                "tenant_id" => {}
                other => return Err(ApiError::query(other, "is not a known parameter")),
            }
        }
        let rows = env.storage.sql().query(
            &format!("SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?"),
            &[after.into(), limit.into()],
        )?;
        let records: Vec<AuditRecord> = rows
            .iter()
            .map(|r| audit_record(&self.tenant_id, r))
            .collect();
        let next = rows
            .last()
            .and_then(|r| r.first())
            .and_then(SqlValue::as_i64);
        Ok(h::json_sorted(
            StatusCode::OK,
            &AuditPage {
                records,
                next_after: next,
            },
        ))
    }
}
