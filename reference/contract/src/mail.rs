//! The body the service POSTs to the mail API for each outbox mail.

use serde::{Deserialize, Serialize};

/// One mail as POSTed to the mail API, its code rendered in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct MailMessage {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub template: String,
    /// `null` for a mail of no tenant.
    pub tenant_id: Option<String>,
}
