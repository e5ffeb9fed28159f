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

use std::collections::HashMap;

use auth_contract::PublicTenantEnvelope;
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::{json, Value};

use crate::auth::Authenticator;
use crate::auth::TenantCaller;
use crate::handlers::api_keys::{self, Changed};
use crate::http::{self as h, ApiError, Request, Response};
use crate::keys::KeyType;
use crate::limits::Limits;
use crate::model::{rfc3339, KeyRecord, TenantRecord, TenantStatus};
use crate::objects::{DurableObject, ObjectEnv, SocketId};
use crate::ports::{Ports, SqlValue, StorageError};
use crate::ratelimit::{Decision, FixedWindow, Quota, ALGORITHM};
use crate::route::{ApiRoute, GraphOp, TenantRoute};
use crate::store::{self, TenantScope};
use crate::users::jwt::JwtSecrets;
use crate::users::password::PasswordWork;
use crate::users::{self, UserRoute};

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
type Refusal = Box<(ApiError, HeaderMap)>;

/// One audit record as the API shows it.
fn audit_json(tenant_id: &str, row: &[SqlValue]) -> Value {
    let text = |i: usize| {
        row.get(i)
            .and_then(SqlValue::as_str)
            .unwrap_or("")
            .to_owned()
    };
    json!({
        "seq": row.first().and_then(SqlValue::as_i64).unwrap_or(0),
        "tenantId": tenant_id,
        "createdAt": rfc3339(row.get(1).and_then(SqlValue::as_i64).unwrap_or(0)),
        "action": text(2),
        "actorKeyId": text(3),
        "target": text(4),
        "requestId": text(5),
        "detail": serde_json::from_str::<Value>(&text(6)).unwrap_or(Value::Null),
    })
}

const AUDIT_COLUMNS: &str = "seq, created_at, action, actor_key_id, target, request_id, detail";

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
        sql.execute(
            "CREATE TABLE IF NOT EXISTS audit_log (\
               seq INTEGER PRIMARY KEY AUTOINCREMENT, created_at INTEGER NOT NULL, \
               action TEXT NOT NULL, actor_key_id TEXT NOT NULL, target TEXT NOT NULL, \
               request_id TEXT NOT NULL, detail TEXT NOT NULL)",
            &[],
        )?;
        sql.execute(
            "CREATE TABLE IF NOT EXISTS rate_window (\
               id INTEGER PRIMARY KEY CHECK (id = 1), window_start_ms INTEGER NOT NULL, \
               window_ms INTEGER NOT NULL, count INTEGER NOT NULL)",
            &[],
        )?;
        crate::metrics::ensure_pending_table(sql)?;
        let window = sql
            .query(
                "SELECT window_start_ms, window_ms, count FROM rate_window WHERE id = 1",
                &[],
            )?
            .first()
            .map(|r| FixedWindow {
                window_start_ms: r[0].as_i64().unwrap_or(0),
                window_ms: r[1].as_i64().unwrap_or(0),
                count: r[2].as_i64().unwrap_or(0) as u32,
            })
            .unwrap_or_default();
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
                    detail: json!({}),
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
        let reply = match serde_json::from_str::<Value>(text) {
            Ok(v) => match v.get("type").and_then(Value::as_str) {
                Some("ping") => json!({"type": "pong", "timestamp": env.clock.now_ms()}),
                _ => json!({"type": "error", "error": "Unknown message type"}),
            },
            Err(_) => json!({"type": "error", "error": "Invalid message format"}),
        };
        env.sockets.send(socket, &reply.to_string());
    }
}

fn rate_headers(quota: Quota, d: &Decision) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let num = |n: u64| HeaderValue::from_str(&n.to_string()).expect("digits");
    headers.insert("ratelimit-limit", num(u64::from(d.limit)));
    headers.insert("ratelimit-remaining", num(u64::from(d.remaining)));
    headers.insert("ratelimit-reset", num(d.reset_seconds));
    headers.insert(
        "ratelimit-policy",
        HeaderValue::from_str(&quota.policy()).expect("ascii"),
    );
    if !d.allowed {
        headers.insert(http::header::RETRY_AFTER, num(d.reset_seconds));
    }
    headers
}

