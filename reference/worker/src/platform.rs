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

use std::cell::{Cell, RefCell};

use auth_core::ports::{Sql, SqlValue, StorageError};
use auth_core::route::TenantRoute;
use auth_core::test_controls::TestControl;
use auth_core::{ApiError, Front, Notice, Ports, Stage};
use http::{Method, StatusCode};
use serde_json::json;
use worker::{console_error, console_log, durable_object, Env, Request, Response, State};

use crate::config::Settings;
use crate::convert::{
    from_worker, head_to_core, read_upload, to_core, to_stub_request, to_worker, UPLOAD_PATH,
};
use crate::internal::{self, Forward, NoticeCall, Shipment, Sync};
use crate::mirror::{self, Mirror};
use crate::rows;
use crate::storage::{DoSql, WorkerClock, WorkerEntropy};
use crate::tenant::not_configured;

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

/// What the object builds at first use.
struct Platform {
    settings: Settings,
    db: DoSql,
    clock: RefCell<WorkerClock>,
    /// The keyring changed when this instance opened (a new `JWT_SECRET`): every tenant's
    /// object gets it before the next answer.
    keyring_fanout: Cell<bool>,
    /// The copy of the directory's tables in D1 (none without a `DB` binding).
    mirror: Option<Mirror>,
    /// Whether D1 has had its migrations checked by this instance.
    d1_ready: Cell<bool>,
}

/// The test control that answers how many calls this directory instance handled.
pub const DIRECTORY_CALLS: &str = "/_test/directory-calls";

fn problem(e: ApiError) -> worker::Result<Response> {
    to_worker(auth_core::finish(e.into_response(), "-", false))
}

impl Platform {
    /// Reads the configuration, applies migrations, reconciles the JWT keyring.
    fn open(state: &State, env: &Env) -> Result<Self, String> {
        let settings = Settings::from_env(env)?;
        let (db, mirror) = mirror::open_storage(
            state,
            env,
            &[
                KV_OUTBOX_DDL[0],
                KV_OUTBOX_DDL[1],
                "CREATE TABLE IF NOT EXISTS _test_clock (id INTEGER PRIMARY KEY CHECK (id = 1), \
                 offset_ms INTEGER NOT NULL)",
            ],
            mirror::DIRECTORY_TABLES,
        )?;
        if mirror.is_none() {
            console_error!("no D1 binding DB: the relational tables are not copied to D1");
        }
        let offset_ms = db
            .query("SELECT offset_ms FROM _test_clock WHERE id = 1", &[])
            .ok()
            .and_then(|rows| {
                rows.first()
                    .and_then(|r| r.first())
                    .and_then(SqlValue::as_i64)
            })
            .unwrap_or(0);
        let clock = WorkerClock { offset_ms };
        let keyring = |db: &DoSql| auth_core::users::jwt::list_keys(db).map(|k| format!("{k:?}"));
        let before = keyring(&db).map_err(|e| format!("JWT keyring: {e}"))?;
        auth_core::users::jwt::reconcile(
            &db,
            &settings.secrets,
            auth_core::ports::Clock::now_ms(&clock),
        )
        .map_err(|e| format!("JWT keyring: {e}"))?;
        let after = keyring(&db).map_err(|e| format!("JWT keyring: {e}"))?;
        Ok(Self {
            settings,
            db,
            clock: RefCell::new(clock),
            keyring_fanout: Cell::new(before != after),
            mirror,
            d1_ready: Cell::new(false),
        })
    }

    fn now_ms(&self) -> i64 {
        auth_core::ports::Clock::now_ms(&*self.clock.borrow())
    }

