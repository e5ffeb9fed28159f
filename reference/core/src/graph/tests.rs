//! Tests of the object as a whole (storage, versions, the log, HTTP glue) over in-memory
//! fakes of the ports. The core has no SQL engine, so [`FakeSql`] interprets exactly the
//! statements [`super::store`] issues (and panics on any other), with real transactions
//! (snapshot and restore) and an injectable failure, which is what the atomicity tests need.
//! The host's integration tests run the same code over real SQLite.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::store::{self, *};
use super::*;
use crate::http::Request;
use crate::objects::{NoSockets, ObjectStorage};
use crate::ports::{Clock, Entropy, Row, Sql, SqlValue, StorageError};

#[derive(Debug, Clone, Default, PartialEq)]
struct Tables {
    edges: BTreeMap<String, Row>,
    meta: Option<Row>,
    log: BTreeMap<(i64, i64), Row>,
}

#[derive(Default)]
struct FakeSql {
    tables: RefCell<Tables>,
    /// Fail the execute with this number (counted from 1 since the last `fail_at`).
    fail_at: Cell<Option<usize>>,
    executes: Cell<usize>,
    /// Largest number of bound parameters seen in one statement.
    max_params: Cell<usize>,
}

impl FakeSql {
    fn fail_at(&self, n: usize) {
        self.executes.set(0);
        self.fail_at.set(Some(n));
    }

    fn snapshot(&self) -> Tables {
        self.tables.borrow().clone()
    }

    fn rows(sql: &str, head: &str, tail: &str, params: &[SqlValue]) -> Vec<Row> {
        assert_eq!(params.len() % 6, 0, "{sql}");
        let n = params.len() / 6;
        assert!((1..=ROWS_PER_STATEMENT).contains(&n));
        assert_eq!(sql, store::batch_insert(head, 6, n, tail));
        params.chunks(6).map(<[SqlValue]>::to_vec).collect()
    }
}

fn int(v: &SqlValue) -> i64 {
    v.as_i64().expect("integer parameter")
}

impl Sql for FakeSql {
    fn execute(&self, sql: &str, params: &[SqlValue]) -> Result<usize, StorageError> {
        let n = self.executes.get() + 1;
        self.executes.set(n);
        if self.fail_at.get() == Some(n) {
            return Err(StorageError::Other("injected failure".into()));
        }
        self.max_params.set(self.max_params.get().max(params.len()));
        let mut t = self.tables.borrow_mut();
        if [CREATE_EDGES, CREATE_META, CREATE_LOG].contains(&sql) {
            return Ok(0);
        }
        if sql == DELETE_EDGES {
            let n = t.edges.len();
            t.edges.clear();
            return Ok(n);
        }
        if sql == UPSERT_META {
            let row = vec![SqlValue::Integer(1)]
                .into_iter()
                .chain(params.iter().cloned())
                .collect();
            t.meta = Some(row);
            return Ok(1);
        }
        if let Some(rest) = sql.strip_prefix(EDGES_INSERT) {
            let upsert = rest.ends_with(EDGES_UPSERT_TAIL);
            let tail = if upsert { EDGES_UPSERT_TAIL } else { "" };
            let rows = Self::rows(sql, EDGES_INSERT, tail, params);
            let count = rows.len();
            for row in rows {
                let id = row[0].as_str().unwrap().to_owned();
                match t.edges.get_mut(&id) {
                    Some(old) if upsert => {
                        old[4] = row[4].clone();
                        old[5] = row[5].clone();
                    }
                    Some(_) => return Err(StorageError::Constraint("edges.id".into())),
                    None => {
                        t.edges.insert(id, row);
                    }
                }
            }
            return Ok(count);
        }
        if sql == DELETE_LOG_THROUGH {
            let through = int(&params[0]);
            let before = t.log.len();
            t.log.retain(|(version, _), _| *version > through);
            return Ok(before - t.log.len());
        }
        if sql.starts_with(LOG_INSERT) {
            let rows = Self::rows(sql, LOG_INSERT, "", params);
            let count = rows.len();
            for row in rows {
                let key = (int(&row[0]), int(&row[1]));
                if t.log.insert(key, row).is_some() {
                    return Err(StorageError::Constraint("mutation_log pk".into()));
                }
            }
            return Ok(count);
        }
        panic!("unexpected statement: {sql}");
    }

