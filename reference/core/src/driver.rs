//! The request driver: the whole sequence of a request, written once for every host.
//!
//! ```text
//! begin (stateless: id, route, method, query, key shape and hash)
//!   ├─ answer (meta routes, refusals)
//!   ├─ keyed ──> key_owner (host's index) ──> [read_upload] ──> tenant object ──> [graph ──> audit]
//!   └─ shared ──> front (shared rows)
//!                  ├─ answer + notices ──> notify (before the answer)
//!                  ├─ tenant call ──> tenant object
//!                  ├─ metrics read ──> flush_usage ──> resume (same caller, same route)
//!                  └─ test control ──> host carries it out
//! ```
//!
//! The host implements [`Host`]: where the shared rows live, how a tenant's object is called,
//! where blobs are; and [`SharedWork`] (notices, usage flushes, test controls) unless its
//! `front` answers those whole itself (the Worker's directory object does: it names
//! [`NoSharedWork`] and implements none of it). The core stays free of any runtime: the trait's futures carry no `Send`
//! bound, so the native host's (tokio, multi-threaded) are `Send` because its types are, and
//! the Worker's (single-threaded) need not be.

use std::sync::Arc;

use http::StatusCode;

use crate::front::{Front, FrontStep, Resume, Service, Stage};
use crate::graph::{blob_key, upload_answer, GraphCall, GraphRoute};
use crate::http::{finish, request_id, ApiError, Request, Response};
use crate::notice::Notice;
use crate::ports::{Clock, Entropy};
use crate::route::GraphOp;
use crate::tenant_state::{TenantCall, TenantOutcome};
use crate::test_controls::TestControl;
use auth_contract::testing::TestControlAnswer;

/// What a host provides to [`drive`].
#[allow(async_fn_in_trait)]
pub trait Host {
    /// What a tenant call hands back with a 101 (native: the accepted socket; Worker: the
    /// object's own answer carrying the WebSocket).
    type Upgrade;
    /// Who carries out what the front hands back besides an answer or a tenant call.
    type Shared: SharedWork;

    /// `None` when [`Host::front`] never hands back notices, metrics reads or test controls.
    fn shared(&self) -> Option<&Self::Shared>;

    fn clock(&self) -> &dyn Clock;
    fn entropy(&self) -> &dyn Entropy;

    /// Runs [`Service::front`] with the shared rows (admin routes, end-user routes without a
    /// key, test controls).
    async fn front(&self, step: FrontStep) -> Result<Front, ApiError>;
    /// The tenant that owns a key, by the key's hash. A host may answer from an index (a key's
    /// tenant never changes) and fall back to [`Service::key_owner`]; the tenant's object
    /// decides authoritatively whether the key is usable, so a stale entry cannot admit.
    async fn key_owner(&self, key_hash: &str) -> Result<Option<String>, ApiError>;
    /// Reads the body of an upload the front let through (`PUT /v1/graph/csv`), up to its
    /// own limit. Called only once the key's tenant is known.
    async fn read_upload(&self, request: &Request) -> Result<Vec<u8>, ApiError>;
    /// Runs a tenant route in the tenant's `TenantState` object ([`crate::TenantState::fetch`]).
    async fn tenant(
        &self,
        call: &Arc<TenantCall>,
    ) -> Result<(TenantOutcome, Option<Self::Upgrade>), ApiError>;
    /// Runs a graph route in the tenant's `GraphStateCSV` object ([`GraphRun`]).
    async fn graph(&self, run: GraphRun) -> Result<Response, ApiError>;
    /// Checks an upload ([`crate::graph::check_upload`]) and stores its body under
    /// [`blob_key`] of the call's tenant; answers the edge count.
    async fn store_upload(&self, call: &Arc<TenantCall>) -> Result<usize, ApiError>;
    async fn read_blob(&self, key: &str) -> Result<Option<Vec<u8>>, ApiError>;
    /// Appends an audit record in the tenant's object ([`crate::TenantState::record`]).
    async fn audit(&self, tenant_id: &str, notice: Notice) -> Result<(), ApiError>;
}

/// A graph route for the tenant's `GraphStateCSV` object: the tenant call it came in, the
/// route (a reload carries the CSV the driver read from the blob store) and the acting key's
/// id. Owned, because a host hands it on to the object's own task or isolate.
pub struct GraphRun {
    pub call: Arc<TenantCall>,
    pub route: GraphRoute,
    pub actor: String,
}

/// What the front may hand back to the host besides an answer or a tenant call.
#[allow(async_fn_in_trait)]
pub trait SharedWork {
    /// Delivers admin notices to the tenants' objects; the answer waits for them.
    async fn notify(&self, notices: Vec<(String, Notice)>) -> Result<(), ApiError>;
    /// Moves every tenant object's pending usage counts to the shared metrics rows.
    async fn flush_usage(&self);
    /// Runs [`Service::resume`] with the shared rows, after [`SharedWork::flush_usage`].
    async fn resume(&self, resume: Resume) -> Result<Response, ApiError>;
    /// Carries out an authorised test control; answers the body of its 200.
    async fn test_control(&self, control: TestControl) -> Result<TestControlAnswer, ApiError>;
}

/// The [`Host::Shared`] of a host whose front answers all of it itself: no value exists, so
/// none of it can be called.
pub enum NoSharedWork {}

