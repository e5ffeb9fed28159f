//! The audit log as the API serves it, and the `detail` each kind of record carries.
//!
//! A record's `detail` is stored as JSON text and served back as it was written, so
//! [`AuditRecord::detail`] is a free-form value: its shape depends on the action (one of the
//! detail types below, or the graph's `{"<field>": ...}`), and records written by an older
//! version keep the shape they were written with.

use serde::{Deserialize, Serialize};

/// One audit record as `GET /v1/audit-log` and the event stream show it. Never a secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    pub seq: i64,
    pub tenant_id: String,
    pub created_at: String,
    pub action: String,
    pub actor_key_id: String,
    pub target: String,
    pub request_id: String,
    /// Free-form by action (see the module's note); `null` if the stored text does not parse.
    pub detail: serde_json::Value,
}

/// `GET /v1/audit-log`: records after `after`, and the `seq` to ask after next.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct AuditPage {
    pub records: Vec<AuditRecord>,
    /// The last record's `seq`; `null` on an empty page.
    pub next_after: Option<i64>,
}

/// `{}`: the detail of an action whose target says it all (`tenant.created`,
/// `api_key.revoked`, `user.*` ...).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct NoDetail {}

/// Detail of `api_key.created`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct KeyCreatedDetail {
    #[serde(rename = "type")]
    pub key_type: String,
    pub environment: String,
    pub permissions: Vec<String>,
}

/// Detail of `api_key.rotated`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct KeyRotatedDetail {
    pub new_key_id: String,
    pub grace_seconds: i64,
}

/// Detail of `tenant.updated`: the fields the update named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TenantUpdatedDetail {
    pub changed: Vec<String>,
}