    fn query(&self, sql: &str, params: &[SqlValue]) -> Result<Vec<Row>, StorageError> {
        let t = self.tables.borrow();
        if sql == SELECT_META {
            return Ok(t
                .meta
                .iter()
                .map(|m| vec![m[1].clone(), m[2].clone()])
                .collect());
        }
        if sql == SELECT_EDGES {
            return Ok(t.edges.values().cloned().collect());
        }
        if sql == SELECT_LOG_AFTER {
            let (since, limit) = (int(&params[0]), int(&params[1]) as usize);
            return Ok(t
                .log
                .range((since + 1, i64::MIN)..)
                .take(limit)
                .map(|(_, r)| r.clone())
                .collect());
        }
        if sql == SELECT_LOG_OF {
            let v = int(&params[0]);
            return Ok(t
                .log
                .range((v, i64::MIN)..=(v, i64::MAX))
                .map(|(_, r)| r.clone())
                .collect());
        }
        panic!("unexpected query: {sql}");
    }

    fn transaction(
        &self,
        work: &mut dyn FnMut(&dyn Sql) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        let before = self.snapshot();
        let result = work(self);
        if result.is_err() {
            *self.tables.borrow_mut() = before;
        }
        result
    }
}

#[derive(Default)]
struct Storage {
    sql: FakeSql,
}

impl ObjectStorage for Storage {
    fn sql(&self) -> &dyn Sql {
        &self.sql
    }
    fn set_alarm(&self, _: Option<i64>) {}
    fn alarm(&self) -> Option<i64> {
        None
    }
}

struct TestClock(Cell<i64>);
impl Clock for TestClock {
    fn now_ms(&self) -> i64 {
        self.0.get()
    }
}

struct Zero;
impl Entropy for Zero {
    fn fill(&self, buf: &mut [u8]) {
        buf.fill(0);
    }
}

/// A tenant's object and everything around it.
struct World {
    storage: Storage,
    db: FakeSql,
    clock: TestClock,
}

impl World {
    fn new() -> Self {
        Self {
            storage: Storage::default(),
            db: FakeSql::default(),
            // 2026-11-26T10:00:00Z
            clock: TestClock(Cell::new(1_795_687_200_000)),
        }
    }

    fn env(&self) -> ObjectEnv<'_> {
        ObjectEnv {
            name: "tenant:acme",
            storage: &self.storage,
            db: &self.db,
            clock: &self.clock,
            entropy: &Zero,
            sockets: &NoSockets,
        }
    }

    fn load(&self) -> GraphState {
        GraphState::load(&self.env()).expect("load")
    }

    fn tick(&self, ms: i64) {
        self.clock.0.set(self.clock.0.get() + ms);
    }
}

const CSV: &str = "subject_type,subject_id,relation,object_type,object_id\n\
    user,alice,member,group,eng\n\
    group,eng,viewer,doc,readme\n\
    user,\"smith, john\",member,group,eng\n\
    user,alice,member,group,eng\n";

fn add(s: &str) -> MutationOp {
    let p: Vec<String> = s.split(':').map(str::to_owned).collect();
    MutationOp::Add(EdgeSpec::from_parts(p.try_into().unwrap()).unwrap())
}

fn revoke(id: &str) -> MutationOp {
    MutationOp::Revoke { edge_id: id.into() }
}

fn field_of(e: &ApiError) -> (&str, &str) {
    match e {
        ApiError::InvalidField { field, message } | ApiError::InvalidQuery { field, message } => {
            (field, message)
        }
        other => panic!("not a field error: {other:?}"),
    }
}

#[test]
fn a_new_object_is_an_empty_uninitialized_graph() {
    let w = World::new();
    let g = w.load();
    assert_eq!(
        serde_json::to_value(g.state(&w.env())).unwrap(),
        json!({"tenantId":"tenant:acme","version":0,"edgeCount":0,"loadedAt":null,"initialized":false})
    );
    let v = g.validate(
        &["user:alice:member:group:eng".into()],
        "user:alice",
        "group:eng",
    );
    assert_eq!(
        v.reason.as_deref(),
        Some("Edge not found: user:alice:member:group:eng")
    );
    assert!(!g.check("user:alice", "member", "group:eng"));
    let page = g.mutations_since(&w.env(), 0, 100).unwrap();
    assert_eq!(
        serde_json::to_value(page).unwrap(),
        json!({"currentVersion":0,"mutations":[],"hasMore":false})
    );
}

