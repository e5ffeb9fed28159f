//! `AuthPlatform`: the directory. One Durable Object for the whole service, which runs the core's
//! front (routing, the admin API) over the rows no single tenant owns, and hands every tenant
//! request to that tenant's `TenantState` object (`crate::tenant`).
//!
//! It owns: tenants, platform admins and their tenant lists, the JWT keyring, usage metrics,
//! and a mirror of every tenant's keys (the front finds a key's tenant there, and the admin API
//! lists and counts keys from it). The tenant's object owns the keys themselves and everything
//! else of the tenant; see `crate::rows` for how rows cross between the two and why images
//! arriving late cannot revive a key.
//!
//! Why a Durable Object and not D1: the core's storage port is synchronous and transactional
//! (tenant creation with its keys and onboarding rows, keyring rotation, admin checks are each
//! one atomic read-modify-write), and a Durable Object's own SQLite is the only storage on
//! Workers with synchronous transactions. `docs/worker.md` says more.
//!
//! Everything the front does runs without an `await`, so no other request interleaves with it;
//! the awaits come after (the tenant's object, notices), where interleaving is harmless because
//! the tenant's object decides everything that must be exact.
//!
//! One job a module: [`directory`] (the directory's rows and the core's front over them),
//! [`dispatch`] (a client request: the front's decision carried out), [`tenants`] (calls to
//! the tenants' objects), [`outboxes`] (D1 and the key index) and [`test_controls`]. This file
//! holds the object and the routing of what reaches it.

mod directory;
mod dispatch;
mod outboxes;
mod tenants;
mod test_controls;

use std::cell::{Cell, RefCell};

use auth_core::ApiError;
use worker::{console_error, console_log, durable_object, Env, Request, Response, State};

use crate::convert::{client_to_core, not_configured, problem};
use crate::internal::{self, InternalAnswer, InternalCall, TenantOp};

use directory::Platform;

#[durable_object]
pub struct AuthPlatform {
    state: State,
    env: Env,
    platform: RefCell<Option<Platform>>,
    /// Client requests this instance handled (test controls excluded), and internal calls
    /// from tenants' objects: what `GET /_test/directory-calls` answers, so a test can prove
    /// that a tenant request with a warm key index never reaches the directory.
    client_calls: Cell<u64>,
    internal_calls: Cell<u64>,
}

/// The test control that answers how many calls this directory instance handled.
pub const DIRECTORY_CALLS: &str = "/_test/directory-calls";

impl AuthPlatform {
    /// Builds the platform at first use; a configuration error is a 503 with the reason
    /// (never a secret), not a panic that would poison the isolate.
    fn ensure_open(&self) -> Result<(), String> {
        if self.platform.borrow().is_none() {
            let p = Platform::open(&self.state, &self.env)?;
            *self.platform.borrow_mut() = Some(p);
        }
        Ok(())
    }

    /// Runs `f` with the open platform.
    fn with<R>(&self, f: impl FnOnce(&Platform) -> R) -> Option<R> {
        self.platform.borrow().as_ref().map(f)
    }

    /// A call at [`internal::PATH`]: what the tenants' objects and the Worker ask of the
    /// directory.
    async fn internal_call(&self, req: &mut Request) -> worker::Result<Response> {
        let call = match internal::receive(req).await {
            Ok(call) => call,
            Err(e) => return problem(e),
        };
        let merged = match call {
            InternalCall::KeyOwner { key_hash } => {
                // On behalf of a client request (an index miss): counted as the directory's.
                self.client_calls.set(self.client_calls.get() + 1);
                return self.key_owner(&key_hash).await;
            }
            InternalCall::MergeKeys { shipment } => {
                let merged = self.with(|p| p.merge_keys(&shipment));
                self.copy_to_d1().await;
                self.index_keys().await;
                merged
            }
            InternalCall::MergeUsage { shipment } => {
                let merged = self.with(|p| p.merge_usage(&shipment));
                self.copy_to_d1().await;
                merged
            }
            _ => return problem(ApiError::NotFound),
        };
        match merged {
            Some(Ok(())) => internal::answer(&InternalAnswer::Done),
            _ => problem(ApiError::Internal),
        }
    }

    async fn handle(&self, mut req: Request) -> worker::Result<Response> {
        if let Err(reason) = self.ensure_open() {
            console_error!("auth-service is not configured: {reason}");
            return not_configured(&reason);
        }
        if self
            .with(|p| p.keyring_fanout.replace(false))
            .unwrap_or(false)
        {
            // A new JWT_SECRET changed the keyring at open: every tenant's object first.
            let failed = self.call_all(TenantOp::Apply).await;
            if failed > 0 {
                console_error!("{failed} tenant objects did not take the new keyring");
                self.with(|p| p.keyring_fanout.set(true));
            }
        }
        let path = req.path();
        if path == internal::PATH {
            self.internal_calls.set(self.internal_calls.get() + 1);
            return self.internal_call(&mut req).await;
        }
        if !path.starts_with("/_test/") {
            self.client_calls.set(self.client_calls.get() + 1);
        }
        // A CSV upload's body (up to 8 MiB) is read only once the front has found the key's
        // tenant, as on the native host: a caller without a valid key never has a byte of it
        // read. Every other body is read now, up to 64 KiB.
        let (core_req, upload) = match client_to_core(&mut req).await {
            Ok(read) => read,
            Err(e) => return problem(e),
        };
        let method = core_req.method().clone();
        if !self.with(|p| p.d1_ready.get()).unwrap_or(true) {
            self.copy_to_d1().await; // D1's migrations, before any tenant's object writes there
        }
        let test_hooks = self.with(|p| p.settings.test_hooks).unwrap_or(false);
        let response = if test_hooks && path.starts_with("/_test/") {
            self.test_control(core_req).await
        } else {
            self.dispatch(core_req, upload.then_some(&mut req)).await
        };
        if let Ok(r) = &response {
            console_log!("{method} {path} {}", r.status_code());
        }
        response
    }
}

impl worker::DurableObject for AuthPlatform {
    fn new(state: State, env: Env) -> Self {
        Self {
            state,
            env,
            platform: RefCell::new(None),
            client_calls: Cell::new(0),
            internal_calls: Cell::new(0),
        }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        self.handle(req).await
    }

    /// The directory's alarm retries what D1 did not take.
    async fn alarm(&self) -> worker::Result<Response> {
        if self.ensure_open().is_ok() {
            self.copy_to_d1().await;
            self.index_keys().await;
        }
        Response::ok("")
    }
}
