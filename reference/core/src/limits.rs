//! Limits of the core a host may set (the native host takes them from its command line).
//! Each has a safe default; none can be switched off.

/// Per-tenant limits on work a caller can cause without a tenant key, and on WebSockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// End-user auth requests without a tenant key (routed by `X-Tenant-ID`, subdomain or
    /// `?tenant_id=`) count in a window of their own, so they cannot use up the quota of the
    /// tenant's keys. The window is the tenant's, its size the tenant's quota capped at this.
    pub keyless_auth_requests: u32,
    /// Open WebSockets per tenant.
    pub sockets_per_tenant: usize,
    /// Open WebSockets per API key.
    pub sockets_per_key: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            keyless_auth_requests: 60,
            sockets_per_tenant: 64,
            sockets_per_key: 8,
        }
    }
}
