//! The unauthenticated documents: health and the capabilities a harness reads before a run.

use serde::{Deserialize, Serialize};

/// Version of the contract these types describe, reported by `/.well-known/authconf`.
pub const CONTRACT_VERSION: &str = "1";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Health {
    pub status: String,
    pub timestamp: i64,
    pub version: String,
}

/// `/.well-known/authconf`: what this deployment offers, so a harness can skip what it lacks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Capabilities {
    pub service: String,
    pub contract_version: String,
    pub version: String,
    pub routing: Routing,
    pub revocation: Revocation,
    pub rate_limit: RateLimitCapability,
    pub features: Features,
    pub test_controls: TestControls,
}

/// How a request names its tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Routing {
    /// The domain whose subdomains name tenants; `null` when subdomain routing is off.
    pub base_domain: Option<String>,
    /// `header`, `subdomain`, `key`, `query`.
    pub sources: Vec<String>,
}

/// How soon a revocation takes effect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Revocation {
    pub consistency: String,
    pub max_delay_seconds: u64,
}

/// How the tenant quota is counted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct RateLimitCapability {
    pub algorithm: String,
    pub exact: bool,
    pub tolerance_requests: u64,
    pub scope: String,
    pub window_alignment: String,
    /// Whether a tenant's `rateLimit` overrides its plan's default.
    #[serde(rename = "override")]
    pub overridable: bool,
    pub plan_defaults: PlanDefaults,
    pub default_window_seconds: u64,
    pub note: String,
}

/// Requests per window of each plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PlanDefaults {
    pub free: u32,
    pub pro: u32,
    pub enterprise: u32,
}

/// The optional parts of the contract this deployment serves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Features {
    pub api_keys: bool,
    pub rate_limit: bool,
    pub audit_log: bool,
    pub events: bool,
    pub graph: bool,
    pub user_auth: bool,
    pub admin_dashboard: bool,
    pub platform_admins: bool,
    pub usage_metrics: bool,
    pub mail_capture: bool,
}

/// The `/_test/*` controls, when the deployment enables them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct TestControls {
    pub enabled: bool,
    /// `/_test` when enabled, else `null`.
    pub base_path: Option<String>,
    pub clock: bool,
    pub evict: bool,
    pub alarms: bool,
}
