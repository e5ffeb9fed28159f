//! `AuthPlatform`: the Durable Object that holds the service's relational tables and runs every
//! tenant's `TenantState`.
//!
//! Why one object and not D1 plus one object per tenant: the core's storage port is
//! synchronous and transactional, because exactness needs it (a key revoked, a quota spent, a
//! refresh token rotated: each is one atomic read-modify-write). On Workers the only storage
//! with synchronous transactions is a Durable Object's own SQLite; D1 is reached over the
//! network with no interactive transactions, and one object cannot read another's storage
//! synchronously. `TenantState` reads the tenant's keys and users in the same transaction as
//! its rate-limit counter, so on this platform the tables and the tenant objects live
//! together: each tenant's object state is kept under a table prefix of its own
//! (`storage::PrefixedSql`), its alarm in `_object_alarms`, its sockets tagged with its id.
//! The cost is one object's throughput for the whole service; `docs/worker.md` says more.

use std::cell::RefCell;
use std::collections::HashMap;

use auth_core::graph::GraphCall;
use auth_core::objects::{
    DurableObject as CoreObject, ObjectEnv, ObjectStorage, SocketHub, SocketId,
};
use auth_core::ports::{Sql, SqlValue, StorageError};
use auth_core::test_controls::TestControl;
use auth_core::users::jwt::JwtSecrets;
use auth_core::users::mail;
use auth_core::{ApiError, Front, MetricsFlushed, Notice, Ports, TenantOutcome, TenantState};
use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;
use worker::{
    console_error, console_log, durable_object, Env, Request, Response, State, WebSocket,
    WebSocketIncomingMessage, WebSocketPair,
};

use crate::convert::{from_worker, to_core, to_worker};
use crate::storage::{DoSql, PrefixedSql, WorkerClock, WorkerEntropy};

const TENANT_CLASS: &str = "TenantState";
/// Retry delay of a failed alarm, doubled per attempt up to a minute.
const ALARM_RETRY_MS: i64 = 500;

type SqlCache = RefCell<HashMap<(String, String), String>>;

#[durable_object]
pub struct AuthPlatform {
    state: State,
    env: Env,
    platform: RefCell<Option<Platform>>,
}

/// What the object builds at first use: configuration, the database, the live tenant objects.
struct Platform {
    service: auth_core::Service,
    db: DoSql,
    clock: RefCell<WorkerClock>,
    tenants: RefCell<HashMap<String, TenantState>>,
    sql_cache: SqlCache,
    test_hooks: bool,
    /// The mail API (`MAIL_API_URL`, `MAIL_API_KEY`); without it mail stays in the outbox.
    mail: Option<MailApi>,
    /// The platform alarm as last set, in platform time (ms), to skip needless writes.
    alarm_set: RefCell<Option<i64>>,
}

/// Where mail goes. The key is never logged.
struct MailApi {
    url: String,
    key: String,
}

/// Where a socket belongs, kept with the socket across hibernation.
#[derive(Serialize, Deserialize)]
struct SocketMeta {
    /// The socket's id as a decimal string (JavaScript numbers cannot hold every u64).
    id: String,
    tenant: String,
    attachment: String,
}

fn tenant_tag(tenant: &str) -> String {
    format!("tenant:{tenant}")
}

/// The sockets of one tenant, through the hibernation API.
struct Hub<'a> {
    state: &'a State,
    tenant: &'a str,
    upgrade: bool,
    client: RefCell<Option<WebSocket>>,
}

impl Hub<'_> {
    fn find(&self, id: SocketId) -> Option<WebSocket> {
        let want = id.to_string();
        self.state
            .get_websockets_with_tag(&tenant_tag(self.tenant))
            .into_iter()
            .find(|ws| {
                ws.deserialize_attachment::<SocketMeta>()
                    .ok()
                    .flatten()
                    .is_some_and(|m| m.id == want)
            })
    }
}

