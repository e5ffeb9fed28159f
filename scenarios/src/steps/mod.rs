//! Step definitions, one module per domain (grouped as the feature files are). Every step
//! speaks HTTP to the target through the World ([`crate::AuthWorld::send`]), so every
//! response is checked for leaked secrets whichever step sent it. A step module depends on
//! the World and on `support` only, never on another step module.
//!
//! Credential references in steps: `admin`, `none`, `A` (tenant A's secret key), `A:public`,
//! `A:<name>` (a key the scenario created), or a literal built by a "credential" step.

mod admins;
mod audit;
mod credentials;
mod events;
mod fields;
mod graph;
mod jwt_rotation;
mod key_use;
mod keys;
mod mail;
mod onboarding;
mod probes;
mod rate_limit;
mod requests;
mod responses;
mod rotation;
mod tenants;
mod timing;
mod tokens;
mod users;
