//! End-user auth requests (`/v1/auth/*`) inside the tenant's object: which tenant and key
//! they may come with, which window they count in, and the audit record of the change they
//! made. The routes themselves are in [`crate::users`].

use http::HeaderMap;

use super::{with_headers, Notice, Refusal, TenantContext, TenantState};
use crate::http::{self as h, ApiError, Request, Response};
use crate::keys::KeyType;
use crate::model::TenantStatus;
use crate::objects::ObjectEnv;
use crate::users::{self, UserRoute};

impl TenantState {
    /// An end-user auth request (`/v1/auth/*`): the tenant must be usable and every routing
    /// source agree; a key, when the request carries one, must be a usable publishable or
    /// secret key of this tenant. Then the request counts against the quota like any other.
    pub(super) fn try_fetch_user(
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
                detail: crate::notice::no_detail(),
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
}
