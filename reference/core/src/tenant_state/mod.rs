//! `TenantState`: the Durable Object each tenant has.
//!
//! Every request made with a tenant's key runs here, one at a time, which is what makes the
//! object the tenant's single point of truth:
//! - it holds the hot records (the tenant, its keys by hash) in memory, and drops them on every
//!   write that changes them, so a revoked, rotated-out or deleted key, or a suspended tenant,
//!   is refused on the very next request;
//! - it runs the rate limiter ([`crate::ratelimit`]) with no interleaving, so the limit is exact;
//! - it appends the audit log (ordered by a sequence number) and pushes each record to the
//!   tenant's WebSockets as it is written;
//! - it counts every request it answers, per endpoint and hour, in its own storage
//!   ([`crate::metrics`]), and its alarm moves the counts to `usage_metrics` every few seconds;
//! - its alarm ends rotated keys' grace periods on time. One alarm serves both: it is always
//!   set to the earliest of the next grace end and the next metrics flush.
//!
//! The object's jobs each have a module: [`api`] runs the tenant-key routes, [`end_user`] the
//! end-user auth routes, [`quota`] counts requests and frames against the tenant's quota and
//! usage metrics, [`audit`] writes, pushes and pages the audit log. This file holds the object
//! itself: its state, its cache of hot records, its alarm and the entry points the hosts call.

mod api;
mod audit;
mod end_user;
mod quota;

use std::collections::HashMap;

use auth_contract::EventFrame;
use http::{HeaderMap, StatusCode};
use serde_json::Value;

use crate::auth::Authenticator;
use crate::http::{ApiError, Request, Response};
use crate::limits::Limits;
use crate::model::{KeyRecord, TenantRecord};
use crate::objects::{DurableObject, ObjectEnv, SocketId};
use crate::ports::{Ports, StorageError};
use crate::ratelimit::FixedWindow;
use crate::route::{GraphOp, TenantRoute};
use crate::store::{self, TenantScope};
use crate::users::jwt::JwtSecrets;
use crate::users::password::PasswordWork;

/// Close code sent to sockets whose credential stopped working (policy violation).
pub const CLOSE_CREDENTIAL_ENDED: u16 = 1008;

pub use crate::notice::{Notice, ADMIN_ACTOR};

/// A tenant route to run in the tenant's `TenantState` object, with the route the front
/// parsed (the object never reads the path again).
#[derive(Debug)]
pub struct TenantCall {
    pub tenant_id: String,
    /// Keyed hash of the tenant key the request carries; empty for end-user routes that name
    /// their tenant otherwise (an access token, `X-Tenant-ID`, the subdomain, the query).
    pub key_hash: String,
    pub route: TenantRoute,
    pub request: Request,
}

/// What the object needs of the service (not the whole [`crate::Service`]).
#[derive(Clone, Copy)]
pub struct TenantContext<'a> {
    pub authenticator: &'a Authenticator,
    pub limits: &'a Limits,
    /// The signing secrets, if end-user auth is on.
    pub jwt: Option<&'a JwtSecrets>,
    pub passwords: &'a dyn PasswordWork,
}

/// What the object decided about a tenant request.
#[derive(Debug)]
pub enum TenantOutcome {
    /// The answer, rate-limit headers included. A 101 means the object accepted a WebSocket
    /// through [`crate::objects::SocketHub::accept`] and the host should complete the upgrade.
    Respond(Response),
    /// The key is good, the request counted and allowed: the host runs `op` in the tenant's
    /// `GraphStateCSV` object, adds `headers`, then reports graph changes with
    /// [`TenantState::record`].
    Graph {
        op: GraphOp,
        actor_key_id: String,
        needs: &'static str,
        headers: HeaderMap,
    },
}

/// A refused tenant request: the error and the headers it still carries (boxed: it is large
/// and rare).
pub(super) type Refusal = Box<(ApiError, HeaderMap)>;

pub struct TenantState {
    tenant_id: String,
    tenant: Option<TenantRecord>,
    keys_by_hash: HashMap<String, KeyRecord>,
    window: FixedWindow,
    /// Keyless end-user auth requests ([`crate::limits::Limits::keyless_auth_requests`]). Kept
    /// in memory only: a flood keeps the object alive, and an evicted object starts afresh.
    keyless_window: FixedWindow,
}

impl DurableObject for TenantState {
    const CLASS: &'static str = "TenantState";

    fn load(env: &ObjectEnv) -> Result<Self, StorageError> {
        let sql = env.storage.sql();
        audit::ensure_table(sql)?;
        crate::metrics::ensure_pending_table(sql)?;
        let window = quota::load_window(sql)?;
        Ok(Self {
            tenant_id: env.name.to_owned(),
            tenant: None,
            keys_by_hash: HashMap::new(),
            window,
            keyless_window: FixedWindow::default(),
        })
    }

