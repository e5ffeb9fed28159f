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
use worker::{durable_object, Env, Request, RequestInit, Response, State};

use crate::convert::{head_to_core, to_core, to_stub_request, to_worker};
use crate::storage::{DoSql, NoSharedDb, WorkerClock, WorkerEntropy};

const ACTOR_HEADER: &str = "x-authconf-actor";
const TENANT_HEADER: &str = "x-authconf-tenant";
const NOW_HEADER: &str = "x-authconf-now-ms";
const EVICT_PATH: &str = "/_internal/evict";
/// Worker → graph object: the body is the tenant's stored CSV, to reload from.
const RELOAD_HEADER: &str = "x-authconf-internal-reload";

fn stub(env: &Env, tenant_id: &str) -> worker::Result<worker::Stub> {
    env.durable_object("GRAPH_STATE_CSV")?
        .id_from_name(tenant_id)?
        .get_stub()
}

/// Sends a graph request to the tenant's object, with the caller and the tenant object's
/// clock; `csv` (a reload) replaces the body.
pub async fn call(
    env: &Env,
    tenant_id: &str,
    actor: &str,
    now_ms: i64,
    req: &auth_core::Request,
    csv: Option<Vec<u8>>,
) -> worker::Result<Response> {
    let now = now_ms.to_string();
    let mut headers = vec![
        (ACTOR_HEADER, actor),
        (TENANT_HEADER, tenant_id),
        (NOW_HEADER, now.as_str()),
    ];
    let request = match csv {
        Some(csv) => {
            let mut reload = http::Request::new(csv);
            *reload.method_mut() = req.method().clone();
            *reload.uri_mut() = req.uri().clone();
            *reload.headers_mut() = req.headers().clone();
            headers.push((RELOAD_HEADER, "1"));
            to_stub_request(&reload, "https://graph.internal", not_internal, &headers)?
        }
        None => to_stub_request(req, "https://graph.internal", not_internal, &headers)?,
    };
    stub(env, tenant_id)?.fetch_with_request(request).await
}

/// A client's header claiming to be internal (a reload's CSV) never reaches the object.
fn not_internal(name: &http::HeaderName) -> bool {
    !name.as_str().starts_with(crate::internal::HEADER_PREFIX)
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
        // A reload's body is the stored CSV (up to the upload limit), which only the Worker
        // sends; a client's body is capped as everywhere.
        let reload = req.headers().has(RELOAD_HEADER).unwrap_or(false);
        let mut core = if reload {
            let mut core = head_to_core(&req)?;
            *core.body_mut() = req.bytes().await.map_err(|_| ApiError::Internal)?;
            core
        } else {
            to_core(&mut req).await?
        };
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
