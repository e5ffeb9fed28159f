//! A client request at the directory: the core's front, then the answer, the notices and
//! key-index writes it needs, or the request forwarded to its tenant's object.

use auth_core::route::TenantRoute;
use auth_core::{ApiError, Front};
use http::Method;
use worker::{console_error, Request, Response};

use super::AuthPlatform;
use crate::convert::problem;
use crate::convert::{from_worker, read_upload, to_worker};
use crate::internal::{self, Forward, InternalCall, TenantOp};

impl AuthPlatform {
    /// Runs the front and acts on its decision. `upload` is the client's request whose body
    /// is still unread (a CSV upload): it is read only for a request the front hands to a
    /// tenant.
    pub(super) async fn dispatch(
        &self,
        req: auth_core::Request,
        upload: Option<&mut Request>,
    ) -> worker::Result<Response> {
        if req.method() == Method::GET {
            let segments = auth_core::http::path_segments(req.uri().path()).unwrap_or_default();
            if let [admin, tenants, id] = &segments[..] {
                if admin == "admin" && tenants == "tenants" {
                    self.refresh_onboarding(&req, id).await;
                }
            }
        }
        let keyring_change =
            req.method() == Method::POST && req.uri().path().starts_with("/admin/jwt/");
        // A tenant's metrics are exact: that tenant's object gives its pending counts first.
        // The platform-wide views read what the objects' alarms pushed (at most
        // FLUSH_INTERVAL_MS old): asking every tenant's object would cost one call per tenant
        // for each view (see docs/worker.md).
        let segments = auth_core::http::path_segments(req.uri().path()).unwrap_or_default();
        let flush_targets = match &segments[..] {
            [admin, _, id, metrics] if admin == "admin" && metrics == "metrics" => {
                if self.with(|p| p.tenant_exists(id)) == Some(true) {
                    vec![id.clone()]
                } else {
                    Vec::new()
                }
            }
            _ => Vec::new(),
        };
        let Some((decided, request_id, head)) = self.with(|p| p.front(req)) else {
            return problem(ApiError::Internal);
        };
        let finish = |r| to_worker(auth_core::finish(r, &request_id, head));
        match decided {
            Front::FlushMetrics(resume) => {
                self.flush_metrics(flush_targets).await;
                match self.with(|p| p.resume(resume)) {
                    Some(response) => finish(response),
                    None => problem(ApiError::Internal),
                }
            }
            // Test controls are answered before dispatch (`handle`).
            Front::TestControl(_) => finish(ApiError::NotFound.into_response()),
            Front::Respond { response, notices } => {
                // The directory's rows reach D1 before the tenant's object writes rows that
                // refer to them.
                self.copy_to_d1().await;
                for (tenant_id, notice) in notices {
                    if let Err(e) = self.deliver_notice(&tenant_id, notice).await {
                        console_error!("could not notify a tenant object: {e}");
                        return problem(ApiError::Internal);
                    }
                }
                // Only now that the objects hold the new keys may the index point at them.
                self.index_keys().await;
                if keyring_change && response.status().is_success() {
                    // The objects sign and verify with their copy of the keyring: all of them
                    // have the new one before the admin hears back.
                    let failed = self.call_all(TenantOp::Apply).await;
                    if failed > 0 {
                        console_error!("{failed} tenant objects did not take the new keyring");
                        return problem(ApiError::Internal);
                    }
                }
                finish(response)
            }
            Front::Tenant(mut call) => {
                if let Some(body) = upload {
                    if let Err(e) = read_upload(body, &mut call.request).await {
                        return finish(e.into_response());
                    }
                }
                self.forward(&call.tenant_id, call.key_hash, call.route, call.request)
                    .await
            }
        }
    }

    /// Sends a tenant request, as the client made it, to the tenant's object.
    pub(super) async fn forward(
        &self,
        tenant_id: &str,
        key_hash: String,
        route: TenantRoute,
        req: auth_core::Request,
    ) -> worker::Result<Response> {
        let sync = match self.with(|p| p.sync_for(tenant_id)) {
            Some(Ok(s)) => s,
            _ => return problem(ApiError::Internal),
        };
        let call = InternalCall::Forward {
            sync: Some(sync),
            forward: Forward {
                key_hash: key_hash.clone(),
                request_id: auth_core::request_id(&req),
                route,
                target: internal::target_of(&req),
                host: internal::host_of(&req),
            },
        };
        // A client's "internal" header is never believed, and the host travels in the call.
        let request = internal::carrying(&req, &call)?;
        let resp = internal::tenant_stub(&self.env, tenant_id)?
            .fetch_with_request(request)
            .await?;
        // The index missed this key (or was wrong), or the Worker has none: refresh it, so
        // the key's next request goes straight to its tenant's object.
        if !key_hash.is_empty() {
            self.index_one(&key_hash, tenant_id).await;
        }
        if resp.status_code() == 101 {
            return Ok(resp); // the event stream: the socket is the tenant object's
        }
        if resp
            .headers()
            .has(internal::KEYS_CHANGED_HEADER)
            .unwrap_or(false)
        {
            self.pull_keys(tenant_id).await;
        }
        // Drop the internal answer headers before the client sees the answer, except the mark
        // of an internal answer (a graph hop): only the stateless Worker asks the directory for
        // a keyed (graph) route, after a "not mine", and it runs the hop itself (the core's
        // driver).
        let mut core = from_worker(resp).await;
        let mark = core.headers_mut().remove(internal::ANSWER_HEADER);
        internal::strip(core.headers_mut());
        if let Some(mark) = mark {
            core.headers_mut().insert(internal::ANSWER_HEADER, mark);
        }
        to_worker(core)
    }
}