impl SocketHub for Hub<'_> {
    fn accept(&self, attachment: &str) -> Option<SocketId> {
        if !self.upgrade || self.client.borrow().is_some() {
            return None;
        }
        let pair = WebSocketPair::new().ok()?;
        let mut bytes = [0u8; 8];
        auth_core::ports::Entropy::fill(&WorkerEntropy, &mut bytes);
        let id = u64::from_le_bytes(bytes) >> 11; // 53 bits: exact in JavaScript too
        self.state
            .accept_websocket_with_tags(&pair.server, &[&tenant_tag(self.tenant)]);
        pair.server
            .serialize_attachment(SocketMeta {
                id: id.to_string(),
                tenant: self.tenant.to_owned(),
                attachment: attachment.to_owned(),
            })
            .ok()?;
        *self.client.borrow_mut() = Some(pair.client);
        Some(id)
    }

    fn sockets(&self) -> Vec<(SocketId, String)> {
        self.state
            .get_websockets_with_tag(&tenant_tag(self.tenant))
            .into_iter()
            .filter_map(|ws| ws.deserialize_attachment::<SocketMeta>().ok().flatten())
            .filter_map(|m| Some((m.id.parse().ok()?, m.attachment)))
            .collect()
    }

    fn send(&self, socket: SocketId, text: &str) -> bool {
        // The platform buffers outbound frames itself and tells nothing about a slow reader,
        // so there is no queue to overflow here.
        self.find(socket)
            .is_some_and(|ws| ws.send_with_str(text).is_ok())
    }

    fn close(&self, socket: SocketId, code: u16, reason: &str) {
        if let Some(ws) = self.find(socket) {
            let _ = ws.close(Some(code), Some(reason));
        }
    }
}

/// One tenant object's storage: its own tables under its prefix, its alarm in a shared table.
struct TenantStorage<'a> {
    sql: PrefixedSql<'a>,
    db: &'a DoSql,
    name: &'a str,
}

impl ObjectStorage for TenantStorage<'_> {
    fn sql(&self) -> &dyn Sql {
        &self.sql
    }

    fn set_alarm(&self, at_ms: Option<i64>) {
        let r = match at_ms {
            Some(at) => self.db.execute(
                "INSERT INTO _object_alarms (class, name, at_ms, attempts) VALUES (?, ?, ?, 0) \
                 ON CONFLICT (class, name) DO UPDATE SET at_ms = excluded.at_ms, attempts = 0",
                &[TENANT_CLASS.into(), self.name.into(), at.into()],
            ),
            None => self.db.execute(
                "DELETE FROM _object_alarms WHERE class = ? AND name = ?",
                &[TENANT_CLASS.into(), self.name.into()],
            ),
        };
        if let Err(e) = r {
            console_error!("could not set an alarm: {e}");
        }
    }

    fn alarm(&self) -> Option<i64> {
        self.db
            .query(
                "SELECT at_ms FROM _object_alarms WHERE class = ? AND name = ?",
                &[TENANT_CLASS.into(), self.name.into()],
            )
            .ok()?
            .first()?
            .first()?
            .as_i64()
    }
}

fn problem(e: ApiError) -> worker::Result<Response> {
    to_worker(auth_core::finish(e.into_response(), "-", false))
}

/// 503 for a Worker deployed without its secrets: the reason names the missing setting.
fn not_configured(reason: &str) -> worker::Result<Response> {
    let body = json!({
        "type": "about:blank",
        "title": "Service Unavailable",
        "status": 503,
        "detail": format!("The service is not configured: {reason}."),
    });
    let headers = worker::Headers::new();
    headers.set("content-type", "application/problem+json")?;
    Ok(Response::from_bytes(body.to_string().into_bytes())?
        .with_status(503)
        .with_headers(headers))
}

