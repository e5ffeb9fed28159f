//! The state a scenario keeps between its steps, owned by the World: tenants and keys by
//! their names in the scenario, and end users with their accounts, tokens and mail.

use std::collections::BTreeMap;

use crate::context::CapturedMail;

/// A tenant created by the scenario.
#[derive(Debug, Clone)]
pub struct TenantRef {
    /// `tenant:<slug>` (or whatever id the target gave).
    pub id: String,
    /// The slug.
    pub slug: String,
}

/// A key known to the scenario (`A:secret`, `A:ci`).
#[derive(Debug, Clone, Default)]
pub struct KeyRef {
    /// The key id, when known.
    pub id: Option<String>,
    /// The bearer token.
    pub secret: Option<String>,
    /// The tenant's name in the scenario.
    pub tenant: String,
}

/// One user's account in one tenant.
#[derive(Debug, Clone, Default)]
pub struct Account {
    /// The tenant's name in the scenario.
    pub tenant: String,
    /// The current password (empty until set, for an onboarded admin).
    pub password: String,
    /// Passwords the account had before.
    pub old_passwords: Vec<String>,
}

/// The end-user state of one scenario.
#[derive(Debug, Clone, Default)]
pub struct Users {
    /// Address of each user name.
    pub emails: BTreeMap<String, String>,
    /// Accounts by `user@tenant`.
    pub accounts: BTreeMap<String, Account>,
    /// The tenant of each user's last session answer.
    pub last_tenant: BTreeMap<String, String>,
    /// Access tokens issued to each user, oldest first.
    pub access: BTreeMap<String, Vec<String>>,
    /// Refresh tokens issued to each user, oldest first.
    pub refresh: BTreeMap<String, Vec<String>>,
    /// Tokens named by the scenario (remembered or forged).
    pub named: BTreeMap<String, String>,
    /// Mail tokens by `user:kind`, oldest first.
    pub mail_tokens: BTreeMap<String, Vec<String>>,
    /// Mail tokens already taken from the capture (a "new" mail carries another one).
    pub seen_mail_tokens: Vec<String>,
    /// The last mail read, by `user:kind`.
    pub mails: BTreeMap<String, CapturedMail>,
    /// A password sent in a reset or change that is not confirmed yet, by `user@tenant`.
    pub pending_password: BTreeMap<String, String>,
}