fn with_headers(mut resp: Response, headers: &HeaderMap) -> Response {
    for (k, v) in headers {
        resp.headers_mut().insert(k, v.clone());
    }
    resp
}

impl TenantState {
    fn ports<'a>(env: &'a ObjectEnv<'a>) -> Ports<'a> {
        Ports {
            db: env.db,
            clock: env.clock,
            entropy: env.entropy,
        }
    }

    fn tenant(&mut self, env: &ObjectEnv) -> Result<Option<TenantRecord>, ApiError> {
        if self.tenant.is_none() {
            self.tenant = store::find_tenant(env.db, &self.tenant_id)?;
        }
        Ok(self.tenant.clone())
    }

    fn key(&mut self, env: &ObjectEnv, hash: &str) -> Result<Option<KeyRecord>, ApiError> {
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
    fn forget_key(&mut self, env: &ObjectEnv, key: &KeyRecord) {
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

    /// Appends an audit record and pushes it to every socket of this tenant.
    fn append(&mut self, env: &ObjectEnv, n: &Notice) -> Result<(), StorageError> {
        let sql = env.storage.sql();
        sql.execute(
            "INSERT INTO audit_log (created_at, action, actor_key_id, target, request_id, detail) \
             VALUES (?, ?, ?, ?, ?, ?)",
            &[
                env.clock.now_ms().into(),
                n.action.as_str().into(),
                n.actor.as_str().into(),
                n.target.as_str().into(),
                n.request_id.as_str().into(),
                n.detail.to_string().into(),
            ],
        )?;
        let row = sql.query(
            &format!("SELECT {AUDIT_COLUMNS} FROM audit_log ORDER BY seq DESC LIMIT 1"),
            &[],
        )?;
        if let Some(row) = row.first() {
            let event = json!({"type": "event", "record": audit_json(&self.tenant_id, row)});
            let text = event.to_string();
            for (socket, _) in env.sockets.sockets() {
                env.sockets.send(socket, &text);
            }
        }
        Ok(())
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

    fn persist_window(&self, env: &ObjectEnv) -> Result<(), StorageError> {
        env.storage
            .sql()
            .execute(
                "INSERT INTO rate_window (id, window_start_ms, window_ms, count) VALUES (1, ?, ?, ?) \
                 ON CONFLICT (id) DO UPDATE SET window_start_ms = excluded.window_start_ms, \
                 window_ms = excluded.window_ms, count = excluded.count",
                &[
                    self.window.window_start_ms.into(),
                    self.window.window_ms.into(),
                    i64::from(self.window.count).into(),
                ],
            )
            .map(drop)
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

    /// Counts a request in the object's storage and makes sure the alarm flushes it within
    /// [`crate::metrics::FLUSH_INTERVAL_MS`] (an earlier alarm, a grace end, is kept).
    fn count_usage(
        &mut self,
        env: &ObjectEnv,
        endpoint: &str,
        limited: bool,
    ) -> Result<(), StorageError> {
        let now = env.clock.now_ms();
        crate::metrics::record(env.storage.sql(), now, endpoint, limited)?;
        let flush_at = now + crate::metrics::FLUSH_INTERVAL_MS;
        if env.storage.alarm().is_none_or(|a| a > flush_at) {
            env.storage.set_alarm(Some(flush_at));
        }
        Ok(())
    }

    /// Counts one inbound WebSocket frame (a message or a ping) against the tenant's quota,
    /// like a request. Over the quota the socket is closed (1008): frames cannot go past the
    /// limit requests are held to. Answers whether the frame may be handled.
    pub fn meter_frame(&mut self, env: &ObjectEnv, socket: SocketId) -> bool {
        let Ok(Some(tenant)) = self.tenant(env) else {
            return false;
        };
        let now = env.clock.now_ms();
        let quota = Quota::for_tenant(tenant.plan, tenant.rate_limit);
        if !self.window.admit(quota, now).allowed {
            env.sockets
                .close(socket, CLOSE_CREDENTIAL_ENDED, "rate limited");
            return false;
        }
        // A lost count is the lesser harm, as for requests.
        let _ = self.persist_window(env);
        true
    }

    /// Moves the counted requests to the shared `usage_metrics` table now (the alarm does it
    /// every few seconds; admin metric routes ask for it before they read).
    pub fn flush_metrics(&mut self, env: &ObjectEnv) -> Result<usize, StorageError> {
        crate::metrics::flush(
            env.storage.sql(),
            env.db,
            &self.tenant_id,
            env.clock.now_ms(),
        )
    }

    fn try_fetch(
        &mut self,
        env: &ObjectEnv,
        ctx: &TenantContext,
        req: &Request,
        key_hash: &str,
        route: &ApiRoute,
    ) -> Result<TenantOutcome, Refusal> {
        let bare = |e: ApiError| Box::new((e, HeaderMap::new()));
        let query = h::query_pairs(req.uri().query());
        let key = self
            .key(env, key_hash)
            .map_err(bare)?
            .ok_or(bare(ApiError::Unauthorized))?;
        let tenant = self
            .tenant(env)
            .map_err(bare)?
            .ok_or(bare(ApiError::Unauthorized))?;
        let now = env.clock.now_ms();
        let caller = ctx
            .authenticator
            .admit(req, &query, &key, &tenant, now)
            .map_err(bare)?;
        let (decision, headers) = self.count(env, &tenant, now)?;
        match self.route(env, ctx, req, route, &query, &caller, decision) {
            Ok(TenantOutcome::Respond(resp)) => {
                Ok(TenantOutcome::Respond(with_headers(resp, &headers)))
            }
            Ok(TenantOutcome::Graph {
                op,
                actor_key_id,
                needs,
                ..
            }) => Ok(TenantOutcome::Graph {
                op,
                actor_key_id,
                needs,
                headers,
            }),
            Err(e) => Err(Box::new((e, headers))),
        }
    }

    /// Counts a request against the tenant's quota: the decision and its headers, or the 429.
    fn count(
        &mut self,
        env: &ObjectEnv,
        tenant: &TenantRecord,
        now: i64,
    ) -> Result<(Decision, HeaderMap), Refusal> {
        let quota = Quota::for_tenant(tenant.plan, tenant.rate_limit);
        let decision = self.window.admit(quota, now);
        let headers = rate_headers(quota, &decision);
        if !decision.allowed {
            return Err(Box::new((
                ApiError::RateLimited(decision.reset_seconds),
                headers,
            )));
        }
        self.persist_window(env)
            .map_err(|e| Box::new((e.into(), headers.clone())))?;
        Ok((decision, headers))
    }

    /// Counts a keyless end-user auth request in its own window: the tenant's quota capped at
    /// `cap`, so a flood without a key never spends what the tenant's keys are allowed.
    fn count_keyless(
        &mut self,
        tenant: &TenantRecord,
        now: i64,
        cap: u32,
    ) -> Result<(Decision, HeaderMap), Refusal> {
        let mut quota = Quota::for_tenant(tenant.plan, tenant.rate_limit);
        quota.requests = quota.requests.min(cap);
        let decision = self.keyless_window.admit(quota, now);
        let headers = rate_headers(quota, &decision);
        if !decision.allowed {
            return Err(Box::new((
                ApiError::RateLimited(decision.reset_seconds),
                headers,
            )));
        }
        Ok((decision, headers))
    }

    /// An end-user auth request (`/v1/auth/*`): the tenant must be usable and every routing
    /// source agree; a key, when the request carries one, must be a usable publishable or
    /// secret key of this tenant. Then the request counts against the quota like any other.
    fn try_fetch_user(
        &mut self,
        env: &ObjectEnv,
        ctx: &TenantContext,
        req: &Request,
        key_hash: &str,
        route: UserRoute,
    ) -> Result<Response, Refusal> {
        let bare = |e: ApiError| Box::new((e, HeaderMap::new()));
        let unauthorized = if route.uses_access_token() {
            ApiError::UserUnauthorized
        } else {
            ApiError::Unauthorized
        };
        let query = h::query_pairs(req.uri().query());
        let now = env.clock.now_ms();
        let tenant = self
            .tenant(env)
            .map_err(bare)?
            .ok_or_else(|| bare(unauthorized.clone()))?;
        // Audit actor: the tenant key the request carried, or the end user.
        let mut actor = "end_user".to_owned();
        if key_hash.is_empty() {
            if tenant.status == TenantStatus::Deleted {
                return Err(bare(unauthorized));
            }
            let sources = ctx.authenticator.other_routing_sources(req, &query);
            if sources.iter().any(|named| *named != tenant.id) {
                return Err(bare(if route.uses_access_token() {
                    ApiError::UserUnauthorized
                } else {
                    ApiError::TenantMismatch
                }));
            }
            if tenant.status == TenantStatus::Suspended {
                return Err(bare(ApiError::TenantSuspended));
            }
        } else {
            let key = self
                .key(env, key_hash)
                .map_err(bare)?
                .ok_or(bare(ApiError::Unauthorized))?;
            let caller = ctx
                .authenticator
                .admit(req, &query, &key, &tenant, now)
                .map_err(bare)?;
            if caller.key.key_type == KeyType::Restricted {
                return Err(bare(ApiError::Forbidden(
                    "End-user auth takes a publishable or secret key.",
                )));
            }
            actor = caller.key.id;
        }
        let secrets = ctx.jwt.ok_or(bare(ApiError::Internal))?;
        let (_, headers) = if key_hash.is_empty() && !route.uses_access_token() {
            self.count_keyless(&tenant, now, ctx.limits.keyless_auth_requests)?
        } else {
            self.count(env, &tenant, now)?
        };
        let ctx = users::Ctx {
            ports: Self::ports(env),
            hasher: &ctx.authenticator.hasher,
            secrets,
            tenant: &tenant,
            passwords: ctx.passwords,
            event: Default::default(),
        };
        let result = users::handle(&ctx, route, req);
        if let Some(event) = ctx.event.take() {
            let notice = Notice {
                actor,
                action: event.action.into(),
                target: event.user_id,
                detail: json!({}),
                request_id: crate::http::request_id(req),
                end_sessions: false,
            };
            self.append(env, &notice)
                .map_err(|e| Box::new((e.into(), headers.clone())))?;
        }
        match result {
            Ok(resp) => Ok(with_headers(resp, &headers)),
            Err(e) => Err(Box::new((e, headers))),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn route(
        &mut self,
        env: &ObjectEnv,
        ctx: &TenantContext,
        req: &Request,
        route: &ApiRoute,
        query: &[(String, String)],
        caller: &TenantCaller,
        decision: Decision,
    ) -> Result<TenantOutcome, ApiError> {
        let ports = Self::ports(env);
        let hasher = &ctx.authenticator.hasher;
        let request_id = crate::http::request_id(req);
        let respond = |r: Response| Ok(TenantOutcome::Respond(r));
        let changed: Changed = match route {
            ApiRoute::Tenant => {
                return respond(h::json(
                    StatusCode::OK,
                    &PublicTenantEnvelope {
                        tenant: caller.tenant.to_public_wire(),
                    },
                ))
            }
            ApiRoute::RateLimit => {
                return respond(h::json(
                    StatusCode::OK,
                    &json!({
                        "tenantId": self.tenant_id,
                        "algorithm": ALGORITHM,
                        "limit": decision.limit,
                        "remaining": decision.remaining,
                        "reset": decision.reset_seconds,
                        "windowSeconds": self.window.window_ms / 1000,
                    }),
                ))
            }
            ApiRoute::AuditLog => {
                caller.require("read:audit_log")?;
                return respond(self.audit_page(env, query)?);
            }
            ApiRoute::Events => {
                caller.require("read:events")?;
                return respond(self.accept_socket(env, caller, ctx.limits)?);
            }
            ApiRoute::Graph(op) => {
                let needs = op.needs();
                caller.require(needs)?;
                return Ok(TenantOutcome::Graph {
                    op: *op,
                    actor_key_id: caller.key.id.clone(),
                    needs,
                    headers: HeaderMap::new(),
                });
            }
            ApiRoute::ListKeys => {
                caller.require("read:api_keys")?;
                return respond(api_keys::list(
                    &ports,
                    &caller.scope,
                    caller.visible_environment(),
                )?);
            }
            ApiRoute::CreateKey => {
                caller.require("write:api_keys")?;
                let spec = api_keys::parse_spec(req)?;
                api_keys::check_power(caller, &spec)?;
                api_keys::create(&ports, hasher, &caller.scope, &spec)?
            }
            ApiRoute::GetKey(id) => return respond(api_keys::get(&ports, caller, id)?),
            ApiRoute::RevokeKey(id) => api_keys::revoke(&ports, caller, id)?,
            ApiRoute::RotateKey(id) => {
                let changed = api_keys::rotate(&ports, hasher, caller, id, req)?;
                if let Some(old) = &changed.retired {
                    if let Some(end) = old.expires_at.filter(|_| old.revoked_at.is_none()) {
                        let next = env.storage.alarm().map_or(end, |a| a.min(end));
                        env.storage.set_alarm(Some(next));
                    }
                }
                changed
            }
        };
        if let Some(old) = &changed.retired {
            self.forget_key(env, old);
        }
        self.append(
            env,
            &Notice {
                actor: caller.key.id.clone(),
                action: changed.action.into(),
                target: changed.target.clone(),
                detail: changed.detail.clone(),
                request_id,
                end_sessions: false,
            },
        )?;
        respond(changed.response)
    }

    fn audit_page(
        &self,
        env: &ObjectEnv,
        query: &[(String, String)],
    ) -> Result<Response, ApiError> {
        let mut after = 0i64;
        let mut limit = 100i64;
        for (k, v) in query {
            match k.as_str() {
                "after" => {
                    after =
                        v.parse().ok().filter(|n: &i64| *n >= 0).ok_or_else(|| {
                            ApiError::query("after", "must be a whole number >= 0")
                        })?
                }
                "limit" => {
                    limit = v
                        .parse()
                        .ok()
                        .filter(|n: &i64| (1..=1000).contains(n))
                        .ok_or_else(|| {
                            ApiError::query("limit", "must be a whole number from 1 to 1000")
                        })?
                }
                "tenant_id" => {}
                other => return Err(ApiError::query(other, "is not a known parameter")),
            }
        }
        let rows = env.storage.sql().query(
            &format!("SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?"),
            &[after.into(), limit.into()],
        )?;
        let records: Vec<Value> = rows
            .iter()
            .map(|r| audit_json(&self.tenant_id, r))
            .collect();
        let next = rows
            .last()
            .and_then(|r| r.first())
            .and_then(SqlValue::as_i64);
        Ok(h::json(
            StatusCode::OK,
            &json!({"records": records, "nextAfter": next}),
        ))
    }

    fn accept_socket(
        &self,
        env: &ObjectEnv,
        caller: &TenantCaller,
        limits: &crate::limits::Limits,
    ) -> Result<Response, ApiError> {
        let open = env.sockets.sockets();
        let of_key = open.iter().filter(|(_, a)| *a == caller.key.id).count();
        if open.len() >= limits.sockets_per_tenant || of_key >= limits.sockets_per_key {
            return Err(ApiError::TooManySockets);
        }
        let socket = env
            .sockets
            .accept(&caller.key.id)
            .ok_or(ApiError::UpgradeRequired)?;
        let hello = json!({
            "type": "connected",
            "tenantId": self.tenant_id,
            "keyId": caller.key.id,
            "timestamp": env.clock.now_ms(),
        });
        env.sockets.send(socket, &hello.to_string());
        let mut resp = http::Response::new(Vec::new());
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        Ok(resp)
    }
}