    /// The core's front, both parts, over the directory's rows (the key's owner from its
    /// mirror of the keys); with the request id and whether the request is HEAD.
    fn front(&self, req: auth_core::Request) -> (Front, String, bool) {
        let clock = self.clock.borrow();
        let ports = Ports {
            db: &self.db,
            clock: &*clock,
            entropy: &WorkerEntropy,
        };
        let service = &self.settings.service;
        // The stateless Worker ran the front's first part already and gave the request its
        // id: keep it, so the answer and the audit records name the id the client sees.
        let given = req
            .headers()
            .get(internal::REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(GivenId::parse);
        let begun = match &given {
            Some(id) => service.begin(&*clock, id, req),
            None => service.begin(&*clock, &WorkerEntropy, req),
        };
        let refuse = |e: ApiError| Front::Respond {
            response: e.into_response(),
            notices: Vec::new(),
        };
        let front = match begun.stage {
            Stage::Respond(response) => Front::Respond {
                response,
                notices: Vec::new(),
            },
            Stage::Keyed(keyed) => match service.key_owner(&self.db, &keyed.key_hash) {
                Ok(Some(tenant_id)) => Front::Tenant(keyed.into_call(tenant_id)),
                Ok(None) => refuse(ApiError::Unauthorized),
                Err(e) => refuse(e),
            },
            Stage::Shared(step) => service.front(&ports, step),
        };
        (front, begun.request_id, begun.head)
    }

    /// Answers an admin metrics read once usage is flushed.
    fn resume(&self, resume: auth_core::Resume) -> auth_core::Response {
        let clock = self.clock.borrow();
        let ports = Ports {
            db: &self.db,
            clock: &*clock,
            entropy: &WorkerEntropy,
        };
        self.settings.service.resume(&ports, resume)
    }

    /// What a call to `tenant_id`'s object carries: its row, the keyring, the clock.
    fn sync_for(&self, tenant_id: &str) -> Result<Sync, StorageError> {
        let tenant = rows::select(&self.db, "tenants", "id = ?", &[tenant_id.into()])?
            .into_iter()
            .next();
        let keyring = self
            .db
            .query(
                "SELECT kid, status, created_at, retired_at FROM jwt_keys ORDER BY created_at, rowid",
                &[],
            )?
            .iter()
            .map(rows::to_json)
            .collect();
        Ok(Sync {
            tenant_id: tenant_id.to_owned(),
            tenant,
            keyring,
            offset_ms: self.clock.borrow().offset_ms,
        })
    }

    /// Folds a tenant's key images into the mirror (only rows of that tenant).
    fn merge_keys(&self, shipment: &Shipment) -> Result<(), StorageError> {
        let own: rows::Image = shipment
            .rows
            .iter()
            .filter(|r| r.get(1).and_then(|v| v.as_str()) == Some(&shipment.tenant_id))
            .cloned()
            .collect();
        self.db.transaction(&mut |db| rows::merge_keys(db, &own))
    }

    /// Adds a tenant's usage counts to `usage_metrics`.
    fn merge_usage(&self, shipment: &Shipment) -> Result<(), StorageError> {
        self.db
            .transaction(&mut |db| rows::merge_usage(db, &shipment.rows))
    }

    /// Every tenant the directory has created, deleted ones too (their objects may still
    /// hold usage counts or alarms).
    fn tenant_ids(&self) -> Vec<String> {
        self.db
            .query("SELECT id FROM tenants ORDER BY id", &[])
            .unwrap_or_default()
            .iter()
            .filter_map(|r| r.first().and_then(SqlValue::as_str).map(str::to_owned))
            .collect()
    }

    fn tenant_exists(&self, tenant_id: &str) -> bool {
        self.db
            .query("SELECT 1 FROM tenants WHERE id = ?", &[tenant_id.into()])
            .is_ok_and(|r| !r.is_empty())
    }

    /// The key hashes written to the mirror and not yet in the index (KV), oldest first.
    fn unindexed(&self, limit: usize) -> Vec<(String, String)> {
        self.db
            .query(
                "SELECT key_hash, tenant_id FROM _kv_outbox ORDER BY rowid LIMIT ?",
                &[(limit as i64).into()],
            )
            .unwrap_or_default()
            .iter()
            .filter_map(|r| {
                let hash = r.first().and_then(SqlValue::as_str)?;
                let tenant = r.get(1).and_then(SqlValue::as_str)?;
                Some((hash.to_owned(), tenant.to_owned()))
            })
            .collect()
    }
}

/// The index outbox: a trigger records every key the mirror learns of (a tenant's creation,
/// an admin-minted key, a key a tenant made, merged from its object), inside the transaction
/// that writes it; [`AuthPlatform::index_keys`] copies them to KV before the answer, and the
/// alarm retries what KV did not take. A key's tenant never changes, so an entry is never
/// rewritten; entries of dead keys are left (the tenant's object refuses the key, and its
/// requests then cost no directory call).
const KV_OUTBOX_DDL: [&str; 2] = [
    "CREATE TABLE IF NOT EXISTS _kv_outbox (key_hash TEXT PRIMARY KEY, tenant_id TEXT NOT NULL)",
    "CREATE TRIGGER IF NOT EXISTS _kv_outbox_insert AFTER INSERT ON api_keys \
     BEGIN INSERT OR REPLACE INTO _kv_outbox (key_hash, tenant_id) \
     VALUES (NEW.key_hash, NEW.tenant_id); END",
];

/// A request id given by the stateless Worker (16 hex digits), replayed as the randomness
/// `Service::begin` draws the id from: its only draw.
struct GivenId([u8; 8]);

impl GivenId {
    fn parse(hex: &str) -> Option<Self> {
        if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut out = [0u8; 8];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Self(out))
    }
}

