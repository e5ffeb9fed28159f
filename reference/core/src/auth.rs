//! Who is calling: the platform admin, or a tenant through one of its keys, and which tenant
//! every routing source names.

pub mod admins;

use http::header;

pub use admins::{AdminCaller, AdminRole};

use crate::http::{header_str, ApiError, Request};
use crate::keys::{self, Environment, KeyHasher, KeyType};
use crate::model::{permissions_cover, KeyRecord, TenantRecord, TenantStatus};
use crate::ports::Ports;
use crate::store::{self, TenantScope};

/// Query parameters that would carry a key. Keys in URLs end up in logs, proxies and browser
/// history, so a request that tries is refused outright rather than silently ignored.
const KEY_QUERY_PARAMS: &[&str] = &[
    "api_key",
    "apikey",
    "apiKey",
    "key",
    "access_token",
    "token",
];

/// A request authenticated with one of a tenant's keys.
#[derive(Debug, Clone)]
pub struct TenantCaller {
    pub scope: TenantScope,
    pub tenant: TenantRecord,
    pub key: KeyRecord,
}

impl TenantCaller {
    /// Refuses publishable keys, and restricted keys whose permissions do not cover `needs`.
    pub fn require(&self, needs: &str) -> Result<(), ApiError> {
        match self.key.key_type {
            KeyType::Secret => Ok(()),
            KeyType::Publishable => Err(ApiError::Forbidden(
                "Publishable keys reach public endpoints only.",
            )),
            KeyType::Restricted if permissions_cover(&self.key.permissions, needs) => Ok(()),
            KeyType::Restricted => Err(ApiError::Forbidden(
                "This restricted key lacks the permission this endpoint needs.",
            )),
        }
    }

    /// Test keys see test keys only; live keys see both.
    pub fn visible_environment(&self) -> Option<Environment> {
        match self.key.environment {
            Environment::Test => Some(Environment::Test),
            Environment::Live => None,
        }
    }
}

/// Static authentication settings.
#[derive(Debug, Clone)]
pub struct Authenticator {
    pub hasher: KeyHasher,
    /// Keyed hash of the platform admin key.
    pub admin_key_hash: String,
    /// Base domain for `<slug>.<base>` routing, lowercase, without a leading dot.
    pub base_domain: Option<String>,
}

