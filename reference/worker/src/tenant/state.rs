//! The tenant object's state: the core `TenantState` over this object's SQLite, and what the
//! directory last sent (the tenant's row, the keyring, the test clock).

use std::cell::{Cell, RefCell};

use auth_core::objects::{DurableObject as CoreObject, ObjectEnv, ObjectStorage};
use auth_core::ports::{Sql, SqlValue, StorageError};
use auth_core::TenantState as TenantObject;
use worker::{console_error, Env, State, WebSocket};

use super::sockets::Hub;
use crate::config::Settings;
use crate::internal::Sync;
use crate::mirror::{self, Mirror};
use crate::rows;
use crate::storage::{DoSql, WorkerClock, WorkerEntropy};
use crate::tables::{self, Owner};

/// What the object builds at first use.
pub(super) struct Inner {
    pub(super) settings: Settings,
    pub(super) db: DoSql,
    /// The tenant this object serves: learned from the first call, kept in `_tenant_meta`.
    pub(super) tenant_id: RefCell<String>,
    /// The test clock's offset, as the directory last said.
    pub(super) offset_ms: Cell<i64>,
    pub(super) object: RefCell<Option<TenantObject>>,
    /// The images applied last, to skip rewriting what has not changed.
    pub(super) tenant_applied: RefCell<Option<String>>,
    pub(super) keyring_applied: RefCell<Option<String>>,
    /// The platform alarm as last set (test time), to skip needless writes.
    pub(super) alarm_set: Cell<Option<i64>>,
    pub(super) failed_alarms: Cell<u32>,
    /// The copy of the tenant's tables in D1 (none without a `DB` binding).
    pub(super) mirror: Option<Mirror>,
}

/// The core object's storage: this object's SQLite; its alarm time in `_core_alarm` (the
/// platform alarm also serves the mail outbox, so it is set from both).
pub(super) struct Storage<'a>(pub(super) &'a DoSql);

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

pub(super) fn first_i64(db: &dyn Sql, sql: &str) -> Option<i64> {
    db.query(sql, &[]).ok()?.first()?.first()?.as_i64()
}

impl Inner {
    pub(super) fn open(state: &State, env: &Env) -> Result<Self, String> {
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
            &tables::copied_to_d1(Owner::Tenant),
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

    pub(super) fn clock(&self) -> WorkerClock {
        WorkerClock {
            offset_ms: self.offset_ms.get(),
        }
    }

    pub(super) fn now_ms(&self) -> i64 {
        auth_core::ports::Clock::now_ms(&self.clock())
    }

    /// Applies what the directory sent: the tenant's id, clock, row and keyring.
    pub(super) fn apply(&self, sync: &Sync) -> Result<(), StorageError> {
        let tenant_json = sync
            .tenant
            .as_ref()
            .map(|r| serde_json::to_string(r).unwrap_or_default());
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
    pub(super) fn call<R>(
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
    pub(super) fn run_core_alarm(&self, state: &State) -> Result<(), StorageError> {
        self.call(state, false, |o, env| {
            env.storage.set_alarm(None);
            o.alarm(env)
        })
        .map(drop)
    }

    /// Whether keys changed that the directory has not taken yet (recorded by triggers, see
    /// [`rows::KEY_CHANGES_DDL`]).
    pub(super) fn keys_pending(&self) -> bool {
        self.db
            .query("SELECT 1 FROM _key_changes LIMIT 1", &[])
            .is_ok_and(|r| !r.is_empty())
    }

    /// The earliest of the core object's alarm, the next mail due and a retry of changes D1
    /// did not take, in test time.
    pub(super) fn next_alarm(&self) -> Option<i64> {
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

    /// Whether `key_hash` is one of this object's tenant's keys, usable or not, and the
    /// object knows its tenant's row: the index (KV) may be stale or wrong, this is not. A
    /// revoked or expired key, a suspended or deleted tenant are "mine": the core object
    /// refuses them with the answer the native host gives.
    pub(super) fn owns_key(&self, key_hash: &str) -> bool {
        let tenant_id = self.tenant_id.borrow().clone();
        if tenant_id.is_empty() || key_hash.is_empty() {
            return false;
        }
        let found = |sql: &str, params: &[SqlValue]| {
            self.db.query(sql, params).is_ok_and(|r| !r.is_empty())
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
