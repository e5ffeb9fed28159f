//! The Cloudflare Worker adapter of the auth-service reference: the same core as the native
//! host (`auth-core`), on workers-rs, built with `worker-build` and run by `workerd`.
//!
//! - [`platform`]: the `AuthPlatform` Durable Object, the directory: the core's front and
//!   admin API over tenants, platform admins, the JWT keyring, usage metrics and a mirror of
//!   every tenant's keys.
//! - [`tenant`]: the `TenantState` Durable Object, one per tenant: the core's `TenantState`
//!   (rate limits, audit, events, tenant routes, end-user auth) over the tenant's own rows.
//! - [`graph`]: the `GraphStateCSV` Durable Object, one per tenant (the CSV in R2 is the Worker's).
//! - [`internal`] and [`rows`]: what the directory and the tenants' objects say to each other
//!   and how rows cross between them; [`tables`]: the one list of tables (owner, D1 copy,
//!   shipping, columns) and a named struct per table for its row images.
//! - [`mirror`]: every relational row the objects write, copied to D1 (`DB`) through a
//!   transactional outbox.
//! - [`storage`]: the core's ports on Durable Object storage (SQL, transactions, migrations,
//!   clock, randomness); [`config`]: the settings; [`convert`]: requests and responses.
//! - [`edge`]: the stateless Worker: a keyed tenant request goes from the key index (KV)
//!   straight to the tenant's object; everything else, and an index miss, to the directory.
//!
//! Nothing here panics on input: constructors are infallible and configuration errors are answered as
//! 503 problem documents.

pub mod config;
pub mod convert;
pub mod edge;
pub mod graph;
pub mod internal;
pub mod mirror;
pub mod platform;
pub mod rows;
pub mod storage;
pub mod tables;
pub mod tenant;

use worker::{event, Context, Env, Request, Response};

/// Name of the one directory object.
pub const PLATFORM_OBJECT: &str = "platform";

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> worker::Result<Response> {
    // The objects' own protocol is never reachable from outside.
    if internal::reserved(&req.path()) {
        return convert::to_worker(auth_core::finish(
            auth_core::ApiError::NotFound.into_response(),
            "-",
            false,
        ));
    }
    edge::serve(req, &env).await
}
