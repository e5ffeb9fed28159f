//! Criterion benchmarks of the paths whose cost is storage, in the crate that owns the storage:
//! the host's rusqlite-backed `Sql` port (WAL, the host's pragmas) and its Durable Object
//! runtime. Each group carries its own baseline, measured in the same run, so a report can
//! state a ratio: a bare rusqlite statement, the warm cache, a plain map lookup, or bare
//! `jsonwebtoken`. The core's SQL-free hot paths are in `reference/core/benches/hot_paths.rs`.
//!
//! Databases live in a temporary directory on the same file system as the service's data
//! directory would, so commits cost what they cost in the service.

use std::cell::Cell;
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use auth_core::keys::{self, Environment, KeyHasher, KeyType};
use auth_core::model::KeyRecord;
use auth_core::objects::{DurableObject, NoSockets, ObjectEnv, ObjectStorage};
use auth_core::ports::{Clock, Sql, StorageError};
use auth_core::store;
use auth_core::tenant_state::{Notice, TenantState};
use auth_core::users::jwt::{self, AccessClaims, JwtSecrets};
use auth_core::users::store as user_store;
use auth_service::bench_support::{open_connection, BatchLimits, Runtime, SqliteSql};
use auth_service::{Database, HostClock, OsEntropy};
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rusqlite::params;
use rusqlite::types::Value;
use sha2::{Digest, Sha256};

const TENANT: &str = "tenant:acme";

/// Short runs: the whole new set has to fit in a few minutes on a shared 2-core machine.
fn short(g: &mut BenchmarkGroup<'_, WallTime>) {
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(2));
}

/// The service's shared database, migrated, in a fresh directory.
fn shared_database() -> (tempfile::TempDir, Database) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let db = Database::open(&dir.path().join("auth.sqlite3")).expect("database");
    (dir, db)
}

fn blacklist(c: &mut Criterion) {
    let (_dir, db) = shared_database();
    let conn = db.lock();
    let now = HostClock::default().now_ms();
    // Many live entries, so the lookup walks a real index rather than a one-page table.
    {
        let tx = conn.unchecked_transaction().expect("transaction");
        let mut insert = tx
            .prepare(
                "INSERT INTO token_blacklist (jti, tenant_id, expires_at, reason, created_at) \
                 VALUES (?1, ?2, ?3, 'logout', ?4)",
            )
            .expect("prepare");
        for i in 0..10_000u128 {
            insert
                .execute(params![format!("{i:032x}"), TENANT, now + 900_000, now])
                .expect("insert");
        }
        drop(insert);
        tx.commit().expect("commit");
    }
    let revoked = format!("{:032x}", 4_242u128);
    let live = format!("{:032x}", u128::MAX - 7);
    let sql = SqliteSql(&conn);
    assert!(user_store::is_blacklisted(&sql, &revoked).expect("query"));
    assert!(!user_store::is_blacklisted(&sql, &live).expect("query"));

    let mut g = c.benchmark_group("token_blacklist_check");
    short(&mut g);
    g.bench_function("is_blacklisted_revoked", |b| {
        b.iter(|| user_store::is_blacklisted(&sql, black_box(&revoked)).expect("query"))
    });
    g.bench_function("is_blacklisted_not_revoked", |b| {
        b.iter(|| user_store::is_blacklisted(&sql, black_box(&live)).expect("query"))
    });
    let bare = |jti: &str| {
        conn.prepare_cached("SELECT 1 FROM token_blacklist WHERE jti = ?1")
            .expect("prepare")
            .exists([jti])
            .expect("query")
    };
    g.bench_function("baseline_rusqlite_revoked", |b| {
        b.iter(|| bare(black_box(&revoked)))
    });
    g.bench_function("baseline_rusqlite_not_revoked", |b| {
        b.iter(|| bare(black_box(&live)))
    });
    g.finish();
}

