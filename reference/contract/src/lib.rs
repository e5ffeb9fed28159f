//! Wire types of the auth-service contract (`docs/contract.md`).
//!
//! These are the JSON shapes the reference implementation sends: every response body, every
//! WebSocket frame, the audit records and their details, the mail it posts. They live in their
//! own crate so that the core, the native host and the Worker adapter serialise the same
//! structs, and so that a change to the wire format shows up as a change here. The modules
//! follow the contract's domains; everything is re-exported at the crate root.
//!
//! With the `schema` feature every type also derives `schemars::JsonSchema`; auth-core's
//! `tests/openapi_types.rs` compares those schemas with `openapi.json`, both ways.
//!
//! The conformance steps (`scenarios/`) deliberately do **not** depend on this crate: they read
//! responses as untyped JSON, so they hold for any deployment, including ones whose shapes
//! differ from ours.

/// The schema generator the `schema` feature derives with, for the test that reads it.
#[cfg(feature = "schema")]
pub use schemars;

pub mod admin;
pub mod audit;
pub mod errors;
pub mod events;
pub mod graph;
pub mod keys;
pub mod mail;
pub mod meta;
pub mod tenants;
pub mod testing;
pub mod users;

pub use admin::*;
pub use audit::*;
pub use errors::*;
pub use events::*;
pub use graph::*;
pub use keys::*;
pub use mail::*;
pub use meta::*;
pub use tenants::*;
pub use users::*;
