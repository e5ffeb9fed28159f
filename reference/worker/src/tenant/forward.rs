//! A client request forwarded to this object (by the directory or straight from the Worker):
//! the key checked against the tenant's own, the core object run, a graph hop handed back.

use auth_core::{ApiError, RequestId, TenantCall, TenantOutcome};
use http::{Method, StatusCode};
use worker::{console_error, Request, Response};

use super::internal_server::with_keys_flag;
use super::TenantState;
use crate::convert::{problem, to_core_at, to_worker};
use crate::internal::{self, Forward, GraphHop, InternalAnswer};

impl TenantState {
    /// A client request the directory routed here, or (`direct`) the stateless Worker; `req`
    /// is the client's method, headers and body, `forward` what the front decided.
    pub(super) async fn tenant_request(
        &self,
        mut req: Request,
        forward: Forward,
        direct: bool,
    ) -> worker::Result<Response> {
        let owns = || {
            self.inner
                .borrow()
                .as_ref()
                .is_some_and(|i| i.owns_key(&forward.key_hash))
        };
        if direct && !owns() {
            // Nothing ran; the Worker asks the directory (a client never sees this answer).
            return internal::answer(&InternalAnswer::NotMine);
        }
        let mut core_req = match to_core_at(&mut req, &forward.target).await {
            Ok(r) => r,
            Err(e) => return problem(e),
        };
        internal::strip(core_req.headers_mut());
        if let Some(host) = forward
            .host
            .as_deref()
            .and_then(|h| http::HeaderValue::from_str(h).ok())
        {
            core_req.headers_mut().insert(http::header::HOST, host);
        }
        core_req
            .extensions_mut()
            .insert(RequestId(forward.request_id.clone()));
        // The route the core parsed in front of the object travels with the request.
        let route = forward.route.clone();
        let head = core_req.method() == Method::HEAD;
        let upgrade = core_req.uri().path() == "/v1/events"
            && core_req
                .headers()
                .get(http::header::UPGRADE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
        let request_id = forward.request_id.clone();
        let guard = self.inner.borrow();
        let Some(inner) = guard.as_ref() else {
            return problem(ApiError::Internal);
        };
        let call = TenantCall {
            tenant_id: inner.tenant_id.borrow().clone(),
            key_hash: forward.key_hash.clone(),
            route,
            request: core_req,
        };
        let called = inner.call(&self.state, upgrade, |o, env| {
            Ok(o.fetch(env, &inner.settings.service.tenant_context(), &call))
        });
        let (outcome, client) = match called {
            Ok(r) => r,
            Err(e) => {
                console_error!("tenant object failed: {e}");
                return problem(ApiError::Internal);
            }
        };
        match outcome {
            TenantOutcome::Respond(resp) if resp.status() == StatusCode::SWITCHING_PROTOCOLS => {
                match client {
                    Some(ws) => Response::from_websocket(ws),
                    None => problem(ApiError::Internal),
                }
            }
            TenantOutcome::Respond(resp) => {
                with_keys_flag(to_worker(auth_core::finish(resp, &request_id, head)), inner)
            }
            // The Worker runs the graph hop (the core's driver: R2, the graph object, then the
            // audit record here through [`internal::InternalCall::Audit`]).
            TenantOutcome::Graph {
                op,
                actor_key_id,
                headers,
                ..
            } => {
                let hop = GraphHop {
                    tenant_id: call.tenant_id.clone(),
                    op,
                    actor_key_id,
                    headers: headers
                        .iter()
                        .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_owned())))
                        .collect(),
                    now_ms: inner.now_ms(),
                };
                with_keys_flag(internal::answer(&InternalAnswer::GraphHop { hop }), inner)
            }
        }
    }
}