#[test]
fn reload_replaces_the_graph_and_survives_eviction() {
    let w = World::new();
    let mut g = w.load();
    let summary = g.reload(&w.env(), CSV.as_bytes(), "key:1").unwrap();
    assert_eq!(
        serde_json::to_value(&summary).unwrap(),
        json!({"success":true,"tenantId":"tenant:acme","edgeCount":3,"version":1})
    );
    assert!(g.check("user:alice", "viewer", "doc:readme"));
    assert!(g.check("user:smith, john", "viewer", "doc:readme"));
    let state = serde_json::to_value(g.state(&w.env())).unwrap();
    assert_eq!(state["loadedAt"], "2026-11-26T10:00:00Z");
    assert_eq!(state["initialized"], true);

    // Evicted and rebuilt from storage: the same graph.
    let g2 = w.load();
    assert_eq!(serde_json::to_value(g2.state(&w.env())).unwrap(), state);
    assert!(g2.check("user:alice", "viewer", "doc:readme"));

    // A second reload replaces everything, as a new version.
    w.tick(1000);
    let s2 = g
        .reload(
            &w.env(),
            b"subject_type,subject_id,relation,object_type,object_id\nuser,bob,viewer,doc,readme\n",
            "key:2",
        )
        .unwrap();
    assert_eq!((s2.version, s2.edge_count), (2, 1));
    assert!(!g.check("user:alice", "viewer", "doc:readme"));
    assert!(g.check("user:bob", "viewer", "doc:readme"));
    let g3 = w.load();
    assert_eq!(g3.index().len(), 1);
    assert_eq!(g3.version(), 2);
    assert_eq!(w.storage.sql.snapshot().edges.len(), 1);

    let page = g.mutations_since(&w.env(), 0, 100).unwrap();
    assert_eq!(
        serde_json::to_value(page).unwrap(),
        json!({"currentVersion":2,"hasMore":false,"mutations":[
            {"version":1,"op":"reload","edgeId":null,"at":"2026-11-26T10:00:00Z","actorKeyId":"key:1"},
            {"version":2,"op":"reload","edgeId":null,"at":"2026-11-26T10:00:01Z","actorKeyId":"key:2"}
        ]})
    );
}

#[test]
fn a_bad_csv_changes_nothing() {
    let w = World::new();
    let mut g = w.load();
    g.reload(&w.env(), CSV.as_bytes(), "key:1").unwrap();
    let tables = w.storage.sql.snapshot();
    let state = g.state(&w.env());
    let bad = "subject_type,subject_id,relation,object_type,object_id\n\
               user,bob,member,group,eng\n\
               user,carol,bad relation,group,eng\n";
    let e = g.reload(&w.env(), bad.as_bytes(), "key:1").unwrap_err();
    assert_eq!(e.status(), 400);
    assert_eq!(
        field_of(&e),
        (
            "csv",
            "line 3, column 3: relation must match [A-Za-z0-9_-]+"
        )
    );
    assert_eq!(w.storage.sql.snapshot(), tables);
    assert_eq!(g.state(&w.env()), state);
    assert!(g.check("user:alice", "viewer", "doc:readme"));
    assert!(!g.check("user:bob", "member", "group:eng"));
}

#[test]
fn a_storage_failure_during_reload_changes_nothing() {
    let w = World::new();
    let mut g = w.load();
    g.reload(&w.env(), CSV.as_bytes(), "key:1").unwrap();
    let tables = w.storage.sql.snapshot();
    let state = g.state(&w.env());
    let mut big = String::from("subject_type,subject_id,relation,object_type,object_id\n");
    for i in 0..100 {
        big.push_str(&format!("user,u{i},member,group,eng\n"));
    }
    // Fail the fourth statement: the delete and three edge batches ran before it.
    w.storage.sql.fail_at(4);
    assert_eq!(
        g.reload(&w.env(), big.as_bytes(), "key:1"),
        Err(ApiError::Internal)
    );
    assert_eq!(w.storage.sql.snapshot(), tables);
    assert_eq!(g.state(&w.env()), state);
    assert!(g.index().get("user:u0:member:group:eng").is_none());
}

