//! The Worker in `workerd`, where the conformance suite cannot look:
//! - everything survives a restart of workerd on the same data dir: tenants, keys,
//!   revocations, the audit log of the tenant's `TenantState` object, the graph in the tenant's
//!   own `GraphStateCSV` object, and the CSV in R2 through `binding-services`;
//! - usage counted by a tenant's object reaches the directory's metrics through the object's
//!   own alarm, also when workerd stopped before the directory asked for them;
//! - D1 holds a copy of every relational row the objects write (keys with their revocation,
//!   end users, refresh tokens, the tenant), and no secret;
//! - the objects' internal protocol is not reachable from outside: `/_internal/*` is 404, no
//!   internal header leaves in an answer, and one a client forges is not believed;
//! - bodies declared over their route's limit are refused before they are read, and the body
//!   of a CSV upload without a valid key is not read at all (the 401 comes while it is withheld);
//! - no global object on a tenant's path: a keyed request with a warm key index costs the
//!   directory no call; a missing or wrong index entry costs one and is refilled; a revoked
//!   key, a suspended and a deleted tenant are refused with their entries in place; a keyring
//!   rotation is seen by the next direct call of another tenant;
//! - a Worker deployed with a setting it cannot run with answers a problem document that names
//!   the setting and carries the contract's 503 code.
//!
//! Needs the artifact (`scripts/build-worker`) and the npm tools
//! (`scripts/install-worker-tools`); `scripts/test` runs both before the tests. A missing one
//! fails the test with the command to run, never skips it.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use support::{answer_while_withholding, find, Stack, ADMIN_KEY, CSV};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_a_restart_of_workerd() {
    let mut stack = Stack::start().await;
    let acme = stack
        .create_tenant_from(json!({"slug": "acme", "name": "Acme",
                    "rateLimit": {"requests": 1_000_000, "windowSeconds": 60}}))
        .await;
    let sk = acme.sk.as_str();
    let (gone_id, gone_secret) = stack.create_secret_key(sk, "gone").await;
    let gone_id = gone_id.replace(':', "%3A");
    stack
        .delete(sk, &format!("/v1/api-keys/{gone_id}"))
        .await
        .expect(200);

    let reloaded = stack.upload_and_reload(sk, CSV).await;
    let version = reloaded.body["version"].as_i64().expect("version");
    let allowed = stack.check(sk, "user:alice", "viewer", "doc:readme").await;
    assert_eq!(allowed.body["allowed"], true, "{}", allowed.body);

    let tenant_path = format!("/admin/tenants/{}", acme.url_id());
    let tenant_before = stack.get(ADMIN_KEY, &tenant_path).await.expect(200);
    let audit_before = stack.get(sk, "/v1/audit-log").await.expect(200);
    let records_before = audit_before.body["records"]
        .as_array()
        .expect("records")
        .clone();
    let actions: Vec<&str> = records_before
        .iter()
        .filter_map(|r| r["action"].as_str())
        .collect();
    assert!(
        actions.contains(&"graph.reloaded") && actions.len() >= 4,
        "key creation, revocation, upload and reload are audited: {actions:?}"
    );

    // Restart on the same data dir, on another port.
    stack.restart_workerd().await;

    let tenant_after = stack.get(ADMIN_KEY, &tenant_path).await;
    assert_eq!(
        tenant_after.body, tenant_before.body,
        "the tenant record is unchanged"
    );
    stack
        .get(sk, "/v1/tenant")
        .await
        .expect_because(200, "keys still authenticate");
    stack
        .get(&gone_secret, "/v1/tenant")
        .await
        .expect_because(401, "the revocation persisted");
    let state = stack.get(sk, "/v1/graph/state").await;
    assert_eq!(
        state.body["version"].as_i64(),
        Some(version),
        "{}",
        state.body
    );
    let allowed = stack.check(sk, "user:alice", "viewer", "doc:readme").await;
    assert_eq!(
        allowed.body["allowed"], true,
        "the graph was rebuilt from the object's storage"
    );
    let denied = stack.check(sk, "user:alice", "editor", "doc:plan").await;
    assert_eq!(denied.body["allowed"], false, "{}", denied.body);
    let again = stack
        .reload(sk)
        .await
        .expect_because(200, "the CSV is still in R2");
    assert_eq!(again.body["version"].as_i64(), Some(version + 1));
    let audit_after = stack.get(sk, "/v1/audit-log").await;
    let records_after = audit_after.body["records"].as_array().expect("records");
    assert_eq!(
        &records_after[..records_before.len()],
        &records_before[..],
        "the audit log kept every record, in order"
    );

    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_counted_before_a_restart_reaches_the_metrics_through_the_tenants_alarm() {
    let (mut stack, [counted]) = Stack::with_tenants(["counted"]).await;
    for _ in 0..3 {
        stack.get(&counted.sk, "/v1/tenant").await.expect(200);
    }
    // Stop before the directory asks for the counts (it asks when an admin reads metrics) and
    // before the tenant's alarm (5 s) sends them: after the restart only the alarm can.
    stack.restart_workerd().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let m = stack.metrics_of_the_day(&counted).await;
        let requests = m.body["totals"]["requests"].as_i64().unwrap_or(0);
        if requests >= 3 {
            assert_eq!(requests, 3, "each request counted once: {}", m.body);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the counts never reached the directory: {}",
            m.body
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_objects_protocol_is_not_reachable_from_outside() {
    use base64::Engine;
    let (stack, [sealed]) = Stack::with_tenants(["sealed"]).await;

    for path in [
        "/_internal",
        "/_internal/notice",
        "/_internal/keys",
        "/_internal/onboarding",
        "/_internal/flush",
        "/_internal/fire",
        "/_internal/clock",
        "/_internal/evict",
        "/_internal/merge-keys",
        "/_internal/merge-usage",
    ] {
        for key in [ADMIN_KEY, sealed.sk.as_str()] {
            stack.post(key, path, json!({})).await.expect(404);
        }
    }

    // A forged sync: the tenant's clock ten years ahead. If it were believed, the audit record
    // of the key created next would be dated then.
    let decade_ms: i64 = 10 * 365 * 24 * 3600 * 1000;
    let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
        json!({"tenant_id": sealed.id, "tenant": null, "keyring": [],
               "offset_ms": decade_ms})
        .to_string(),
    );
    // The same clock as a forged internal call (which, if believed, would also be refused as
    // malformed: no forward in it).
    let forged_call = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
        json!({"call": "forward", "sync": {"tenant_id": sealed.id,
               "tenant": null, "keyring": [], "offset_ms": decade_ms}})
        .to_string(),
    );
    let r = stack
        .client
        .post(stack.url("/v1/api-keys"))
        .bearer_auth(&sealed.sk)
        .header("x-authconf-internal-sync", forged)
        .header("x-authconf-internal-call", forged_call)
        .json(&json!({"name": "forged", "type": "secret"}))
        .send()
        .await
        .expect("the Worker answers");
    assert_eq!(r.status(), 201);
    for (name, _) in r.headers() {
        assert!(
            !name.as_str().starts_with("x-authconf-internal-"),
            "an internal header left in an answer: {name}"
        );
    }
    let audit = stack.get(&sealed.sk, "/v1/audit-log").await;
    let newest = audit.body["records"]
        .as_array()
        .and_then(|r| r.iter().max_by_key(|r| r["seq"].as_i64()))
        .cloned()
        .expect("an audit record");
    let year: i64 = newest["createdAt"].as_str().unwrap_or("")[..4]
        .parse()
        .expect("an RFC 3339 date");
    assert!(year < 2030, "the forged clock was believed: {newest}");

    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d1_holds_a_copy_of_every_relational_row_and_no_secret() {
    let (stack, [copied]) = Stack::with_tenants(["copied"]).await;
    let (tenant_id, sk) = (copied.id.as_str(), copied.sk.as_str());
    let (extra_id, extra_secret) = stack.create_secret_key(sk, "extra").await;
    stack
        .delete(
            sk,
            &format!("/v1/api-keys/{}", extra_id.replace(':', "%3A")),
        )
        .await
        .expect(200);
    let password = "Correct-Horse-Battery-Staple-42";
    let registered = stack
        .client
        .post(stack.url("/v1/auth/register"))
        .header("X-Tenant-ID", tenant_id)
        .json(&json!({"email": "ann@example.com", "password": password, "name": "Ann"}))
        .send()
        .await
        .expect("the Worker answers");
    let status = registered.status();
    let registered: Value = registered.json().await.expect("json");
    assert_eq!(status, 201, "{registered}");
    let refresh = registered["refreshToken"]
        .as_str()
        .expect("a refresh token")
        .to_owned();

    // Every answer above came after its rows were sent to D1 (binding-services' SQLite).
    let d1_file = stack.data().join("bindings/d1/DB.sqlite");
    let d1 = rusqlite::Connection::open(&d1_file).expect("the D1 file");
    let one = |sql: &str, param: &str| -> i64 {
        d1.query_row(sql, [param], |r| r.get(0))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    };
    assert_eq!(
        one("SELECT COUNT(*) FROM tenants WHERE id = ?", tenant_id),
        1
    );
    assert_eq!(
        one(
            "SELECT COUNT(*) FROM api_keys WHERE tenant_id = ?",
            tenant_id
        ),
        3,
        "the two keys of the tenant's creation and the extra one"
    );
    assert_eq!(
        one(
            "SELECT COUNT(*) FROM api_keys WHERE id = ? AND revoked_at IS NOT NULL",
            &extra_id
        ),
        1,
        "the revocation reached D1"
    );
    assert_eq!(
        one(
            "SELECT COUNT(*) FROM tenant_users WHERE tenant_id = ?",
            tenant_id
        ),
        1
    );
    assert_eq!(
        one(
            "SELECT COUNT(*) FROM refresh_tokens WHERE tenant_id = ?",
            tenant_id
        ),
        1
    );
    assert_eq!(
        one(
            "SELECT COUNT(*) FROM d1_migrations WHERE name = ?",
            "0001_initial.sql"
        ),
        1,
        "the Worker applied the migrations to D1"
    );
    drop(d1);

    // The whole D1 store, write-ahead log included, holds hashes only.
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(stack.data().join("bindings/d1")).expect("d1 dir") {
        bytes.extend(std::fs::read(entry.expect("entry").path()).expect("read"));
    }
    for (what, secret) in [
        ("the tenant's secret key", sk),
        ("a key secret", extra_secret.as_str()),
        ("a password", password),
        ("a refresh token", refresh.as_str()),
    ] {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{what} is in D1"
        );
    }

    stack.stop().await;
}

