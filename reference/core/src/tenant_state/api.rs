//! The routes a tenant's own keys call (`/v1/tenant`, `/v1/rate-limit`, `/v1/audit-log`,
//! `/v1/events`, `/v1/api-keys/*`, the graph): the key is admitted, the request counted, the
//! route run, and every change audited and pushed. Graph operations are handed back to the
//! host, which runs them in the tenant's graph object.

use auth_contract::{EventFrame, PublicTenantEnvelope, RateLimitState};
use http::{HeaderMap, StatusCode};

use super::{with_headers, Notice, Refusal, TenantContext, TenantOutcome, TenantState};
use crate::auth::TenantCaller;
use crate::handlers::api_keys::{self, Changed};
use crate::http::{self as h, ApiError, Request, Response};
use crate::objects::ObjectEnv;
use crate::ratelimit::{Decision, ALGORITHM};
use crate::route::ApiRoute;

impl TenantState {
    pub(super) fn try_fetch(
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

    #[allow(clippy::too_many_arguments)]
    pub(super) fn route(
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
                // Declared in sorted key order: straight to bytes (see `RateLimitState`).
                return respond(h::json(
                    StatusCode::OK,
                    &RateLimitState {
                        algorithm: ALGORITHM.into(),
                        limit: decision.limit,
                        remaining: decision.remaining,
                        reset: decision.reset_seconds,
                        tenant_id: self.tenant_id.clone(),
                        window_seconds: self.window.window_ms / 1000,
                    },
                ));
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

    pub(super) fn accept_socket(
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
        let hello = EventFrame::Connected {
            tenant_id: self.tenant_id.clone(),
            key_id: caller.key.id.clone(),
            timestamp: env.clock.now_ms(),
        };
        env.sockets.send(socket, &h::sorted(&hello).to_string());
        let mut resp = http::Response::new(Vec::new());
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        Ok(resp)
    }
}