    fn alarm(&mut self, env: &ObjectEnv) -> Result<(), StorageError> {
        self.flush_metrics(env)?;
        let scope = TenantScope::new(&self.tenant_id);
        let now = env.clock.now_ms();
        let ended = scope.end_expired_grace_periods(env.db, now)?;
        for key in ended {
            self.forget_key(env, &key);
            self.append(
                env,
                &Notice {
                    actor: "system".into(),
                    action: "api_key.expired".into(),
                    target: key.id.clone(),
                    detail: crate::notice::no_detail(),
                    request_id: String::new(),
                    end_sessions: false,
                },
            )?;
        }
        env.storage.set_alarm(scope.next_grace_end(env.db)?);
        Ok(())
    }

    fn websocket_message(
        &mut self,
        env: &ObjectEnv,
        socket: SocketId,
        _attachment: &str,
        text: &str,
    ) {
        if !self.meter_frame(env, socket) {
            return;
        }
        let error = |text: &str| EventFrame::Error { error: text.into() };
        let reply = match serde_json::from_str::<Value>(text) {
            Ok(v) => match v.get("type").and_then(Value::as_str) {
                Some("ping") => EventFrame::Pong {
                    timestamp: env.clock.now_ms(),
                },
                _ => error("Unknown message type"),
            },
            Err(_) => error("Invalid message format"),
        };
        env.sockets
            .send(socket, &crate::http::sorted(&reply).to_string());
    }
}

pub(super) fn with_headers(mut resp: Response, headers: &HeaderMap) -> Response {
    for (k, v) in headers {
        resp.headers_mut().insert(k, v.clone());
    }
    resp
}

impl TenantState {
    pub(super) fn ports<'a>(env: &'a ObjectEnv<'a>) -> Ports<'a> {
        Ports {
            db: env.db,
            clock: env.clock,
            entropy: env.entropy,
        }
    }

    pub(super) fn tenant(&mut self, env: &ObjectEnv) -> Result<Option<TenantRecord>, ApiError> {
        if self.tenant.is_none() {
            self.tenant = store::find_tenant(env.db, &self.tenant_id)?;
        }
        Ok(self.tenant.clone())
    }

    pub(super) fn key(
        &mut self,
        env: &ObjectEnv,
        hash: &str,
    ) -> Result<Option<KeyRecord>, ApiError> {
        if let Some(k) = self.keys_by_hash.get(hash) {
            return Ok(Some(k.clone()));
        }
        let found = TenantScope::new(&self.tenant_id).find_key_by_hash(env.db, hash)?;
        if let Some(k) = &found {
            self.keys_by_hash.insert(hash.to_owned(), k.clone());
        }
        Ok(found)
    }

    /// Drops a key from the cache and, once it no longer works, closes the sockets it opened.
    pub(super) fn forget_key(&mut self, env: &ObjectEnv, key: &KeyRecord) {
        self.keys_by_hash.remove(&key.key_hash);
        if key.usable_at(env.clock.now_ms()) {
            return; // still in its grace period: its sockets stay until the alarm ends it
        }
        for (socket, attachment) in env.sockets.sockets() {
            if attachment == key.id {
                env.sockets
                    .close(socket, CLOSE_CREDENTIAL_ENDED, "credential ended");
            }
        }
    }

    /// A change made elsewhere: drop the cache, audit it, push it.
    pub fn notice(&mut self, env: &ObjectEnv, n: &Notice) -> Result<(), StorageError> {
        self.tenant = None;
        self.keys_by_hash.clear();
        self.append(env, n)?;
        if n.end_sessions {
            for (socket, _) in env.sockets.sockets() {
                env.sockets
                    .close(socket, CLOSE_CREDENTIAL_ENDED, "tenant unavailable");
            }
        }
        Ok(())
    }

    /// Records a change of the tenant's graph (no cache to drop).
    pub fn record(&mut self, env: &ObjectEnv, n: &Notice) -> Result<(), StorageError> {
        self.append(env, n)
    }

    /// Runs one tenant request (its key's hash is empty for end-user auth routes routed by
    /// `X-Tenant-ID` or an access token), and counts it under its route's endpoint.
    pub fn fetch(
        &mut self,
        env: &ObjectEnv,
        ctx: &TenantContext,
        call: &TenantCall,
    ) -> TenantOutcome {
        let outcome = self.fetch_uncounted(env, ctx, call);
        let limited = matches!(&outcome, TenantOutcome::Respond(r) if r.status() == StatusCode::TOO_MANY_REQUESTS);
        let endpoint = crate::metrics::endpoint_template(call.route.endpoint());
        // Counting must never fail a request: a lost count is the lesser harm.
        let _ = self.count_usage(env, &endpoint, limited);
        outcome
    }

    fn fetch_uncounted(
        &mut self,
        env: &ObjectEnv,
        ctx: &TenantContext,
        call: &TenantCall,
    ) -> TenantOutcome {
        let (req, key_hash) = (&call.request, call.key_hash.as_str());
        let tried = match &call.route {
            TenantRoute::User(route) => self
                .try_fetch_user(env, ctx, req, key_hash, *route)
                .map(TenantOutcome::Respond),
            TenantRoute::Api(route) => self.try_fetch(env, ctx, req, key_hash, route),
        };
        tried.unwrap_or_else(|refusal| {
            let (e, headers) = *refusal;
            TenantOutcome::Respond(with_headers(e.into_response(), &headers))
        })
    }
}
