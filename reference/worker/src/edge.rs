//! The stateless Worker: the core's request driver ([`auth_core::driver::drive`]) over the
//! Worker's host, [`Edge`], so that no global object is on a tenant's path (issue #15).
//!
//! The driver runs the stateless part of the front here (`Service::begin`: request id, body
//! limit, route and method, keys in the query, the key's shape and keyed hash; meta routes are
//! answered here too). Then, for a keyed tenant route (`/v1/...`, and `/v1/auth/*` with a tenant
//! key):
//! - [`Host::key_owner`]: the isolate's own cache of key owners, then the KV index `KEY_INDEX` (key hash → tenant id, written by the
//!   directory); on a miss, the directory ([`InternalCall::KeyOwner`]), which looks the key up in
//!   its mirror and writes the index;
//! - [`Host::tenant`]: the tenant's `TenantState` object, called directly. It decides
//!   authoritatively: it holds its tenant's keys and row, so a revoked, expired or foreign key,
//!   a suspended or deleted tenant are refused there, and a hash that is not one of its keys is
//!   answered "not mine" ([`InternalAnswer::NotMine`]), whereupon the request goes to the
//!   directory, which answers as before and corrects the index. So the index may lag or be
//!   wrong without ever admitting a request.
//!
//! - a graph route the object admitted comes back as [`internal::GraphHop`] (the core's
//!   `TenantOutcome::Graph`), and the driver runs the hop here: [`Host::store_upload`] checks
//!   the CSV and writes R2 (`TENANT_DATA`), [`Host::read_blob`] reads it for a reload,
//!   [`Host::graph`] calls the tenant's `GraphStateCSV` object, [`Host::audit`] appends the
//!   record in the tenant's object ([`InternalCall::Audit`]). After a "not mine" the directory
//!   forwards the object's hop back unchanged, and the hop names the tenant that answered.
//!
//! Everything else (admin routes, keyless and access-token end-user routes, test controls) is
//! [`Host::front`]: the directory object, which answers it whole (notices, usage flushes and test
//! controls included): the Worker's host has no [`auth_core::driver::SharedWork`] at all.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use auth_contract::testing::KeyOwnersForgotten;
use auth_core::driver::{drive, GraphRun, Host, NoSharedWork};
use auth_core::graph::{blob_key, check_upload, GraphRoute};
use auth_core::ports::{Clock, Entropy};
use auth_core::{ApiError, Front, FrontStep, Notice, TenantCall, TenantOutcome};
use worker::{console_error, Env, Request, Response};

use crate::config::Settings;
use crate::convert::{
    client_to_core, from_worker, problem, read_upload, to_stub_request, to_worker,
};
use crate::internal::{self, Asked, Forward, GraphHop, InternalAnswer, InternalCall};
use crate::storage::{WorkerClock, WorkerEntropy};

/// The KV namespace of the key index: key hash → tenant id.
pub const KEY_INDEX: &str = "KEY_INDEX";

/// How many key → tenant entries an isolate keeps in memory before it starts afresh.
const OWNERS_CACHED: usize = 10_000;

/// The test control that empties this isolate's cache of key owners (test hooks on, the
/// platform admin only): a test that changes the index (KV) behind the Worker's back uses it.
pub const FORGET_OWNERS: &str = "/_test/forget-key-owners";

thread_local! {
    /// The settings, read once per isolate (the hasher's pepper, the admin key's hash).
    static SETTINGS: RefCell<Option<Rc<Settings>>> = const { RefCell::new(None) };
    /// Key hash → tenant id, as the index or the directory said: a key's tenant never
    /// changes, and the tenant's object refuses a key that is not its own (the entry is then
    /// dropped), so a stale entry costs a directory call, never a wrong answer. Positive
    /// entries only, bounded: an unknown key cannot grow it.
    static OWNERS: RefCell<HashMap<String, String>> = RefCell::new(HashMap::new());
}

fn cached_owner(key_hash: &str) -> Option<String> {
    OWNERS.with(|m| m.borrow().get(key_hash).cloned())
}

fn remember_owner(key_hash: &str, tenant_id: &str) {
    OWNERS.with(|m| {
        let mut m = m.borrow_mut();
        if m.len() >= OWNERS_CACHED {
            m.clear();
        }
        m.insert(key_hash.to_owned(), tenant_id.to_owned());
    });
}

fn forget_owner(key_hash: &str) {
    OWNERS.with(|m| m.borrow_mut().remove(key_hash));
}

