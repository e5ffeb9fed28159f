//! Criterion benchmarks of the core's hot paths. Each group carries its own baseline, measured
//! in the same run, so a report can state a ratio: raw HMAC-SHA256 for key verification, the
//! `governor` crate for the rate-limit decision, bare `jsonwebtoken` for access tokens.
//! Paths that need real SQL (blacklist, cold key lookup, audit append, the object runtime) are
//! measured in the host crate, which owns the storage: `reference/host/benches/storage_paths.rs`.

use std::collections::HashMap;
use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use auth_core::auth::Authenticator;
use auth_core::graph::csv::{self, EdgeSpec};
use auth_core::graph::index::{GraphIndex, StoredEdge};
use auth_core::keys::{self, Environment, KeyHasher, KeyType};
use auth_core::model::Plan;
use auth_core::ports::{Entropy, Row, Sql, SqlValue, StorageError};
use auth_core::ratelimit::{FixedWindow, Quota};
use auth_core::users::jwt::{self, AccessClaims, JwtSecrets};
use auth_core::Ports;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use sha2::Sha256;

struct OsEntropy;
impl Entropy for OsEntropy {
    fn fill(&self, buf: &mut [u8]) {
        getrandom::getrandom(buf).expect("OS CSPRNG");
    }
}

struct FixedClock;
impl auth_core::ports::Clock for FixedClock {
    fn now_ms(&self) -> i64 {
        1_800_000_000_000
    }
}

/// A storage port that answers every query with one key row, so routing benches measure the
/// core's work and not a database.
struct OneKeyRow(Row);
impl Sql for OneKeyRow {
    fn execute(&self, _: &str, _: &[SqlValue]) -> Result<usize, StorageError> {
        Ok(0)
    }
    fn query(&self, _: &str, _: &[SqlValue]) -> Result<Vec<Row>, StorageError> {
        Ok(vec![self.0.clone()])
    }
    fn transaction(
        &self,
        work: &mut dyn FnMut(&dyn Sql) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        work(self)
    }
}

fn key_paths(c: &mut Criterion) {
    let mut g = c.benchmark_group("keys");
    g.bench_function("generate", |b| {
        b.iter(|| keys::generate(KeyType::Secret, Environment::Live, &OsEntropy))
    });
    let key = keys::generate(KeyType::Secret, Environment::Live, &OsEntropy);
    g.bench_function("parse_and_checksum", |b| {
        b.iter(|| keys::parse(black_box(&key)))
    });
    let mut bad = key.clone().into_bytes();
    bad[20] ^= 1;
    let bad = String::from_utf8(bad).unwrap_or_default();
    g.bench_function("parse_refuses_bad_checksum", |b| {
        b.iter(|| keys::parse(black_box(&bad)))
    });
    g.finish();

    // Verification: parse, keyed hash, cache lookup, constant-time compare. The baseline is
    // the bare HMAC-SHA256 of the key.
    let mut g = c.benchmark_group("key_verification");
    let pepper = b"a pepper of thirty-two bytes....";
    let hasher = KeyHasher::new(pepper);
    let mut cache = HashMap::new();
    for _ in 0..10_000 {
        let k = keys::generate(KeyType::Secret, Environment::Live, &OsEntropy);
        cache.insert(hasher.hash(&k), k.len());
    }
    cache.insert(hasher.hash(&key), key.len());
    g.bench_function("baseline_raw_hmac_sha256", |b| {
        let mac = Hmac::<Sha256>::new_from_slice(pepper).expect("key");
        b.iter(|| {
            let mut m = mac.clone();
            m.update(black_box(key.as_bytes()));
            m.finalize().into_bytes()
        })
    });
    g.bench_function("verify_warm_cache", |b| {
        b.iter(|| {
            let parsed = keys::parse(black_box(&key)).is_some();
            let h = hasher.hash(&key);
            let hit = cache
                .get_key_value(&h)
                .map(|(stored, _)| KeyHasher::same(stored, &h));
            (parsed, hit)
        })
    });
    g.finish();
}

