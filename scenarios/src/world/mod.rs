//! The cucumber World: one per scenario. It owns the scenario's state (tenants and keys,
//! end users, event streams, the last exchanges) and every step goes through it: requests are
//! sent, checked for leaked secrets and timed by [`AuthWorld::send`], whichever step sent them.
//!
//! Layering: `support` (no World) <- `world` <- `steps`. Inside the World, `state` and
//! `stream` hold the state types, `core` the World that owns them, and each other module
//! adds one kind of behaviour to it (`impl AuthWorld`), importing `core` and `state` only.
//! Step modules depend on this face and on `support`, never on each other.

mod checks;
mod core;
mod events;
mod failure;
mod placeholders;
mod send;
mod state;
mod stream;
mod tenants;
#[cfg(test)]
pub(crate) mod tests;
mod users;

pub use self::core::{with_context, AuthWorld, ContextMissing};
pub use crate::support::http::{Body, Cred, Exchange, Req};
pub(crate) use events::{connect, read_until};
pub(crate) use failure::{blocked_if_route_missing, judge_status, judge_use, status_mismatch};
pub use state::{Account, KeyRef, TenantRef, Users};
pub use stream::Stream;
pub(crate) use users::parts_or_fail;