impl SharedWork for NoSharedWork {
    async fn notify(&self, _: Vec<(String, Notice)>) -> Result<(), ApiError> {
        match *self {}
    }
    async fn flush_usage(&self) {
        match *self {}
    }
    async fn resume(&self, _: Resume) -> Result<Response, ApiError> {
        match *self {}
    }
    async fn test_control(&self, _: TestControl) -> Result<TestControlAnswer, ApiError> {
        match *self {}
    }
}

/// The host's [`SharedWork`]; an internal error for a host that has none (its front handed
/// back what it said it never would).
fn shared<H: Host>(host: &H) -> Result<&H::Shared, ApiError> {
    host.shared().ok_or(ApiError::Internal)
}

/// The answer to a request, and the accepted WebSocket when it is a 101.
pub struct Driven<U> {
    pub response: Response,
    pub upgrade: Option<U>,
}

/// Runs one request through the front, the tenant's objects and back. Every answer carries
/// `x-request-id`; HEAD answers have no body.
pub async fn drive<H: Host>(service: &Service, host: &H, req: Request) -> Driven<H::Upgrade> {
    let begun = service.begin(host.clock(), host.entropy(), req);
    let (response, upgrade) = match run(host, begun.stage).await {
        Ok(done) => done,
        Err(e) => (e.into_response(), None),
    };
    Driven {
        response: finish(response, &begun.request_id, begun.head),
        upgrade,
    }
}

type Done<U> = (Response, Option<U>);

async fn run<H: Host>(host: &H, stage: Stage) -> Result<Done<H::Upgrade>, ApiError> {
    let front = match stage {
        Stage::Respond(response) => return Ok((response, None)),
        Stage::Keyed(keyed) => {
            let owner = host.key_owner(&keyed.key_hash).await?;
            let tenant_id = owner.ok_or(ApiError::Unauthorized)?;
            return call_tenant(host, keyed.into_call(tenant_id)).await;
        }
        Stage::Shared(step) => host.front(step).await?,
    };
    match front {
        Front::Respond { response, notices } => {
            // Each tenant's object hears of the change before the client does, so the very
            // next request sees it.
            if !notices.is_empty() {
                shared(host)?.notify(notices).await?;
            }
            Ok((response, None))
        }
        Front::Tenant(call) => call_tenant(host, call).await,
        Front::FlushMetrics(resume) => {
            let shared = shared(host)?;
            shared.flush_usage().await;
            Ok((shared.resume(resume).await?, None))
        }
        Front::TestControl(control) => {
            let body = shared(host)?.test_control(control).await?;
            Ok((crate::http::json(StatusCode::OK, &body), None))
        }
    }
}

async fn call_tenant<H: Host>(
    host: &H,
    mut call: TenantCall,
) -> Result<Done<H::Upgrade>, ApiError> {
    if call.route.is_upload() {
        let body = host.read_upload(&call.request).await?;
        *call.request.body_mut() = body;
    }
    let call = Arc::new(call);
    let (outcome, upgrade) = host.tenant(&call).await?;
    match outcome {
        TenantOutcome::Respond(response) => {
            let upgrade = upgrade.filter(|_| response.status() == StatusCode::SWITCHING_PROTOCOLS);
            Ok((response, upgrade))
        }
        TenantOutcome::Graph {
            op,
            actor_key_id,
            headers,
            ..
        } => {
            let mut response = run_graph(host, &call, op, &actor_key_id).await;
            for (k, v) in &headers {
                response.headers_mut().insert(k, v.clone());
            }
            Ok((response, None))
        }
    }
}

/// A graph request the tenant's object let through: the blob IO happens here, outside the
/// graph object (as with R2 on Workers); a successful change is audited in the tenant's
/// object.
async fn run_graph<H: Host>(
    host: &H,
    call: &Arc<TenantCall>,
    op: GraphOp,
    actor: &str,
) -> Response {
    let run = |route| GraphRun {
        call: Arc::clone(call),
        route,
        actor: actor.to_owned(),
    };
    let graph_call = GraphCall::of(op);
    let audit_of = graph_call.audit();
    let answered = match graph_call {
        GraphCall::Upload => host
            .store_upload(call)
            .await
            .map(|edges| upload_answer(&call.tenant_id, edges, call.request.body().len())),
        GraphCall::Reload => match host.read_blob(&blob_key(&call.tenant_id)).await {
            Ok(Some(csv)) => host.graph(run(GraphRoute::Reload { csv })).await,
            Ok(None) => Err(ApiError::field(
                "csv",
                "no graph.csv has been uploaded for this tenant",
            )),
            Err(e) => Err(e),
        },
        GraphCall::Run(route) => host.graph(run(route)).await,
    };
    let response = answered.unwrap_or_else(ApiError::into_response);
    if let Some(audit) = audit_of.filter(|_| response.status().is_success()) {
        let notice = Notice {
            actor: actor.to_owned(),
            action: audit.action.to_owned(),
            target: "graph".into(),
            detail: audit.detail(&response),
            request_id: request_id(&call.request),
            end_sessions: false,
        };
        // The change is made and answered; a lost audit record is for the host to log, not
        // a reason to tell the client the change failed.
        let _ = host.audit(&call.tenant_id, notice).await;
    }
    response
}