impl Platform {
    /// Reads the configuration, applies migrations, reconciles the JWT keyring.
    fn open(state: &State, env: &Env) -> Result<Self, String> {
        let secret = |name: &str| -> Option<String> {
            env.secret(name)
                .map(|s| s.to_string())
                .or_else(|_| env.var(name).map(|v| v.to_string()))
                .ok()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
        };
        let admin_key = secret("PLATFORM_ADMIN_KEY").ok_or("PLATFORM_ADMIN_KEY is not set")?;
        let pepper = secret("KEY_PEPPER").ok_or("KEY_PEPPER is not set")?;
        let jwt_secret = secret("JWT_SECRET").ok_or("JWT_SECRET is not set")?;
        if jwt_secret.len() < 32 {
            return Err("JWT_SECRET must be at least 32 characters".into());
        }
        let previous = secret("JWT_SECRET_PREVIOUS");
        let base_domain = secret("BASE_DOMAIN");
        let test_hooks = secret("TEST_HOOKS").as_deref() == Some("1");
        let mail = match (secret("MAIL_API_URL"), secret("MAIL_API_KEY")) {
            (Some(url), Some(key)) => Some(MailApi { url, key }),
            (Some(_), None) => return Err("MAIL_API_URL is set but MAIL_API_KEY is not".into()),
            _ => None,
        };

        let db = DoSql::new(&state.storage());
        apply_migrations(&db).map_err(|e| format!("migrations: {e}"))?;
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
        let secrets = JwtSecrets::new(
            jwt_secret.as_bytes(),
            previous.as_deref().map(str::as_bytes),
        );
        auth_core::users::jwt::reconcile(&db, &secrets, auth_core::ports::Clock::now_ms(&clock))
            .map_err(|e| format!("JWT keyring: {e}"))?;
        let service = auth_core::Service::new(auth_core::Config {
            admin_key,
            pepper: pepper.into_bytes(),
            base_domain,
            test_hooks,
        })
        .with_jwt_secrets(secrets);
        Ok(Self {
            service,
            db,
            clock: RefCell::new(clock),
            tenants: RefCell::new(HashMap::new()),
            sql_cache: RefCell::new(HashMap::new()),
            test_hooks,
            mail,
            alarm_set: RefCell::new(None),
        })
    }

    fn now_ms(&self) -> i64 {
        auth_core::ports::Clock::now_ms(&*self.clock.borrow())
    }

    fn front(&self, req: auth_core::Request) -> Front {
        let clock = self.clock.borrow();
        let ports = Ports {
            db: &self.db,
            clock: &*clock,
            entropy: &WorkerEntropy,
        };
        self.service.front(&ports, req)
    }

    /// Runs `f` on the tenant's object inside one transaction: its writes all land or none
    /// do. An object whose call failed is dropped from memory and rebuilt from storage next
    /// time, as the platform does after an exception.
    fn call_tenant<R>(
        &self,
        state: &State,
        name: &str,
        hub_upgrade: bool,
        f: impl FnOnce(&mut TenantState, &ObjectEnv) -> Result<R, StorageError>,
    ) -> Result<(R, Option<WebSocket>), StorageError> {
        let storage = TenantStorage {
            sql: PrefixedSql::new(&self.db, name, &self.sql_cache),
            db: &self.db,
            name,
        };
        let hub = Hub {
            state,
            tenant: name,
            upgrade: hub_upgrade,
            client: RefCell::new(None),
        };
        let clock = self.clock.borrow();
        let env = ObjectEnv {
            name,
            storage: &storage,
            db: &self.db,
            clock: &*clock,
            entropy: &WorkerEntropy,
            sockets: &hub,
        };
        let mut f = Some(f);
        let mut out = None;
        let mut tenants = self.tenants.borrow_mut();
        let r = self.db.transaction(&mut |_| {
            if !tenants.contains_key(name) {
                let loaded = TenantState::load(&env)?;
                tenants.insert(name.to_owned(), loaded);
            }
            let object = tenants
                .get_mut(name)
                .ok_or_else(|| StorageError::Other("object vanished".into()))?;
            if let Some(f) = f.take() {
                out = Some(f(object, &env)?);
            }
            Ok(())
        });
        match (r, out) {
            (Ok(()), Some(out)) => Ok((out, hub.client.into_inner())),
            (Err(e), _) => {
                tenants.remove(name);
                Err(e)
            }
            (Ok(()), None) => Err(StorageError::Other("object call did not run".into())),
        }
    }

