//! The platform admin API beyond tenants and keys: platform admins, the dashboard, usage
//! metrics and the end-user JWT keyring.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A platform admin; never a key or a hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct PlatformAdmin {
    pub id: String,
    pub email: String,
    pub name: Option<String>,
    /// `superadmin`, `support`, `billing` or `readonly`.
    pub role: String,
    /// `active`, `suspended` or `revoked`.
    pub status: String,
    /// The tenants this admin is limited to; `null` for every tenant.
    pub tenants: Option<Vec<String>>,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct AdminCredentials {
    /// Shown this once.
    pub admin_key: String,
}

/// `POST /admin/admins` 201.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PlatformAdminCreated {
    pub admin: PlatformAdmin,
    pub credentials: AdminCredentials,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PlatformAdminEnvelope {
    pub admin: PlatformAdmin,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PlatformAdminList {
    pub admins: Vec<PlatformAdmin>,
}

/// `GET /admin/dashboard`, over the caller's tenants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Dashboard {
    pub tenants: TenantCounts,
    pub api_keys: KeyCounts,
    pub requests: RequestCounts,
    pub generated_at: String,
}

/// Tenants in all, by status and by plan (every status and plan named, zeros included).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct TenantCounts {
    pub total: i64,
    pub by_status: BTreeMap<String, i64>,
    pub by_plan: BTreeMap<String, i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct KeyCounts {
    pub active: i64,
    pub revoked: i64,
    pub expired: i64,
}

/// Requests in the last 24 hours (the current UTC hour and the 23 before it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RequestCounts {
    #[serde(rename = "last24h")]
    pub last_24h: i64,
    #[serde(rename = "rateLimitedLast24h")]
    pub rate_limited_last_24h: i64,
}

/// `GET /admin/metrics` and `GET /admin/tenants/{id}/metrics`: requests per UTC day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct UsageMetrics {
    /// Only in one tenant's metrics.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub tenant_id: Option<String>,
    pub days: i64,
    /// The first day (`YYYY-MM-DD`).
    pub from: String,
    /// The last day, today.
    pub to: String,
    pub daily: Vec<UsageDay>,
    pub totals: UsageTotals,
    pub generated_at: String,
}

/// One UTC day of usage: across tenants with `tenants` (how many were active), or for one
/// tenant with `endpoints`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct UsageDay {
    pub date: String,
    pub requests: i64,
    pub rate_limited: i64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub tenants: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub endpoints: Option<Vec<EndpointUsage>>,
}

/// One endpoint's requests on one day (`GET /v1/api-keys`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct EndpointUsage {
    pub endpoint: String,
    pub requests: i64,
    pub rate_limited: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct UsageTotals {
    pub requests: i64,
    pub rate_limited: i64,
}

/// One signing key of the end-user JWT keyring: its id and status, never the secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct JwtKey {
    pub kid: String,
    /// `current`, `previous` or `retired`.
    pub status: String,
    pub created_at: String,
    pub retired_at: Option<String>,
}

/// `/admin/jwt-keys*`: the keyring after the action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct JwtKeyring {
    pub current_kid: String,
    pub keys: Vec<JwtKey>,
}
