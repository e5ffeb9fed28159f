//! The graph API (`/v1/graph/*`): the answers about a tenant's authorisation graph.

use serde::{Deserialize, Serialize};

/// `PUT /v1/graph/csv`: where the upload was stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct CsvStored {
    pub stored: bool,
    pub key: String,
    pub edge_count: usize,
    pub bytes: usize,
}

/// `GET /v1/graph/state`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct GraphStateView {
    pub tenant_id: String,
    pub version: i64,
    /// Live (non-revoked) edges.
    pub edge_count: usize,
    /// Time of the last reload; `null` when the graph was never loaded from CSV.
    pub loaded_at: Option<String>,
    /// Whether anything (a reload or a mutation) ever made a version.
    pub initialized: bool,
}

/// The answer to a reload, as the public deployment shapes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ReloadSummary {
    pub success: bool,
    pub tenant_id: String,
    pub edge_count: usize,
    pub version: i64,
}

/// The answer to a mutation call: the version it made and how many ops it applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct MutationResult {
    pub version: i64,
    pub applied: usize,
}

/// One record of the mutation log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct MutationRecord {
    pub version: i64,
    /// `add`, `revoke` or `reload`.
    pub op: String,
    /// `null` for `reload`.
    pub edge_id: Option<String>,
    pub at: String,
    pub actor_key_id: String,
}

/// A page of the mutation log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct MutationPage {
    pub current_version: i64,
    pub mutations: Vec<MutationRecord>,
    /// Whether versions after the last one in `mutations` exist; ask again with
    /// `since=<last version>`.
    pub has_more: bool,
}

/// `POST /v1/graph/check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CheckResult {
    pub allowed: bool,
}

/// The answer of `validate`, shaped as the public deployment answers it: `{"valid":true}` or
/// `{"valid":false,"reason":"..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Validation {
    pub valid: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<String>,
}

impl Validation {
    pub fn valid() -> Self {
        Self {
            valid: true,
            reason: None,
        }
    }

    pub fn invalid(reason: String) -> Self {
        Self {
            valid: false,
            reason: Some(reason),
        }
    }
}