/// Issue 14, item 14: the Worker refuses a body declared over its route's limit before reading
/// any of it (the answer comes though not a byte of the body was sent), instead of buffering
/// whatever a client sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_declared_over_the_limit_are_refused_before_they_are_read() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (stack, [bodies]) = Stack::with_tenants(["bodies"]).await;
    let sk = &bodies.sk;
    let addr = stack.addr();
    for (method, path, extra) in [
        (
            "POST",
            "/v1/auth/login",
            "content-type: application/json\r\n".to_owned(),
        ),
        (
            "PUT",
            "/v1/graph/csv",
            format!("content-type: text/csv\r\nauthorization: Bearer {sk}\r\n"),
        ),
    ] {
        let mut s = tokio::net::TcpStream::connect(&addr)
            .await
            .expect("connect");
        let head = format!(
            "{method} {path} HTTP/1.1\r\nhost: localhost\r\n{extra}content-length: {}\r\n\r\n",
            64 * 1024 * 1024
        );
        s.write_all(head.as_bytes()).await.expect("head sent");
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("{path}: no answer while the body was withheld"))
            .expect("read");
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(text.starts_with("HTTP/1.1 413"), "{path}: {text}");
    }
    stack.stop().await;
}

/// Issue 14, item 2: the 8 MiB body of `PUT /v1/graph/csv` is read only once the key is
/// authenticated. Without a key, or with a bad one, the client sends exactly 64 KiB of a larger
/// body (declared, or chunked) and withholds the rest: the 401 still arrives, so nothing past
/// the 64 KiB budget was needed to answer, and it is the problem a complete request gets. With
/// the tenant's key a CSV over 64 KiB is still uploaded whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csv_upload_without_a_valid_key_is_refused_before_its_body_is_read() {
    const BUDGET: usize = 64 * 1024;
    let (stack, [withheld]) = Stack::with_tenants(["withheld"]).await;
    let sk = &withheld.sk;
    let addr = stack.addr();
    // Same length and alphabet as the tenant's key, one character changed.
    let mut bad = sk.clone();
    let last = if bad.ends_with('A') { "B" } else { "A" };
    bad.replace_range(bad.len() - 1.., last);

    for key in [None, Some(bad.as_str())] {
        let auth = key
            .map(|k| format!("authorization: Bearer {k}\r\n"))
            .unwrap_or_default();
        // What a complete, small request without a valid key is answered.
        let mut rb = stack
            .client
            .put(stack.url("/v1/graph/csv"))
            .header("content-type", "text/csv")
            .body(CSV);
        if let Some(k) = key {
            rb = rb.bearer_auth(k);
        }
        let r = rb.send().await.expect("the Worker answers");
        assert_eq!(r.status(), 401);
        let expected: Value = r.json().await.expect("a problem document");

        let part = vec![b'x'; BUDGET];
        let chunked = format!("{BUDGET:x}\r\n");
        for (framing, prefix) in [
            (format!("content-length: {}\r\n", 4 * 1024 * 1024), ""),
            (
                "transfer-encoding: chunked\r\n".to_owned(),
                chunked.as_str(),
            ),
        ] {
            let head = format!(
                "PUT /v1/graph/csv HTTP/1.1\r\nhost: localhost\r\ncontent-type: text/csv\r\n\
                 {auth}{framing}\r\n{prefix}"
            );
            let (answered, got) = answer_while_withholding(&addr, head, part.clone()).await;
            let text = String::from_utf8_lossy(&got).into_owned();
            assert!(
                answered,
                "key {key:?}, {framing:?}: no answer while the body past {BUDGET} bytes was \
                 withheld (got {text:?})"
            );
            assert!(text.starts_with("HTTP/1.1 401"), "key {key:?}: {text}");
            let at = find(&got, b"\r\n\r\n").expect("a head") + 4;
            let problem: Value = serde_json::from_slice(&got[at..]).expect("a problem document");
            for field in ["type", "title", "status", "detail"] {
                assert_eq!(problem[field], expected[field], "key {key:?}: {text}");
            }
        }
    }

    // The tenant's own key still uploads a CSV larger than the 64 KiB budget, all of it.
    let mut big = String::from("subject_type,subject_id,relation,object_type,object_id\n");
    let mut n = 0;
    while big.len() <= 2 * BUDGET {
        big.push_str(&format!("user,u{n},viewer,doc,d{n}\n"));
        n += 1;
    }
    stack.upload_and_reload(sk, big).await;
    let (subject, object) = (format!("user:u{}", n - 1), format!("doc:d{}", n - 1));
    let check = stack
        .check(sk, &subject, "viewer", &object)
        .await
        .expect(200);
    assert_eq!(
        check.body["allowed"], true,
        "the last row was loaded: {}",
        check.body
    );
    stack.stop().await;
}