fn routing(c: &mut Criterion) {
    let hasher = KeyHasher::new(b"pepper");
    let key = keys::generate(KeyType::Secret, Environment::Live, &OsEntropy);
    let auth = Authenticator {
        admin_key_hash: hasher.hash("sk_live_admin_admin_admin_admin_admin_admin"),
        hasher: hasher.clone(),
        base_domain: Some("auth.test".into()),
    };
    let row: Row = vec![
        SqlValue::Text("key:0123456789abcdef".into()),
        SqlValue::Text("tenant:acme".into()),
        SqlValue::Text(keys::display_prefix(&key)),
        SqlValue::Text(hasher.hash(&key)),
        SqlValue::Text("n".into()),
        SqlValue::Text("secret".into()),
        SqlValue::Text("live".into()),
        SqlValue::Text("[]".into()),
        SqlValue::Integer(0),
        SqlValue::Null,
        SqlValue::Null,
        SqlValue::Null,
    ];
    let db = OneKeyRow(row);
    let ports = Ports {
        db: &db,
        clock: &FixedClock,
        entropy: &OsEntropy,
    };
    let request = |f: &dyn Fn(http::request::Builder) -> http::request::Builder| {
        f(http::Request::builder().uri("http://127.0.0.1/v1/api-keys"))
            .header("authorization", format!("Bearer {key}"))
            .body(Vec::new())
            .expect("request")
    };
    let mut g = c.benchmark_group("tenant_routing");
    let cases: [(&str, http::Request<Vec<u8>>, &str); 4] = [
        ("key", request(&|b| b), ""),
        (
            "header",
            request(&|b| b.header("x-tenant-id", "tenant:acme")),
            "",
        ),
        (
            "subdomain",
            request(&|b| b.header("host", "acme.auth.test:8080")),
            "",
        ),
        ("query", request(&|b| b), "tenant_id=tenant%3Aacme"),
    ];
    for (name, req, query) in &cases {
        let pairs = auth_core::http::query_pairs(Some(query));
        g.bench_with_input(BenchmarkId::from_parameter(name), req, |b, req| {
            b.iter(|| {
                let hash = auth.tenant_key_hash(req).expect("a tenant key");
                let owner = auth_core::store::find_key_by_hash(ports.db, &hash).expect("known key");
                let named = auth.other_routing_sources(req, &pairs);
                (owner, named)
            })
        });
    }
    g.finish();
}

fn rate_limit(c: &mut Criterion) {
    let mut g = c.benchmark_group("rate_limit_decision");
    let quota = Quota::for_tenant(Plan::Enterprise, None);
    let mut window = FixedWindow::default();
    let mut now = 1_800_000_000_000i64;
    g.bench_function("fixed_window_admit", |b| {
        b.iter(|| {
            now += 1;
            window.admit(black_box(quota), now)
        })
    });
    let limiter = governor::RateLimiter::direct(governor::Quota::per_minute(
        NonZeroU32::new(10_000).expect("non-zero"),
    ));
    g.bench_function("baseline_governor_check", |b| b.iter(|| limiter.check()));
    g.finish();
}

/// A graph where `user:u<i>` is a member of a chain of `depth - 1` groups whose last one can
/// `read` `doc:d<i>`, padded with unrelated edges up to `edges`.
fn chain_graph(edges: usize, depth: usize) -> GraphIndex {
    let mut all = Vec::with_capacity(edges);
    let spec = |st: &str, si: String, rel: &str, ot: &str, oi: String| EdgeSpec {
        subject_type: st.into(),
        subject_id: si,
        relation: rel.into(),
        object_type: ot.into(),
        object_id: oi,
    };
    let mut i = 0;
    while all.len() < edges {
        let mut subject = ("user", format!("u{i}"));
        for level in 1..depth {
            let group = format!("g{i}_{level}");
            all.push(StoredEdge::from_spec(
                &spec(
                    subject.0,
                    subject.1.clone(),
                    "member",
                    "group",
                    group.clone(),
                ),
                1,
            ));
            subject = ("group", group);
        }
        all.push(StoredEdge::from_spec(
            &spec(subject.0, subject.1, "read", "doc", format!("d{i}")),
            1,
        ));
        i += 1;
    }
    GraphIndex::from_edges(all)
}

fn graph(c: &mut Criterion) {
    let mut g = c.benchmark_group("graph_check");
    for edges in [10_000usize, 100_000] {
        for depth in 1..=5usize {
            let index = chain_graph(edges, depth);
            g.bench_with_input(
                BenchmarkId::new(format!("{edges}_edges"), depth),
                &index,
                |b, index| b.iter(|| index.check(black_box("user:u7"), "read", "doc:d7")),
            );
        }
    }
    g.finish();

    let mut g = c.benchmark_group("csv_load");
    let mut text = String::from("subject_type,subject_id,relation,object_type,object_id\n");
    for i in 0..100_000 {
        text.push_str(&format!("user,u{i},member,group,\"g{}\"\n", i % 977));
    }
    g.throughput(Throughput::Elements(100_000));
    g.sample_size(10);
    g.bench_function("parse_100k_edges", |b| {
        b.iter(|| csv::parse(black_box(text.as_bytes())).map(|e| e.len()))
    });
    g.bench_function("parse_and_index_100k_edges", |b| {
        b.iter(|| {
            let specs = csv::parse(text.as_bytes()).unwrap_or_default();
            GraphIndex::from_edges(specs.iter().map(|s| StoredEdge::from_spec(s, 1))).len()
        })
    });
    g.finish();
}

/// The signing keyring answered from memory: `current` signs, `previous` verifies. The keyring
/// query is the only SQL `jwt::sign`/`jwt::verify` run, so this group times the core's token
/// work; the host's bench times the same calls against the real SQLite keyring. An SQL text
/// this does not know gets no rows, which makes verification fail and the bench panic, so a
/// changed query cannot go unnoticed.
struct Keyring {
    current: String,
    previous: String,
}
impl Sql for Keyring {
    fn execute(&self, _: &str, _: &[SqlValue]) -> Result<usize, StorageError> {
        Ok(0)
    }
    fn query(&self, sql: &str, params: &[SqlValue]) -> Result<Vec<Row>, StorageError> {
        let text = |s: &str| vec![vec![SqlValue::Text(s.to_owned())]];
        if !sql.contains("jwt_keys") {
            return Ok(Vec::new());
        }
        if sql.contains("status = 'current'") {
            return Ok(text(&self.current));
        }
        match params.first().and_then(SqlValue::as_str) {
            Some(kid) if kid == self.current => Ok(text("current")),
            Some(kid) if kid == self.previous => Ok(text("previous")),
            Some(_) => Ok(Vec::new()),
            None => Ok(text("1")),
        }
    }
    fn transaction(
        &self,
        work: &mut dyn FnMut(&dyn Sql) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        work(self)
    }
}

