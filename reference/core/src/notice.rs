//! [`Notice`]: a change made outside a tenant's object that the object must hear about.

use auth_contract::NoDetail;
use serde_json::Value;

/// Actor recorded for changes the platform admin made.
pub const ADMIN_ACTOR: &str = "platform_admin";

/// A change made outside the object (by the admin API or the graph object) that it must know
/// about: it is audited, pushed to sockets, and drops the object's cached records. It
/// serialises because a host may deliver it to an object in another process (the Worker does).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Notice {
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: Value,
    pub request_id: String,
    /// Close every socket: the tenant was suspended or deleted.
    pub end_sessions: bool,
}

/// The detail of an action whose target says it all: `{}` ([`NoDetail`]).
pub fn no_detail() -> Value {
    crate::http::sorted(&NoDetail {})
}
