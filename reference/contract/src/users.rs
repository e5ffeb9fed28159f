//! End-user auth (`/v1/auth/*`): the user, the session a login opens, and the plain answers.

use serde::{Deserialize, Serialize};

/// An end user of a tenant. Never carries a password or hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct EndUser {
    pub id: String,
    pub email: String,
    pub name: Option<String>,
    pub username: Option<String>,
    pub email_verified: bool,
    pub tenant_id: String,
    pub created_at: String,
}

/// The session an access token belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct SessionRef {
    pub id: String,
    pub expires_at: String,
}

/// Answer of register (201), login and refresh (200).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct UserSession {
    pub user: EndUser,
    pub access_token: String,
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds the access token lives.
    pub expires_in: i64,
    pub session: SessionRef,
}

/// `{"success":true,"message"}`: the answer of the routes that only confirm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct UserMessage {
    pub success: bool,
    pub message: String,
}

/// `GET /v1/auth/me`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct UserMe {
    pub user: EndUser,
}

/// The user as `validate` names them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ValidatedUser {
    pub id: String,
    pub email: String,
    pub name: Option<String>,
    pub tenant_id: String,
}

/// `GET /v1/auth/validate`: the token is good until `expiresAt`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct UserValidation {
    pub valid: bool,
    pub user: ValidatedUser,
    pub session: SessionRef,
    pub expires_at: String,
}
