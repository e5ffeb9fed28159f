//! `GraphStateCSV`: one Durable Object per tenant holding the tenant's authorization graph in
//! its own SQLite storage, with the CSV source in R2 (`TENANT_DATA`). The tenant's `TenantState`
//! object calls it after admitting and counting the request.

use std::cell::RefCell;

use auth_core::graph::{blob_key, check_upload, upload_answer, GraphCall, GraphRoute, GraphState};
use auth_core::objects::{DurableObject as CoreObject, NoSockets, ObjectEnv, ObjectStorage};
use auth_core::ports::Sql;
use auth_core::route::{ApiRoute, Route, TenantRoute};
use auth_core::ApiError;
use worker::{durable_object, Env, Request, RequestInit, Response, State};

use crate::convert::{to_core, to_stub_request, to_worker};
use crate::storage::{DoSql, NoSharedDb, WorkerClock, WorkerEntropy};

const ACTOR_HEADER: &str = "x-authconf-actor";
const TENANT_HEADER: &str = "x-authconf-tenant";
const NOW_HEADER: &str = "x-authconf-now-ms";
const EVICT_PATH: &str = "/_internal/evict";

fn stub(env: &Env, tenant_id: &str) -> worker::Result<worker::Stub> {
    env.durable_object("GRAPH_STATE_CSV")?
        .id_from_name(tenant_id)?
        .get_stub()
}

/// Sends a graph request to the tenant's object, with the caller and the platform's clock.
pub async fn call(
    env: &Env,
    tenant_id: &str,
    actor: &str,
    now_ms: i64,
    req: &auth_core::Request,
) -> worker::Result<Response> {
    let now = now_ms.to_string();
    let request = to_stub_request(
        req,
        "https://graph.internal",
        |_| true,
        &[
            (ACTOR_HEADER, actor),
            (TENANT_HEADER, tenant_id),
            (NOW_HEADER, &now),
        ],
    )?;
    stub(env, tenant_id)?.fetch_with_request(request).await
}

/// Asks the tenant's graph object to drop its in-memory graph (the test control `evict`).
pub async fn evict(env: &Env, tenant_id: &str) -> worker::Result<bool> {
    let mut init = RequestInit::new();
    init.with_method(worker::Method::Post);
    let request = Request::new_with_init(&format!("https://graph.internal{EVICT_PATH}"), &init)?;
    let resp = stub(env, tenant_id)?.fetch_with_request(request).await?;
    Ok(resp.status_code() == 200)
}

#[durable_object]
#[allow(clippy::upper_case_acronyms)]
pub struct GraphStateCSV {
    state: State,
    env: Env,
    graph: RefCell<Option<GraphState>>,
}

struct Storage<'a>(&'a DoSql);

impl ObjectStorage for Storage<'_> {
    fn sql(&self) -> &dyn Sql {
        self.0
    }
    // The graph object schedules nothing.
    fn set_alarm(&self, _: Option<i64>) {}
    fn alarm(&self) -> Option<i64> {
        None
    }
}

impl GraphStateCSV {
    async fn handle(&self, mut req: Request) -> Result<auth_core::Response, ApiError> {
        let core = to_core(&mut req).await?;
        let header = |name: &str| {
            core.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let tenant = header(TENANT_HEADER).ok_or(ApiError::Internal)?;
        let actor = header(ACTOR_HEADER).unwrap_or_default();
        let now_ms = header(NOW_HEADER)
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or_else(|| worker::Date::now().as_millis() as i64);
        let bucket = self
            .env
            .bucket("TENANT_DATA")
            .map_err(|_| ApiError::Internal)?;
        let op = match Route::parse(core.method(), core.uri().path())? {
            Route::Tenant(TenantRoute::Api(ApiRoute::Graph(op))) => op,
            _ => return Err(ApiError::NotFound),
        };
        let route = match GraphCall::of(op) {
            GraphCall::Upload => {
                let edges = check_upload(&core)?;
                bucket
                    .put(blob_key(&tenant), core.body().clone())
                    .execute()
                    .await
                    .map_err(|_| ApiError::Internal)?;
                return Ok(upload_answer(&tenant, edges, core.body().len()));
            }
            GraphCall::Reload => {
                let object = bucket
                    .get(blob_key(&tenant))
                    .execute()
                    .await
                    .map_err(|_| ApiError::Internal)?;
                let Some(body) = object.as_ref().and_then(|o| o.body()) else {
                    return Err(ApiError::field(
                        "csv",
                        "no graph.csv has been uploaded for this tenant",
                    ));
                };
                let csv = body.bytes().await.map_err(|_| ApiError::Internal)?;
                GraphRoute::Reload { csv }
            }
            GraphCall::Run(route) => route,
        };
        // From here on nothing awaits: the call is one transaction, alone in the object.
        let db = DoSql::new(&self.state.storage());
        let storage = Storage(&db);
        let clock = WorkerClock {
            offset_ms: now_ms - worker::Date::now().as_millis() as i64,
        };
        let env = ObjectEnv {
            name: &tenant,
            storage: &storage,
            db: &NoSharedDb,
            clock: &clock,
            entropy: &WorkerEntropy,
            sockets: &NoSockets,
        };
        let mut graph = self.graph.borrow_mut();
        let mut route = Some(route);
        let mut out = None;
        let r = db.transaction(&mut |_| {
            if graph.is_none() {
                *graph = Some(GraphState::load(&env)?);
            }
            if let (Some(g), Some(route)) = (graph.as_mut(), route.take()) {
                out = Some(g.handle(&env, route, &core, &actor));
            }
            Ok(())
        });
        match (r, out) {
            (Ok(()), Some(result)) => result,
            _ => {
                // Memory may be ahead of the rolled-back storage: rebuild next time.
                *graph = None;
                Err(ApiError::Internal)
            }
        }
    }
}

impl worker::DurableObject for GraphStateCSV {
    fn new(state: State, env: Env) -> Self {
        Self {
            state,
            env,
            graph: RefCell::new(None),
        }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        if req.path() == EVICT_PATH {
            let was_live = self.graph.borrow_mut().take().is_some();
            return if was_live {
                Response::ok("evicted")
            } else {
                Ok(Response::ok("idle")?.with_status(204))
            };
        }
        let resp = match self.handle(req).await {
            Ok(r) => r,
            Err(e) => e.into_response(),
        };
        to_worker(resp)
    }
}
