//! Domain records and the rules that belong to them: plans, statuses, permissions, timestamps.

use auth_contract as wire;

use crate::keys::{Environment, KeyType};

/// A tenant's plan decides its default quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    Free,
    Pro,
    Enterprise,
}

impl Plan {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "free" => Some(Plan::Free),
            "pro" => Some(Plan::Pro),
            "enterprise" => Some(Plan::Enterprise),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Plan::Free => "free",
            Plan::Pro => "pro",
            Plan::Enterprise => "enterprise",
        }
    }
    /// Requests per minute when the tenant has no override (the seed's 100 for free).
    pub fn default_requests_per_minute(self) -> u32 {
        match self {
            Plan::Free => 100,
            Plan::Pro => 1_000,
            Plan::Enterprise => 10_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantStatus {
    Active,
    Suspended,
    Deleted,
}

impl TenantStatus {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(TenantStatus::Active),
            "suspended" => Some(TenantStatus::Suspended),
            "deleted" => Some(TenantStatus::Deleted),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            TenantStatus::Active => "active",
            TenantStatus::Suspended => "suspended",
            TenantStatus::Deleted => "deleted",
        }
    }
}

/// A tenant row.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantRecord {
    pub id: String,
    pub slug: String,
    pub name: String,
    pub plan: Plan,
    pub status: TenantStatus,
    pub rate_limit: Option<wire::RateLimit>,
    pub created_at: i64,
    pub updated_at: i64,
    pub deleted_at: Option<i64>,
}

impl TenantRecord {
    pub fn id_for_slug(slug: &str) -> String {
        format!("tenant:{slug}")
    }

    pub fn to_wire(&self) -> wire::Tenant {
        wire::Tenant {
            id: self.id.clone(),
            slug: self.slug.clone(),
            name: self.name.clone(),
            plan: self.plan.as_str().into(),
            status: self.status.as_str().into(),
            rate_limit: self.rate_limit,
            created_at: rfc3339(self.created_at),
            updated_at: rfc3339(self.updated_at),
            deleted_at: self.deleted_at.map(rfc3339),
        }
    }

    pub fn to_public_wire(&self) -> wire::PublicTenant {
        wire::PublicTenant {
            id: self.id.clone(),
            slug: self.slug.clone(),
            name: self.name.clone(),
            plan: self.plan.as_str().into(),
            status: self.status.as_str().into(),
        }
    }
}

/// An API key row. `key_hash` is the keyed hash; the key itself is never stored.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRecord {
    pub id: String,
    pub tenant_id: String,
    pub display_prefix: String,
    pub key_hash: String,
    pub name: String,
    pub key_type: KeyType,
    pub environment: Environment,
    pub permissions: Vec<String>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub replaced_by: Option<String>,
}

impl KeyRecord {
    /// Whether the key authenticates at `now`: not revoked, not past its grace period.
    pub fn usable_at(&self, now: i64) -> bool {
        self.revoked_at.is_none_or(|t| t > now) && self.expires_at.is_none_or(|t| t > now)
    }

    pub fn to_wire(&self) -> wire::ApiKey {
        wire::ApiKey {
            id: self.id.clone(),
            name: self.name.clone(),
            key_type: self.key_type.as_str().into(),
            environment: self.environment.as_str().into(),
            permissions: self.permissions.clone(),
            display_prefix: self.display_prefix.clone(),
            created_at: rfc3339(self.created_at),
            revoked_at: self.revoked_at.map(rfc3339),
            expires_at: self.expires_at.map(rfc3339),
        }
    }
}

/// Permissions a restricted key can carry. Later parts of the contract add to this list.
pub const KNOWN_PERMISSIONS: &[&str] = &[
    "read:api_keys",
    "write:api_keys",
    "read:audit_log",
    "read:events",
    "read:graph",
    "write:graph",
];

/// Whether a permission string is one we know, or a wildcard over known ones.
pub fn is_known_permission(p: &str) -> bool {
    if p == "*" || KNOWN_PERMISSIONS.contains(&p) {
        return true;
    }
    match p.strip_suffix(":*") {
        Some(action) => KNOWN_PERMISSIONS
            .iter()
            .any(|k| k.split(':').next() == Some(action)),
        None => false,
    }
}

/// Whether `granted` covers `wanted`: exact, `<action>:*`, or `*`.
pub fn permission_covers(granted: &str, wanted: &str) -> bool {
    if granted == "*" || granted == wanted {
        return true;
    }
    match (granted.strip_suffix(":*"), wanted.split_once(':')) {
        (Some(action), Some((wanted_action, _))) => action == wanted_action,
        _ => false,
    }
}

pub fn permissions_cover(granted: &[String], wanted: &str) -> bool {
    granted.iter().any(|g| permission_covers(g, wanted))
}

/// RFC 3339 in UTC with second precision, e.g. `2026-11-26T11:21:01Z`.
pub fn rfc3339(ms: i64) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_cover_their_action_only() {
        assert!(permission_covers("read:*", "read:api_keys"));
        assert!(!permission_covers("read:*", "write:api_keys"));
        assert!(permission_covers("*", "write:graph"));
        assert!(!permission_covers("read:api_keys", "write:api_keys"));
        assert!(!permission_covers("read", "read:api_keys"));
    }

    #[test]
    fn known_permissions() {
        assert!(is_known_permission("read:*"));
        assert!(is_known_permission("write:api_keys"));
        assert!(!is_known_permission("read:users"));
        assert!(!is_known_permission("delete:*"));
    }

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_690_327_640), "2026-11-26T10:52:07Z");
    }

    #[test]
    fn keys_expire_and_revoke_at_their_instant() {
        let mut k = KeyRecord {
            id: "key:1".into(),
            tenant_id: "tenant:a".into(),
            display_prefix: "sk_live_abcd".into(),
            key_hash: "h".into(),
            name: "n".into(),
            key_type: KeyType::Secret,
            environment: Environment::Live,
            permissions: vec![],
            created_at: 0,
            revoked_at: None,
            expires_at: Some(100),
            replaced_by: None,
        };
        assert!(k.usable_at(99));
        assert!(!k.usable_at(100));
        k.expires_at = None;
        k.revoked_at = Some(50);
        assert!(!k.usable_at(50));
    }
}
