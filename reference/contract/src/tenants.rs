//! Tenants as the admin API and a tenant's own keys see them, their onboarding state and the
//! state of their rate limit.

use serde::{Deserialize, Serialize};

/// A tenant as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PublicTenant {
    pub id: String,
    pub slug: String,
    pub name: String,
    pub plan: String,
    pub status: String,
}

/// A per-tenant quota override: `requests` per `windowSeconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimit {
    pub requests: u32,
    pub window_seconds: u32,
}

/// The credentials of a freshly created tenant, shown once.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct TenantCredentials {
    pub public_key: String,
    pub secret_key: String,
}

/// `POST /admin/tenants` 201. `onboarding` only for a tenant created with onboarding.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TenantCreated {
    pub tenant: Tenant,
    pub credentials: TenantCredentials,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub onboarding: Option<OnboardingState>,
}

/// One tenant (`GET`, `PUT`, `PATCH`, `DELETE /admin/tenants/{id}`). `onboarding` only on a
/// `GET` of an onboarded tenant.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TenantEnvelope {
    pub tenant: Tenant,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub onboarding: Option<OnboardingState>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PublicTenantEnvelope {
    pub tenant: PublicTenant,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Pagination {
    pub page: u32,
    pub limit: u32,
    pub total: u64,
    pub pages: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TenantList {
    pub tenants: Vec<Tenant>,
    pub pagination: Pagination,
}

/// The onboarding of a tenant created with `"onboarding"`: its first admin, its schema, and
/// whether the welcome mail went out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct OnboardingState {
    pub admin_email: String,
    pub admin_user_id: String,
    pub template: String,
    pub schema_id: String,
    pub schema_version: String,
    /// `queued` or `sent`.
    pub welcome_email: String,
    pub welcome_email_sent_at: Option<String>,
    pub admin_password_set: bool,
    pub created_at: String,
}

/// `GET /v1/rate-limit`: the caller's window as this request left it.
///
/// The fields are declared in the sorted order of their wire names, the order this body has
/// always gone out in: the hot path serialises it directly, with no `Value` in between (a test
/// below holds the two orders equal).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct RateLimitState {
    pub algorithm: String,
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the window resets.
    pub reset: u64,
    pub tenant_id: String,
    pub window_seconds: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `RateLimitState` goes out as declared (no sorting `Value` on the hot path), so its
    /// declaration must keep the sorted order every earlier release sent.
    #[test]
    fn rate_limit_state_serialises_in_sorted_key_order() {
        let state = RateLimitState {
            algorithm: "fixed_window".into(),
            limit: 10,
            remaining: 9,
            reset: 60,
            tenant_id: "tenant:x".into(),
            window_seconds: 60,
        };
        let direct = serde_json::to_string(&state).unwrap();
        let sorted = serde_json::to_value(&state).unwrap().to_string();
        assert_eq!(direct, sorted);
    }
}
