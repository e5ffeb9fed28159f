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
use std::collections::{BTreeSet, HashMap};

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
}

/// What the object builds at first use.
struct Platform {
    settings: Settings,
    db: DoSql,
    clock: RefCell<WorkerClock>,
    /// Tenants called since this instance started: what `/_test/evict` without a tenant reaches.
    seen: RefCell<BTreeSet<String>>,
    /// Tenants whose objects may hold usage counts not yet in `usage_metrics`, each with a
    /// count of the requests forwarded: a flush clears the mark only if no request was
    /// forwarded while it ran (it may have been counted after the flush took the counts).
    dirty: RefCell<HashMap<String, u64>>,
    /// Each tenant object's alarm as it last reported it (test time), as in `_tenant_alarms`.
    alarms: RefCell<HashMap<String, Option<i64>>>,
    /// The copy of the directory's tables in D1 (none without a `DB` binding).
    mirror: Option<Mirror>,
    /// Whether D1 has had its migrations checked by this instance.
    d1_ready: Cell<bool>,
}

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
                "CREATE TABLE IF NOT EXISTS _tenant_alarms (name TEXT PRIMARY KEY, \
                 at_ms INTEGER NOT NULL)",
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
        auth_core::users::jwt::reconcile(
            &db,
            &settings.secrets,
            auth_core::ports::Clock::now_ms(&clock),
        )
        .map_err(|e| format!("JWT keyring: {e}"))?;
        Ok(Self {
            settings,
            db,
            clock: RefCell::new(clock),
            seen: RefCell::new(BTreeSet::new()),
            dirty: RefCell::new(HashMap::new()),
            alarms: RefCell::new(HashMap::new()),
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
        let begun = service.begin(&*clock, &WorkerEntropy, req);
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
        self.seen.borrow_mut().insert(tenant_id.to_owned());
        Ok(Sync {
            tenant_id: tenant_id.to_owned(),
            tenant,
            keyring,
            offset_ms: self.clock.borrow().offset_ms,
        })
    }

    /// Records the alarm a tenant's object reported, for the test controls that fire alarms
    /// when the clock moves. Answers arrive in any order, so an ordinary answer only ever moves
    /// the record earlier (a stale early record costs one needless call, which corrects it; a
    /// stale late one would miss an alarm). `exact` answers (of the fire and clock calls)
    /// replace it.
    fn record_alarm(&self, tenant_id: &str, resp: &Response, exact: bool) {
        let Ok(Some(value)) = resp.headers().get(internal::ALARM_HEADER) else {
            return;
        };
        let reported = value.parse::<i64>().ok();
        let mut alarms = self.alarms.borrow_mut();
        let known = alarms.get(tenant_id).copied().flatten();
        let at = match (exact, known, reported) {
            (true, _, r) => r,
            (false, Some(k), Some(r)) => Some(k.min(r)),
            (false, k, r) => k.or(r),
        };
        if alarms.get(tenant_id) == Some(&at) {
            return;
        }
        let written = match at {
            Some(at) => self.db.execute(
                "INSERT INTO _tenant_alarms (name, at_ms) VALUES (?, ?) \
                 ON CONFLICT (name) DO UPDATE SET at_ms = excluded.at_ms",
                &[tenant_id.into(), at.into()],
            ),
            None => self.db.execute(
                "DELETE FROM _tenant_alarms WHERE name = ?",
                &[tenant_id.into()],
            ),
        };
        match written {
            Ok(_) => {
                alarms.insert(tenant_id.to_owned(), at);
            }
            Err(e) => console_error!("recording a tenant alarm: {e}"),
        }
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

    fn tenants_with_alarms(&self, due_by: Option<i64>) -> Vec<String> {
        let rows = match due_by {
            Some(now) => self.db.query(
                "SELECT name FROM _tenant_alarms WHERE at_ms <= ? ORDER BY at_ms",
                &[now.into()],
            ),
            None => self
                .db
                .query("SELECT name FROM _tenant_alarms ORDER BY at_ms", &[]),
        };
        rows.unwrap_or_default()
            .iter()
            .filter_map(|r| r.first().and_then(SqlValue::as_str).map(str::to_owned))
            .collect()
    }
}

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

    /// POSTs an internal call to a tenant's object with its [`Sync`], and records the alarm
    /// it reports; pulls its keys into the mirror when it says they changed.
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
        let exact = path == internal::FIRE || path == internal::CLOCK;
        self.after_tenant_call(tenant_id, &resp, exact).await;
        Ok(resp)
    }

    async fn after_tenant_call(&self, tenant_id: &str, resp: &Response, exact: bool) {
        self.with(|p| p.record_alarm(tenant_id, resp, exact));
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

    /// Moves every dirty tenant's pending usage counts into `usage_metrics`.
    async fn flush_metrics(&self) {
        let dirty: Vec<(String, u64)> = self
            .with(|p| {
                p.dirty
                    .borrow()
                    .iter()
                    .map(|(t, n)| (t.clone(), *n))
                    .collect()
            })
            .unwrap_or_default();
        for (tenant_id, forwarded) in dirty {
            let answered = match self.call_tenant(&tenant_id, internal::FLUSH, None).await {
                Ok(resp) => answer_json(resp).await,
                Err(_) => None,
            };
            let Some(rows) = answered.and_then(|v| serde_json::from_value::<rows::Image>(v).ok())
            else {
                console_error!("could not flush a tenant's usage counts; its alarm will");
                continue;
            };
            let shipment = Shipment {
                tenant_id: tenant_id.clone(),
                rows,
            };
            match self.with(|p| p.merge_usage(&shipment)) {
                Some(Ok(())) => {
                    self.with(|p| {
                        let mut dirty = p.dirty.borrow_mut();
                        if dirty.get(&tenant_id) == Some(&forwarded) {
                            dirty.remove(&tenant_id);
                        }
                    });
                }
                _ => console_error!("could not record a tenant's usage counts"),
            }
        }
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
            let at = worker::Date::now().as_millis() as i64 + mirror::RETRY_MS;
            let _ = self
                .state
                .storage()
                .set_alarm(worker::ScheduledTime::new(js_sys::Date::new(
                    &js_sys::Number::from(at as f64),
                )))
                .await;
        }
    }

    async fn handle(&self, mut req: Request) -> worker::Result<Response> {
        if let Err(reason) = self.ensure_open() {
            console_error!("auth-service is not configured: {reason}");
            return not_configured(&reason);
        }
        let path = req.path();
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
        let Some((decided, request_id, head)) = self.with(|p| p.front(req)) else {
            return problem(ApiError::Internal);
        };
        let finish = |r| to_worker(auth_core::finish(r, &request_id, head));
        match decided {
            Front::FlushMetrics(resume) => {
                self.flush_metrics().await;
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
                finish(response)
            }
            Front::Tenant(mut call) => {
                if let Some(body) = upload {
                    if let Err(e) = read_upload(body, &mut call.request).await {
                        return finish(e.into_response());
                    }
                }
                let user_request = matches!(call.route, TenantRoute::User(_));
                self.forward(&call.tenant_id, call.key_hash, user_request, call.request)
                    .await
            }
        }
    }

    /// Sends a tenant request, as the client made it, to the tenant's object.
    async fn forward(
        &self,
        tenant_id: &str,
        key_hash: String,
        user_request: bool,
        req: auth_core::Request,
    ) -> worker::Result<Response> {
        let sync = match self.with(|p| {
            *p.dirty
                .borrow_mut()
                .entry(tenant_id.to_owned())
                .or_insert(0) += 1;
            p.sync_for(tenant_id)
        }) {
            Some(Ok(s)) => s,
            _ => return problem(ApiError::Internal),
        };
        let forward = Forward {
            key_hash,
            request_id: auth_core::request_id(&req),
            user_request,
            host: req
                .headers()
                .get(http::header::HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
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
        if resp.status_code() == 101 {
            return Ok(resp); // the event stream: the socket is the tenant object's
        }
        self.after_tenant_call(tenant_id, &resp, false).await;
        // Drop the internal answer headers before the client sees the answer.
        let mut core = from_worker(resp).await;
        internal::strip(core.headers_mut());
        to_worker(core)
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
            TestControl::parse(&req)
        });
        let control = match parsed {
            Some(Ok(c)) => c,
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
                    Ok::<_, StorageError>(p.tenants_with_alarms(Some(p.now_ms())))
                });
                let due = match moved {
                    Some(Ok(due)) => due,
                    _ => return problem(ApiError::Internal),
                };
                // Alarms due under the new time fire now.
                for tenant_id in due {
                    if let Err(e) = self.call_tenant(&tenant_id, internal::CLOCK, None).await {
                        console_error!("firing a tenant alarm: {e}");
                    }
                }
                json!({"nowMs": self.with(Platform::now_ms).unwrap_or(0)})
            }
            TestControl::FireAlarms { tenant } => {
                let targets = match tenant {
                    Some(t) => vec![t],
                    None => self
                        .with(|p| p.tenants_with_alarms(None))
                        .unwrap_or_default(),
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
                    None => self
                        .with(|p| p.seen.borrow().iter().cloned().collect())
                        .unwrap_or_default(),
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
        }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        self.handle(req).await
    }

    /// The directory's alarm retries what D1 did not take.
    async fn alarm(&self) -> worker::Result<Response> {
        if self.ensure_open().is_ok() {
            self.copy_to_d1().await;
        }
        Response::ok("")
    }
}