fn cold_key_verification(c: &mut Criterion) {
    let (_dir, db) = shared_database();
    let conn = db.lock();
    let now = HostClock::default().now_ms();
    let hasher = KeyHasher::new(b"a pepper of thirty-two bytes....");
    let mut key = String::new();
    {
        let tx = conn.unchecked_transaction().expect("transaction");
        tx.execute(
            "INSERT INTO tenants (id, slug, name, created_at, updated_at) \
             VALUES (?1, 'acme', 'Acme', ?2, ?2)",
            params![TENANT, now],
        )
        .expect("tenant");
        let mut insert = tx
            .prepare(
                "INSERT INTO api_keys (id, tenant_id, key_prefix, key_hash, name, type, \
                 environment, permissions, created_at) \
                 VALUES (?1, ?2, ?3, ?4, 'bench', 'secret', 'live', '[\"read:users\"]', ?5)",
            )
            .expect("prepare");
        for i in 0..10_000 {
            let k = keys::generate(KeyType::Secret, Environment::Live, &OsEntropy);
            insert
                .execute(params![
                    format!("key:{i:016x}"),
                    TENANT,
                    keys::display_prefix(&k),
                    hasher.hash(&k),
                    now
                ])
                .expect("insert");
            if i == 4_242 {
                key = k;
            }
        }
        drop(insert);
        tx.commit().expect("commit");
    }
    let sql = SqliteSql(&conn);
    // The warm side holds every key the way TenantState's `keys_by_hash` does.
    let mut cache: HashMap<String, KeyRecord> = HashMap::new();
    for row in sql
        .query("SELECT key_hash FROM api_keys", &[])
        .expect("hashes")
    {
        let h = row[0].as_str().expect("text").to_owned();
        let record = store::find_key_by_hash(&sql, &h)
            .expect("query")
            .expect("row");
        cache.insert(h, record);
    }

    // TenantState's miss runs `TenantScope::find_key_by_hash` (`tenant_id = ? AND key_hash =
    // ?`); the scope cannot be made outside the core, so this uses the front's
    // `store::find_key_by_hash`, the same row decoding over the same unique `key_hash` index.
    let cold = |token: &str| {
        let parsed = keys::parse(token).is_some();
        let h = hasher.hash(token);
        let found = store::find_key_by_hash(&sql, &h)
            .expect("query")
            .filter(|k| KeyHasher::same(&k.key_hash, &h));
        (parsed, found)
    };
    // A hit clones the record, as `TenantState::key` hands it out.
    let warm = |token: &str| {
        let parsed = keys::parse(token).is_some();
        let h = hasher.hash(token);
        let found = cache
            .get_key_value(&h)
            .filter(|(stored, _)| KeyHasher::same(stored, &h))
            .map(|(_, k)| k.clone());
        (parsed, found)
    };
    assert!(cold(&key).1.is_some() && warm(&key).1.is_some());

    let mut g = c.benchmark_group("key_verification_cold");
    short(&mut g);
    g.bench_function("verify_cold_cache_sqlite", |b| {
        b.iter(|| cold(black_box(&key)))
    });
    g.bench_function("verify_warm_cache", |b| b.iter(|| warm(black_box(&key))));
    g.bench_function("baseline_hash_and_rusqlite_lookup", |b| {
        b.iter(|| {
            let h = hasher.hash(black_box(&key));
            conn.prepare_cached(
                "SELECT id, tenant_id, key_prefix, key_hash, name, type, environment, \
                 permissions, created_at, revoked_at, expires_at, replaced_by \
                 FROM api_keys WHERE key_hash = ?1",
            )
            .expect("prepare")
            .query_row([&h], |r| {
                (0..12)
                    .map(|i| r.get::<_, Value>(i))
                    .collect::<Result<Vec<_>, _>>()
            })
            .expect("row")
        })
    });
    g.finish();
}

/// The object's storage as the runtime gives it to a call, minus the alarm metadata.
struct ObjectSql<'c> {
    sql: SqliteSql<'c>,
    alarm: Cell<Option<i64>>,
}
impl ObjectStorage for ObjectSql<'_> {
    fn sql(&self) -> &dyn Sql {
        &self.sql
    }
    fn set_alarm(&self, at_ms: Option<i64>) {
        self.alarm.set(at_ms);
    }
    fn alarm(&self) -> Option<i64> {
        self.alarm.get()
    }
}