#[test]
fn reload_writes_in_batches_under_the_parameter_limit() {
    let w = World::new();
    let mut g = w.load();
    let mut body = String::from("subject_type,subject_id,relation,object_type,object_id\n");
    for i in 0..1000 {
        body.push_str(&format!("user,u{i},member,group,g{}\n", i % 7));
    }
    assert_eq!(
        g.reload(&w.env(), body.as_bytes(), "k").unwrap().edge_count,
        1000
    );
    assert!(w.storage.sql.max_params.get() <= 100);
    assert_eq!(w.storage.sql.snapshot().edges.len(), 1000);
    assert_eq!(w.load().index().live_count(), 1000);
}

#[test]
fn mutations_make_one_version_each_and_are_logged() {
    let w = World::new();
    let mut g = w.load();
    g.reload(&w.env(), CSV.as_bytes(), "key:1").unwrap();
    w.tick(5_000);
    let r = g
        .mutate(
            &w.env(),
            &[
                add("user:bob:member:group:eng"),
                revoke("user:alice:member:group:eng"),
            ],
            "key:2",
        )
        .unwrap();
    assert_eq!(
        r,
        MutationResult {
            version: 2,
            applied: 2
        }
    );
    // A check right after the mutation sees it.
    assert!(g.check("user:bob", "viewer", "doc:readme"));
    assert!(!g.check("user:alice", "viewer", "doc:readme"));
    let v = g.validate(
        &[
            "user:alice:member:group:eng".into(),
            "group:eng:viewer:doc:readme".into(),
        ],
        "user:alice",
        "doc:readme",
    );
    assert_eq!(
        v.reason.as_deref(),
        Some("Edge revoked: user:alice:member:group:eng")
    );
    let state = g.state(&w.env());
    assert_eq!((state.version, state.edge_count), (2, 3));
    // loadedAt still names the reload.
    assert_eq!(state.loaded_at.as_deref(), Some("2026-11-26T10:00:00Z"));

    // The same after eviction.
    let g2 = w.load();
    assert_eq!(g2.state(&w.env()), state);
    assert!(!g2.check("user:alice", "viewer", "doc:readme"));
    assert_eq!(
        g2.index()
            .get("user:alice:member:group:eng")
            .unwrap()
            .revoked_at,
        Some(1_795_687_205_000)
    );

    // Re-adding a revoked edge makes it live again, durably.
    g.mutate(&w.env(), &[add("user:alice:member:group:eng")], "key:2")
        .unwrap();
    assert!(g.check("user:alice", "viewer", "doc:readme"));
    let g3 = w.load();
    assert!(g3.check("user:alice", "viewer", "doc:readme"));
    assert_eq!(g3.state(&w.env()).edge_count, 4);
    assert_eq!(
        w.storage.sql.snapshot().meta.unwrap()[3],
        SqlValue::Integer(4)
    );

    let page = g.mutations_since(&w.env(), 1, 100).unwrap();
    assert_eq!(
        serde_json::to_value(page).unwrap(),
        json!({"currentVersion":3,"hasMore":false,"mutations":[
            {"version":2,"op":"add","edgeId":"user:bob:member:group:eng","at":"2026-11-26T10:00:05Z","actorKeyId":"key:2"},
            {"version":2,"op":"revoke","edgeId":"user:alice:member:group:eng","at":"2026-11-26T10:00:05Z","actorKeyId":"key:2"},
            {"version":3,"op":"add","edgeId":"user:alice:member:group:eng","at":"2026-11-26T10:00:05Z","actorKeyId":"key:2"}
        ]})
    );
}

#[test]
fn mutations_on_a_graph_never_loaded_initialize_it() {
    let w = World::new();
    let mut g = w.load();
    g.mutate(&w.env(), &[add("user:a:viewer:doc:d")], "k")
        .unwrap();
    let s = g.state(&w.env());
    assert!(s.initialized);
    assert_eq!((s.version, s.edge_count, s.loaded_at), (1, 1, None));
}

