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

use std::cell::{Cell, RefCell};

use auth_core::objects::{
    DurableObject as CoreObject, ObjectEnv, ObjectStorage, SocketHub, SocketId,
};
use auth_core::ports::{Sql, SqlValue, StorageError};

use auth_core::users::mail;
use auth_core::{
    ApiError, Notice, RequestId, TenantCall, TenantOutcome, TenantState as TenantObject,
};
use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;
use worker::{
    console_error, durable_object, Env, Request, Response, State, WebSocket,
    WebSocketIncomingMessage, WebSocketPair,
};

use crate::config::{MailApi, Settings};
use crate::convert::{to_core, to_worker};
use crate::internal::{self, Forward, NoticeCall, Shipment, Sync};
use crate::mirror::{self, Mirror};
use crate::rows;
use crate::storage::{DoSql, WorkerClock, WorkerEntropy};

/// Retry delay of a failed alarm, doubled per attempt up to a minute.
const ALARM_RETRY_MS: i64 = 500;

#[durable_object]
pub struct TenantState {
    state: State,
    env: Env,
    inner: RefCell<Option<Inner>>,
}

/// What the object builds at first use.
struct Inner {
    settings: Settings,
    db: DoSql,
    /// The tenant this object serves: learned from the first call, kept in `_tenant_meta`.
    tenant_id: RefCell<String>,
    /// The test clock's offset, as the directory last said.
    offset_ms: Cell<i64>,
    object: RefCell<Option<TenantObject>>,
    /// The images applied last, to skip rewriting what has not changed.
    tenant_applied: RefCell<Option<String>>,
    keyring_applied: RefCell<Option<String>>,
    /// The platform alarm as last set (test time), to skip needless writes.
    alarm_set: Cell<Option<i64>>,
    failed_alarms: Cell<u32>,
    /// The copy of the tenant's tables in D1 (none without a `DB` binding).
    mirror: Option<Mirror>,
}

/// Where a socket belongs, kept with the socket across hibernation.
#[derive(Serialize, Deserialize)]
struct SocketMeta {
    /// The socket's id as a decimal string (JavaScript numbers cannot hold every u64).
    id: String,
    attachment: String,
}

/// The tenant's sockets, through the hibernation API.
struct Hub<'a> {
    state: &'a State,
    upgrade: bool,
    client: RefCell<Option<WebSocket>>,
}

