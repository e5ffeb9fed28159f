//! `TenantState`: one Durable Object per tenant (binding `TENANT_STATE`), running the core's
//! [`auth_core::TenantState`] over the object's own SQLite.
//!
//! The object owns its tenant's rows: keys, end users, sessions, refresh tokens, one-time
//! tokens, the blacklist, the mail outbox, plus the core object's own tables (rate-limit
//! window, audit log, pending usage). It applies the same migrations as the native host, so the
//! core's queries run here unchanged with `db` = this object's storage; every call is one
//! `transactionSync`, so each exact rule (a quota spent, a refresh token rotated, a key
//! revoked) is one atomic read-modify-write with nothing interleaved.
//!
//! What it does not own arrives with the directory's calls (`crate::internal::Sync`) and is
//! kept: the tenant's row, the JWT keyring and the test clock. Client requests arrive either
//! from the directory (a miss in the key index) or straight from the stateless Worker, which
//! found the key's tenant in the index: then the object first checks that the key is one of
//! its tenant's (`owns_key`), so a stale or wrong index entry can never admit a request. What the directory needs back it gets
//! from this object: the tenant's keys after they change (for routing and the admin lists) and
//! the usage counts (pushed by the alarm, or pulled before an admin metrics answer).
//!
//! The object's one platform alarm serves the core object's alarm (grace periods, usage
//! flushes) and the tenant's mail outbox, whichever is due first. Event WebSockets are
//! hibernatable sockets of this object.
//!
//! One job a module: [`state`] (the core object over this object's SQLite and what the
//! directory sent), [`forward`] (a client's request), [`internal_server`] (the directory's
//! calls), [`ship`] (keys and usage to the directory, rows to D1), [`mail_delivery`],
//! [`alarms`] (the one platform alarm) and [`sockets`] (event WebSockets). This file holds the
//! object and the dispatch of its calls.

mod alarms;
mod forward;
mod internal_server;
mod mail_delivery;
mod ship;
mod sockets;
mod state;

use std::cell::RefCell;

use auth_core::ApiError;
use worker::{
    console_error, durable_object, Env, Request, Response, State, WebSocket,
    WebSocketIncomingMessage,
};

use crate::convert::{not_configured, problem};
use crate::internal::{self, InternalCall};
use state::Inner;

#[durable_object]
pub struct TenantState {
    state: State,
    env: Env,
    inner: RefCell<Option<Inner>>,
}

impl TenantState {
    fn ensure_open(&self) -> Result<(), String> {
        if self.inner.borrow().is_none() {
            let inner = Inner::open(&self.state, &self.env)?;
            *self.inner.borrow_mut() = Some(inner);
        }
        Ok(())
    }

    async fn handle(&self, mut req: Request) -> worker::Result<Response> {
        if let Err(reason) = self.ensure_open() {
            console_error!("auth-service is not configured: {reason}");
            return not_configured(&reason);
        }
        let call = match internal::receive(&mut req).await {
            Ok(call) => call,
            Err(e) => return problem(e),
        };
        // The directory's calls carry its sync; a client request straight from the stateless
        // Worker carries none and runs with what this object holds (see `crate::internal`).
        let sync = match &call {
            InternalCall::Tenant { sync, .. } => Some(sync),
            InternalCall::Forward { sync, .. } => sync.as_ref(),
            _ => None,
        };
        if let Some(sync) = sync {
            let guard = self.inner.borrow();
            let Some(inner) = guard.as_ref() else {
                return problem(ApiError::Internal);
            };
            if let Err(e) = inner.apply(sync) {
                console_error!("applying the directory's rows failed: {e}");
                return problem(ApiError::Internal);
            }
        }
        let response = match call {
            InternalCall::Tenant { op, .. } => self.run_op(op).await,
            InternalCall::Audit { notice } => self.audit(&notice),
            InternalCall::Forward { sync, forward } => {
                let direct = sync.is_none();
                let answer = self.tenant_request(req, forward, direct).await;
                // No directory pulls the keys after a direct call: the object sends them
                // itself, before its answer, so the admin lists and the index (KV) know a
                // key the tenant just made before the tenant can use it.
                let keys_changed = self
                    .inner
                    .borrow()
                    .as_ref()
                    .is_some_and(Inner::keys_pending);
                if direct && keys_changed {
                    self.push_keys().await;
                }
                answer
            }
            _ => problem(ApiError::NotFound),
        };
        self.copy_to_d1().await;
        self.sync_alarm().await;
        response
    }
}

impl worker::DurableObject for TenantState {
    fn new(state: State, env: Env) -> Self {
        Self {
            state,
            env,
            inner: RefCell::new(None),
        }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        self.handle(req).await
    }

    async fn alarm(&self) -> worker::Result<Response> {
        self.on_alarm().await
    }

    async fn websocket_message(
        &self,
        ws: WebSocket,
        message: WebSocketIncomingMessage,
    ) -> worker::Result<()> {
        self.on_socket_message(ws, message).await
    }

    async fn websocket_close(
        &self,
        ws: WebSocket,
        code: usize,
        _reason: String,
        _was_clean: bool,
    ) -> worker::Result<()> {
        self.on_socket_close(ws, code).await
    }
}