/// `POST /_test/forget-key-owners`: empties the cache; `None` when the request is not that.
fn forget_owners(settings: &Settings, req: &auth_core::Request) -> Option<auth_core::Response> {
    if !settings.test_hooks || req.uri().path() != FORGET_OWNERS {
        return None;
    }
    let auth = settings.service.authenticator();
    let admin = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| {
            auth_core::keys::KeyHasher::same(&auth.hasher.hash(t.trim()), &auth.admin_key_hash)
        });
    if !admin || req.method() != http::Method::POST {
        return None; // the directory answers it as any unknown or unauthorised test control
    }
    let forgotten = OWNERS.with(|m| {
        let mut m = m.borrow_mut();
        let n = m.len();
        m.clear();
        n
    });
    Some(auth_core::http::json(
        http::StatusCode::OK,
        &KeyOwnersForgotten {
            forgotten: forgotten as u64,
        },
    ))
}

fn settings(env: &Env) -> Option<Rc<Settings>> {
    SETTINGS.with(|cell| {
        if let Some(s) = cell.borrow().as_ref() {
            return Some(s.clone());
        }
        // A missing setting: the directory answers the 503 that names it.
        let s = Rc::new(Settings::from_env(env).ok()?);
        *cell.borrow_mut() = Some(s.clone());
        Some(s)
    })
}

/// Handles one client request (the Worker's `fetch`).
pub async fn serve(mut req: Request, env: &Env) -> worker::Result<Response> {
    let Some(settings) = settings(env) else {
        return internal::directory_stub(env)?.fetch_with_request(req).await;
    };
    // A CSV upload's body is read only once the key's tenant is known (`Host::read_upload`),
    // as on the native host; every other body now, up to 64 KiB.
    let (core, upload) = match client_to_core(&mut req).await {
        Ok(read) => read,
        Err(e) => return problem(e),
    };
    if let Some(answer) = forget_owners(&settings, &core) {
        return to_worker(auth_core::finish(answer, "-", false));
    }
    let origin = req.url()?.origin().ascii_serialization();
    let host = Edge {
        env,
        origin,
        client: RefCell::new(upload.then_some(req)),
        clock: WorkerClock { offset_ms: 0 },
        hop: RefCell::new(None),
    };
    let driven = drive(&settings.service, &host, core).await;
    match driven.upgrade {
        Some(socket) => Ok(socket), // the event stream: the socket is the tenant object's
        None => to_worker(driven.response),
    }
}

/// The Worker's host of the request driver: stateless, one per request.
pub struct Edge<'a> {
    env: &'a Env,
    /// The client's URL origin: a request handed to the directory keeps it (the directory
    /// reads the tenant's subdomain from it).
    origin: String,
    /// The client's request while its body is unread (an upload), for [`Host::read_upload`].
    client: RefCell<Option<Request>>,
    /// Only the request id and the stateless checks use it: objects keep their own test clock.
    clock: WorkerClock,
    /// The graph hop the tenant's object handed back, for the graph host methods: its tenant
    /// (the one that answered, which after a "not mine" is not the call's) and its clock.
    hop: RefCell<Option<(String, i64)>>,
}

impl Edge<'_> {
    /// The tenant and clock of the graph hop the object handed back (the call's tenant and
    /// the platform's clock if there is none, which the driver never leaves).
    fn hop_tenant(&self, call: &TenantCall) -> (String, i64) {
        self.hop.borrow().clone().unwrap_or_else(|| {
            (
                call.tenant_id.clone(),
                worker::Date::now().as_millis() as i64,
            )
        })
    }

    /// Hands a request to the directory, under the client's origin, minus any header that
    /// claims to be internal, with the driver's request id (so the directory's audit records
    /// and its answer name the id the client sees).
    async fn directory(&self, core: &auth_core::Request) -> Result<Response, ApiError> {
        let id = auth_core::request_id(core);
        let sent = async {
            let request = to_stub_request(
                core,
                &format!("{}{}", self.origin, internal::target_of(core)),
                internal::not_internal,
                &[(internal::REQUEST_ID_HEADER, &id)],
            )?;
            internal::directory_stub(self.env)?
                .fetch_with_request(request)
                .await
        };
        sent.await.map_err(|e| {
            console_error!("calling the directory failed: {e}");
            ApiError::Unavailable(1)
        })
    }

    /// The key's tenant from the directory's mirror (which also writes the index entry).
    async fn owner_from_directory(&self, key_hash: &str) -> Result<Option<String>, ApiError> {
        let call = InternalCall::KeyOwner {
            key_hash: key_hash.to_owned(),
        };
        let asked = match internal::directory_stub(self.env) {
            Ok(stub) => internal::ask(&stub, &call).await,
            Err(e) => Err(e.to_string()),
        };
        match asked {
            Ok(Asked {
                answer: InternalAnswer::Owner { tenant_id },
                ..
            }) => Ok(tenant_id),
            Ok(_) => Err(failed(
                "asking the directory for a key's tenant",
                "an odd answer",
            )),
            Err(e) => Err(failed("asking the directory for a key's tenant", e)),
        }
    }

    /// Runs the call in the tenant's object, directly (no sync: the object checks the key is
    /// one of its tenant's).
    async fn call_object(&self, call: &TenantCall) -> Result<Answered, ApiError> {
        let sent = async {
            let request = internal::carrying(
                &call.request,
                &InternalCall::Forward {
                    sync: None,
                    forward: Forward {
                        key_hash: call.key_hash.clone(),
                        request_id: auth_core::request_id(&call.request),
                        route: call.route.clone(),
                        target: internal::target_of(&call.request),
                        host: internal::host_of(&call.request),
                    },
                },
            )?;
            internal::tenant_stub(self.env, &call.tenant_id)?
                .fetch_with_request(request)
                .await
        };
        let resp = sent
            .await
            .map_err(|e| failed("calling a tenant's object", e))?;
        answered(resp).await
    }
}