#[test]
fn a_refused_batch_changes_nothing() {
    let w = World::new();
    let mut g = w.load();
    g.reload(&w.env(), CSV.as_bytes(), "key:1").unwrap();
    let tables = w.storage.sql.snapshot();
    let state = g.state(&w.env());
    let e = g
        .mutate(
            &w.env(),
            &[
                add("user:bob:member:group:eng"),
                revoke("user:nobody:member:group:eng"),
            ],
            "k",
        )
        .unwrap_err();
    assert_eq!(
        field_of(&e),
        ("mutations[1].edgeId", "names no edge of this graph")
    );
    assert_eq!(w.storage.sql.snapshot(), tables);
    assert_eq!(g.state(&w.env()), state);
    assert!(!g.check("user:bob", "member", "group:eng"));

    assert_eq!(
        field_of(&g.mutate(&w.env(), &[], "k").unwrap_err()).0,
        "mutations"
    );

    // A storage failure inside the transaction: nothing lands, memory unchanged.
    w.storage.sql.fail_at(2);
    assert_eq!(
        g.mutate(&w.env(), &[add("user:bob:member:group:eng")], "k"),
        Err(ApiError::Internal)
    );
    assert_eq!(w.storage.sql.snapshot(), tables);
    assert_eq!(g.state(&w.env()), state);
    assert!(!g.check("user:bob", "member", "group:eng"));
    // And the next call works, at the next version.
    assert_eq!(
        g.mutate(&w.env(), &[add("user:bob:member:group:eng")], "k")
            .unwrap()
            .version,
        2
    );
}

#[test]
fn the_log_pages_by_whole_versions() {
    let w = World::new();
    let mut g = w.load();
    g.reload(&w.env(), CSV.as_bytes(), "k").unwrap(); // v1: 1 record
    g.mutate(
        &w.env(),
        &[add("a:1:r:b:1"), add("a:2:r:b:1"), add("a:3:r:b:1")],
        "k",
    )
    .unwrap(); // v2: 3 records
    g.mutate(&w.env(), &[add("a:4:r:b:1"), add("a:5:r:b:1")], "k")
        .unwrap(); // v3: 2 records
    let versions = |p: &MutationPage| p.mutations.iter().map(|m| m.version).collect::<Vec<_>>();

    // limit 2 would cut v2: the page stops after v1.
    let p = g.mutations_since(&w.env(), 0, 2).unwrap();
    assert_eq!((versions(&p), p.has_more), (vec![1], true));
    // v2 alone is larger than the limit: it comes whole.
    let p = g.mutations_since(&w.env(), 1, 2).unwrap();
    assert_eq!((versions(&p), p.has_more), (vec![2, 2, 2], true));
    // An exact fit.
    let p = g.mutations_since(&w.env(), 1, 5).unwrap();
    assert_eq!((versions(&p), p.has_more), (vec![2, 2, 2, 3, 3], false));
    let p = g.mutations_since(&w.env(), 1, 4).unwrap();
    assert_eq!((versions(&p), p.has_more), (vec![2, 2, 2], true));
    let p = g.mutations_since(&w.env(), 3, 100).unwrap();
    assert_eq!(
        (versions(&p), p.has_more, p.current_version),
        (vec![], false, 3)
    );
    let e = g.mutations_since(&w.env(), 4, 100).unwrap_err();
    assert_eq!(field_of(&e), ("since", "is ahead of the current version 3"));
    assert_eq!(e.status(), 400);
}

// ---- HTTP glue ----

fn post(body: Value) -> Request {
    ::http::Request::builder()
        .method("POST")
        .uri("/v1/graph/x")
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body).unwrap())
        .unwrap()
}

fn get(uri: &str) -> Request {
    ::http::Request::builder()
        .method("GET")
        .uri(uri)
        .body(Vec::new())
        .unwrap()
}

fn body(resp: crate::http::Response) -> Value {
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    serde_json::from_slice(resp.body()).unwrap()
}

fn loaded() -> (World, GraphState) {
    let w = World::new();
    let mut g = w.load();
    let r = g
        .handle(
            &w.env(),
            GraphRoute::Reload {
                csv: CSV.as_bytes().to_vec(),
            },
            &get("/v1/graph/reload"),
            "key:1",
        )
        .unwrap();
    assert_eq!(
        body(r),
        json!({"success":true,"tenantId":"tenant:acme","edgeCount":3,"version":1})
    );
    (w, g)
}

