//! `GraphStateCSV`: one Durable Object per tenant holding the tenant's authorization graph in
//! its own SQLite storage. The stateless Worker calls it (the core driver's `Host::graph`) after
//! the tenant's `TenantState` object admitted and counted the request; the CSV source in R2
//! (`TENANT_DATA`) is the Worker's to write and read, a reload's CSV arrives as the body.

use std::cell::RefCell;

use auth_core::graph::{GraphCall, GraphRoute, GraphState};
use auth_core::objects::{DurableObject as CoreObject, NoSockets, ObjectEnv, ObjectStorage};
use auth_core::ports::Sql;
use auth_core::route::{ApiRoute, Route, TenantRoute};
use auth_core::ApiError;
use worker::{durable_object, Env, Request, Response, State};

use crate::convert::{head_to_core, problem, to_core_at, to_worker};
use crate::internal::{self, GraphRequest, InternalAnswer, InternalCall};
use crate::storage::{DoSql, NoSharedDb, WorkerClock, WorkerEntropy};

fn stub(env: &Env, tenant_id: &str) -> worker::Result<worker::Stub> {
    env.durable_object("GRAPH_STATE_CSV")?
        .id_from_name(tenant_id)?
        .get_stub()
}

/// Sends a graph request to the tenant's object ([`InternalCall::Graph`]), with the caller
/// and the tenant object's clock; `csv` (a reload) replaces the body.
pub async fn call(
    env: &Env,
    tenant_id: &str,
    actor: &str,
    now_ms: i64,
    req: &auth_core::Request,
    csv: Option<Vec<u8>>,
) -> worker::Result<Response> {
    let call = InternalCall::Graph {
        graph: GraphRequest {
            tenant_id: tenant_id.to_owned(),
            actor: actor.to_owned(),
            now_ms,
            target: internal::target_of(req),
            reload: csv.is_some(),
        },
    };
    let request = match csv {
        Some(csv) => {
            let mut reload = http::Request::new(csv);
            *reload.method_mut() = req.method().clone();
            *reload.uri_mut() = req.uri().clone();
            *reload.headers_mut() = req.headers().clone();
            internal::carrying(&reload, &call)?
        }
        None => internal::carrying(req, &call)?,
    };
    stub(env, tenant_id)?.fetch_with_request(request).await
}

/// Asks the tenant's graph object to drop its in-memory graph (the test control `evict`);
/// answers how many graphs it dropped (0 or 1).
pub async fn evict(env: &Env, tenant_id: &str) -> Result<u64, String> {
    let stub = stub(env, tenant_id).map_err(|e| e.to_string())?;
    match internal::ask(&stub, &InternalCall::EvictGraph)
        .await?
        .answer
    {
        InternalAnswer::Evicted { evicted } => Ok(evicted),
        _ => Err("an odd answer".into()),
    }
}

#[durable_object]
#[allow(clippy::upper_case_acronyms)]
pub struct GraphStateCSV {
    state: State,
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
    async fn handle(
        &self,
        mut req: Request,
        call: GraphRequest,
    ) -> Result<auth_core::Response, ApiError> {
        // A reload's body is the stored CSV (up to the upload limit), which only the Worker
        // sends; a client's body is capped as everywhere.
        let reload = call.reload;
        let mut core = if reload {
            let mut core = head_to_core(&req)?;
            *core.uri_mut() = call.target.parse().map_err(|_| ApiError::Internal)?;
            *core.body_mut() = req.bytes().await.map_err(|_| ApiError::Internal)?;
            core
        } else {
            to_core_at(&mut req, &call.target).await?
        };
        let GraphRequest {
            tenant_id: tenant,
            actor,
            now_ms,
            ..
        } = call;
        let op = match Route::parse(core.method(), core.uri().path())? {
            Route::Tenant(TenantRoute::Api(ApiRoute::Graph(op))) => op,
            _ => return Err(ApiError::NotFound),
        };
        let route = match GraphCall::of(op) {
            GraphCall::Reload if reload => GraphRoute::Reload {
                csv: std::mem::take(core.body_mut()),
            },
            // The Worker stores uploads in R2 itself and sends a reload its CSV.
            GraphCall::Upload | GraphCall::Reload => return Err(ApiError::Internal),
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
    fn new(state: State, _env: Env) -> Self {
        Self {
            state,
            graph: RefCell::new(None),
        }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let call = match internal::receive(&mut req).await {
            Ok(InternalCall::Graph { graph }) => graph,
            Ok(InternalCall::EvictGraph) => {
                let was_live = self.graph.borrow_mut().take().is_some();
                return internal::answer(&InternalAnswer::Evicted {
                    evicted: u64::from(was_live),
                });
            }
            Ok(_) => return problem(ApiError::NotFound),
            Err(e) => return problem(e),
        };
        let resp = match self.handle(req, call).await {
            Ok(r) => r,
            Err(e) => e.into_response(),
        };
        to_worker(resp)
    }
}