    /// Fires the alarms due now (all of `only`'s, or every due one): at least once, since a
    /// fired alarm is removed in the same transaction as its handler's writes.
    fn fire_alarms(&self, state: &State, force: Option<Option<&str>>) -> usize {
        let now = self.now_ms();
        let rows = match force {
            Some(Some(tenant)) => self.db.query(
                "SELECT name, at_ms, attempts FROM _object_alarms WHERE class = ? AND name = ?",
                &[TENANT_CLASS.into(), tenant.into()],
            ),
            Some(None) => self.db.query(
                "SELECT name, at_ms, attempts FROM _object_alarms WHERE class = ?",
                &[TENANT_CLASS.into()],
            ),
            None => self.db.query(
                "SELECT name, at_ms, attempts FROM _object_alarms WHERE class = ? AND at_ms <= ?",
                &[TENANT_CLASS.into(), now.into()],
            ),
        };
        let rows = match rows {
            Ok(r) => r,
            Err(e) => {
                console_error!("reading alarms: {e}");
                return 0;
            }
        };
        let mut fired = 0;
        for row in rows {
            let (Some(name), Some(at), Some(attempts)) = (
                row.first().and_then(SqlValue::as_str),
                row.get(1).and_then(SqlValue::as_i64),
                row.get(2).and_then(SqlValue::as_i64),
            ) else {
                continue;
            };
            let db = &self.db;
            let r = self.call_tenant(state, name, false, |o, env| {
                // Cleared before the handler runs, so the handler may schedule the next one;
                // both commit together with its writes, or neither does.
                db.execute(
                    "DELETE FROM _object_alarms WHERE class = ? AND name = ? AND at_ms = ?",
                    &[TENANT_CLASS.into(), name.into(), at.into()],
                )?;
                o.alarm(env)
            });
            match r {
                Ok(_) => fired += 1,
                Err(e) => {
                    console_error!("alarm of a tenant object failed: {e}");
                    let delay = (ALARM_RETRY_MS << attempts.clamp(0, 7)).min(60_000);
                    let _ = self.db.execute(
                        "UPDATE _object_alarms SET at_ms = ?, attempts = attempts + 1 \
                         WHERE class = ? AND name = ?",
                        &[(now + delay).into(), TENANT_CLASS.into(), name.into()],
                    );
                }
            }
        }
        fired
    }