// ---- The stateless Worker: no directory on a tenant's path (issue #15) ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_request_with_a_warm_index_never_reaches_the_directory() {
    let (stack, [a, b]) = Stack::with_tenants(["direct-a", "direct-b"]).await;
    let sk = &a.sk;
    // The directory wrote the index before it answered the tenant's creation.
    assert_eq!(stack.index_entry(sk).as_deref(), Some(a.id.as_str()));
    assert_eq!(stack.directory_calls_for(sk, 5, 200).await, 0);

    // A key the tenant makes itself is in the index before the tenant hears of it.
    let (_, made_key) = stack.create_secret_key(sk, "made").await;
    assert_eq!(stack.index_entry(&made_key).as_deref(), Some(a.id.as_str()));
    assert_eq!(stack.directory_calls_for(&made_key, 2, 200).await, 0);

    // A miss goes to the directory once, which fills the index again.
    stack.set_index_entry(sk, None);
    stack.forget_key_owners().await;
    assert_eq!(stack.directory_calls_for(sk, 1, 200).await, 1);
    assert_eq!(stack.index_entry(sk).as_deref(), Some(a.id.as_str()));
    assert_eq!(stack.directory_calls_for(sk, 2, 200).await, 0);

    // A wrong entry: the other tenant's object says "not mine", the directory answers and
    // corrects the index; the other tenant counted nothing.
    stack.set_index_entry(sk, Some(&b.id));
    stack.forget_key_owners().await;
    assert_eq!(stack.directory_calls_for(sk, 1, 200).await, 1);
    assert_eq!(stack.index_entry(sk).as_deref(), Some(a.id.as_str()));
    assert_eq!(stack.directory_calls_for(sk, 1, 200).await, 0);
    let metrics = stack.metrics_of_the_day(&b).await;
    assert_eq!(metrics.body["totals"]["requests"], 0, "{}", metrics.body);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_index_entry_never_admits_a_revoked_key_or_a_suspended_or_deleted_tenant() {
    let (stack, [a, b, c]) = Stack::with_tenants(["stale-a", "stale-b", "stale-c"]).await;
    for sk in [&a.sk, &b.sk, &c.sk] {
        assert_eq!(stack.directory_calls_for(sk, 1, 200).await, 0);
    }

    // A key the tenant revokes: its index entry stays, its object refuses it.
    let (id, key) = stack.create_secret_key(&a.sk, "short-lived").await;
    assert_eq!(stack.directory_calls_for(&key, 1, 200).await, 0);
    stack
        .delete(&a.sk, &format!("/v1/api-keys/{id}"))
        .await
        .expect_success();
    assert!(stack.index_entry(&key).is_some(), "the entry stays");
    assert_eq!(stack.directory_calls_for(&key, 1, 401).await, 0);

    // A tenant the admin suspends, and one the admin deletes.
    let suspend = json!({"status": "suspended"});
    let b_path = format!("/admin/tenants/{}", b.url_id());
    stack.patch(ADMIN_KEY, &b_path, suspend).await.expect(200);
    assert!(stack.index_entry(&b.sk).is_some(), "the entry stays");
    assert_eq!(stack.directory_calls_for(&b.sk, 1, 403).await, 0);
    let c_path = format!("/admin/tenants/{}", c.url_id());
    stack.delete(ADMIN_KEY, &c_path).await.expect_success();
    assert!(stack.index_entry(&c.sk).is_some(), "the entry stays");
    let after = stack.get(&c.sk, "/v1/rate-limit").await;
    assert!(
        after.status == 401 || after.status == 403 || after.status == 404 || after.status == 410,
        "a deleted tenant's key is refused: {} {}",
        after.status,
        after.body
    );
    assert_eq!(stack.directory_calls_for(&c.sk, 1, after.status).await, 0);
    // The tenant that was left alone still works.
    assert_eq!(stack.directory_calls_for(&a.sk, 1, 200).await, 0);
    stack.stop().await;
}

