//! The native host's shared state: what every request's host ([`crate::adapter::Native`]) and
//! the HTTP server ([`crate::server`]) read.

use std::sync::Arc;

use auth_core::graph::GraphState;
use auth_core::TenantState;

use crate::blobs::BlobStore;
use crate::key_index::KeyIndex;
use crate::objects::Runtime;
use crate::settings::Limits;
use crate::{Database, HostClock};

/// Keyless end-user auth requests per client address.
pub type AddressLimiter = governor::DefaultKeyedRateLimiter<std::net::IpAddr>;

pub struct AppState {
    pub service: auth_core::Service,
    pub db: Arc<Database>,
    pub clock: Arc<HostClock>,
    pub tenants: Arc<Runtime<TenantState>>,
    pub graphs: Arc<Runtime<GraphState>>,
    pub blobs: BlobStore,
    pub limits: Limits,
    pub keyless_by_address: AddressLimiter,
    /// Which tenant owns a key, by hash: the hot path's front reads no shared database.
    pub key_index: KeyIndex,
}