impl Hub<'_> {
    fn find(&self, id: SocketId) -> Option<WebSocket> {
        let want = id.to_string();
        self.state.get_websockets().into_iter().find(|ws| {
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
        self.state.accept_web_socket(&pair.server);
        pair.server
            .serialize_attachment(SocketMeta {
                id: id.to_string(),
                attachment: attachment.to_owned(),
            })
            .ok()?;
        *self.client.borrow_mut() = Some(pair.client);
        Some(id)
    }

    fn sockets(&self) -> Vec<(SocketId, String)> {
        self.state
            .get_websockets()
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

/// The core object's storage: this object's SQLite; its alarm time in `_core_alarm` (the
/// platform alarm also serves the mail outbox, so it is set from both).
struct Storage<'a>(&'a DoSql);

impl ObjectStorage for Storage<'_> {
    fn sql(&self) -> &dyn Sql {
        self.0
    }

    fn set_alarm(&self, at_ms: Option<i64>) {
        let r = match at_ms {
            Some(at) => self.0.execute(
                "INSERT INTO _core_alarm (id, at_ms) VALUES (1, ?) \
                 ON CONFLICT (id) DO UPDATE SET at_ms = excluded.at_ms",
                &[at.into()],
            ),
            None => self.0.execute("DELETE FROM _core_alarm", &[]),
        };
        if let Err(e) = r {
            console_error!("could not set an alarm: {e}");
        }
    }

    fn alarm(&self) -> Option<i64> {
        first_i64(self.0, "SELECT at_ms FROM _core_alarm WHERE id = 1")
    }
}

fn first_i64(db: &dyn Sql, sql: &str) -> Option<i64> {
    db.query(sql, &[]).ok()?.first()?.first()?.as_i64()
}

fn problem(e: ApiError) -> worker::Result<Response> {
    to_worker(auth_core::finish(e.into_response(), "-", false))
}

fn json_response(value: &serde_json::Value) -> worker::Result<Response> {
    to_worker(auth_core::http::json(StatusCode::OK, value))
}

impl Inner {
    fn open(state: &State, env: &Env) -> Result<Self, String> {
        let settings = Settings::from_env(env)?;
        let (db, mirror) = mirror::open_storage(
            state,
            env,
            &[
                "CREATE TABLE IF NOT EXISTS _tenant_meta (id INTEGER PRIMARY KEY CHECK (id = 1), \
                 tenant_id TEXT NOT NULL, offset_ms INTEGER NOT NULL)",
                "CREATE TABLE IF NOT EXISTS _core_alarm (id INTEGER PRIMARY KEY CHECK (id = 1), \
                 at_ms INTEGER NOT NULL)",
                rows::KEY_CHANGES_DDL[0],
                rows::KEY_CHANGES_DDL[1],
                rows::KEY_CHANGES_DDL[2],
            ],
            mirror::TENANT_TABLES,
        )?;
        let meta = db
            .query(
                "SELECT tenant_id, offset_ms FROM _tenant_meta WHERE id = 1",
                &[],
            )
            .ok()
            .and_then(|rows| rows.into_iter().next());
        let (tenant_id, offset_ms) = meta
            .map(|r| {
                (
                    r.first()
                        .and_then(SqlValue::as_str)
                        .unwrap_or("")
                        .to_owned(),
                    r.get(1).and_then(SqlValue::as_i64).unwrap_or(0),
                )
            })
            .unwrap_or_default();
        Ok(Self {
            settings,
            db,
            tenant_id: RefCell::new(tenant_id),
            offset_ms: Cell::new(offset_ms),
            object: RefCell::new(None),
            tenant_applied: RefCell::new(None),
            keyring_applied: RefCell::new(None),
            alarm_set: Cell::new(None),
            failed_alarms: Cell::new(0),
            mirror,
        })
    }

    fn clock(&self) -> WorkerClock {
        WorkerClock {
            offset_ms: self.offset_ms.get(),
        }
    }

    fn now_ms(&self) -> i64 {
        auth_core::ports::Clock::now_ms(&self.clock())
    }

    /// Applies what the directory sent: the tenant's id, clock, row and keyring.
    fn apply(&self, sync: &Sync) -> Result<(), StorageError> {
        let tenant_json = sync
            .tenant
            .as_ref()
            .map(|r| serde_json::Value::from(r.clone()).to_string());
        let keyring_json = serde_json::to_string(&sync.keyring).unwrap_or_default();
        let meta_changed =
            *self.tenant_id.borrow() != sync.tenant_id || self.offset_ms.get() != sync.offset_ms;
        let tenant_changed = tenant_json.is_some() && *self.tenant_applied.borrow() != tenant_json;
        let keyring_changed = self.keyring_applied.borrow().as_deref() != Some(&keyring_json);
        if !(meta_changed || tenant_changed || keyring_changed) {
            return Ok(());
        }
        self.db.transaction(&mut |db| {
            if meta_changed {
                db.execute(
                    "INSERT INTO _tenant_meta (id, tenant_id, offset_ms) VALUES (1, ?, ?) \
                     ON CONFLICT (id) DO UPDATE SET tenant_id = excluded.tenant_id, \
                       offset_ms = excluded.offset_ms",
                    &[sync.tenant_id.as_str().into(), sync.offset_ms.into()],
                )?;
            }
            if let (true, Some(row)) = (tenant_changed, &sync.tenant) {
                rows::upsert_tenant(db, row)?;
            }
            if keyring_changed {
                rows::replace_keyring(db, &sync.keyring)?;
            }
            Ok(())
        })?;
        if meta_changed {
            *self.tenant_id.borrow_mut() = sync.tenant_id.clone();
            self.offset_ms.set(sync.offset_ms);
        }
        if tenant_changed {
            // The tenant changed without a notice reaching us (one failed, say): rebuild the
            // core object so it reads the row afresh.
            if self.tenant_applied.borrow().is_some() {
                self.object.borrow_mut().take();
            }
            *self.tenant_applied.borrow_mut() = tenant_json;
        }
        if keyring_changed {
            *self.keyring_applied.borrow_mut() = Some(keyring_json);
        }
        Ok(())
    }

    /// Runs `f` on the core object inside one transaction: its writes all land or none do. An
    /// object whose call failed is dropped from memory and rebuilt from storage next time, as
    /// the platform does after an exception.
    fn call<R>(
        &self,
        state: &State,
        upgrade: bool,
        f: impl FnOnce(&mut TenantObject, &ObjectEnv) -> Result<R, StorageError>,
    ) -> Result<(R, Option<WebSocket>), StorageError> {
        let tenant_id = self.tenant_id.borrow().clone();
        if tenant_id.is_empty() {
            return Err(StorageError::Other(
                "the object does not know its tenant".into(),
            ));
        }
        let storage = Storage(&self.db);
        let hub = Hub {
            state,
            upgrade,
            client: RefCell::new(None),
        };
        let clock = self.clock();
        let env = ObjectEnv {
            name: &tenant_id,
            storage: &storage,
            db: &self.db,
            clock: &clock,
            entropy: &WorkerEntropy,
            sockets: &hub,
        };
        let mut f = Some(f);
        let mut out = None;
        let mut object = self.object.borrow_mut();
        let r = self.db.transaction(&mut |_| {
            if object.is_none() {
                *object = Some(TenantObject::load(&env)?);
            }
            if let (Some(o), Some(f)) = (object.as_mut(), f.take()) {
                out = Some(f(o, &env)?);
            }
            Ok(())
        });
        match (r, out) {
            (Ok(()), Some(out)) => Ok((out, hub.client.into_inner())),
            (Err(e), _) => {
                object.take();
                Err(e)
            }
            (Ok(()), None) => Err(StorageError::Other("object call did not run".into())),
        }
    }

    /// Runs the core object's alarm (clearing it first: the handler sets the next one; both
    /// commit with its writes or neither does).
    fn run_core_alarm(&self, state: &State) -> Result<(), StorageError> {
        self.call(state, false, |o, env| {
            env.storage.set_alarm(None);
            o.alarm(env)
        })
        .map(drop)
    }

    /// Whether keys changed that the directory has not taken yet (recorded by triggers, see
    /// [`rows::KEY_CHANGES_DDL`]).
    fn keys_pending(&self) -> bool {
        self.db
            .query("SELECT 1 FROM _key_changes LIMIT 1", &[])
            .is_ok_and(|r| !r.is_empty())
    }

    /// The earliest of the core object's alarm, the next mail due and a retry of changes D1
    /// did not take, in test time.
    fn next_alarm(&self) -> Option<i64> {
        let retry = self
            .mirror
            .as_ref()
            .filter(|m| m.pending(&self.db))
            .map(|_| self.now_ms() + mirror::RETRY_MS);
        let core = match (Storage(&self.db).alarm(), retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mail = self.settings.mail.as_ref().and_then(|_| {
            first_i64(
                &self.db,
                "SELECT MIN(next_attempt_at) FROM mail_outbox WHERE sent_at IS NULL",
            )
        });
        match (core, mail) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// POSTs one mail to the mail API: `{to, subject, text, template, tenantId}`, its code put
/// into its body only now (the outbox holds a seed, never the code).
async fn post_mail(
    api: &MailApi,
    m: &mail::OutboxMail,
    hasher: &auth_core::keys::KeyHasher,
) -> Result<(), String> {
    let send = async {
        let headers = worker::Headers::new();
        headers.set("authorization", &format!("Bearer {}", api.key))?;
        headers.set("content-type", "application/json")?;
        headers.set("idempotency-key", &m.id)?;
        let mut init = worker::RequestInit::new();
        init.with_method(worker::Method::Post)
            .with_headers(headers)
            .with_body(Some(wasm_bindgen::JsValue::from_str(
                &m.to_json(hasher).to_string(),
            )));
        let request = Request::new_with_init(&api.url, &init)?;
        worker::Fetch::Request(request).send().await
    };
    match send.await {
        Ok(r) if (200..300).contains(&r.status_code()) => Ok(()),
        Ok(r) => Err(format!("status {}", r.status_code())),
        Err(_) => Err("connection failed".to_owned()),
    }
}

/// The answer to a direct call with a key that is not this tenant's: nothing ran; the Worker
/// asks the directory (a client never sees it).
fn not_mine() -> worker::Result<Response> {
    let resp = problem(ApiError::NotFound)?;
    let headers = resp.headers().clone();
    headers.set(internal::NOT_MINE_HEADER, "1")?;
    Ok(resp.with_headers(headers))
}

/// 503 for a Worker deployed without its secrets: the reason names the missing setting.
pub fn not_configured(reason: &str) -> worker::Result<Response> {
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

impl TenantState {
    fn ensure_open(&self) -> Result<(), String> {
        if self.inner.borrow().is_none() {
            let inner = Inner::open(&self.state, &self.env)?;
            *self.inner.borrow_mut() = Some(inner);
        }
        Ok(())
    }

    /// Points the platform alarm at the earliest of the core object's alarm and the mail due.
    async fn sync_alarm(&self) {
        let (next, offset) = {
            let guard = self.inner.borrow();
            let Some(inner) = guard.as_ref() else { return };
            let next = inner.next_alarm();
            if inner.alarm_set.get() == next {
                return;
            }
            inner.alarm_set.set(next);
            (next, inner.offset_ms.get())
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
            console_error!("could not set the alarm: {e}");
            if let Some(inner) = self.inner.borrow().as_ref() {
                inner.alarm_set.set(None);
            }
        }
    }

    /// POSTs rows to the directory; answers whether it took them.
    async fn send_to_directory(&self, path: &str, shipment: &Shipment) -> bool {
        let Ok(stub) = internal::directory_stub(&self.env) else {
            return false;
        };
        let body = serde_json::to_string(shipment).unwrap_or_default();
        matches!(
            internal::post(&stub, path, None, Some(body)).await,
            Ok(r) if r.status_code() == 200
        )
    }

    /// Sends the keys to the directory's mirror (after an alarm ended a grace period).
    async fn push_keys(&self) {
        let shipment = {
            let guard = self.inner.borrow();
            let Some(inner) = guard.as_ref() else { return };
            let tenant_id = inner.tenant_id.borrow().clone();
            let mut taken = None;
            let r = inner.db.transaction(&mut |db| {
                taken = Some(rows::take_changed_keys(db, &tenant_id, false)?);
                Ok(())
            });
            match r.map(|()| taken.unwrap_or_default()) {
                Ok(rows) => Shipment { tenant_id, rows },
                Err(e) => {
                    console_error!("reading keys for the directory: {e}");
                    return;
                }
            }
        };
        if !self
            .send_to_directory(internal::MERGE_KEYS, &shipment)
            .await
        {
            console_error!("the directory did not take the tenant's keys; kept for next time");
            if let Some(inner) = self.inner.borrow().as_ref() {
                for row in &shipment.rows {
                    if let Some(id) = row.first().and_then(|v| v.as_str()) {
                        let _ = inner.db.execute(
                            "INSERT OR IGNORE INTO _key_changes (id) VALUES (?)",
                            &[id.into()],
                        );
                    }
                }
            }
        }
    }

    /// Moves the flushed usage counts to the directory; puts them back if it cannot take them.
    async fn push_usage(&self) {
        let shipment = {
            let guard = self.inner.borrow();
            let Some(inner) = guard.as_ref() else { return };
            let mut taken = None;
            let r = inner.db.transaction(&mut |db| {
                taken = Some(rows::take_usage(db)?);
                Ok(())
            });
            match (r, taken) {
                (Ok(()), Some(rows)) if !rows.is_empty() => Shipment {
                    tenant_id: inner.tenant_id.borrow().clone(),
                    rows,
                },
                (Ok(()), _) => return,
                (Err(e), _) => {
                    console_error!("reading usage counts: {e}");
                    return;
                }
            }
        };
        if !self
            .send_to_directory(internal::MERGE_USAGE, &shipment)
            .await
        {
            console_error!("the directory did not take usage counts; kept for the next alarm");
            if let Some(inner) = self.inner.borrow().as_ref() {
                let _ = rows::merge_usage(&inner.db, &shipment.rows);
            }
        }
    }

    /// Sends the tenant's mail due now, one at a time and in order, as the native host does: a
    /// 2xx marks it sent; anything else schedules a retry with backoff. `Idempotency-Key` is
    /// the outbox id, so a resend after a crash between answer and mark can be dropped.
    async fn deliver_mail(&self) {
        let due = {
            let guard = self.inner.borrow();
            let Some(inner) = guard.as_ref() else { return };
            if inner.settings.mail.is_none() {
                return;
            }
            match mail::due(&inner.db, inner.now_ms(), 20) {
                Ok(d) => d,
                Err(e) => {
                    console_error!("reading the mail outbox failed: {e}");
                    return;
                }
            }
        };
        for m in due {
            let api = self.inner.borrow().as_ref().and_then(|i| {
                i.settings.mail.as_ref().map(|a| {
                    let api = MailApi {
                        url: a.url.clone(),
                        key: a.key.clone(),
                    };
                    (api, i.settings.service.authenticator().hasher.clone())
                })
            });
            let Some((api, hasher)) = api else { return };
            let outcome = post_mail(&api, &m, &hasher).await;
            let guard = self.inner.borrow();
            let Some(inner) = guard.as_ref() else { return };
            let now = inner.now_ms();
            let written = match &outcome {
                Ok(()) => mail::mark_sent(&inner.db, &m.id, now),
                Err(why) => {
                    console_error!("mail delivery failed ({why}); will retry");
                    mail::mark_failed(&inner.db, &m.id, now, why)
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
        let sync = req
            .headers()
            .get(internal::SYNC_HEADER)
            .ok()
            .flatten()
            .and_then(|v| internal::decode::<Sync>(&v));
        let path = req.path();
        // The directory's calls carry its sync; a client request straight from the stateless
        // Worker carries none and runs with what this object holds (see `crate::internal`).
        let direct = sync.is_none();
        if let Some(sync) = &sync {
            let guard = self.inner.borrow();
            let Some(inner) = guard.as_ref() else {
                return problem(ApiError::Internal);
            };
            if let Err(e) = inner.apply(sync) {
                console_error!("applying the directory's rows failed: {e}");
                return problem(ApiError::Internal);
            }
        } else if path.starts_with("/_internal/") && path != internal::AUDIT {
            console_error!("an internal call without the directory's sync");
            return problem(ApiError::Internal);
        }
        let response = match path.as_str() {
            internal::NOTICE => self.notice(&mut req).await,
            internal::SYNC => json_response(&json!({"ok": true})),
            internal::AUDIT => self.audit(&mut req).await,
            internal::KEYS => {
                let all = req.url().is_ok_and(|u| u.query() == Some("all=1"));
                self.read(|inner| {
                    let tenant_id = inner.tenant_id.borrow().clone();
                    let mut rows = None;
                    inner.db.transaction(&mut |db| {
                        rows = Some(rows::take_changed_keys(db, &tenant_id, all)?);
                        Ok(())
                    })?;
                    Ok(json!(rows.unwrap_or_default()))
                })
            }
            internal::ONBOARDING => self.read(onboarding_rows),
            internal::FLUSH => self.flush(),
            internal::FIRE | internal::CLOCK => self.fire(path == internal::FIRE).await,
            internal::EVICT => {
                let guard = self.inner.borrow();
                let was_live = guard
                    .as_ref()
                    .is_some_and(|i| i.object.borrow_mut().take().is_some());
                json_response(&json!({"evicted": usize::from(was_live)}))
            }
            _ => {
                let answer = self.tenant_request(req, direct).await;
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
        };
        self.copy_to_d1().await;
        self.sync_alarm().await;
        response
    }

    /// Sends the changed rows to D1 before the answer leaves (see [`crate::mirror`]); what D1
    /// does not take stays in the outbox for the alarm.
    // The shared borrow is held across the drain's awaits on purpose: `inner` is only ever
    // borrowed mutably while it is first built, before any call.
    #[allow(clippy::await_holding_refcell_ref)]
    async fn copy_to_d1(&self) {
        let guard = self.inner.borrow();
        let Some(inner) = guard.as_ref() else { return };
        if let Some(m) = inner.mirror.as_ref().filter(|m| m.pending(&inner.db)) {
            m.drain(&self.env, &inner.db).await;
        }
    }

    fn read(
        &self,
        f: impl FnOnce(&Inner) -> Result<serde_json::Value, StorageError>,
    ) -> worker::Result<Response> {
        let guard = self.inner.borrow();
        let Some(inner) = guard.as_ref() else {
            return problem(ApiError::Internal);
        };
        match f(inner) {
            Ok(v) => json_response(&v),
            Err(e) => {
                console_error!("reading for the directory failed: {e}");
                problem(ApiError::Internal)
            }
        }
    }

    /// A change the admin API made: store the rows it wrote, then audit and push it.
    async fn notice(&self, req: &mut Request) -> worker::Result<Response> {
        let Ok(call) = req.json::<NoticeCall>().await else {
            return problem(ApiError::Internal);
        };
        let guard = self.inner.borrow();
        let Some(inner) = guard.as_ref() else {
            return problem(ApiError::Internal);
        };
        let r = inner.call(&self.state, false, |o, env| {
            for (table, image) in &call.rows {
                rows::insert(env.db, "INSERT OR IGNORE", table, image)?;
                if table == "api_keys" {
                    // The directory wrote these keys itself: not changes to send it back.
                    for id in image
                        .iter()
                        .filter_map(|r| r.first().and_then(|v| v.as_str()))
                    {
                        env.db
                            .execute("DELETE FROM _key_changes WHERE id = ?", &[id.into()])?;
                    }
                }
            }
            o.notice(env, &call.notice)
        });
        match r {
            Ok(_) => with_alarm(json_response(&json!({"ok": true})), inner),
            Err(e) => {
                console_error!("a notice failed: {e}");
                problem(ApiError::Internal)
            }
        }
    }

    /// Moves the pending usage counts out (for an admin metrics answer) and answers them.
    fn flush(&self) -> worker::Result<Response> {
        let guard = self.inner.borrow();
        let Some(inner) = guard.as_ref() else {
            return problem(ApiError::Internal);
        };
        let r = inner.call(&self.state, false, |o, env| {
            o.flush_metrics(env)?;
            rows::take_usage(env.db)
        });
        match r {
            Ok((rows, _)) => json_response(&json!(rows)),
            Err(e) => {
                console_error!("flushing usage counts failed: {e}");
                problem(ApiError::Internal)
            }
        }
    }

    /// Fires the core object's alarm: now if `force` (and one is set), else only if it is due.
    async fn fire(&self, force: bool) -> worker::Result<Response> {
        let ran = {
            let guard = self.inner.borrow();
            let Some(inner) = guard.as_ref() else {
                return problem(ApiError::Internal);
            };
            let due = Storage(&inner.db)
                .alarm()
                .is_some_and(|at| force || at <= inner.now_ms());
            if due {
                if let Err(e) = inner.run_core_alarm(&self.state) {
                    console_error!("alarm of a tenant object failed: {e}");
                    return problem(ApiError::Internal);
                }
            }
            due
        };
        self.push_usage().await;
        let guard = self.inner.borrow();
        let Some(inner) = guard.as_ref() else {
            return problem(ApiError::Internal);
        };
        with_alarm(json_response(&json!({"fired": usize::from(ran)})), inner)
    }

    /// A client request the directory routed here, or (`direct`) the stateless Worker.
    async fn tenant_request(&self, mut req: Request, direct: bool) -> worker::Result<Response> {
        let forward = req
            .headers()
            .get(internal::FORWARD_HEADER)
            .ok()
            .flatten()
            .and_then(|v| internal::decode::<Forward>(&v));
        let Some(forward) = forward.filter(|f| f.direct == direct) else {
            return problem(ApiError::NotFound);
        };
        if direct && !self.owns_key(&forward.key_hash) {
            return not_mine();
        }
        let mut core_req = match to_core(&mut req).await {
            Ok(r) => r,
            Err(e) => return problem(e),
        };
        internal::strip(core_req.headers_mut());
        if let Some(host) = forward
            .host
            .as_deref()
            .and_then(|h| http::HeaderValue::from_str(h).ok())
        {
            core_req.headers_mut().insert(http::header::HOST, host);
        }
        core_req
            .extensions_mut()
            .insert(RequestId(forward.request_id.clone()));
        // The route the core parsed in front of the object travels with the request.
        let route = forward.route.clone();
        let head = core_req.method() == Method::HEAD;
        let upgrade = core_req.uri().path() == "/v1/events"
            && core_req
                .headers()
                .get(http::header::UPGRADE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
        let request_id = forward.request_id.clone();
        let guard = self.inner.borrow();
        let Some(inner) = guard.as_ref() else {
            return problem(ApiError::Internal);
        };
        let call = TenantCall {
            tenant_id: inner.tenant_id.borrow().clone(),
            key_hash: forward.key_hash.clone(),
            route,
            request: core_req,
        };
        let called = inner.call(&self.state, upgrade, |o, env| {
            Ok(o.fetch(env, &inner.settings.service.tenant_context(), &call))
        });
        let (outcome, client) = match called {
            Ok(r) => r,
            Err(e) => {
                console_error!("tenant object failed: {e}");
                return problem(ApiError::Internal);
            }
        };
        match outcome {
            TenantOutcome::Respond(resp) if resp.status() == StatusCode::SWITCHING_PROTOCOLS => {
                match client {
                    Some(ws) => Response::from_websocket(ws),
                    None => problem(ApiError::Internal),
                }
            }
            TenantOutcome::Respond(resp) => {
                with_alarm(to_worker(auth_core::finish(resp, &request_id, head)), inner)
            }
            // The Worker runs the graph hop (the core's driver: R2, the graph object, then the
            // audit record here through [`internal::AUDIT`]).
            TenantOutcome::Graph {
                op,
                actor_key_id,
                headers,
                ..
            } => {
                let hop = internal::GraphHop {
                    tenant_id: call.tenant_id.clone(),
                    op,
                    actor_key_id,
                    headers: headers
                        .iter()
                        .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_owned())))
                        .collect(),
                    now_ms: inner.now_ms(),
                };
                let marker = Response::empty().and_then(|r| {
                    r.headers()
                        .set(internal::GRAPH_HEADER, &internal::encode(&hop))?;
                    Ok(r)
                });
                with_alarm(marker, inner)
            }
        }
    }

    /// `/_internal/audit`: appends a graph change's audit record.
    async fn audit(&self, req: &mut Request) -> worker::Result<Response> {
        let Ok(notice) = req.json::<Notice>().await else {
            return problem(ApiError::Internal);
        };
        let guard = self.inner.borrow();
        let Some(inner) = guard.as_ref() else {
            return problem(ApiError::Internal);
        };
        match inner.call(&self.state, false, |o, env| o.record(env, &notice)) {
            Ok(_) => json_response(&json!({"ok": true})),
            Err(e) => {
                console_error!("could not write the graph audit record: {e}");
                problem(ApiError::Internal)
            }
        }
    }

    /// Whether `key_hash` is one of this object's tenant's keys, usable or not, and the
    /// object knows its tenant's row: the index (KV) may be stale or wrong, this is not. A
    /// revoked or expired key, a suspended or deleted tenant are "mine": the core object
    /// refuses them with the answer the native host gives.
    fn owns_key(&self, key_hash: &str) -> bool {
        let guard = self.inner.borrow();
        let Some(inner) = guard.as_ref() else {
            return false;
        };
        let tenant_id = inner.tenant_id.borrow().clone();
        if tenant_id.is_empty() || key_hash.is_empty() {
            return false;
        }
        let found = |sql: &str, params: &[SqlValue]| {
            inner.db.query(sql, params).is_ok_and(|r| !r.is_empty())
        };
        found(
            "SELECT 1 FROM tenants WHERE id = ?",
            &[tenant_id.as_str().into()],
        ) && found(
            "SELECT 1 FROM api_keys WHERE key_hash = ? AND tenant_id = ?",
            &[key_hash.into(), tenant_id.as_str().into()],
        )
    }
}

/// The rows `GET /admin/tenants/{id}` shows as the onboarding state: the onboarding record,
/// its admin user and its welcome mail, which change here (password set, mail sent).
fn onboarding_rows(inner: &Inner) -> Result<serde_json::Value, StorageError> {
    let tenant_id = inner.tenant_id.borrow().clone();
    let t: &[SqlValue] = &[tenant_id.as_str().into()];
    Ok(json!({
        "tenant_users": rows::select(&inner.db, "tenant_users",
            "id IN (SELECT admin_user_id FROM tenant_onboarding WHERE tenant_id = ?)", t)?,
        "mail_outbox": rows::select(&inner.db, "mail_outbox",
            "id IN (SELECT welcome_mail_id FROM tenant_onboarding WHERE tenant_id = ?)", t)?,
        "tenant_onboarding": rows::select(&inner.db, "tenant_onboarding", "tenant_id = ?", t)?,
    }))
}

/// Adds the internal answer headers: the object's next alarm (for the directory's test
/// controls) and whether the tenant's keys changed.
fn with_alarm(resp: worker::Result<Response>, inner: &Inner) -> worker::Result<Response> {
    let resp = resp?;
    let headers = resp.headers().clone();
    let alarm = Storage(&inner.db)
        .alarm()
        .map_or_else(|| "none".to_owned(), |a| a.to_string());
    headers.set(internal::ALARM_HEADER, &alarm)?;
    if inner.keys_pending() {
        headers.set(internal::KEYS_CHANGED_HEADER, "1")?;
    }
    Ok(resp.with_headers(headers))
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
        if self.ensure_open().is_err() {
            return Response::ok("");
        }
        let keys_changed = {
            let guard = self.inner.borrow();
            let Some(inner) = guard.as_ref() else {
                return Response::ok("");
            };
            inner.alarm_set.set(None);
            let due = Storage(&inner.db)
                .alarm()
                .is_some_and(|at| at <= inner.now_ms());
            if due && !inner.tenant_id.borrow().is_empty() {
                match inner.run_core_alarm(&self.state) {
                    Ok(()) => inner.failed_alarms.set(0),
                    Err(e) => {
                        console_error!("alarm of a tenant object failed: {e}");
                        let attempts = inner.failed_alarms.get().min(7);
                        inner.failed_alarms.set(attempts + 1);
                        let delay = (ALARM_RETRY_MS << attempts).min(60_000);
                        Storage(&inner.db).set_alarm(Some(inner.now_ms() + delay));
                    }
                }
            }
            inner.keys_pending()
        };
        if keys_changed {
            self.push_keys().await;
        }
        self.push_usage().await;
        self.deliver_mail().await;
        self.copy_to_d1().await;
        self.sync_alarm().await;
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
            let guard = self.inner.borrow();
            if let Some(inner) = guard.as_ref() {
                let _ = inner.call(&self.state, false, |o, env| {
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
            let guard = self.inner.borrow();
            if let Some(inner) = guard.as_ref() {
                let _ = inner.call(&self.state, false, |o, env| {
                    o.websocket_closed(env, id);
                    Ok(())
                });
            }
        }
        self.copy_to_d1().await;
        self.sync_alarm().await;
        Ok(())
    }
}
