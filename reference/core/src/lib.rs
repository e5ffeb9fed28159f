//! Platform-free core of the auth-service reference implementation.
//!
//! It holds the domain rules (tenants, API keys, scopes, tenant routing) and the HTTP handling
//! of the contract in `docs/contract.md`: a [`Request`] goes in, a [`Response`] comes out. All
//! IO goes through the [`ports`]: storage, clock and randomness are handed in by the host, so
//! the same code runs in the native host (`auth-service`) and, compiled for
//! `wasm32-unknown-unknown`, in the Cloudflare Worker.
//!
//! Layout:
//! - [`ports`]: the traits a host implements;
//! - [`keys`]: the key format, its checksum and the keyed hash kept at rest;
//! - [`model`]: records, plans, statuses, permissions;
//! - [`store`]: SQL over the storage port, and [`store::TenantScope`], the one way to reach
//!   tenant-owned rows;
//! - [`auth`]: who is calling and for which tenant;
//! - [`handlers`]: one module per route group;
//! - [`http`]: bodies, field errors, problem documents;
//! - [`users`]: end-user auth (`/v1/auth/*`): users, sessions, JWTs, email tokens, the outbox.

pub mod auth;
pub mod edge;
pub mod graph;
pub mod handlers;
pub mod http;
pub mod keys;
pub mod limits;
pub mod metrics;
pub mod migrations;
pub mod model;
pub mod objects;
pub mod ports;
pub mod ratelimit;
pub mod store;
pub mod tenant_state;
pub mod test_controls;
pub mod users;

use ::http::{header, HeaderValue, Method};

use crate::auth::Authenticator;
use crate::handlers::{admin, meta, platform};
pub use crate::http::{ApiError, Request, Response};
use crate::keys::KeyHasher;
pub use crate::ports::Ports;
pub use crate::tenant_state::{Notice, TenantOutcome, TenantState};

/// Version of this implementation, reported by `/health` and the capabilities document.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Settings a host passes in once.
#[derive(Debug, Clone)]
pub struct Config {
    /// The platform admin key. Only its keyed hash is kept.
    pub admin_key: String,
    /// Server-side secret of the key hash; never stored next to the hashes.
    pub pepper: Vec<u8>,
    /// Base domain for subdomain routing (`<slug>.<base>`).
    pub base_domain: Option<String>,
    /// Whether test controls are on (`--test-hooks`).
    pub test_hooks: bool,
}

/// The id of the request being handled, carried in the request's extensions from the front
/// to the objects, so audit records name the request that caused them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// What the host should log about a handled request. Never holds a secret.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub request_id: String,
    pub status: u16,
    /// Set when the request failed inside the service (a storage error).
    pub internal_error: bool,
}

/// What the stateless front decided about a request.
#[derive(Debug)]
pub enum Front {
    /// The answer. `notices` are changes the admin API made to tenants: the host passes each
    /// to that tenant's `TenantState` object ([`tenant_state::TenantState::notice`]) before
    /// it sends the answer, so the object's cache is never stale once the client hears back.
    Respond {
        response: Response,
        notices: Vec<(String, Notice)>,
    },
    /// A tenant route: run the request in the `TenantState` object named `tenant_id`, with
    /// the hash of the key it carries.
    Tenant {
        tenant_id: String,
        key_hash: String,
        request: Request,
    },
    /// An admin metrics route, authorised: the host flushes the usage counts every tenant
    /// object holds ([`TenantState::flush_metrics`], for each object with an alarm set), then
    /// passes `request` to [`Service::front`] again; it carries [`MetricsFlushed`] now, so the
    /// second pass answers.
    FlushMetrics { request: Request },
}

/// Marks a request whose usage counts the host has flushed (see [`Front::FlushMetrics`]).
#[derive(Debug, Clone, Copy)]
pub struct MetricsFlushed;

/// The service: configuration plus the request entry points.
pub struct Service {
    config: Config,
    authenticator: Authenticator,
    jwt: Option<users::jwt::JwtSecrets>,
    passwords: std::sync::Arc<dyn users::password::PasswordWork>,
    limits: limits::Limits,
}

