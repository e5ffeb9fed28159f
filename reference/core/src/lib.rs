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
//! - [`http`]: bodies, field errors, problem documents.

pub mod auth;
pub mod handlers;
pub mod http;
pub mod keys;
pub mod migrations;
pub mod model;
pub mod ports;
pub mod store;

use ::http::{header, HeaderValue, Method};

use crate::auth::Authenticator;
use crate::handlers::{admin, api_keys, meta};
pub use crate::http::{ApiError, Request, Response};
use crate::keys::KeyHasher;
pub use crate::ports::Ports;

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

/// What the host should log about a handled request. Never holds a secret.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub request_id: String,
    pub status: u16,
    /// Set when the request failed inside the service (a storage error).
    pub internal_error: bool,
}

/// The service: configuration plus the request entry point.
pub struct Service {
    config: Config,
    authenticator: Authenticator,
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
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Handles one request. Never panics on any input; every failure is a problem document.
    pub fn handle(&self, ports: &Ports, req: Request) -> (Response, Outcome) {
        let request_id = keys::random_hex(8, ports.entropy);
        let result = self.route(ports, &req);
        let internal_error = matches!(result, Err(ApiError::Internal));
        let mut resp = result.unwrap_or_else(ApiError::into_response);
        resp.headers_mut().insert(
            "x-request-id",
            HeaderValue::from_str(&request_id).expect("hex is a valid header"),
        );
        let outcome = Outcome {
            request_id,
            status: resp.status().as_u16(),
            internal_error,
        };
        (resp, outcome)
    }

    fn route(&self, ports: &Ports, req: &Request) -> http::ApiResult {
        let segments = http::path_segments(req.uri().path()).ok_or(ApiError::NotFound)?;
        let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
        let query = http::query_pairs(req.uri().query());
        let method = req.method();
        let auth = &self.authenticator;
        let hasher = &auth.hasher;
        const GET: &[Method] = &[Method::GET, Method::HEAD];
        match segs.as_slice() {
            ["health"] => {
                http::allow(method, GET, "GET, HEAD")?;
                Ok(meta::health(ports))
            }
            ["openapi.json"] => {
                http::allow(method, GET, "GET, HEAD")?;
                Ok(meta::openapi())
            }
            [".well-known", "authconf"] => {
                http::allow(method, GET, "GET, HEAD")?;
                Ok(meta::capabilities(self))
            }
            ["admin", rest @ ..] => {
                let allowed: (&[Method], &'static str) = match rest {
                    ["tenants"] => (&[Method::GET, Method::HEAD, Method::POST], "GET, HEAD, POST"),
                    ["tenants", _] => (
                        &[Method::GET, Method::HEAD, Method::PUT, Method::PATCH, Method::DELETE],
                        "GET, HEAD, PUT, PATCH, DELETE",
                    ),
                    ["tenants", _, "keys"] => (&[Method::GET, Method::HEAD, Method::POST], "GET, HEAD, POST"),
                    _ => return Err(ApiError::NotFound),
                };
                http::allow(method, allowed.0, allowed.1)?;
                auth::refuse_keys_in_query(&query)?;
                auth.admin(ports, req)?;
                let read = method == Method::GET || method == Method::HEAD;
                match (rest, read) {
                    (["tenants"], true) => admin::list_tenants(ports, &query),
                    (["tenants"], false) => admin::create_tenant(ports, hasher, req),
                    (["tenants", id], true) => admin::get_tenant(ports, id),
                    (["tenants", id], false) if method == Method::DELETE => {
                        admin::delete_tenant(ports, id)
                    }
                    (["tenants", id], false) => admin::update_tenant(ports, id, req),
                    (["tenants", id, "keys"], true) => admin::list_tenant_keys(ports, id),
                    (["tenants", id, "keys"], false) => {
                        admin::create_tenant_key(ports, hasher, id, req)
                    }
                    _ => Err(ApiError::NotFound),
                }
            }
            ["v1", rest @ ..] => {
                let allowed: (&[Method], &'static str) = match rest {
                    ["tenant"] => (GET, "GET, HEAD"),
                    ["api-keys"] => (&[Method::GET, Method::HEAD, Method::POST], "GET, HEAD, POST"),
                    ["api-keys", _] => (&[Method::GET, Method::HEAD, Method::DELETE], "GET, HEAD, DELETE"),
                    ["api-keys", _, "rotate"] => (&[Method::POST], "POST"),
                    _ => return Err(ApiError::NotFound),
                };
                http::allow(method, allowed.0, allowed.1)?;
                auth::refuse_keys_in_query(&query)?;
                let caller = auth.tenant(ports, req, &query)?;
                let read = method == Method::GET || method == Method::HEAD;
                match (rest, read) {
                    (["tenant"], _) => Ok(http::json(
                        ::http::StatusCode::OK,
                        &auth_contract::PublicTenantEnvelope {
                            tenant: caller.tenant.to_public_wire(),
                        },
                    )),
                    (["api-keys"], true) => {
                        caller.require("read:api_keys")?;
                        api_keys::list(ports, &caller.scope, caller.visible_environment())
                    }
                    (["api-keys"], false) => {
                        caller.require("write:api_keys")?;
                        let spec = api_keys::parse_spec(req)?;
                        api_keys::check_power(&caller, &spec)?;
                        api_keys::create(ports, hasher, &caller.scope, &spec)
                    }
                    (["api-keys", id], true) => api_keys::get(ports, &caller, id),
                    (["api-keys", id], false) => api_keys::revoke(ports, &caller, id),
                    (["api-keys", id, "rotate"], _) => {
                        api_keys::rotate(ports, hasher, &caller, id, req)
                    }
                    _ => Err(ApiError::NotFound),
                }
            }
            _ => Err(ApiError::NotFound),
        }
        .map(|mut resp| {
            if method == Method::HEAD {
                resp.body_mut().clear();
            }
            resp.headers_mut()
                .entry(header::CACHE_CONTROL)
                .or_insert(HeaderValue::from_static("no-store"));
            resp
        })
    }
}
