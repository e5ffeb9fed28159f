//! The stateless Worker: no global object on a tenant's path (issue #15).
//!
//! A keyed tenant request (`/v1/...`, and `/v1/auth/*` with a tenant key) is handled here up to
//! the tenant's object: the core's edge ([`auth_core::Service::edge`]: route, method, query and
//! key-shape checks, the keyed hash, with the refusals the front would give), then the key's
//! tenant from the index (KV `KEY_INDEX`, hash → tenant id, written by the directory), then the
//! tenant's `TenantState` object, called directly. The object decides authoritatively: it holds
//! its tenant's keys and row, so a revoked, expired or foreign key, a suspended or deleted
//! tenant are refused there, and a hash that is not one of its keys is answered "not mine"
//! ([`internal::NOT_MINE_HEADER`]). So the index may lag or be wrong without ever admitting a
//! request: an index miss or a "not mine" goes to the directory, which answers as before and
//! writes the index.
//!
//! Everything else (meta, admin, keyless and access-token end-user routes, test controls) goes
//! to the directory, as does every request when the settings or the index are missing.
//!
//! The three steps have the shape of the core's request driver (`/work/notes/s5`): [`front`]
//! (the directory), [`key_owner`] (the index), [`tenant`] (the object).

use std::cell::RefCell;
use std::rc::Rc;

use auth_core::edge::Edge;
use auth_core::ApiError;
use worker::{console_error, Env, Request, Response};

use crate::config::Settings;
use crate::convert::{head_to_core, read_upload, to_core, to_stub_request, to_worker, UPLOAD_PATH};
use crate::internal::{self, Forward};
use crate::storage::WorkerEntropy;

/// The KV namespace of the key index: key hash → tenant id.
pub const KEY_INDEX: &str = "KEY_INDEX";

thread_local! {
    /// The settings, read once per isolate (the hasher's pepper, the admin key's hash).
    static SETTINGS: RefCell<Option<Rc<Settings>>> = const { RefCell::new(None) };
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
    let path = req.path();
    let Some(settings) = settings(env).filter(|_| path.starts_with("/v1/")) else {
        return front(env, req).await;
    };
    // A CSV upload's body is read only once the key's tenant is known, as on the native host.
    let upload = path == UPLOAD_PATH;
    let core = if upload {
        head_to_core(&req)
    } else {
        to_core(&mut req).await
    };
    let mut core = match core {
        Ok(c) => c,
        Err(e) => return problem(e, "-", false),
    };
    let head = core.method() == http::Method::HEAD;
    let request_id = auth_core::keys::random_hex(8, &WorkerEntropy);
    let (key_hash, user_request) = match settings.service.edge(&core) {
        Edge::Front => return front_with(env, req, &core, upload).await,
        Edge::Refuse(e) => return problem(e, &request_id, head),
        Edge::Keyed {
            key_hash,
            user_route,
        } => (key_hash, user_route.is_some()),
    };
    let Some(tenant_id) = key_owner(env, &key_hash).await else {
        return front_with(env, req, &core, upload).await;
    };
    if upload {
        if let Err(e) = read_upload(&mut req, &mut core).await {
            return problem(e, &request_id, head);
        }
    }
    let forward = Forward {
        key_hash,
        request_id,
        user_request,
        host: core
            .headers()
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        direct: true,
    };
    match tenant(env, &tenant_id, &forward, &core).await? {
        Some(answer) => Ok(answer),
        // The index was stale or wrong: the directory finds the owner and refreshes it.
        None => front_core(env, &req, &core).await,
    }
}

fn problem(e: ApiError, request_id: &str, head: bool) -> worker::Result<Response> {
    to_worker(auth_core::finish(e.into_response(), request_id, head))
}

/// The directory, with the client's request as it came (its body unread).
pub async fn front(env: &Env, req: Request) -> worker::Result<Response> {
    internal::directory_stub(env)?.fetch_with_request(req).await
}

/// The directory, after the Worker has looked at `core`: an upload still has its body unread
/// in `req` and is passed on as it came; any other request was read into `core`.
async fn front_with(
    env: &Env,
    req: Request,
    core: &auth_core::Request,
    upload: bool,
) -> worker::Result<Response> {
    if upload {
        return front(env, req).await;
    }
    front_core(env, &req, core).await
}

/// The directory, with a request rebuilt from `core` under the client's own URL (the
/// directory reads the host from it), minus any header that claims to be internal.
async fn front_core(
    env: &Env,
    req: &Request,
    core: &auth_core::Request,
) -> worker::Result<Response> {
    let url = req.url()?;
    let origin = url.origin().ascii_serialization();
    let request = to_stub_request(
        core,
        &origin,
        |name| !name.as_str().starts_with(internal::HEADER_PREFIX),
        &[],
    )?;
    internal::directory_stub(env)?
        .fetch_with_request(request)
        .await
}

/// The tenant whose key has hash `key_hash`, from the index; `None` on a miss, or when the
/// index cannot be read (the directory knows).
pub async fn key_owner(env: &Env, key_hash: &str) -> Option<String> {
    let kv = match env.kv(KEY_INDEX) {
        Ok(kv) => kv,
        Err(_) => return None, // no index bound: every tenant request goes to the directory
    };
    match kv.get(key_hash).text().await {
        Ok(found) => found.filter(|t| !t.is_empty()),
        Err(e) => {
            console_error!("reading the key index failed: {e}");
            None
        }
    }
}

/// Runs a client request in the tenant's object: its answer, without the internal headers,
/// or `None` when the object says the key is not its tenant's (nothing ran there).
pub async fn tenant(
    env: &Env,
    tenant_id: &str,
    forward: &Forward,
    core: &auth_core::Request,
) -> worker::Result<Option<Response>> {
    let forward = internal::encode(forward);
    let request = to_stub_request(
        core,
        "https://tenant.internal",
        |name| !name.as_str().starts_with(internal::HEADER_PREFIX) && name != http::header::HOST,
        &[(internal::FORWARD_HEADER, &forward)],
    )?;
    let resp = internal::tenant_stub(env, tenant_id)?
        .fetch_with_request(request)
        .await?;
    if resp.status_code() == 101 {
        return Ok(Some(resp)); // the event stream: the socket is the tenant object's
    }
    if resp.headers().has(internal::NOT_MINE_HEADER)? {
        return Ok(None);
    }
    let headers = resp.headers().clone();
    let internal_names: Vec<String> = headers
        .keys()
        .filter(|n| n.starts_with(internal::HEADER_PREFIX))
        .collect();
    for name in internal_names {
        headers.delete(&name)?;
    }
    Ok(Some(resp.with_headers(headers)))
}
