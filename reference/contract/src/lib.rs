//! Wire types of the auth-service contract (`docs/contract.md`).
//!
//! These are the JSON shapes the reference implementation sends. They live in their own crate
//! so that the core, the native host and the Worker adapter serialise the same structs, and so
//! that a change to the wire format shows up as a change to this one file.
//!
//! The conformance steps (`scenarios/`) deliberately do **not** depend on this crate: they read
//! responses as untyped JSON, so they hold for any deployment, including ones whose shapes
//! differ from ours.

use serde::{Deserialize, Serialize};

pub mod testing;

/// Version of the contract these types describe, reported by `/.well-known/authconf`.
pub const CONTRACT_VERSION: &str = "1";

/// Media type of every error body (RFC 9457).
pub const PROBLEM_JSON: &str = "application/problem+json";

/// A tenant as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tenant {
    pub id: String,
    pub slug: String,
    pub name: String,
    pub plan: String,
    pub status: String,
    pub rate_limit: Option<RateLimit>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub deleted_at: Option<String>,
}

/// What a tenant's own keys may learn about their tenant (`GET /v1/tenant`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublicTenant {
    pub id: String,
    pub slug: String,
    pub name: String,
    pub plan: String,
    pub status: String,
}

/// A per-tenant quota override: `requests` per `windowSeconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimit {
    pub requests: u32,
    pub window_seconds: u32,
}

/// The credentials of a freshly created tenant, shown once.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantCredentials {
    pub public_key: String,
    pub secret_key: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TenantCreated {
    pub tenant: Tenant,
    pub credentials: TenantCredentials,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TenantEnvelope {
    pub tenant: Tenant,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PublicTenantEnvelope {
    pub tenant: PublicTenant,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pagination {
    pub page: u32,
    pub limit: u32,
    pub total: u64,
    pub pages: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TenantList {
    pub tenants: Vec<Tenant>,
    pub pagination: Pagination,
}

/// An API key as every list and get shows it: never a secret, never a hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub key_type: String,
    pub environment: String,
    pub permissions: Vec<String>,
    pub display_prefix: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
    pub expires_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyCredentials {
    pub key_secret: String,
}

/// Answer to key creation and rotation: the only place a key's secret is ever shown.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyCreated {
    pub api_key: ApiKey,
    pub credentials: KeyCredentials,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub previous_key: Option<ApiKey>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyEnvelope {
    pub api_key: ApiKey,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyList {
    pub api_keys: Vec<ApiKey>,
}

/// One field-level validation failure inside a problem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// An RFC 9457 problem document with a stable machine-readable `code`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    pub code: String,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub field: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub errors: Vec<FieldError>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
    pub timestamp: i64,
    pub version: String,
}