/// The answer to a forwarded tenant request: the client's, or an internal one.
enum Answered {
    Client(Response),
    /// The key is not the object's tenant's: nothing ran.
    NotMine,
    Hop(GraphHop),
}

/// Tells a client's answer from an internal one ([`internal::ANSWER_HEADER`]).
async fn answered(mut resp: Response) -> Result<Answered, ApiError> {
    match internal::read_answer(&mut resp).await {
        Ok(None) => Ok(Answered::Client(resp)),
        Ok(Some(InternalAnswer::NotMine)) => Ok(Answered::NotMine),
        Ok(Some(InternalAnswer::GraphHop { hop })) => Ok(Answered::Hop(hop)),
        Ok(Some(other)) => Err(failed("a tenant's object", format!("{other:?}"))),
        Err(e) => Err(failed("a tenant's object", e)),
    }
}

/// Logs what failed and answers 503: the Worker could not reach or understand an object.
fn failed(what: &str, why: impl std::fmt::Display) -> ApiError {
    console_error!("{what} failed: {why}");
    ApiError::Unavailable(1)
}

/// The answer of an object or of the directory, as the driver's outcome: a 101 keeps the
/// platform's own answer (it carries the socket); a graph hop becomes `TenantOutcome::Graph`.
async fn outcome(answered: Answered) -> (TenantOutcome, Option<Response>, Option<GraphHop>) {
    let resp = match answered {
        Answered::Hop(hop) => {
            let mut headers = http::HeaderMap::new();
            for (k, v) in &hop.headers {
                if let (Ok(k), Ok(v)) = (
                    http::HeaderName::from_bytes(k.as_bytes()),
                    http::HeaderValue::from_str(v),
                ) {
                    headers.insert(k, v);
                }
            }
            let graph = TenantOutcome::Graph {
                op: hop.op,
                actor_key_id: hop.actor_key_id.clone(),
                needs: "",
                headers,
            };
            return (graph, None, Some(hop));
        }
        Answered::Client(resp) => resp,
        // The directory forwards with its sync, so its object never answers "not mine".
        Answered::NotMine => {
            return (
                TenantOutcome::Respond(ApiError::Internal.into_response()),
                None,
                None,
            )
        }
    };
    if resp.status_code() == 101 {
        let mut switching = http::Response::new(Vec::new());
        *switching.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
        return (TenantOutcome::Respond(switching), Some(resp), None);
    }
    let mut core = from_worker(resp).await;
    internal::strip(core.headers_mut());
    (TenantOutcome::Respond(core), None, None)
}

/// R2 (`TENANT_DATA`), where a tenant's CSV is kept.
fn bucket(env: &Env) -> Result<worker::Bucket, ApiError> {
    env.bucket("TENANT_DATA").map_err(|e| {
        console_error!("the TENANT_DATA binding is missing: {e}");
        ApiError::Internal
    })
}