fn audit_append(c: &mut Criterion) {
    let (dir, db) = shared_database();
    let object = open_connection(&dir.path().join("tenant-state.sqlite3")).expect("object db");
    let shared = db.lock();
    let db_sql = SqliteSql(&shared);
    let storage = ObjectSql {
        sql: SqliteSql(&object),
        alarm: Cell::new(None),
    };
    let clock = HostClock::default();
    let env = ObjectEnv {
        name: TENANT,
        storage: &storage,
        db: &db_sql,
        clock: &clock,
        entropy: &OsEntropy,
        sockets: &NoSockets,
    };
    let mut state = TenantState::load(&env).expect("load");
    let notice = Notice {
        actor: "key:0123456789abcdef".into(),
        action: "api_key.created".into(),
        target: "key:fedcba9876543210".into(),
        detail: serde_json::json!({"name": "ci deploy", "type": "secret", "environment": "live"}),
        request_id: "req_0123456789abcdef".into(),
        end_sessions: false,
    };
    let detail = notice.detail.to_string();

    // Each append commits, as the object call that makes it does before answering; the
    // baseline pays the same commit, so the ratio is what the append adds to one INSERT.
    let mut g = c.benchmark_group("audit_append");
    short(&mut g);
    g.bench_function("tenant_state_record", |b| {
        b.iter(|| {
            let tx = object.unchecked_transaction().expect("transaction");
            state.record(&env, black_box(&notice)).expect("append");
            tx.commit().expect("commit")
        })
    });
    g.bench_function("baseline_rusqlite_insert", |b| {
        b.iter(|| {
            let tx = object.unchecked_transaction().expect("transaction");
            tx.prepare_cached(
                "INSERT INTO audit_log (created_at, action, actor_key_id, target, request_id, \
                 detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .expect("prepare")
            .execute(params![
                clock.now_ms(),
                notice.action,
                notice.actor,
                notice.target,
                notice.request_id,
                black_box(&detail)
            ])
            .expect("insert");
            tx.commit().expect("commit")
        })
    });
    g.finish();
}

fn namespace(c: &mut Criterion) {
    let (dir, db) = shared_database();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    // The runtime spawns its alarm scheduler when it starts.
    let _entered = rt.enter();
    let runtime =
        Runtime::<TenantState>::start(dir.path(), Arc::new(db), Arc::new(HostClock::default()))
            .expect("object runtime");
    let names: Vec<String> = (0..64).map(|i| format!("tenant:bench{i:02}")).collect();
    for name in &names {
        rt.block_on(runtime.call(name, false, |_, _| ()))
            .expect("warm-up call");
    }
    let name = names[7].clone();
    let ids: HashMap<[u8; 32], Arc<tokio::sync::Mutex<()>>> = names
        .iter()
        .map(|n| (Sha256::digest(n.as_bytes()).into(), Arc::default()))
        .collect();
    let id: [u8; 32] = Sha256::digest(name.as_bytes()).into();

    let mut g = c.benchmark_group("object_namespace");
    short(&mut g);
    // Name to live instance and back: slot lookup, the object's gate, the blocking-pool hop,
    // the call's storage transaction and the alarm read, around a handler that does nothing.
    g.bench_function("runtime_call_warm_noop", |b| {
        b.iter(|| {
            rt.block_on(runtime.call(black_box(&name), false, |_, _| ()))
                .expect("call")
        })
    });
    // The platform's `idFromName` is this digest; this runtime keys live objects by name and
    // takes the digest only to name an object's file when it (re)opens it, so this is the
    // cost of addressing by id, not a part of every call above.
    g.bench_function("id_from_name_sha256_and_lookup", |b| {
        b.iter(|| {
            let id: [u8; 32] = Sha256::digest(black_box(name.as_bytes())).into();
            ids.get(&id).map(Arc::clone)
        })
    });
    g.bench_function("baseline_hashmap_lookup_precomputed_id", |b| {
        b.iter(|| ids.get(black_box(&id)).map(Arc::clone))
    });
    g.finish();
    runtime.stop();
}

/// An object whose every call appends one row: the smallest write a call can make.
struct Tally;

impl DurableObject for Tally {
    const CLASS: &'static str = "BenchTally";

    fn load(env: &ObjectEnv) -> Result<Self, StorageError> {
        env.storage
            .sql()
            .execute("CREATE TABLE IF NOT EXISTS t (v INTEGER)", &[])?;
        Ok(Tally)
    }
}

/// Calls of one object per iteration of the `object_batch` group.
const BATCH: usize = 64;

/// `BATCH` calls of one object, each appending a row, made at once through the runtime and
/// awaited together: committed in one transaction (the runtime's write coalescing) against
/// committed one by one (`max_calls: 1`, what each call did before). The baselines make the
/// same writes straight on rusqlite, in one transaction and in one each.
fn object_batch(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let _entered = rt.enter();
    let start = |dir: &tempfile::TempDir, max_calls: usize| {
        let db = Database::open(&dir.path().join("auth.sqlite3")).expect("database");
        let runtime = Runtime::<Tally>::start(dir.path(), Arc::new(db), Arc::default())
            .expect("object runtime");
        runtime.set_batch_limits(BatchLimits {
            max_calls,
            max_wait: Duration::from_millis(2),
        });
        runtime
    };
    let (once_dir, each_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let once = start(&once_dir, BATCH);
    let each = start(&each_dir, 1);
    let append = |_: &mut Tally, env: &ObjectEnv| {
        env.storage
            .sql()
            .execute("INSERT INTO t (v) VALUES (1)", &[])
            .expect("insert")
    };
    let run = |runtime: &Arc<Runtime<Tally>>| {
        rt.block_on(futures::future::join_all(
            (0..BATCH).map(|_| runtime.call("tally", false, append)),
        ))
        .into_iter()
        .for_each(|r| {
            r.expect("call");
        })
    };
    run(&once);
    run(&each);
    let direct_dir = tempfile::tempdir().unwrap();
    let conn = open_connection(&direct_dir.path().join("direct.sqlite3")).expect("database");
    conn.execute_batch("CREATE TABLE t (v INTEGER)")
        .expect("table");

    let mut g = c.benchmark_group("object_batch");
    short(&mut g);
    let commits_before = once.commits();
    let mut iterations = 0u64;
    g.bench_function("runtime_64_calls_coalesced", |b| {
        b.iter(|| {
            iterations += 1;
            run(&once)
        })
    });
    // Coalescing depends on how many calls are queued when the runner looks: say how well
    // it did (1 would be one commit per iteration).
    eprintln!(
        "object_batch: {:.2} commits per 64 coalesced calls",
        (once.commits() - commits_before) as f64 / iterations.max(1) as f64
    );
    g.bench_function("runtime_64_calls_committed_one_by_one", |b| {
        b.iter(|| run(&each))
    });
    g.bench_function("baseline_rusqlite_64_inserts_one_transaction", |b| {
        b.iter(|| {
            let tx = conn.unchecked_transaction().expect("begin");
            for _ in 0..BATCH {
                tx.execute("INSERT INTO t (v) VALUES (1)", [])
                    .expect("insert");
            }
            tx.commit().expect("commit")
        })
    });
    g.bench_function("baseline_rusqlite_64_inserts_64_transactions", |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                let tx = conn.unchecked_transaction().expect("begin");
                tx.execute("INSERT INTO t (v) VALUES (1)", [])
                    .expect("insert");
                tx.commit().expect("commit")
            }
        })
    });
    g.finish();
    once.stop();
    each.stop();
}