impl auth_core::ports::Entropy for GivenId {
    fn fill(&self, buf: &mut [u8]) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b = self.0[i % 8];
        }
    }
}

/// How many tenants' objects the directory calls at once when it calls them all.
const FAN_OUT: usize = 16;

/// Reads a JSON answer of a tenant's object.
async fn answer_json(mut resp: Response) -> Option<serde_json::Value> {
    if resp.status_code() != 200 {
        return None;
    }
    resp.json::<serde_json::Value>().await.ok()
}

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

    /// POSTs an internal call to a tenant's object with its [`Sync`]; pulls its keys into the
    /// mirror when it says they changed.
    async fn call_tenant(
        &self,
        tenant_id: &str,
        path: &str,
        body: Option<String>,
    ) -> Result<Response, String> {
        let sync = self
            .with(|p| p.sync_for(tenant_id))
            .ok_or("not open")?
            .map_err(|e| e.to_string())?;
        let stub = internal::tenant_stub(&self.env, tenant_id).map_err(|e| e.to_string())?;
        let resp = internal::post(&stub, path, Some(&sync), body)
            .await
            .map_err(|e| e.to_string())?;
        self.after_tenant_call(tenant_id, &resp).await;
        Ok(resp)
    }

    async fn after_tenant_call(&self, tenant_id: &str, resp: &Response) {
        let keys_changed = resp
            .headers()
            .get(internal::KEYS_CHANGED_HEADER)
            .ok()
            .flatten()
            .is_some();
        if keys_changed {
            self.pull_keys(tenant_id).await;
        }
    }

    /// Brings the mirror of a tenant's keys up to date from its object: the keys changed since
    /// the last pull, or, if that answer is lost, all of them.
    async fn pull_keys(&self, tenant_id: &str) {
        for path in [internal::KEYS, internal::ALL_KEYS] {
            let pulled = match Box::pin(self.call_tenant(tenant_id, path, None)).await {
                Ok(resp) => answer_json(resp).await,
                Err(e) => {
                    console_error!("pulling a tenant's keys: {e}");
                    None
                }
            };
            let rows = pulled.and_then(|v| serde_json::from_value::<rows::Image>(v).ok());
            if let Some(rows) = rows {
                let shipment = Shipment {
                    tenant_id: tenant_id.to_owned(),
                    rows,
                };
                match self.with(|p| p.merge_keys(&shipment)) {
                    Some(Ok(())) => return,
                    Some(Err(e)) => console_error!("merging a tenant's keys: {e}"),
                    None => return,
                }
            }
        }
    }

    /// Before `GET /admin/tenants/{id}`: the onboarding state changes in the tenant's object
    /// (password set, welcome mail sent), so its rows are copied back first. Only for a
    /// platform admin, so that nobody else can make the directory call tenants' objects; the
    /// front checks the admin's tenant list afterwards as for any other request.
    async fn refresh_onboarding(&self, req: &auth_core::Request, tenant_id: &str) {
        let onboarded = self
            .with(|p| {
                let clock = p.clock.borrow();
                let ports = Ports {
                    db: &p.db,
                    clock: &*clock,
                    entropy: &WorkerEntropy,
                };
                p.settings
                    .service
                    .authenticator()
                    .admin(&ports, req)
                    .is_ok()
                    && p.db
                        .query(
                            "SELECT 1 FROM tenant_onboarding WHERE tenant_id = ?",
                            &[tenant_id.into()],
                        )
                        .is_ok_and(|r| !r.is_empty())
            })
            .unwrap_or(false);
        if !onboarded {
            return;
        }
        let Ok(resp) = self
            .call_tenant(tenant_id, internal::ONBOARDING, None)
            .await
        else {
            return;
        };
        let Some(value) = answer_json(resp).await else {
            return;
        };
        let written = self.with(|p| {
            p.db.transaction(&mut |db| {
                for table in ["tenant_users", "mail_outbox", "tenant_onboarding"] {
                    if let Ok(image) = serde_json::from_value::<rows::Image>(value[table].clone()) {
                        rows::insert(db, "INSERT OR REPLACE", table, &image)?;
                    }
                }
                Ok(())
            })
        });
        if let Some(Err(e)) = written {
            console_error!("copying the onboarding state: {e}");
        }
    }

    /// Moves the pending usage counts of `targets`' objects into `usage_metrics`, a few
    /// objects at a time. The directory does not see tenant requests any more, so it cannot
    /// tell which objects hold counts: it asks the ones an answer needs exactly.
    async fn flush_metrics(&self, targets: Vec<String>) {
        for chunk in targets.chunks(FAN_OUT) {
            futures::future::join_all(chunk.iter().map(|t| self.flush_one(t))).await;
        }
    }

    async fn flush_one(&self, tenant_id: &str) {
        let answered = match self.call_tenant(tenant_id, internal::FLUSH, None).await {
            Ok(resp) => answer_json(resp).await,
            Err(_) => None,
        };
        let Some(rows) = answered.and_then(|v| serde_json::from_value::<rows::Image>(v).ok())
        else {
            console_error!("could not flush a tenant's usage counts; its alarm will");
            return;
        };
        if rows.is_empty() {
            return;
        }
        let shipment = Shipment {
            tenant_id: tenant_id.to_owned(),
            rows,
        };
        if !matches!(self.with(|p| p.merge_usage(&shipment)), Some(Ok(()))) {
            console_error!("could not record a tenant's usage counts");
        }
    }

    /// Calls `path` on every tenant's object with the directory's [`Sync`], a few at a time,
    /// before the answer that needs it: a keyring rotation, a test-clock step. Answers how
    /// many calls failed.
    async fn call_all(&self, path: &str) -> (usize, Vec<Option<serde_json::Value>>) {
        let ids = self.with(Platform::tenant_ids).unwrap_or_default();
        let mut failed = 0;
        let mut answers = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(FAN_OUT) {
            let called =
                futures::future::join_all(chunk.iter().map(|t| self.call_tenant(t, path, None)))
                    .await;
            for r in called {
                match r {
                    Ok(resp) if resp.status_code() == 200 => answers.push(answer_json(resp).await),
                    Ok(resp) => {
                        console_error!("a tenant's object answered {}", resp.status_code());
                        failed += 1;
                    }
                    Err(e) => {
                        console_error!("calling a tenant's object: {e}");
                        failed += 1;
                    }
                }
            }
        }
        (failed, answers)
    }

    /// Copies the keys the mirror learned of to the index (KV), before the answer; what KV
    /// does not take stays in `_kv_outbox` for the next call or the alarm. Answers whether
    /// the outbox is empty.
    async fn index_keys(&self) -> bool {
        let Ok(kv) = self.env.kv(crate::edge::KEY_INDEX) else {
            return true; // no index bound: the Worker sends every tenant request here
        };
        loop {
            let batch = self.with(|p| p.unindexed(64)).unwrap_or_default();
            if batch.is_empty() {
                return true;
            }
            for (hash, tenant_id) in batch {
                let put = match kv.put(&hash, tenant_id.as_str()) {
                    Ok(p) => p.execute().await,
                    Err(e) => Err(e),
                };
                if let Err(e) = put {
                    console_error!("writing the key index failed: {e}; retried later");
                    self.retry_later().await;
                    return false;
                }
                self.with(|p| {
                    p.db.execute(
                        "DELETE FROM _kv_outbox WHERE key_hash = ? AND tenant_id = ?",
                        &[hash.as_str().into(), tenant_id.as_str().into()],
                    )
                });
            }
        }
    }

    /// Sets the directory's alarm to retry what D1 or the index did not take.
    async fn retry_later(&self) {
        let at = worker::Date::now().as_millis() as i64 + mirror::RETRY_MS;
        let _ = self
            .state
            .storage()
            .set_alarm(worker::ScheduledTime::new(js_sys::Date::new(
                &js_sys::Number::from(at as f64),
            )))
            .await;
    }

    /// Hands a notice, with the rows the admin API wrote for the tenant, to its object.
    async fn deliver_notice(&self, tenant_id: &str, notice: Notice) -> Result<(), String> {
        let shipped = self
            .with(|p| rows::rows_of_notice(&p.db, tenant_id, &notice))
            .ok_or("not open")?
            .map_err(|e| e.to_string())?;
        let body = serde_json::to_string(&NoticeCall {
            notice,
            rows: shipped,
        })
        .map_err(|e| e.to_string())?;
        let resp = self
            .call_tenant(tenant_id, internal::NOTICE, Some(body))
            .await?;
        if resp.status_code() == 200 {
            Ok(())
        } else {
            Err(format!("status {}", resp.status_code()))
        }
    }

    /// Brings D1 up to date with the directory's tables: its migrations once per instance,
    /// then the outbox. A failure leaves the changes in the outbox and retries from the alarm.
    // The shared borrow of the platform is held across the drain's awaits on purpose: the
    // platform is only ever borrowed mutably while it is first built, before any request.
    #[allow(clippy::await_holding_refcell_ref)]
    async fn copy_to_d1(&self) {
        let (has_mirror, ready) = self
            .with(|p| (p.mirror.is_some(), p.d1_ready.get()))
            .unwrap_or((false, true));
        if !has_mirror {
            return;
        }
        if !ready {
            match mirror::migrate_d1(&self.env).await {
                Ok(()) => {
                    self.with(|p| p.d1_ready.set(true));
                }
                Err(e) => console_error!("D1 migrations: {e}"),
            }
        }
        let drained = {
            let guard = self.platform.borrow();
            let Some(p) = guard.as_ref() else { return };
            let Some(m) = p.mirror.as_ref() else { return };
            if !m.pending(&p.db) {
                return;
            }
            m.drain(&self.env, &p.db).await
        };
        if !drained {
            self.retry_later().await;
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
            let (failed, _) = self.call_all(internal::SYNC).await;
            if failed > 0 {
                console_error!("{failed} tenant objects did not take the new keyring");
                self.with(|p| p.keyring_fanout.set(true));
            }
        }
        let path = req.path();
        if path.starts_with("/_internal/") {
            self.internal_calls.set(self.internal_calls.get() + 1);
        } else if !path.starts_with("/_test/") {
            self.client_calls.set(self.client_calls.get() + 1);
        }
        if path == internal::KEY_OWNER {
            // On behalf of a client request (an index miss): counted as the directory's.
            self.client_calls.set(self.client_calls.get() + 1);
            return self.key_owner(&mut req).await;
        }
        if path == internal::MERGE_KEYS || path == internal::MERGE_USAGE {
            let Ok(shipment) = req.json::<Shipment>().await else {
                return problem(ApiError::Internal);
            };
            let merged = self.with(|p| {
                if path == internal::MERGE_KEYS {
                    p.merge_keys(&shipment)
                } else {
                    p.merge_usage(&shipment)
                }
            });
            self.copy_to_d1().await;
            if path == internal::MERGE_KEYS {
                self.index_keys().await;
            }
            return match merged {
                Some(Ok(())) => Response::ok("merged"),
                _ => problem(ApiError::Internal),
            };
        }
        // A CSV upload's body (up to 8 MiB) is read only once the front has found the key's
        // tenant, as on the native host: a caller without a valid key never has a byte of it
        // read. Every other body is read now, up to 64 KiB.
        let upload = path == UPLOAD_PATH;
        let core_req = if upload {
            head_to_core(&req)
        } else {
            to_core(&mut req).await
        };
        let core_req = match core_req {
            Ok(r) => r,
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

    /// Runs the front and acts on its decision. `upload` is the client's request whose body
    /// is still unread (a CSV upload): it is read only for a request the front hands to a
    /// tenant.
    async fn dispatch(
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
                    let (failed, _) = self.call_all(internal::SYNC).await;
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
    async fn forward(
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
        let forward = Forward {
            key_hash: key_hash.clone(),
            request_id: auth_core::request_id(&req),
            route,
            host: req
                .headers()
                .get(http::header::HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            direct: false,
        };
        let sync = internal::encode(&sync);
        let forward = internal::encode(&forward);
        // A client's "internal" header is never believed, and the host travels in `forward`.
        let request = to_stub_request(
            &req,
            "https://tenant.internal",
            |name| {
                !name.as_str().starts_with(internal::HEADER_PREFIX) && name != http::header::HOST
            },
            &[
                (internal::SYNC_HEADER, &sync),
                (internal::FORWARD_HEADER, &forward),
            ],
        )?;
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
        self.after_tenant_call(tenant_id, &resp).await;
        // Drop the internal answer headers before the client sees the answer, except a graph
        // hop: only the stateless Worker asks the directory for a keyed (graph) route, after a
        // "not mine", and it runs the hop itself (the core's driver).
        let mut core = from_worker(resp).await;
        let hop = core.headers_mut().remove(internal::GRAPH_HEADER);
        internal::strip(core.headers_mut());
        if let Some(hop) = hop {
            core.headers_mut().insert(internal::GRAPH_HEADER, hop);
        }
        to_worker(core)
    }

    /// `/_internal/key-owner`: the tenant of a key hash from the mirror, for the stateless
    /// Worker after an index miss; writes the index entry too.
    async fn key_owner(&self, req: &mut Request) -> worker::Result<Response> {
        let Ok(asked) = req.json::<serde_json::Value>().await else {
            return problem(ApiError::Internal);
        };
        let Some(hash) = asked["keyHash"].as_str() else {
            return problem(ApiError::Internal);
        };
        let owner = self.with(|p| p.settings.service.key_owner(&p.db, hash));
        let tenant = match owner {
            Some(Ok(t)) => t,
            _ => return problem(ApiError::Internal),
        };
        if let Some(t) = &tenant {
            self.index_one(hash, t).await;
        }
        to_worker(auth_core::http::json(
            StatusCode::OK,
            &json!({ "tenantId": tenant }),
        ))
    }

    /// Points the index at `tenant_id` for `key_hash` (found in the mirror by the front).
    async fn index_one(&self, key_hash: &str, tenant_id: &str) {
        let Ok(kv) = self.env.kv(crate::edge::KEY_INDEX) else {
            return;
        };
        let put = match kv.put(key_hash, tenant_id) {
            Ok(p) => p.execute().await,
            Err(e) => Err(e),
        };
        if let Err(e) = put {
            console_error!("writing the key index failed: {e}");
        }
    }

    /// `/_test/*`: the native host's test controls, for the platform admin only.
    async fn test_control(&self, req: auth_core::Request) -> worker::Result<Response> {
        let parsed = self.with(|p| {
            let clock = p.clock.borrow();
            let ports = Ports {
                db: &p.db,
                clock: &*clock,
                entropy: &WorkerEntropy,
            };
            p.settings.service.authenticator().admin(&ports, &req)?;
            if req.uri().path() == DIRECTORY_CALLS {
                return Ok(None);
            }
            TestControl::parse(&req).map(Some)
        });
        let control = match parsed {
            Some(Ok(Some(c))) => c,
            Some(Ok(None)) => {
                let body = json!({
                    "clientRequests": self.client_calls.get(),
                    "internalCalls": self.internal_calls.get(),
                });
                return to_worker(auth_core::http::json(StatusCode::OK, &body));
            }
            Some(Err(e)) => return problem(e),
            None => return problem(ApiError::Internal),
        };
        let body = match control {
            TestControl::AdvanceClock { ms } => {
                let moved = self.with(|p| {
                    let offset = p.clock.borrow().offset_ms + ms;
                    p.db.execute(
                        "INSERT INTO _test_clock (id, offset_ms) VALUES (1, ?) \
                         ON CONFLICT (id) DO UPDATE SET offset_ms = excluded.offset_ms",
                        &[offset.into()],
                    )?;
                    p.clock.borrow_mut().offset_ms = offset;
                    Ok::<_, StorageError>(())
                });
                if !matches!(moved, Some(Ok(()))) {
                    return problem(ApiError::Internal);
                }
                // Every tenant's object takes the new clock (a direct request runs with the
                // object's copy), and fires the alarms due under it.
                let (failed, _) = self.call_all(internal::CLOCK).await;
                if failed > 0 {
                    return problem(ApiError::Internal);
                }
                json!({"nowMs": self.with(Platform::now_ms).unwrap_or(0)})
            }
            TestControl::FireAlarms { tenant } => {
                let targets = match tenant {
                    Some(t) => vec![t],
                    None => self.with(Platform::tenant_ids).unwrap_or_default(),
                };
                let mut fired = 0;
                for tenant_id in targets {
                    if let Ok(resp) = self.call_tenant(&tenant_id, internal::FIRE, None).await {
                        fired += answer_json(resp)
                            .await
                            .and_then(|v| v["fired"].as_u64())
                            .unwrap_or(0);
                    }
                }
                json!({"fired": fired})
            }
            TestControl::Evict { tenant } => {
                let targets = match tenant {
                    Some(t) => vec![t],
                    None => self.with(Platform::tenant_ids).unwrap_or_default(),
                };
                let mut evicted = 0;
                for tenant_id in targets {
                    if let Ok(resp) = self.call_tenant(&tenant_id, internal::EVICT, None).await {
                        evicted += answer_json(resp)
                            .await
                            .and_then(|v| v["evicted"].as_u64())
                            .unwrap_or(0);
                    }
                    // Graph objects are separate Durable Objects: ask the tenant's too.
                    if crate::graph::evict(&self.env, &tenant_id)
                        .await
                        .unwrap_or(false)
                    {
                        evicted += 1;
                    }
                }
                json!({"evicted": evicted})
            }
        };
        let id = auth_core::keys::random_hex(8, &WorkerEntropy);
        to_worker(auth_core::finish(
            auth_core::http::json(StatusCode::OK, &body),
            &id,
            false,
        ))
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