/// The bearer token of a request, if the Authorization header has the `Bearer` scheme.
fn bearer(req: &Request) -> Option<&str> {
    let value = header_str(req, header::AUTHORIZATION.as_str())?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

pub fn refuse_keys_in_query(query: &[(String, String)]) -> Result<(), ApiError> {
    if query
        .iter()
        .any(|(k, _)| KEY_QUERY_PARAMS.iter().any(|p| p.eq_ignore_ascii_case(k)))
    {
        return Err(ApiError::CredentialsInQuery);
    }
    Ok(())
}

/// A tenant named by a routing source, in either `tenant:<slug>` or bare-slug form.
fn normalise_tenant_ref(value: &str) -> String {
    let v = value.trim();
    if v.starts_with("tenant:") {
        v.to_owned()
    } else {
        TenantRecord::id_for_slug(v)
    }
}

impl Authenticator {
    fn is_admin_token(&self, token: &str) -> bool {
        KeyHasher::same(&self.hasher.hash(token), &self.admin_key_hash)
    }

    /// The usable key and tenant behind `token`, or `None` for any kind of bad key. Callers map
    /// `None` to the one identical 401, so no answer tells a revoked key from an unknown one.
    fn lookup_key(
        &self,
        ports: &Ports,
        token: &str,
    ) -> Result<Option<(KeyRecord, TenantRecord)>, ApiError> {
        if keys::parse(token).is_none() {
            return Ok(None);
        }
        let hash = self.hasher.hash(token);
        let Some(key) = store::find_key_by_hash(ports.db, &hash)? else {
            return Ok(None);
        };
        if !KeyHasher::same(&key.key_hash, &hash) || !key.usable_at(ports.clock.now_ms()) {
            return Ok(None);
        }
        let Some(tenant) = store::find_tenant(ports.db, &key.tenant_id)? else {
            return Ok(None);
        };
        if tenant.status == TenantStatus::Deleted {
            return Ok(None);
        }
        Ok(Some((key, tenant)))
    }

    /// Admin routes: the platform admin key passes; a tenant's key is 403; anything else 401.
    pub fn admin(&self, ports: &Ports, req: &Request) -> Result<(), ApiError> {
        let token = bearer(req).ok_or(ApiError::Unauthorized)?;
        if self.is_admin_token(token) {
            return Ok(());
        }
        match self.lookup_key(ports, token)? {
            Some(_) => Err(ApiError::Forbidden(
                "Tenant keys cannot use the platform admin API.",
            )),
            None => Err(ApiError::Unauthorized),
        }
    }

    /// Admin routes with platform admins: the root key (`PLATFORM_ADMIN_KEY`) is the unlimited
    /// superadmin; an active admin key from `platform_admins` is that admin, with its role and
    /// tenant limit; a revoked admin key or anything unknown is 401; a tenant's key is 403.
    pub fn platform_admin(&self, ports: &Ports, req: &Request) -> Result<AdminCaller, ApiError> {
        let token = bearer(req).ok_or(ApiError::Unauthorized)?;
        if self.is_admin_token(token) {
            return Ok(AdminCaller::root());
        }
        if token.starts_with("sk_live_") && token.len() <= 200 {
            let hash = self.hasher.hash(token);
            if let Some(found) = admins::find_admin_by_key(ports.db, &hash)? {
                return match found {
                    Some(caller) => Ok(caller),
                    None => Err(ApiError::Unauthorized),
                };
            }
        }
        match self.lookup_key(ports, token)? {
            Some(_) => Err(ApiError::Forbidden(
                "Tenant keys cannot use the platform admin API.",
            )),
            None => Err(ApiError::Unauthorized),
        }
    }

    /// Whether the request carries a bearer token at all.
    pub fn has_bearer(&self, req: &Request) -> bool {
        bearer(req).is_some()
    }

    /// First step of a tenant route, outside any object and without storage: the keyed hash
    /// of the well-formed tenant key the request carries. Which tenant owns it comes from the
    /// host's index; whether the key is still usable is decided by that tenant's object,
    /// which holds the authoritative state.
    pub fn tenant_key_hash(&self, req: &Request) -> Result<String, ApiError> {
        let token = bearer(req).ok_or(ApiError::Unauthorized)?;
        if self.is_admin_token(token) {
            return Err(ApiError::Forbidden(
                "The platform admin key does not act as a tenant.",
            ));
        }
        if keys::parse(token).is_none() {
            return Err(ApiError::Unauthorized);
        }
        Ok(self.hasher.hash(token))
    }

    /// First step of an end-user auth route (`/v1/auth/*`), outside any object: which tenant's
    /// object runs it. Answers the tenant id and the hash of the tenant key the request
    /// carries (empty when it carries none).
    ///
    /// - `access_token` routes: the bearer is a user's access token; its `tenantId` (checked in
    ///   full by the object) names the tenant, which must exist, and every other routing source
    ///   must agree. Any failure is the uniform user 401.
    /// - other routes: a key of the tenant in `Authorization`, or else the routing sources
    ///   (`X-Tenant-ID`, subdomain, `?tenant_id=`), which must agree and name an existing
    ///   tenant. An unknown or deleted tenant is 401; it is never created.
    pub fn user_route_tenant(
        &self,
        ports: &Ports,
        req: &Request,
        query: &[(String, String)],
        access_token: bool,
    ) -> Result<(String, String), ApiError> {
        let token = bearer(req);
        if token.is_some_and(|t| self.is_admin_token(t)) {
            return Err(ApiError::Forbidden(
                "The platform admin key does not act as a tenant.",
            ));
        }
        if access_token {
            let token = token.ok_or(ApiError::UserUnauthorized)?;
            let tenant_id =
                crate::users::jwt::unverified_tenant(token).ok_or(ApiError::UserUnauthorized)?;
            let tenant = store::find_tenant(ports.db, &tenant_id)?
                .filter(|t| t.status != TenantStatus::Deleted)
                .ok_or(ApiError::UserUnauthorized)?;
            if self
                .other_routing_sources(req, query)
                .iter()
                .any(|named| *named != tenant.id)
            {
                return Err(ApiError::UserUnauthorized);
            }
            return Ok((tenant.id, String::new()));
        }
        if let Some(token) = token {
            if keys::parse(token).is_none() {
                return Err(ApiError::Unauthorized);
            }
            let hash = self.hasher.hash(token);
            let key = store::find_key_by_hash(ports.db, &hash)?.ok_or(ApiError::Unauthorized)?;
            return Ok((key.tenant_id, hash));
        }
        let named = self.other_routing_sources(req, query);
        let first = named.first().ok_or(ApiError::Unauthorized)?;
        if named.iter().any(|n| n != first) {
            return Err(ApiError::TenantMismatch);
        }
        let tenant = store::find_tenant(ports.db, first)?
            .filter(|t| t.status != TenantStatus::Deleted)
            .ok_or(ApiError::Unauthorized)?;
        Ok((tenant.id, String::new()))
    }

    /// Second step, inside the tenant's object: the key and tenant records (from its cache)
    /// must be usable now, and every other routing source must name the same tenant.
    pub fn admit(
        &self,
        req: &Request,
        query: &[(String, String)],
        key: &KeyRecord,
        tenant: &TenantRecord,
        now_ms: i64,
    ) -> Result<TenantCaller, ApiError> {
        if !key.usable_at(now_ms) || tenant.status == TenantStatus::Deleted {
            return Err(ApiError::Unauthorized);
        }
        for named in self.other_routing_sources(req, query) {
            if named != tenant.id {
                return Err(ApiError::TenantMismatch);
            }
        }
        if tenant.status == TenantStatus::Suspended {
            return Err(ApiError::TenantSuspended);
        }
        Ok(TenantCaller {
            scope: TenantScope::new(&tenant.id),
            tenant: tenant.clone(),
            key: key.clone(),
        })
    }

    /// Tenant ids named by the header, the subdomain and the query, in that order.
    pub fn other_routing_sources(&self, req: &Request, query: &[(String, String)]) -> Vec<String> {
        let mut named = Vec::new();
        // Every value of the header, and every item of a folded value (`a, b`), is a source
        // of its own: reading only the first would let a second, different one pass unseen.
        for value in req.headers().get_all("x-tenant-id") {
            match value.to_str() {
                Ok(text) => named.extend(text.split(',').map(normalise_tenant_ref)),
                // Present but not text: it names no tenant we could match.
                Err(_) => named.push(String::new()),
            }
        }
        if let Some(slug) = self.subdomain_slug(req) {
            named.push(TenantRecord::id_for_slug(&slug));
        }
        for (k, v) in query {
            if k == "tenant_id" {
                named.push(normalise_tenant_ref(v));
            }
        }
        named
    }

    /// The slug in `Host: <slug>.<base domain>[:port]`, if the service has a base domain.
    fn subdomain_slug(&self, req: &Request) -> Option<String> {
        let base = self.base_domain.as_deref()?;
        let host = header_str(req, header::HOST.as_str())
            .map(str::to_owned)
            .or_else(|| req.uri().host().map(str::to_owned))?;
        let host = host.to_ascii_lowercase();
        let host = host.split(':').next().unwrap_or("");
        let label = host.strip_suffix(base)?.strip_suffix('.')?;
        (!label.is_empty()).then(|| label.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authenticator() -> Authenticator {
        Authenticator {
            hasher: KeyHasher::new(b"pepper"),
            admin_key_hash: String::new(),
            base_domain: None,
        }
    }

    fn request(tenant_headers: &[&str]) -> Request {
        let mut b = http::Request::builder().uri("/v1/tenant");
        for h in tenant_headers {
            b = b.header("x-tenant-id", *h);
        }
        b.body(Vec::new()).expect("request")
    }

    #[test]
    fn every_value_of_a_repeated_tenant_header_is_a_routing_source() {
        let named = authenticator().other_routing_sources(&request(&["tenant:a", "tenant:b"]), &[]);
        assert_eq!(named, vec!["tenant:a".to_owned(), "tenant:b".to_owned()]);
    }

    #[test]
    fn a_folded_tenant_header_names_each_of_its_tenants() {
        let named = authenticator().other_routing_sources(&request(&["tenant:a, b"]), &[]);
        assert_eq!(named, vec!["tenant:a".to_owned(), "tenant:b".to_owned()]);
    }

    #[test]
    fn one_tenant_header_names_one_tenant() {
        let named = authenticator().other_routing_sources(&request(&["a"]), &[]);
        assert_eq!(named, vec!["tenant:a".to_owned()]);
    }
}