#[test]
fn http_routes_answer_json() {
    let (w, mut g) = loaded();
    let env = w.env();
    let mut call = |route, req: Request| g.handle(&env, route, &req, "key:1");

    let v = call(GraphRoute::State, get("/v1/graph/state")).unwrap();
    assert_eq!(body(v)["edgeCount"], 3);

    let v = call(
        GraphRoute::Validate,
        post(
            json!({"edgeIds":["user:alice:member:group:eng","group:eng:viewer:doc:readme"],
                    "userId":"user:alice","resourceId":"doc:readme"}),
        ),
    )
    .unwrap();
    assert_eq!(body(v), json!({"valid":true}));
    let v = call(
        GraphRoute::Validate,
        post(json!({"edgeIds":[],"userId":"user:alice","resourceId":"doc:readme"})),
    )
    .unwrap();
    assert_eq!(body(v), json!({"valid":false,"reason":"Empty edge chain"}));

    let v = call(
        GraphRoute::Check,
        post(json!({"subject":"user:alice","relation":"viewer","object":"doc:readme"})),
    )
    .unwrap();
    assert_eq!(body(v), json!({"allowed":true}));

    let v = call(
        GraphRoute::Mutate,
        post(json!({"mutations":[
            {"op":"add","edge":{"subject_type":"user","subject_id":" dave ","relation":"member",
                                "object_type":"group","object_id":"eng"}},
            {"op":"revoke","edgeId":"user:alice:member:group:eng"}
        ]})),
    )
    .unwrap();
    assert_eq!(body(v), json!({"version":2,"applied":2}));
    let v = call(
        GraphRoute::Check,
        post(json!({"subject":"user:dave","relation":"viewer","object":"doc:readme"})),
    )
    .unwrap();
    assert_eq!(body(v), json!({"allowed":true}));

    let v = call(
        GraphRoute::Mutations,
        get("/v1/graph/mutations?since=1&limit=10"),
    )
    .unwrap();
    let v = body(v);
    assert_eq!(v["currentVersion"], 2);
    assert_eq!(v["mutations"][0]["edgeId"], "user:dave:member:group:eng");
    assert_eq!(v["mutations"][1]["op"], "revoke");
    let v = call(GraphRoute::Mutations, get("/v1/graph/mutations")).unwrap();
    assert_eq!(body(v)["mutations"].as_array().unwrap().len(), 3);
}

/// A request the graph object must refuse with a 400 naming this field with this message.
type FieldCase = (GraphRoute, Request, &'static str, &'static str);

/// Bodies of validate and check with an unknown, missing or malformed field, and mutate
/// bodies whose list itself is wrong.
fn body_field_errors() -> Vec<FieldCase> {
    use GraphRoute::{Check, Mutate, Validate};
    let too_many: Vec<Value> = (0..1001)
        .map(|_| json!({"op":"revoke","edgeId":"x"}))
        .collect();
    vec![
        (
            Validate,
            post(json!({"edgeIds":[],"userId":"u","resourceId":"r","x":1})),
            "x",
            "is not a known field",
        ),
        (
            Validate,
            post(json!({"userId":"u","resourceId":"r"})),
            "edgeIds",
            "is required",
        ),
        (
            Validate,
            post(json!({"edgeIds":[1],"userId":"u","resourceId":"r"})),
            "edgeIds",
            "must be a list of strings",
        ),
        (
            Validate,
            post(json!({"edgeIds":[],"resourceId":"r"})),
            "userId",
            "is required",
        ),
        (
            Check,
            post(json!({"subject":"alice","relation":"viewer","object":"doc:readme"})),
            "subject",
            "must be a node id <type>:<id>, e.g. user:alice",
        ),
        (
            Check,
            post(json!({"subject":"user:alice","relation":"view er","object":"doc:readme"})),
            "relation",
            "must match [A-Za-z0-9_-]+",
        ),
        (
            Check,
            post(json!({"subject":"user:alice","relation":"viewer","object":"doc:a:b"})),
            "object",
            "id must not contain ':' (it separates the parts of an edge id)",
        ),
        (
            Mutate,
            post(json!({"mutations":[]})),
            "mutations",
            "must hold at least one mutation",
        ),
        (
            Mutate,
            post(json!({"mutations":{}})),
            "mutations",
            "must be a list of mutations",
        ),
        (
            Mutate,
            post(json!({ "mutations": too_many })),
            "mutations",
            "must hold at most 1000 mutations",
        ),
    ]
}