fn access_tokens_sqlite(c: &mut Criterion) {
    let (_dir, db) = shared_database();
    let conn = db.lock();
    let sql = SqliteSql(&conn);
    let current = b"the current secret, at least 32 characters";
    let previous = b"the previous secret, at least 32 characters";
    let secrets = JwtSecrets::new(current, Some(previous));
    let now_ms = HostClock::default().now_ms();
    jwt::reconcile(&sql, &secrets, now_ms).expect("keyring");
    let now = now_ms / 1000;
    let claims = AccessClaims {
        sub: "user:7b0c6f3e9a2d4c1b".into(),
        tenant_id: TENANT.into(),
        jti: "5f0e8d7c6b5a49382716059483726150".into(),
        iat: now,
        exp: now + jwt::ACCESS_TTL_SECONDS,
        nbf: Some(now),
        iss: jwt::ISSUER.into(),
        aud: TENANT.into(),
        token_type: jwt::ACCESS_TYPE.into(),
        sid: "session:0a1b2c3d4e5f6a7b".into(),
    };
    let token_current = jwt::sign(&sql, &secrets, &claims).expect("sign");
    // Signed before a rotation, when the previous secret's key was current.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = secrets.previous_kid();
    let token_previous =
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(previous))
            .expect("encode");
    for t in [&token_current, &token_previous] {
        assert_eq!(
            jwt::verify(&sql, &secrets, t, TENANT, now_ms).as_ref(),
            Ok(&claims)
        );
    }
    // The same checks `jwt::verify` makes, left to the library.
    let mut validation = jsonwebtoken::Validation::new(Algorithm::HS256);
    validation.leeway = 0;
    validation.validate_nbf = true;
    validation.set_audience(&[TENANT]);
    validation.set_issuer(&[jwt::ISSUER]);
    validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
    let decoding = jsonwebtoken::DecodingKey::from_secret(current);
    let mut current_header = Header::new(Algorithm::HS256);
    current_header.kid = Some(secrets.base_kid());
    let encoding = EncodingKey::from_secret(current);

    let mut g = c.benchmark_group("jwt_hs256_sqlite_keyring");
    short(&mut g);
    g.bench_function("sign", |b| {
        b.iter(|| jwt::sign(&sql, &secrets, black_box(&claims)).expect("sign"))
    });
    g.bench_function("baseline_jsonwebtoken_encode", |b| {
        b.iter(|| {
            jsonwebtoken::encode(&current_header, black_box(&claims), &encoding).expect("encode")
        })
    });
    g.bench_function("verify_current_key", |b| {
        b.iter(|| jwt::verify(&sql, &secrets, black_box(&token_current), TENANT, now_ms))
    });
    g.bench_function("verify_previous_key", |b| {
        b.iter(|| jwt::verify(&sql, &secrets, black_box(&token_previous), TENANT, now_ms))
    });
    g.bench_function("baseline_jsonwebtoken_decode", |b| {
        b.iter(|| {
            jsonwebtoken::decode::<AccessClaims>(black_box(&token_current), &decoding, &validation)
                .expect("valid")
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    access_tokens_sqlite,
    blacklist,
    cold_key_verification,
    audit_append,
    namespace,
    object_batch
);
criterion_main!(benches);
