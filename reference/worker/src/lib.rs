//! The Cloudflare Worker adapter of the auth-service reference: the same core as the native
//! host (`auth-core`), on workers-rs, built with `worker-build` and run by `workerd`.
//!
//! - [`storage`]: the core's ports on Durable Object storage (SQL, transactions, clock,
//!   randomness).
//! - [`platform`]: the `AuthPlatform` Durable Object: the relational tables and every
//!   tenant's `TenantState` (rate limits, cache, audit, events, end-user auth), and why they
//!   live together on this platform.
//! - [`graph`]: the `GraphStateCSV` Durable Object, one per tenant, with the CSV in R2.
//! - [`convert`]: requests and responses between workers-rs and the core.
//!
//! The Worker itself is stateless: it hands every request to the platform object. Nothing
//! here panics on input: constructors are infallible and configuration errors are answered
//! as 503 problem documents.

pub mod convert;
pub mod graph;
pub mod platform;
pub mod storage;

use worker::{event, Context, Env, Request, Response};

/// Name of the one platform object.
const PLATFORM_OBJECT: &str = "platform";

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> worker::Result<Response> {
    let stub = env
        .durable_object("AUTH_PLATFORM")?
        .id_from_name(PLATFORM_OBJECT)?
        .get_stub()?;
    stub.fetch_with_request(req).await
}