/// Mutate bodies with one bad mutation: the field is named by its place in the list.
fn mutation_field_errors() -> Vec<FieldCase> {
    let edge = json!({"subject_type":"user","subject_id":"bob","relation":"member",
                      "object_type":"group","object_id":"eng"});
    let cases = [
        (json!(["x"]), "mutations[0]", "must be an object"),
        (json!([{"edgeId":"x"}]), "mutations[0].op", "is required"),
        (
            json!([{"op":"delete"}]),
            "mutations[0].op",
            "must be add or revoke",
        ),
        (json!([{"op":"add"}]), "mutations[0].edge", "is required"),
        (
            json!([{"op":"add","edge":edge,"edgeId":"x"}]),
            "mutations[0].edgeId",
            "is not a known field",
        ),
        (
            json!([{"op":"revoke"}]),
            "mutations[0].edgeId",
            "is required",
        ),
        (
            json!([{"op":"revoke","edgeId":"user:alice:member:group:eng"},{"op":"revoke","edgeId":"nope"}]),
            "mutations[1].edgeId",
            "names no edge of this graph",
        ),
        (
            json!([{"op":"add","edge":{"subject_type":"user","subject_id":"bob","relation":"mem ber",
                                         "object_type":"group","object_id":"eng"}}]),
            "mutations[0].edge.relation",
            "must match [A-Za-z0-9_-]+",
        ),
        (
            json!([{"op":"add","edge":{"subject_type":"user","subject_id":"bob","relation":"member",
                                         "object_type":"group"}}]),
            "mutations[0].edge.object_id",
            "is required",
        ),
        (
            json!([{"op":"add","edge":{"subject_type":"user","subject_id":"bob","relation":"member",
                                         "object_type":"group","object_id":"eng","extra":1}}]),
            "mutations[0].edge.extra",
            "is not a known field",
        ),
    ];
    cases
        .into_iter()
        .map(|(mutations, field, message)| {
            let req = post(json!({ "mutations": mutations }));
            (GraphRoute::Mutate, req, field, message)
        })
        .collect()
}

/// Query parameters of the mutation log out of range or unknown.
fn query_field_errors() -> Vec<FieldCase> {
    use GraphRoute::Mutations;
    vec![
        (
            Mutations,
            get("/v1/graph/mutations?limit=0"),
            "limit",
            "must be a whole number from 1 to 1000",
        ),
        (
            Mutations,
            get("/v1/graph/mutations?since=-1"),
            "since",
            "must be a whole number from 0",
        ),
        (
            Mutations,
            get("/v1/graph/mutations?after=1"),
            "after",
            "is not a known parameter",
        ),
    ]
}

#[test]
fn http_errors_name_the_field() {
    let (w, mut g) = loaded();
    let env = w.env();
    let cases = [
        body_field_errors(),
        mutation_field_errors(),
        query_field_errors(),
    ];
    for (route, req, field, message) in cases.into_iter().flatten() {
        let e = g.handle(&env, route.clone(), &req, "k").unwrap_err();
        assert_eq!(field_of(&e), (field, message), "{route:?} {req:?}");
    }
    let reload = GraphRoute::Reload {
        csv: b"subject,relation,object\n".to_vec(),
    };
    let e = g.handle(&env, reload, &get("/"), "k").unwrap_err();
    let (field, message) = field_of(&e);
    assert_eq!(field, "csv");
    assert!(message.starts_with("line 1, column 1: header must be"));
    // Nothing above changed the graph.
    assert_eq!(g.version(), 1);

    // Not JSON at all: the shared body errors.
    let mut req = post(json!({}));
    req.headers_mut().remove("content-type");
    assert_eq!(
        g.handle(&env, GraphRoute::Check, &req, "k").unwrap_err(),
        ApiError::UnsupportedMediaType
    );
}

