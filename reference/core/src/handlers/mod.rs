//! Request handlers, one module per route group.

pub mod admin;
pub mod api_keys;
pub mod meta;
pub mod platform;
