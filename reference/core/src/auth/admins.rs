//! Platform admins as callers: the root key or an admin key from `platform_admins`, with its
//! role and tenant limit, and the lookup of an admin key's admin.

use crate::http::ApiError;
use crate::keys::KeyHasher;
use crate::ports::{Sql, SqlValue, StorageError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminRole {
    Superadmin,
    Support,
    Billing,
    Readonly,
}

impl AdminRole {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "superadmin" => Self::Superadmin,
            "support" => Self::Support,
            "billing" => Self::Billing,
            "readonly" => Self::Readonly,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Superadmin => "superadmin",
            Self::Support => "support",
            Self::Billing => "billing",
            Self::Readonly => "readonly",
        }
    }
}

/// The platform admin behind a request to `/admin/*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminCaller {
    /// `None` for the root key.
    pub id: Option<String>,
    pub role: AdminRole,
    /// The tenants this admin may see; `None` for every tenant.
    pub tenants: Option<Vec<String>>,
}

impl AdminCaller {
    pub fn root() -> Self {
        Self {
            id: None,
            role: AdminRole::Superadmin,
            tenants: None,
        }
    }

    pub fn is_root(&self) -> bool {
        self.id.is_none()
    }

    /// Whether this admin may see (and, role permitting, change) tenant `id`.
    pub fn sees(&self, tenant_id: &str) -> bool {
        self.tenants
            .as_ref()
            .is_none_or(|t| t.iter().any(|x| x == tenant_id))
    }

    pub fn only(&self) -> Option<&[String]> {
        self.tenants.as_deref()
    }

    pub fn require_write(&self) -> Result<(), ApiError> {
        if self.role == AdminRole::Readonly {
            return Err(ApiError::Forbidden("This admin's role is read-only."));
        }
        Ok(())
    }

    pub fn require_unlimited(&self) -> Result<(), ApiError> {
        if self.tenants.is_some() {
            return Err(ApiError::Forbidden(
                "This admin is limited to some tenants.",
            ));
        }
        Ok(())
    }

    /// A superadmin without a tenant limit (the root key is one).
    pub fn require_global_superadmin(&self) -> Result<(), ApiError> {
        self.require_unlimited()?;
        if self.role != AdminRole::Superadmin {
            return Err(ApiError::Forbidden(
                "This needs a superadmin without a tenant limit.",
            ));
        }
        Ok(())
    }

    pub fn require_root(&self) -> Result<(), ApiError> {
        if !self.is_root() {
            return Err(ApiError::Forbidden(
                "Only the root platform admin key manages admins.",
            ));
        }
        Ok(())
    }
}

pub(crate) const ADMIN_COLUMNS: &str =
    "id, email, name, role, status, tenant_scope, created_at, revoked_at";

pub(crate) struct AdminRow {
    pub(crate) id: String,
    pub(crate) email: String,
    pub(crate) name: Option<String>,
    pub(crate) role: AdminRole,
    pub(crate) active: bool,
    pub(crate) listed: bool,
    pub(crate) created_at: i64,
    pub(crate) revoked_at: Option<i64>,
}

pub(crate) fn admin_from_row(row: &[SqlValue]) -> AdminRow {
    let text = |i: usize| row.get(i).and_then(SqlValue::as_str).map(str::to_owned);
    AdminRow {
        id: text(0).unwrap_or_default(),
        email: text(1).unwrap_or_default(),
        name: text(2),
        role: text(3)
            .as_deref()
            .and_then(AdminRole::parse)
            .unwrap_or(AdminRole::Readonly),
        active: text(4).as_deref() == Some("active"),
        listed: text(5).as_deref() != Some("all"),
        created_at: row.get(6).and_then(SqlValue::as_i64).unwrap_or(0),
        revoked_at: row.get(7).and_then(SqlValue::as_i64),
    }
}

pub(crate) fn admin_tenants(db: &dyn Sql, admin_id: &str) -> Result<Vec<String>, StorageError> {
    Ok(db
        .query(
            "SELECT tenant_id FROM platform_admin_tenant_permissions WHERE admin_id = ? \
             ORDER BY tenant_id",
            &[admin_id.into()],
        )?
        .iter()
        .filter_map(|r| r.first().and_then(SqlValue::as_str).map(str::to_owned))
        .collect())
}

/// The admin whose key has hash `hash`: `None` when no admin has it, `Some(None)` when its
/// admin is revoked or suspended, else the caller it acts as.
pub fn find_admin_by_key(
    db: &dyn Sql,
    hash: &str,
) -> Result<Option<Option<AdminCaller>>, ApiError> {
    let rows = db.query(
        &format!("SELECT {ADMIN_COLUMNS}, key_hash FROM platform_admins WHERE key_hash = ?"),
        &[hash.into()],
    )?;
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    let stored = row.get(8).and_then(SqlValue::as_str).unwrap_or("");
    if !KeyHasher::same(stored, hash) {
        return Ok(None);
    }
    let admin = admin_from_row(row);
    if !admin.active || admin.revoked_at.is_some() {
        return Ok(Some(None));
    }
    let tenants = if admin.listed {
        Some(admin_tenants(db, &admin.id)?)
    } else {
        None
    };
    Ok(Some(Some(AdminCaller {
        id: Some(admin.id),
        role: admin.role,
        tenants,
    })))
}