/// Every route the service answers, as `(method, OpenAPI path template)`. HEAD is answered
/// wherever GET is and is not listed.
///
/// Keep this in step with the `match` in `Service::route`, with [`tenant_state`] and with
/// `openapi.json`: the unit tests and the host's integration tests check them against each
/// other.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/health"),
    ("GET", "/openapi.json"),
    ("GET", "/.well-known/authconf"),
    ("GET", "/admin/tenants"),
    ("POST", "/admin/tenants"),
    ("GET", "/admin/tenants/{id}"),
    ("PUT", "/admin/tenants/{id}"),
    ("PATCH", "/admin/tenants/{id}"),
    ("DELETE", "/admin/tenants/{id}"),
    ("GET", "/admin/tenants/{id}/keys"),
    ("POST", "/admin/tenants/{id}/keys"),
    ("GET", "/admin/tenants/{id}/metrics"),
    ("GET", "/admin/dashboard"),
    ("GET", "/admin/metrics"),
    ("GET", "/admin/api-keys"),
    ("GET", "/admin/admins"),
    ("POST", "/admin/admins"),
    ("DELETE", "/admin/admins/{id}"),
    ("GET", "/admin/jwt"),
    ("POST", "/admin/jwt/rotate"),
    ("POST", "/admin/jwt/retire-previous"),
    ("GET", "/v1/tenant"),
    ("GET", "/v1/rate-limit"),
    ("GET", "/v1/api-keys"),
    ("POST", "/v1/api-keys"),
    ("GET", "/v1/api-keys/{id}"),
    ("DELETE", "/v1/api-keys/{id}"),
    ("POST", "/v1/api-keys/{id}/rotate"),
    ("GET", "/v1/audit-log"),
    ("GET", "/v1/events"),
    ("PUT", "/v1/graph/csv"),
    ("POST", "/v1/graph/reload"),
    ("GET", "/v1/graph/state"),
    ("POST", "/v1/graph/validate"),
    ("POST", "/v1/graph/check"),
    ("POST", "/v1/graph/mutations"),
    ("GET", "/v1/graph/mutations"),
    ("POST", "/v1/auth/register"),
    ("POST", "/v1/auth/login"),
    ("POST", "/v1/auth/refresh"),
    ("POST", "/v1/auth/logout"),
    ("GET", "/v1/auth/me"),
    ("GET", "/v1/auth/validate"),
    ("POST", "/v1/auth/change-password"),
    ("POST", "/v1/auth/verify-email"),
    ("POST", "/v1/auth/resend-verification"),
    ("POST", "/v1/auth/forgot-password"),
    ("POST", "/v1/auth/reset-password"),
];

const GET: &[Method] = &[Method::GET, Method::HEAD];
const GET_POST: &[Method] = &[Method::GET, Method::HEAD, Method::POST];
const POST: &[Method] = &[Method::POST];

/// The methods a tenant route allows, or `None` for an unknown route.
pub(crate) fn tenant_route_methods(rest: &[&str]) -> Option<(&'static [Method], &'static str)> {
    Some(match rest {
        ["tenant"] | ["rate-limit"] | ["audit-log"] | ["events"] | ["graph", "state"] => {
            (GET, "GET, HEAD")
        }
        ["api-keys"] | ["graph", "mutations"] => (GET_POST, "GET, HEAD, POST"),
        ["api-keys", _] => (
            &[Method::GET, Method::HEAD, Method::DELETE],
            "GET, HEAD, DELETE",
        ),
        ["api-keys", _, "rotate"]
        | ["graph", "reload"]
        | ["graph", "validate"]
        | ["graph", "check"] => (POST, "POST"),
        ["graph", "csv"] => (&[Method::PUT], "PUT"),
        _ => return None,
    })
}

impl Service {
    pub fn new(config: Config) -> Self {
        let hasher = KeyHasher::new(&config.pepper);
        let authenticator = Authenticator {
            admin_key_hash: hasher.hash(&config.admin_key),
            hasher,
            base_domain: config
                .base_domain
                .as_deref()
                .map(|d| d.trim_start_matches('.').to_ascii_lowercase()),
        };
        Self {
            config,
            authenticator,
            jwt: None,
            passwords: std::sync::Arc::new(users::password::Inline),
            limits: limits::Limits::default(),
        }
    }

    /// Sets the limits (keyless end-user auth, WebSockets); the defaults apply otherwise.
    pub fn with_limits(mut self, limits: limits::Limits) -> Self {
        self.limits = limits;
        self
    }

    pub fn limits(&self) -> &limits::Limits {
        &self.limits
    }

    /// Runs password hashing on `work` (the native host's bounded pool) instead of inline.
    pub fn with_password_work(
        mut self,
        work: std::sync::Arc<dyn users::password::PasswordWork>,
    ) -> Self {
        self.passwords = work;
        self
    }

    /// Where password hashing runs.
    pub fn password_work(&self) -> &dyn users::password::PasswordWork {
        &*self.passwords
    }