    /// The earliest tenant alarm or mail delivery due, in platform time.
    fn next_alarm(&self) -> Option<i64> {
        let min =
            |sql: &str| -> Option<i64> { self.db.query(sql, &[]).ok()?.first()?.first()?.as_i64() };
        let objects = min("SELECT MIN(at_ms) FROM _object_alarms");
        let mail = self.mail.as_ref().and_then(|_| {
            min("SELECT MIN(next_attempt_at) FROM mail_outbox WHERE sent_at IS NULL")
        });
        match (objects, mail) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn flush_metrics(&self, state: &State) {
        let names = self
            .db
            .query(
                "SELECT name FROM _object_alarms WHERE class = ?",
                &[TENANT_CLASS.into()],
            )
            .unwrap_or_default();
        for row in names {
            if let Some(name) = row.first().and_then(SqlValue::as_str) {
                if self
                    .call_tenant(state, name, false, |o, env| o.flush_metrics(env))
                    .is_err()
                {
                    console_error!("could not flush usage counts; the alarm will");
                }
            }
        }
    }
}

/// POSTs one mail to the mail API: `{to, subject, text, template, tenantId}`.
async fn post_mail(url: &str, key: &str, m: &mail::OutboxMail) -> Result<(), String> {
    let send = async {
        let headers = worker::Headers::new();
        headers.set("authorization", &format!("Bearer {key}"))?;
        headers.set("content-type", "application/json")?;
        headers.set("idempotency-key", &m.id)?;
        let mut init = worker::RequestInit::new();
        init.with_method(worker::Method::Post)
            .with_headers(headers)
            .with_body(Some(wasm_bindgen::JsValue::from_str(
                &m.to_json().to_string(),
            )));
        let request = Request::new_with_init(url, &init)?;
        worker::Fetch::Request(request).send().await
    };
    match send.await {
        Ok(r) if (200..300).contains(&r.status_code()) => Ok(()),
        Ok(r) => Err(format!("status {}", r.status_code())),
        Err(_) => Err("connection failed".to_owned()),
    }
}

/// Applies every migration not yet in `d1_migrations` (the table wrangler keeps), as the native
/// host does.
fn apply_migrations(db: &DoSql) -> Result<(), StorageError> {
    db.execute(
        "CREATE TABLE IF NOT EXISTS d1_migrations (id INTEGER PRIMARY KEY AUTOINCREMENT, \
         name TEXT UNIQUE, applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL)",
        &[],
    )?;
    for (name, sql) in auth_core::migrations::MIGRATIONS {
        let done = !db
            .query(
                "SELECT 1 FROM d1_migrations WHERE name = ?",
                &[(*name).into()],
            )?
            .is_empty();
        if !done {
            db.transaction(&mut |tx| {
                tx.execute(sql, &[])?;
                tx.execute(
                    "INSERT INTO d1_migrations (name) VALUES (?)",
                    &[(*name).into()],
                )
                .map(drop)
            })?;
        }
    }
    db.execute(
        "CREATE TABLE IF NOT EXISTS _object_alarms (class TEXT NOT NULL, name TEXT NOT NULL, \
         at_ms INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (class, name))",
        &[],
    )?;
    db.execute(
        "CREATE TABLE IF NOT EXISTS _test_clock (id INTEGER PRIMARY KEY CHECK (id = 1), \
         offset_ms INTEGER NOT NULL)",
        &[],
    )
    .map(drop)
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

    /// Points the object's one platform alarm at the earliest tenant alarm.
    async fn sync_alarm(&self) {
        let (next, offset) = {
            let guard = self.platform.borrow();
            let Some(p) = guard.as_ref() else { return };
            let next = p.next_alarm();
            let unchanged = *p.alarm_set.borrow() == next;
            if unchanged {
                return;
            }
            *p.alarm_set.borrow_mut() = next;
            let offset = p.clock.borrow().offset_ms;
            (next, offset)
        };
        let storage = self.state.storage();
        let r = match next {
            // The test clock runs ahead of the platform's by `offset`.
            Some(at) => {
                let real = (at - offset).max(worker::Date::now().as_millis() as i64 + 1);
                storage
                    .set_alarm(worker::ScheduledTime::new(js_sys::Date::new(
                        &js_sys::Number::from(real as f64),
                    )))
                    .await
            }
            None => storage.delete_alarm().await,
        };
        if let Err(e) = r {
            console_error!("could not set the platform alarm: {e}");
            if let Some(p) = self.platform.borrow().as_ref() {
                *p.alarm_set.borrow_mut() = None;
            }
        }
    }

    /// Sends the mail due now, one at a time and in order, as the native host does: a 2xx
    /// marks it sent; anything else schedules a retry with backoff. `Idempotency-Key` is the
    /// outbox id, so a resend after a crash between answer and mark can be dropped by the API.
    async fn deliver_mail(&self) {
        let (due, url, key) = {
            let guard = self.platform.borrow();
            let Some(p) = guard.as_ref() else { return };
            let Some(api) = &p.mail else { return };
            match mail::due(&p.db, p.now_ms(), 20) {
                Ok(d) => (d, api.url.clone(), api.key.clone()),
                Err(e) => {
                    console_error!("reading the mail outbox failed: {e}");
                    return;
                }
            }
        };
        for m in due {
            let outcome = post_mail(&url, &key, &m).await;
            let guard = self.platform.borrow();
            let Some(p) = guard.as_ref() else { return };
            let now = p.now_ms();
            let written = match &outcome {
                Ok(()) => mail::mark_sent(&p.db, &m.id, now),
                Err(why) => {
                    console_error!("mail delivery failed ({why}); will retry");
                    mail::mark_failed(&p.db, &m.id, now, why)
                }
            };
            if let Err(e) = written {
                console_error!("recording a mail delivery failed: {e}");
            }
        }
    }

    async fn handle(&self, mut req: Request) -> worker::Result<Response> {
        if let Err(reason) = self.ensure_open() {
            console_error!("auth-service is not configured: {reason}");
            return not_configured(&reason);
        }
        let core_req = match to_core(&mut req).await {
            Ok(r) => r,
            Err(_) => {
                return problem(ApiError::InvalidJson(
                    "The request could not be read.".into(),
                ))
            }
        };
        let method = core_req.method().clone();
        let path = core_req.uri().path().to_owned();
        let upgrade = path == "/v1/events"
            && core_req
                .headers()
                .get(http::header::UPGRADE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
        let test_hooks = self
            .platform
            .borrow()
            .as_ref()
            .is_some_and(|p| p.test_hooks);
        let response = if test_hooks && path.starts_with("/_test/") {
            self.test_control(core_req).await
        } else {
            self.dispatch(core_req, upgrade).await
        };
        self.sync_alarm().await;
        if let Ok(r) = &response {
            console_log!("{method} {path} {}", r.status_code());
        }
        response
    }

    async fn dispatch(&self, req: auth_core::Request, upgrade: bool) -> worker::Result<Response> {
        let head = req.method() == Method::HEAD;
        // Everything up to the graph call runs without an await: no other request can
        // interleave with it.
        let decided = {
            let guard = self.platform.borrow();
            let Some(p) = guard.as_ref() else {
                return problem(ApiError::Internal);
            };
            let mut req = req;
            let decided = loop {
                match p.front(req) {
                    Front::FlushMetrics { mut request }
                        if request.extensions().get::<MetricsFlushed>().is_none() =>
                    {
                        p.flush_metrics(&self.state);
                        request.extensions_mut().insert(MetricsFlushed);
                        req = request;
                    }
                    f => break f,
                }
            };
            match decided {
                Front::FlushMetrics { .. } => return problem(ApiError::Internal),
                Front::Respond { response, notices } => {
                    for (tenant_id, notice) in notices {
                        if p.call_tenant(&self.state, &tenant_id, false, |o, env| {
                            o.notice(env, &notice)
                        })
                        .is_err()
                        {
                            console_error!("could not notify a tenant object");
                            return problem(ApiError::Internal);
                        }
                    }
                    return to_worker(response);
                }
                Front::Tenant {
                    tenant_id,
                    key_hash,
                    request,
                } => {
                    let request_id = auth_core::request_id(&request);
                    let called = p.call_tenant(&self.state, &tenant_id, upgrade, |o, env| {
                        Ok(o.fetch(env, &p.service, &request, &key_hash))
                    });
                    let (outcome, client) = match called {
                        Ok(r) => r,
                        Err(e) => {
                            console_error!("tenant object failed: {e}");
                            return problem(ApiError::Internal);
                        }
                    };
                    match outcome {
                        TenantOutcome::Respond(resp)
                            if resp.status() == StatusCode::SWITCHING_PROTOCOLS =>
                        {
                            return match client {
                                Some(ws) => Response::from_websocket(ws),
                                None => problem(ApiError::Internal),
                            };
                        }
                        TenantOutcome::Respond(resp) => {
                            return to_worker(auth_core::finish(resp, &request_id, head));
                        }
                        TenantOutcome::Graph {
                            actor_key_id,
                            headers,
                            ..
                        } => (tenant_id, request_id, actor_key_id, headers, request),
                    }
                }
            }
        };
        let (tenant_id, request_id, actor, headers, request) = decided;
        let mut resp = self
            .run_graph(&tenant_id, &actor, &request_id, &request)
            .await;
        for (k, v) in &headers {
            resp.headers_mut().insert(k, v.clone());
        }
        to_worker(auth_core::finish(resp, &request_id, head))
    }

    /// A graph request the tenant object let through: the tenant's `GraphStateCSV` object
    /// runs it (with R2 for the CSV), then graph changes are audited in the tenant object.
    async fn run_graph(
        &self,
        tenant_id: &str,
        actor: &str,
        request_id: &str,
        req: &auth_core::Request,
    ) -> auth_core::Response {
        let now = {
            let guard = self.platform.borrow();
            guard.as_ref().map(Platform::now_ms).unwrap_or(0)
        };
        let resp = match crate::graph::call(&self.env, tenant_id, actor, now, req).await {
            Ok(r) => from_worker(r).await,
            Err(e) => {
                console_error!("graph object failed: {e}");
                return ApiError::Internal.into_response();
            }
        };
        if !resp.status().is_success() {
            return resp;
        }
        let audit = GraphCall::of(req).ok().and_then(|call| call.audit());
        if let Some(audit) = audit {
            let notice = Notice {
                actor: actor.to_owned(),
                action: audit.action.to_owned(),
                target: "graph".into(),
                detail: audit.detail(&resp),
                request_id: request_id.to_owned(),
                end_sessions: false,
            };
            let guard = self.platform.borrow();
            if let Some(p) = guard.as_ref() {
                if p.call_tenant(&self.state, tenant_id, false, |o, env| {
                    o.record(env, &notice)
                })
                .is_err()
                {
                    console_error!("could not write the graph audit record");
                }
            }
        }
        resp
    }

    /// `/_test/*`: the native host's test controls, for the platform admin only.
    async fn test_control(&self, req: auth_core::Request) -> worker::Result<Response> {
        let (control, body) = {
            let guard = self.platform.borrow();
            let Some(p) = guard.as_ref() else {
                return problem(ApiError::Internal);
            };
            let authorised = {
                let clock = p.clock.borrow();
                let ports = Ports {
                    db: &p.db,
                    clock: &*clock,
                    entropy: &WorkerEntropy,
                };
                p.service.authenticator().admin(&ports, &req)
            };
            if let Err(e) = authorised {
                return problem(e);
            }
            let control = match TestControl::parse(&req) {
                Ok(c) => c,
                Err(e) => return problem(e),
            };
            let body = match &control {
                TestControl::AdvanceClock { ms } => {
                    let offset = p.clock.borrow().offset_ms + ms;
                    if let Err(e) = p.db.execute(
                        "INSERT INTO _test_clock (id, offset_ms) VALUES (1, ?) \
                         ON CONFLICT (id) DO UPDATE SET offset_ms = excluded.offset_ms",
                        &[offset.into()],
                    ) {
                        console_error!("test clock: {e}");
                        return problem(ApiError::Internal);
                    }
                    p.clock.borrow_mut().offset_ms = offset;
                    // Alarms due under the new time fire now.
                    p.fire_alarms(&self.state, None);
                    json!({"nowMs": p.now_ms()})
                }
                TestControl::Evict { tenant } => {
                    let mut tenants = p.tenants.borrow_mut();
                    let n = match tenant {
                        Some(t) => usize::from(tenants.remove(t).is_some()),
                        None => {
                            let n = tenants.len();
                            tenants.clear();
                            n
                        }
                    };
                    json!({"evicted": n})
                }
                TestControl::FireAlarms { tenant } => {
                    let n = p.fire_alarms(&self.state, Some(tenant.as_deref()));
                    json!({"fired": n})
                }
            };
            (control, body)
        };
        let mut body = body;
        // Graph objects are separate Durable Objects: ask the tenant's to drop its memory.
        if let TestControl::Evict { tenant: Some(t) } = &control {
            if crate::graph::evict(&self.env, t).await.unwrap_or(false) {
                body["evicted"] = json!(body["evicted"].as_u64().unwrap_or(0) + 1);
            }
        }
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

    async fn alarm(&self) -> worker::Result<Response> {
        if self.ensure_open().is_ok() {
            if let Some(p) = self.platform.borrow().as_ref() {
                p.fire_alarms(&self.state, None);
                *p.alarm_set.borrow_mut() = None;
            }
            self.deliver_mail().await;
            self.sync_alarm().await;
        }
        Response::ok("")
    }

    async fn websocket_message(
        &self,
        ws: WebSocket,
        message: WebSocketIncomingMessage,
    ) -> worker::Result<()> {
        let Some(meta) = ws.deserialize_attachment::<SocketMeta>().ok().flatten() else {
            return Ok(());
        };
        let Ok(id) = meta.id.parse::<SocketId>() else {
            return Ok(());
        };
        let text = match message {
            WebSocketIncomingMessage::String(t) => t,
            // A binary frame is not JSON text: the object answers it with an error frame.
            WebSocketIncomingMessage::Binary(_) => "\u{0}binary".to_owned(),
        };
        if self.ensure_open().is_err() {
            return Ok(());
        }
        {
            let guard = self.platform.borrow();
            if let Some(p) = guard.as_ref() {
                let _ = p.call_tenant(&self.state, &meta.tenant, false, |o, env| {
                    o.websocket_message(env, id, &meta.attachment, &text);
                    Ok(())
                });
            }
        }
        self.sync_alarm().await;
        Ok(())
    }

    async fn websocket_close(
        &self,
        ws: WebSocket,
        code: usize,
        _reason: String,
        _was_clean: bool,
    ) -> worker::Result<()> {
        // Complete the closing handshake; the platform does not do it for us.
        let code = u16::try_from(code)
            .ok()
            .filter(|c| *c != 1005 && *c != 1006)
            .unwrap_or(1000);
        let _ = ws.close(Some(code), Some(""));
        let Some(meta) = ws.deserialize_attachment::<SocketMeta>().ok().flatten() else {
            return Ok(());
        };
        let Ok(id) = meta.id.parse::<SocketId>() else {
            return Ok(());
        };
        if self.ensure_open().is_ok() {
            let guard = self.platform.borrow();
            if let Some(p) = guard.as_ref() {
                let _ = p.call_tenant(&self.state, &meta.tenant, false, |o, env| {
                    o.websocket_closed(env, id);
                    Ok(())
                });
            }
        }
        Ok(())
    }
}