/// The `kid` in the header of a JWT.
fn kid(token: &str) -> String {
    use base64::Engine;
    let head = token.split('.').next().expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(head)
        .expect("base64url header");
    let v: Value = serde_json::from_slice(&bytes).expect("JSON header");
    v["kid"].as_str().expect("kid").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyring_rotation_is_seen_by_the_next_direct_call_of_another_tenant() {
    let (stack, [_, ring_b]) = Stack::with_tenants(["ring-a", "ring-b"]).await;
    let pk = ring_b.public_key();
    let user = json!({"email": "ann@example.com", "password": "A long enough Passphrase 42!"});
    stack
        .post(&pk, "/v1/auth/register", user.clone())
        .await
        .expect(201);
    let login = || stack.post(&pk, "/v1/auth/login", user.clone());
    let first = login().await.expect(200);
    let before = kid(first.body["accessToken"].as_str().expect("access token"));

    let rotated = stack
        .call(ADMIN_KEY, "POST", "/admin/jwt/rotate", None)
        .await
        .expect(200);
    let current = rotated.body["currentKid"]
        .as_str()
        .expect("currentKid")
        .to_owned();
    assert_ne!(current, before);

    let calls = stack.directory_calls().await;
    let second = login().await.expect(200);
    assert_eq!(
        stack.directory_calls().await,
        calls,
        "the login went straight to the tenant's object"
    );
    assert_eq!(
        kid(second.body["accessToken"].as_str().expect("access token")),
        current,
        "the tenant's object signs with the key the rotation made current"
    );
    stack.stop().await;
}

/// How many audit records of `action` the tenant of `key` has.
async fn audited(stack: &Stack, key: &str, action: &str) -> usize {
    let log = stack.get(key, "/v1/audit-log?limit=100").await.expect(200);
    log.body
        .to_string()
        .matches(&format!("\"{action}\""))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graph_hop_runs_in_the_worker_stores_in_r2_and_is_audited_in_the_answering_tenant() {
    let (stack, [a, b]) = Stack::with_tenants(["hop-a", "hop-b"]).await;

    // Over 64 KiB: the reload's CSV travels from R2 to the graph object as the whole body.
    let mut big = String::from("subject_type,subject_id,relation,object_type,object_id\n");
    for i in 0..3000 {
        big.push_str(&format!("user,user-{i:05},viewer,doc,document-{i:05}\n"));
    }
    assert!(big.len() > 64 * 1024);
    let reloaded = stack.upload_and_reload(&a.sk, big).await;
    assert_eq!(audited(&stack, &a.sk, "graph.csv_uploaded").await, 1);
    assert_eq!(audited(&stack, &a.sk, "graph.reloaded").await, 1);
    let checked = stack
        .check(&a.sk, "user:user-02999", "viewer", "doc:document-02999")
        .await;
    assert_eq!(
        checked.status, 200,
        "{} (reload: {})",
        checked.body, reloaded.body
    );
    assert_eq!(checked.body["allowed"], true, "{}", checked.body);

    // A wrong index entry: B's object says "not mine", the directory hands the request to A's
    // object, and the hop (R2 key, graph object, audit) is A's, never B's.
    stack.set_index_entry(&a.sk, Some(&b.id));
    stack.forget_key_owners().await;
    let before = stack.directory_calls().await;
    stack.upload_and_reload(&a.sk, CSV).await;
    // The upload went through the directory (and corrected the index), the reload direct.
    assert_eq!(stack.directory_calls().await - before, 1);
    assert_eq!(audited(&stack, &a.sk, "graph.csv_uploaded").await, 2);
    assert_eq!(audited(&stack, &a.sk, "graph.reloaded").await, 2);
    assert_eq!(audited(&stack, &b.sk, "graph.csv_uploaded").await, 0);
    stack
        .reload(&b.sk)
        .await
        .expect_because(400, "B has no CSV");
    stack.stop().await;
}

/// A deployment whose secret is unusable (here a JWT secret under 32 characters) answers every
/// route that needs the settings 503 with a problem document like any other error: the
/// contract's media type and `code`, a detail that names the setting (never its value).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_with_an_unusable_setting_answers_a_problem_that_names_it() {
    let stack = Stack::start_with(&[("JWT_SECRET", "too-short-a-secret")]).await;
    for path in ["/admin/tenants", "/v1/rate-limit"] {
        let resp = stack
            .client
            .get(stack.url(path))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .expect("workerd answers");
        assert_eq!(resp.status(), 503, "GET {path}");
        let media = resp.headers()["content-type"].to_str().unwrap().to_owned();
        assert_eq!(media, "application/problem+json", "GET {path}");
        let body: Value = resp.json().await.expect("a JSON problem");
        assert_eq!(body["code"], "service_unavailable", "GET {path}: {body}");
        assert_eq!(body["status"], 503, "GET {path}: {body}");
        let detail = body["detail"].as_str().unwrap_or_default();
        assert!(detail.contains("JWT_SECRET"), "GET {path}: {body}");
        assert!(!detail.contains("too-short"), "GET {path}: {body}");
    }
    stack.stop().await;
}
