//! The directory's rows and what it reads from them: the core's front over the shared rows,
//! the sync a tenant's object gets, the mirror of every tenant's keys, the index outbox.

use std::cell::{Cell, RefCell};

use auth_core::ports::{Sql, SqlValue, StorageError};
use auth_core::{ApiError, Front, Ports, Stage};
use worker::{console_error, Env, State};

use crate::config::Settings;
use crate::internal::{self, Shipment, Sync};
use crate::mirror::{self, Mirror};
use crate::rows;
use crate::storage::{DoSql, WorkerClock, WorkerEntropy};
use crate::tables::{self, KeyRow, Owner, TenantRow, UsageRow};

/// What the object builds at first use.
pub(super) struct Platform {
    pub(super) settings: Settings,
    pub(super) db: DoSql,
    pub(super) clock: RefCell<WorkerClock>,
    /// The keyring changed when this instance opened (a new `JWT_SECRET`): every tenant's
    /// object gets it before the next answer.
    pub(super) keyring_fanout: Cell<bool>,
    /// The copy of the directory's tables in D1 (none without a `DB` binding).
    pub(super) mirror: Option<Mirror>,
    /// Whether D1 has had its migrations checked by this instance.
    pub(super) d1_ready: Cell<bool>,
}

impl Platform {
    /// Reads the configuration, applies migrations, reconciles the JWT keyring.
    pub(super) fn open(state: &State, env: &Env) -> Result<Self, String> {
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
            &tables::copied_to_d1(Owner::Directory),
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

    pub(super) fn now_ms(&self) -> i64 {
        auth_core::ports::Clock::now_ms(&*self.clock.borrow())
    }

    /// The core's front, both parts, over the directory's rows (the key's owner from its
    /// mirror of the keys); with the request id and whether the request is HEAD.
    pub(super) fn front(&self, req: auth_core::Request) -> (Front, String, bool) {
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
    pub(super) fn resume(&self, resume: auth_core::Resume) -> auth_core::Response {
        let clock = self.clock.borrow();
        let ports = Ports {
            db: &self.db,
            clock: &*clock,
            entropy: &WorkerEntropy,
        };
        self.settings.service.resume(&ports, resume)
    }

    /// What a call to `tenant_id`'s object carries: its row, the keyring, the clock.
    pub(super) fn sync_for(&self, tenant_id: &str) -> Result<Sync, StorageError> {
        let tenant = rows::select::<TenantRow>(&self.db, "id = ?", &[tenant_id.into()])?
            .into_iter()
            .next();
        let keyring = rows::keyring(&self.db)?;
        Ok(Sync {
            tenant_id: tenant_id.to_owned(),
            tenant,
            keyring,
            offset_ms: self.clock.borrow().offset_ms,
        })
    }

    /// Folds a tenant's key images into the mirror (only rows of that tenant).
    pub(super) fn merge_keys(&self, shipment: &Shipment<KeyRow>) -> Result<(), StorageError> {
        let own: Vec<KeyRow> = shipment
            .rows
            .iter()
            .filter(|r| r.tenant_id.as_str() == Some(&shipment.tenant_id))
            .cloned()
            .collect();
        self.db.transaction(&mut |db| rows::merge_keys(db, &own))
    }

    /// Adds a tenant's usage counts to `usage_metrics`.
    pub(super) fn merge_usage(&self, shipment: &Shipment<UsageRow>) -> Result<(), StorageError> {
        self.db
            .transaction(&mut |db| rows::merge_usage(db, &shipment.rows))
    }

    /// Every tenant the directory has created, deleted ones too (their objects may still
    /// hold usage counts or alarms).
    pub(super) fn tenant_ids(&self) -> Vec<String> {
        self.db
            .query("SELECT id FROM tenants ORDER BY id", &[])
            .unwrap_or_default()
            .iter()
            .filter_map(|r| r.first().and_then(SqlValue::as_str).map(str::to_owned))
            .collect()
    }

    pub(super) fn tenant_exists(&self, tenant_id: &str) -> bool {
        self.db
            .query("SELECT 1 FROM tenants WHERE id = ?", &[tenant_id.into()])
            .is_ok_and(|r| !r.is_empty())
    }

    /// The key hashes written to the mirror and not yet in the index (KV), oldest first.
    pub(super) fn unindexed(&self, limit: usize) -> Vec<(String, String)> {
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
pub(super) const KV_OUTBOX_DDL: [&str; 2] = [
    "CREATE TABLE IF NOT EXISTS _kv_outbox (key_hash TEXT PRIMARY KEY, tenant_id TEXT NOT NULL)",
    "CREATE TRIGGER IF NOT EXISTS _kv_outbox_insert AFTER INSERT ON api_keys \
     BEGIN INSERT OR REPLACE INTO _kv_outbox (key_hash, tenant_id) \
     VALUES (NEW.key_hash, NEW.tenant_id); END",
];

/// A request id given by the stateless Worker (16 hex digits), replayed as the randomness
/// `Service::begin` draws the id from: its only draw.
pub(super) struct GivenId([u8; 8]);

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