fn access_tokens(c: &mut Criterion) {
    let current = b"the current secret, at least 32 characters";
    let previous = b"the previous secret, at least 32 characters";
    let secrets = JwtSecrets::new(current, Some(previous));
    let previous_kid = secrets.previous_kid().expect("previous secret set");
    let keyring = Keyring {
        current: secrets.base_kid(),
        previous: previous_kid.clone(),
    };
    // Tokens are issued at the real time so the baseline's own `exp` check (SystemTime) and
    // ours (the Clock port, given the same instant) accept them alike.
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .expect("clock after 1970");
    let now = now_ms / 1000;
    let tenant = "tenant:acme";
    let claims = AccessClaims {
        sub: "user:7b0c6f3e9a2d4c1b".into(),
        tenant_id: tenant.into(),
        jti: "5f0e8d7c6b5a49382716059483726150".into(),
        iat: now,
        exp: now + jwt::ACCESS_TTL_SECONDS,
        nbf: Some(now),
        iss: jwt::ISSUER.into(),
        aud: tenant.into(),
        token_type: jwt::ACCESS_TYPE.into(),
        sid: "session:0a1b2c3d4e5f6a7b".into(),
    };
    let token_current = jwt::sign(&keyring, &secrets, &claims).expect("sign");
    // A token from before a rotation: signed while the previous secret's key was current.
    let rotated_away = Keyring {
        current: previous_kid.clone(),
        previous: String::new(),
    };
    let token_previous = jwt::sign(&rotated_away, &secrets, &claims).expect("sign");
    for t in [&token_current, &token_previous] {
        assert_eq!(
            jwt::verify(&keyring, &secrets, t, tenant, now_ms).as_ref(),
            Ok(&claims)
        );
    }

    // The same checks `jwt::verify` makes, left to the library: HS256 only, iss, aud, the
    // required claims, and exp/nbf against the system clock.
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 0;
    validation.validate_nbf = true;
    validation.set_audience(&[tenant]);
    validation.set_issuer(&[jwt::ISSUER]);
    validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(keyring.current.clone());
    let encoding = EncodingKey::from_secret(current);
    let decoding_current = DecodingKey::from_secret(current);
    let decoding_previous = DecodingKey::from_secret(previous);

    let mut g = c.benchmark_group("jwt_hs256");
    // Short runs: the whole new set has to fit in a few minutes on a shared 2-core machine.
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(2));
    g.bench_function("sign", |b| {
        b.iter(|| jwt::sign(&keyring, &secrets, black_box(&claims)).expect("sign"))
    });
    g.bench_function("baseline_jsonwebtoken_encode", |b| {
        b.iter(|| jsonwebtoken::encode(&header, black_box(&claims), &encoding).expect("encode"))
    });
    g.bench_function("verify_current_key", |b| {
        b.iter(|| {
            jwt::verify(
                &keyring,
                &secrets,
                black_box(&token_current),
                tenant,
                now_ms,
            )
        })
    });
    g.bench_function("baseline_jsonwebtoken_decode_current", |b| {
        b.iter(|| {
            jsonwebtoken::decode::<AccessClaims>(
                black_box(&token_current),
                &decoding_current,
                &validation,
            )
            .expect("valid")
        })
    });
    g.bench_function("verify_previous_key", |b| {
        b.iter(|| {
            jwt::verify(
                &keyring,
                &secrets,
                black_box(&token_previous),
                tenant,
                now_ms,
            )
        })
    });
    g.bench_function("baseline_jsonwebtoken_decode_previous", |b| {
        b.iter(|| {
            jsonwebtoken::decode::<AccessClaims>(
                black_box(&token_previous),
                &decoding_previous,
                &validation,
            )
            .expect("valid")
        })
    });
    // Parts of `verify` that the baseline does not do, so the report can say where the
    // difference goes: reading the header for its kid, and deriving the kid's secret.
    g.bench_function("part_decode_header", |b| {
        b.iter(|| jsonwebtoken::decode_header(black_box(&token_current)).expect("header"))
    });
    g.bench_function("part_resolve_current_kid", |b| {
        b.iter(|| secrets.resolve(black_box(&keyring.current)))
    });
    g.bench_function("part_resolve_previous_kid", |b| {
        b.iter(|| secrets.resolve(black_box(&previous_kid)))
    });
    g.finish();
}

criterion_group!(
    benches,
    key_paths,
    routing,
    rate_limit,
    graph,
    access_tokens
);
criterion_main!(benches);