impl Host for Edge<'_> {
    type Upgrade = Response;
    /// The directory answers admin routes, metrics reads and test controls whole (notices,
    /// usage flushes and test controls included): the Worker carries out none of it.
    type Shared = NoSharedWork;

    fn shared(&self) -> Option<&NoSharedWork> {
        None
    }

    fn clock(&self) -> &dyn Clock {
        &self.clock
    }

    fn entropy(&self) -> &dyn Entropy {
        &WorkerEntropy
    }

    /// The directory runs the shared part of the front and answers it whole.
    async fn front(&self, step: FrontStep) -> Result<Front, ApiError> {
        let resp = self.directory(step.request()).await?;
        let mut response = from_worker(resp).await;
        internal::strip(response.headers_mut());
        Ok(Front::Respond {
            response,
            notices: Vec::new(),
        })
    }

    /// This isolate's cache, then the index (KV), then the directory on a miss.
    async fn key_owner(&self, key_hash: &str) -> Result<Option<String>, ApiError> {
        if let Some(tenant) = cached_owner(key_hash) {
            return Ok(Some(tenant));
        }
        if let Ok(kv) = self.env.kv(KEY_INDEX) {
            match kv.get(key_hash).text().await {
                Ok(Some(tenant)) if !tenant.is_empty() => {
                    remember_owner(key_hash, &tenant);
                    return Ok(Some(tenant));
                }
                Ok(_) => {}
                Err(e) => console_error!("reading the key index failed: {e}"),
            }
        }
        let owner = self.owner_from_directory(key_hash).await?;
        if let Some(tenant) = &owner {
            remember_owner(key_hash, tenant);
        }
        Ok(owner)
    }

    async fn read_upload(&self, _request: &auth_core::Request) -> Result<Vec<u8>, ApiError> {
        let Some(mut client) = self.client.borrow_mut().take() else {
            return Err(ApiError::Internal);
        };
        let mut core = http::Request::new(Vec::new());
        read_upload(&mut client, &mut core).await?;
        Ok(core.into_body())
    }

    /// The tenant's object, directly; a "not mine" goes to the directory, which finds the
    /// key's real owner in its mirror, answers, and corrects the index.
    async fn tenant(
        &self,
        call: &Arc<TenantCall>,
    ) -> Result<(TenantOutcome, Option<Response>), ApiError> {
        let answered = match self.call_object(call).await? {
            Answered::NotMine => {
                forget_owner(&call.key_hash);
                answered(self.directory(&call.request).await?).await?
            }
            answered => answered,
        };
        let (outcome, upgrade, hop) = outcome(answered).await;
        *self.hop.borrow_mut() = hop.map(|h| (h.tenant_id, h.now_ms));
        Ok((outcome, upgrade))
    }

    /// The tenant's `GraphStateCSV` object, as `actor`, under the tenant object's clock.
    async fn graph(&self, run: GraphRun) -> Result<auth_core::Response, ApiError> {
        let (tenant, now_ms) = self.hop_tenant(&run.call);
        let csv = match run.route {
            GraphRoute::Reload { csv } => Some(csv),
            _ => None,
        };
        let request = &run.call.request;
        match crate::graph::call(self.env, &tenant, &run.actor, now_ms, request, csv).await {
            Ok(resp) => Ok(from_worker(resp).await),
            Err(e) => {
                console_error!("calling a graph object failed: {e}");
                Err(ApiError::Unavailable(1))
            }
        }
    }

    async fn store_upload(&self, call: &Arc<TenantCall>) -> Result<usize, ApiError> {
        let edges = check_upload(&call.request)?;
        let (tenant, _) = self.hop_tenant(call);
        bucket(self.env)?
            .put(blob_key(&tenant), call.request.body().clone())
            .execute()
            .await
            .map_err(|e| {
                console_error!("writing a graph CSV to R2 failed: {e}");
                ApiError::Internal
            })?;
        Ok(edges)
    }

    async fn read_blob(&self, key: &str) -> Result<Option<Vec<u8>>, ApiError> {
        // The driver names the call's tenant; after a "not mine" the hop's tenant is the one.
        let key = match self.hop.borrow().as_ref() {
            Some((tenant, _)) => blob_key(tenant),
            None => key.to_owned(),
        };
        let failed = |e: worker::Error| {
            console_error!("reading a graph CSV from R2 failed: {e}");
            ApiError::Internal
        };
        let object = bucket(self.env)?.get(key).execute().await.map_err(failed)?;
        match object.as_ref().and_then(|o| o.body()) {
            Some(body) => Ok(Some(body.bytes().await.map_err(failed)?)),
            None => Ok(None),
        }
    }

    /// The record goes to the object that answered the hop.
    async fn audit(&self, tenant_id: &str, notice: Notice) -> Result<(), ApiError> {
        let tenant = self
            .hop
            .borrow()
            .as_ref()
            .map_or_else(|| tenant_id.to_owned(), |(t, _)| t.clone());
        let written = match internal::tenant_stub(self.env, &tenant) {
            Ok(stub) => internal::ask(&stub, &InternalCall::Audit { notice }).await,
            Err(e) => Err(e.to_string()),
        };
        match written {
            Ok(Asked {
                answer: InternalAnswer::Done,
                ..
            }) => Ok(()),
            Ok(_) => Err(failed("writing the graph audit record", "an odd answer")),
            Err(e) => Err(failed("writing the graph audit record", e)),
        }
    }
}