    /// Turns on end-user auth with these signing secrets (`JWT_SECRET`, `JWT_SECRET_PREVIOUS`).
    /// Without them every `/v1/auth/*` route that would sign or verify a token fails closed:
    /// there is no fallback secret.
    pub fn with_jwt_secrets(mut self, secrets: users::jwt::JwtSecrets) -> Self {
        self.jwt = Some(secrets);
        self
    }

    /// The signing secrets, if end-user auth is on.
    pub fn jwt_secrets(&self) -> Option<&users::jwt::JwtSecrets> {
        self.jwt.as_ref()
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn authenticator(&self) -> &Authenticator {
        &self.authenticator
    }

    /// First stage of every request, stateless: meta and admin routes are answered here;
    /// tenant routes are checked for route, method and key owner, then handed to the tenant's
    /// object. Never panics on any input; every failure is a problem document.
    pub fn front(&self, ports: &Ports, mut req: Request) -> Front {
        let request_id = keys::random_hex(8, ports.entropy);
        req.extensions_mut().insert(RequestId(request_id.clone()));
        let head = req.method() == Method::HEAD;
        match self.route(ports, req, &request_id) {
            Ok(Routed::Respond(response, notices)) => Front::Respond {
                response: finish(response, &request_id, head),
                notices,
            },
            Ok(Routed::Tenant(tenant_id, key_hash, request)) => Front::Tenant {
                tenant_id,
                key_hash,
                request,
            },
            Ok(Routed::Flush(request)) => Front::FlushMetrics { request },
            Err(e) => Front::Respond {
                response: finish(e.into_response(), &request_id, head),
                notices: Vec::new(),
            },
        }
    }

    fn route(&self, ports: &Ports, req: Request, request_id: &str) -> Result<Routed, ApiError> {
        // Every route refuses an oversized body, also those that would ignore a body, so the
        // limit holds whatever a handler reads. CSV uploads have their own, larger limit.
        if req.body().len() > http::MAX_BODY_BYTES && req.uri().path() != "/v1/graph/csv" {
            return Err(ApiError::PayloadTooLarge);
        }
        let segments = http::path_segments(req.uri().path()).ok_or(ApiError::NotFound)?;
        let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
        let query = http::query_pairs(req.uri().query());
        let method = req.method().clone();
        let auth = &self.authenticator;
        let hasher = &auth.hasher;
        let respond = |r: Response| Ok(Routed::Respond(r, Vec::new()));
        match segs.as_slice() {
            ["health"] => {
                http::allow(&method, GET, "GET, HEAD")?;
                respond(meta::health(ports))
            }
            ["openapi.json"] => {
                http::allow(&method, GET, "GET, HEAD")?;
                respond(meta::openapi())
            }
            [".well-known", "authconf"] => {
                http::allow(&method, GET, "GET, HEAD")?;
                respond(meta::capabilities(self))
            }
            ["admin", rest @ ..] => {
                let allowed: (&[Method], &'static str) = match rest {
                    ["tenants"] | ["tenants", _, "keys"] | ["admins"] => {
                        (GET_POST, "GET, HEAD, POST")
                    }
                    ["tenants", _] => (
                        &[
                            Method::GET,
                            Method::HEAD,
                            Method::PUT,
                            Method::PATCH,
                            Method::DELETE,
                        ],
                        "GET, HEAD, PUT, PATCH, DELETE",
                    ),
                    ["tenants", _, "metrics"]
                    | ["dashboard"]
                    | ["metrics"]
                    | ["api-keys"]
                    | ["jwt"] => (GET, "GET, HEAD"),
                    ["admins", _] => (&[Method::DELETE], "DELETE"),
                    ["jwt", "rotate"] | ["jwt", "retire-previous"] => (POST, "POST"),
                    _ => return Err(ApiError::NotFound),
                };
                http::allow(&method, allowed.0, allowed.1)?;
                auth::refuse_keys_in_query(&query)?;
                let caller = auth.platform_admin(ports, &req)?;
                let read = method == Method::GET || method == Method::HEAD;
                if !read {
                    caller.require_write()?;
                }
                // A tenant outside the admin's limit is exactly an unknown tenant.
                if let ["tenants", id, ..] = rest {
                    if !caller.sees(id) {
                        return Err(ApiError::NotFound);
                    }
                }
                if matches!(
                    rest,
                    ["dashboard"] | ["metrics"] | ["tenants", _, "metrics"]
                ) && req.extensions().get::<MetricsFlushed>().is_none()
                {
                    return Ok(Routed::Flush(req));
                }
                let notice =
                    |tenant_id: &str, action: &str, detail: serde_json::Value, end: bool| {
                        (
                            tenant_id.to_owned(),
                            Notice {
                                actor: tenant_state::ADMIN_ACTOR.into(),
                                action: action.into(),
                                target: tenant_id.to_owned(),
                                detail,
                                request_id: request_id.to_owned(),
                                end_sessions: end,
                            },
                        )
                    };
                if let ["jwt", action @ ..] = rest {
                    caller.require_unlimited()?;
                    if !read {
                        caller.require_global_superadmin()?;
                    }
                    return respond(admin::jwt_keyring(ports, self.jwt.as_ref(), action, &req)?);
                }
                match (rest, read) {
                    (["tenants"], true) => {
                        respond(admin::list_tenants(ports, &query, caller.only())?)
                    }
                    (["tenants"], false) => {
                        caller.require_global_superadmin()?;
                        let (resp, tenant) = admin::create_tenant(ports, hasher, &req)?;
                        let n = notice(&tenant.id, "tenant.created", serde_json::json!({}), false);
                        Ok(Routed::Respond(resp, vec![n]))
                    }
                    (["tenants", id], true) => respond(admin::get_tenant(ports, id)?),
                    (["tenants", id], false) if method == Method::DELETE => {
                        let (resp, tenant) = admin::delete_tenant(ports, id)?;
                        let n = notice(&tenant.id, "tenant.deleted", serde_json::json!({}), true);
                        Ok(Routed::Respond(resp, vec![n]))
                    }
                    (["tenants", id], false) => {
                        let (resp, tenant, changes) = admin::update_tenant(ports, id, &req)?;
                        let end = tenant.status != model::TenantStatus::Active;
                        let n = notice(&tenant.id, "tenant.updated", changes, end);
                        Ok(Routed::Respond(resp, vec![n]))
                    }
                    (["tenants", id, "keys"], true) => respond(admin::list_tenant_keys(ports, id)?),
                    (["tenants", id, "keys"], false) => {
                        let (changed, tenant_id) =
                            admin::create_tenant_key(ports, hasher, id, &req)?;
                        let mut n = notice(&tenant_id, changed.action, changed.detail, false);
                        n.1.target = changed.target;
                        Ok(Routed::Respond(changed.response, vec![n]))
                    }
                    (["tenants", id, "metrics"], true) => {
                        respond(platform::tenant_metrics(ports, id, &query)?)
                    }
                    (["dashboard"], true) => respond(platform::dashboard(ports, &caller)?),
                    (["metrics"], true) => respond(platform::all_metrics(ports, &caller, &query)?),
                    (["api-keys"], true) => respond(platform::list_keys(ports, &caller, &query)?),
                    (["admins"], true) => {
                        caller.require_global_superadmin()?;
                        respond(platform::list_admins(ports)?)
                    }
                    (["admins"], false) => {
                        caller.require_root()?;
                        respond(platform::create_admin(ports, hasher, &req)?)
                    }
                    (["admins", id], false) => {
                        caller.require_root()?;
                        respond(platform::revoke_admin(ports, id)?)
                    }
                    _ => Err(ApiError::NotFound),
                }
            }
            ["v1", "auth", leaf] => {
                let route = users::UserRoute::parse(leaf).ok_or(ApiError::NotFound)?;
                let (allowed, allow_header) = route.methods();
                http::allow(&method, allowed, allow_header)?;
                auth::refuse_keys_in_query(&query)?;
                let (tenant_id, key_hash) =
                    auth.user_route_tenant(ports, &req, &query, route.uses_access_token())?;
                let mut req = req;
                req.extensions_mut().insert(users::UserRequest { route });
                Ok(Routed::Tenant(tenant_id, key_hash, req))
            }
            ["v1", rest @ ..] => {
                let (allowed, allow_header) =
                    tenant_route_methods(rest).ok_or(ApiError::NotFound)?;
                http::allow(&method, allowed, allow_header)?;
                auth::refuse_keys_in_query(&query)?;
                let (key_hash, tenant_id) = auth.key_owner(ports, &req)?;
                Ok(Routed::Tenant(tenant_id, key_hash, req))
            }
            _ => Err(ApiError::NotFound),
        }
    }
}

enum Routed {
    Respond(Response, Vec<(String, Notice)>),
    Tenant(String, String, Request),
    Flush(Request),
}

/// Adds the headers every answer carries, and empties HEAD answers.
pub fn finish(mut resp: Response, request_id: &str, head: bool) -> Response {
    if head {
        resp.body_mut().clear();
    }
    let headers = resp.headers_mut();
    headers.insert(
        "x-request-id",
        HeaderValue::from_str(request_id).unwrap_or(HeaderValue::from_static("-")),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    resp
}

/// The request id the front gave a request.
pub fn request_id(req: &Request) -> String {
    req.extensions()
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_default()
}
