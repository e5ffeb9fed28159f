//! The one test support of the host's integration tests (`tests/*.rs`): a service on an
//! ephemeral port of 127.0.0.1 with a data dir of its own ([`Setup`], [`Service`]), requests
//! whose every answer is checked against the rules all responses follow ([`Resp`]), the
//! tenant, key and test-control calls the tests share, a WebSocket client ([`Ws`]), the
//! OpenAPI schema checker ([`conforms`]), independent checks of the contract's formats, and
//! the end-user service, token forging and mail capture of the `/v1/auth/*` tests ([`users`]).
//!
//! Each test file is its own crate and uses part of this module, hence unused items and
//! re-exports are allowed.

#![allow(dead_code, unused_imports)]

mod api;
mod controls;
mod formats;
mod http;
mod openapi;
mod service;
pub mod users;
mod ws;

pub use api::{
    actions, assert_gapless, key_body, record_fields, restricted_body, route_key, Tenant,
};
pub use formats::*;
pub use http::Resp;
pub use openapi::{assert_conforms, conforms};
pub use service::{client, Service, Setup, ADMIN_KEY, BASE_DOMAIN};
pub use ws::{Frame, Ws, CLOSE_CREDENTIAL_ENDED};
