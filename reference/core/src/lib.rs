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
//! - [`route`]: the route table, parsed once per request;
//! - [`front`]: the [`Service`] and the first stage of every request;
//! - [`driver`]: the whole sequence of a request over a small [`driver::Host`] trait, the
//!   same for the native host and the Worker;
//! - [`auth`]: who is calling and for which tenant;
//! - [`handlers`]: one module per route group;
//! - [`http`]: bodies, field errors, problem documents;
//! - [`users`]: end-user auth (`/v1/auth/*`): users, sessions, JWTs, email tokens, the outbox.

pub mod auth;
pub mod driver;
pub mod front;
pub mod graph;
pub mod handlers;
pub mod http;
pub mod keys;
pub mod limits;
pub mod metrics;
pub mod migrations;
pub mod model;
pub mod notice;
pub mod objects;
pub mod ports;
pub mod ratelimit;
pub mod route;
pub mod store;
pub mod tenant_state;
pub mod test_controls;
pub mod users;

pub use crate::driver::{drive, Driven, Host};
pub use crate::front::{Begun, Config, Front, FrontStep, Keyed, Outcome, Resume, Service, Stage};
pub use crate::http::{finish, request_id, ApiError, Request, RequestId, Response};
pub use crate::notice::Notice;
pub use crate::ports::Ports;
pub use crate::route::Route;
pub use crate::tenant_state::{TenantCall, TenantContext, TenantOutcome, TenantState};

/// Version of this implementation, reported by `/health` and the capabilities document.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Every route the service answers, as `(method, OpenAPI path template)`, derived from
/// [`route::Endpoint`]. HEAD is answered wherever GET is and is not listed. The unit tests and
/// the host's integration tests check it against the router and `openapi.json`.
pub const ROUTES: &[(&str, &str)] = &route::TABLE;