#[test]
fn uploads_are_checked_like_reloads() {
    assert_eq!(validate_csv_upload(CSV.as_bytes()), Ok(3));
    let e =
        validate_csv_upload(b"subject_type,subject_id,relation,object_type,object_id\nu,a,r,o\n")
            .unwrap_err();
    assert_eq!(field_of(&e).0, "csv");
    assert!(field_of(&e)
        .1
        .starts_with("line 2, column 5: missing field object_id"));
    let e = validate_csv_upload(&vec![b'\n'; MAX_CSV_BYTES + 1]).unwrap_err();
    assert_eq!(
        field_of(&e).1,
        "is 8388609 bytes; graph files are limited to 8388608 bytes (8 MiB)"
    );
}

/// The stated limit works end to end: 200,000 edges load, persist, rebuild and answer.
#[test]
fn a_graph_at_the_edge_limit_loads_and_checks() {
    let w = World::new();
    let mut g = w.load();
    let mut body = String::from("subject_type,subject_id,relation,object_type,object_id\n");
    for i in 0..MAX_EDGES {
        body.push_str(&format!("user,u{i},member,group,g{}\n", i % 1000));
    }
    assert!(body.len() <= MAX_CSV_BYTES);
    let summary = g.reload(&w.env(), body.as_bytes(), "k").unwrap();
    assert_eq!(summary.edge_count, MAX_EDGES);
    assert!(w.storage.sql.max_params.get() <= 100);
    let g2 = w.load();
    assert_eq!(g2.index().live_count(), MAX_EDGES);
    assert!(g2.check("user:u1999", "member", "group:g999"));
    assert!(!g2.check("user:u1999", "member", "group:g998"));
}

/// Mutations cannot grow a graph past the edge cap (revoked edges count: they stay stored and
/// in memory); changing edges it already holds is fine.
#[test]
fn mutations_cannot_grow_the_graph_past_the_edge_cap() {
    let w = World::new();
    let mut g = w.load();
    g.set_limits(GraphLimits {
        max_edges: 3,
        ..GraphLimits::default()
    });
    g.reload(&w.env(), CSV.as_bytes(), "key:a").unwrap();
    let e = g
        .mutate(&w.env(), &[add("user:bob:member:group:eng")], "key:a")
        .unwrap_err();
    assert_eq!(field_of(&e).0, "mutations");
    assert_eq!(g.index().len(), 3);
    assert_eq!(g.version(), 1);
    g.mutate(&w.env(), &[revoke("user:alice:member:group:eng")], "key:a")
        .unwrap();
    g.mutate(&w.env(), &[add("user:alice:member:group:eng")], "key:a")
        .unwrap();
    let e = g
        .mutate(&w.env(), &[add("user:carol:member:group:eng")], "key:a")
        .unwrap_err();
    assert_eq!(field_of(&e).0, "mutations");
    // A file larger than the cap is refused the same way.
    g.set_limits(GraphLimits {
        max_edges: 2,
        ..GraphLimits::default()
    });
    let e = g.reload(&w.env(), CSV.as_bytes(), "key:a").unwrap_err();
    assert_eq!(field_of(&e).0, "csv");
}

/// The mutation log keeps a window of versions; `since` before it is a 410, inside it pages
/// as before.
#[test]
fn the_mutation_log_keeps_a_bounded_window() {
    let w = World::new();
    let mut g = w.load();
    g.set_limits(GraphLimits {
        log_window: 2,
        ..GraphLimits::default()
    });
    g.reload(&w.env(), CSV.as_bytes(), "key:a").unwrap();
    for who in ["bob", "carol", "dave"] {
        g.mutate(
            &w.env(),
            &[add(&format!("user:{who}:member:group:eng"))],
            "key:a",
        )
        .unwrap();
    }
    assert_eq!(g.version(), 4);
    let kept: Vec<i64> = w
        .storage
        .sql
        .snapshot()
        .log
        .keys()
        .map(|(v, _)| *v)
        .collect();
    assert_eq!(kept, vec![3, 4], "older versions are pruned");
    let e = g.mutations_since(&w.env(), 1, 100).unwrap_err();
    assert_eq!(e.status().as_u16(), 410);
    assert_eq!(e.to_problem().code, "log_window_passed");
    let page = g.mutations_since(&w.env(), 2, 100).unwrap();
    let versions: Vec<i64> = page.mutations.iter().map(|m| m.version).collect();
    assert_eq!(versions, vec![3, 4]);
}
