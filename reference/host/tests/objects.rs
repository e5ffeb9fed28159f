//! The tenant's Durable Object on the native host (`TenantState`): every invalidating write
//! seen by the very next request, quota and log across a restart, eviction rebuilding memory
//! from storage, alarms (grace periods, across restarts, on real time), and no object state
//! reachable without a key. Only the reference can be driven this way (test controls for the
//! clock, eviction and alarms; restarts on one data dir).
//!
//! Each test runs its own service on 127.0.0.1 with a data dir of its own; every answer
//! passes the checks of `support::Service::send`.

mod support;

use std::time::Duration;

use futures::future::join_all;
use serde_json::{json, Value};

use support::{
    actions, assert_gapless, enc, key_body, Resp, Service, ADMIN_KEY, CLOSE_CREDENTIAL_ENDED,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_invalidating_write_is_seen_by_the_very_next_request() {
    let (svc, t) = Service::hooks_with_tenant("cache").await;

    // Revoke: warm the cache with the key, revoke, use it at once.
    let (k, secret) = svc.secret_key(&t.sk, "to-revoke").await;
    svc.use_key(&secret).await.ok(200);
    svc.revoke(&t.sk, k["id"].as_str().unwrap()).await.ok(200);
    svc.use_key(&secret).await.expect(401, "unauthorized");
    // A revoked key may not revoke or rotate either.
    let live = key_body("x", "secret", Some("live"));
    svc.expect_post(&secret, "/v1/api-keys", live, 401, "unauthorized")
        .await;

    // A key revoking itself is refused on its next request.
    let (k, secret) = svc.secret_key(&t.sk, "self").await;
    svc.revoke(&secret, k["id"].as_str().unwrap()).await.ok(200);
    svc.use_key(&secret).await.expect(401, "unauthorized");

    // Rotate without grace: the old key is refused at once, the new one works.
    let (k, old) = svc.secret_key(&t.sk, "to-rotate").await;
    svc.use_key(&old).await.ok(200);
    let r = svc.rotate(&t.sk, k["id"].as_str().unwrap(), None).await;
    let new = r.ok(201)["credentials"]["keySecret"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(r.body["previousKey"]["revokedAt"].is_string());
    svc.use_key(&old).await.expect(401, "unauthorized");
    svc.use_key(&new).await.ok(200);

    // Suspend, then resume.
    let path = format!("/admin/tenants/{}", enc(&t.id));
    svc.use_key(&t.pk).await.ok(200);
    svc.admin("PATCH", &path, Some(json!({"status": "suspended"})))
        .await
        .ok(200);
    svc.use_key(&t.sk).await.expect(403, "tenant_suspended");
    svc.use_key(&t.pk).await.expect(403, "tenant_suspended");
    svc.use_key(&new).await.expect(403, "tenant_suspended");
    svc.admin("PATCH", &path, Some(json!({"status": "active"})))
        .await
        .ok(200);
    svc.use_key(&t.sk).await.ok(200);

    // Delete: every key is refused with the one 401.
    svc.admin("DELETE", &path, None).await.ok(200);
    let a = svc.use_key(&t.sk).await;
    a.expect(401, "unauthorized");
    let b = svc.use_key(&new).await;
    b.expect(401, "unauthorized");
    svc.call(Some(&t.pk), "GET", "/v1/rate-limit", None)
        .await
        .expect(401, "unauthorized");

    // Under a burst, a revocation splits the requests cleanly: nothing after it passes.
    let u = svc.create_tenant("cache-burst").await;
    let (k, secret) = svc.secret_key(&u.sk, "burst").await;
    let revoke_path = format!("/v1/api-keys/{}", enc(k["id"].as_str().unwrap()));
    let before = join_all((0..20).map(|_| svc.use_key(&secret))).await;
    assert!(before.iter().all(|r| r.status == 200));
    svc.call(Some(&u.sk), "DELETE", &revoke_path, None)
        .await
        .ok(200);
    let after = join_all((0..20).map(|_| svc.use_key(&secret))).await;
    assert!(after.iter().all(|r| r.status == 401));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_and_audit_log_survive_a_restart() {
    let mut svc = Service::with_hooks().await;
    // The longest window (a day, aligned to UTC midnight), so the restart stays inside it;
    // the clock offset of the test controls does not survive a restart, the real clock does.
    let t = svc.tenant_with_limit("durable", 20, 86_400).await;
    let first = svc.use_key(&t.sk).await;
    first.ok(200);
    let (_, _, reset) = first.rate_headers();
    if reset < 15 {
        // Too close to the end of the window: wait for the next one (at most 15 s, near
        // midnight UTC only).
        tokio::time::sleep(Duration::from_secs(reset + 1)).await;
    }
    for _ in 0..3 {
        svc.use_key(&t.sk).await.ok(200);
    }
    svc.secret_key(&t.sk, "one").await;
    let (_, two) = svc.secret_key(&t.sk, "two").await;
    let audit_before = svc.audit(&t.sk, 100).await;
    let r = svc.call(Some(&t.sk), "GET", "/v1/rate-limit", None).await;
    let remaining = r.ok(200)["remaining"].as_u64().unwrap();
    assert!(remaining <= 11, "at least 9 requests counted: {remaining}");
    assert_eq!(
        actions(&audit_before),
        ["tenant.created", "api_key.created", "api_key.created"]
    );

    svc.restart().await;

    let r = svc.call(Some(&t.sk), "GET", "/v1/rate-limit", None).await;
    assert_eq!(
        r.ok(200)["remaining"].as_u64().unwrap(),
        remaining - 1,
        "{}",
        r.text
    );
    assert_eq!(r.body["limit"], 20);
    assert_eq!(svc.audit(&t.sk, 100).await, audit_before);
    svc.use_key(&two).await.ok(200);
    // New records continue the sequence.
    svc.secret_key(&t.sk, "three").await;
    let after = svc.audit(&t.sk, 100).await;
    assert_gapless(&after);
    assert_eq!(after.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_rebuilds_memory_from_storage_and_keeps_sockets() {
    let (svc, t, other) = Service::hooks_with_hourly_tenant("evicted", 1000).await;
    let mut ws = svc.ws_connected(&t.sk, &t.id).await;
    let (k, secret) = svc.secret_key(&t.sk, "before").await;
    assert_eq!(ws.next_event().await["action"], "api_key.created");
    let r = svc.call(Some(&t.sk), "GET", "/v1/rate-limit", None).await;
    let remaining = r.ok(200)["remaining"].as_u64().unwrap();
    assert_eq!(remaining, 1000 - 3, "socket, creation, this read");
    let audit_before = svc.audit(&t.sk, 100).await;

    // Warm the other tenant's object too; evict one tenant, then all.
    svc.use_key(&other.sk).await.ok(200);
    assert!(svc.evict(Some(&t.id)).await >= 1);
    let r = svc.call(Some(&t.sk), "GET", "/v1/rate-limit", None).await;
    // The audit read took two requests (a page and the empty end), this read one more.
    assert_eq!(
        r.ok(200)["remaining"].as_u64().unwrap(),
        remaining - 3,
        "count rebuilt"
    );
    assert!(svc.evict(None).await >= 2);
    assert_eq!(svc.audit(&t.sk, 100).await, audit_before);
    svc.use_key(&secret).await.ok(200);

    // The socket accepted before the eviction still gets events and answers pings.
    ws.ping_pong().await;
    assert!(svc.evict(None).await >= 1);
    svc.revoke(&t.sk, k["id"].as_str().unwrap()).await.ok(200);
    let rec = ws.next_event().await;
    assert_eq!(rec["action"], "api_key.revoked");
    assert_eq!(rec["seq"], audit_before.len() as i64 + 1, "no seq reused");
    // The revocation, made in a rebuilt object, holds.
    svc.use_key(&secret).await.expect(401, "unauthorized");
    // A socket of the revoked key opened before an eviction is still closed on revocation.
    let (k2, secret2) = svc.secret_key(&t.sk, "socket-key").await;
    ws.next_event().await;
    let mut ws2 = svc.ws_connected(&secret2, &t.id).await;
    assert!(svc.evict(None).await >= 1);
    svc.revoke(&t.sk, k2["id"].as_str().unwrap()).await.ok(200);
    assert_eq!(ws2.closed_with().await, Some(CLOSE_CREDENTIAL_ENDED));
    assert_eq!(ws.next_event().await["action"], "api_key.revoked");

    // Eviction of an unknown tenant evicts nothing.
    assert_eq!(svc.evict(Some("tenant:nobody")).await, 0);
    ws.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grace_periods_end_by_alarm() {
    let (svc, t) = Service::hooks_with_tenant("alarm").await;
    let mut ws = svc.ws_connected(&t.sk, &t.id).await;
    let (k, old) = svc.secret_key(&t.sk, "graced").await;
    let old_id = k["id"].as_str().unwrap().to_owned();
    let r = svc
        .rotate(&t.sk, &old_id, Some(json!({"expiresInSeconds": 3600})))
        .await;
    let b = r.ok(201).clone();
    let new = b["credentials"]["keySecret"].as_str().unwrap().to_owned();
    assert!(b["previousKey"]["expiresAt"].is_string());
    assert!(b["previousKey"]["revokedAt"].is_null());
    svc.use_key(&old).await.ok(200);
    svc.use_key(&new).await.ok(200);

    // Firing the alarm early ends nothing and keeps it scheduled.
    assert!(svc.fire_alarms(Some(&t.id)).await >= 1);
    svc.use_key(&old).await.ok(200);
    // Not yet due.
    svc.advance(3_590_000).await;
    svc.use_key(&old).await.ok(200);
    // Due: the alarm fires, the old key is refused, the end is audited.
    svc.advance(11_000).await;
    svc.use_key(&old).await.expect(401, "unauthorized");
    svc.use_key(&new).await.ok(200);
    let records = svc.audit(&t.sk, 100).await;
    let expired: Vec<&Value> = records
        .iter()
        .filter(|r| r["action"] == "api_key.expired")
        .collect();
    assert_eq!(expired.len(), 1, "{records:?}");
    assert_eq!(expired[0]["actorKeyId"], "system");
    assert_eq!(expired[0]["target"], old_id);
    let r = svc
        .call(
            Some(&t.sk),
            "GET",
            &format!("/v1/api-keys/{}", enc(&old_id)),
            None,
        )
        .await;
    assert!(r.ok(200)["apiKey"]["revokedAt"].is_string(), "{}", r.text);
    // The event was pushed too.
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(ws.next_event().await["action"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        seen,
        ["api_key.created", "api_key.rotated", "api_key.expired"]
    );
    // Firing again changes nothing.
    svc.fire_alarms(None).await;
    let again = svc.audit(&t.sk, 100).await;
    assert_eq!(again.len(), records.len());
    ws.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_alarms_survive_a_restart() {
    let mut svc = Service::with_hooks().await;
    let t = svc.create_tenant("alarm-restart").await;
    let (k, old) = svc.secret_key(&t.sk, "graced").await;
    let old_id = k["id"].as_str().unwrap().to_owned();
    svc.rotate(&t.sk, &old_id, Some(json!({"expiresInSeconds": 3600})))
        .await
        .ok(201);

    svc.restart().await;

    svc.use_key(&old).await.ok(200);
    svc.advance(3_601_000).await;
    svc.use_key(&old).await.expect(401, "unauthorized");
    let records = svc.audit(&t.sk, 100).await;
    let last = records.last().unwrap();
    assert_eq!(last["action"], "api_key.expired", "{records:?}");
    assert_eq!(last["target"], old_id);
    assert_eq!(last["actorKeyId"], "system");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alarm_scheduler_fires_on_time_also_after_a_restart() {
    // Real time, no test clock: the scheduler itself must fire.
    let mut svc = Service::start().await;
    let t = svc.create_tenant("alarm-real").await;
    let mut ws = svc.ws_connected(&t.sk, &t.id).await;
    let mut ids = Vec::new();
    for grace in [1, 2] {
        let (k, _) = svc.secret_key(&t.sk, "short").await;
        let id = k["id"].as_str().unwrap().to_owned();
        svc.rotate(&t.sk, &id, Some(json!({"expiresInSeconds": grace})))
            .await
            .ok(201);
        ids.push(id);
    }
    // The first grace period ends while the service runs.
    let mut seen = Vec::new();
    while seen.len() < 5 {
        let rec = ws.next_event().await;
        seen.push((
            rec["action"].as_str().unwrap().to_owned(),
            rec["target"].clone(),
        ));
    }
    assert_eq!(
        seen[4],
        ("api_key.expired".to_owned(), json!(ids[0])),
        "{seen:?}"
    );
    // The second ends while it is down: it fires after the restart. Shutting down with a
    // socket open finishes.
    svc.restart().await;
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let mut expired = Vec::new();
    for _ in 0..40 {
        expired = svc
            .audit(&t.sk, 100)
            .await
            .into_iter()
            .filter(|r| r["action"] == "api_key.expired")
            .map(|r| r["target"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>();
        if expired.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(expired, ids, "each grace period ended once, in order");
    drop(ws);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_object_state_is_reachable_without_a_key() {
    let (svc, t) = Service::hooks_with_tenant("locked").await;
    let mut checked = 0;
    for (method, path) in auth_core::ROUTES {
        if !path.starts_with("/v1/") {
            continue;
        }
        let path = path.replace("{id}", "key%3A0123456789abcdef");
        let mut rb = svc.req(method, &path);
        if *method != "GET" {
            rb = rb.header("content-type", "application/json").body("{}");
        }
        let r = svc.send(rb).await;
        r.expect(401, "unauthorized");
        // A key of the wrong kind or a broken one gets the same.
        let r = svc
            .send(svc.req(method, &path).bearer_auth("sk_live_short"))
            .await;
        r.expect(401, "unauthorized");
        // The admin key is not a tenant key.
        let r = svc
            .send(svc.req(method, &path).bearer_auth(ADMIN_KEY))
            .await;
        r.expect(403, "forbidden");
        checked += 1;
    }
    assert!(checked >= 16, "every /v1 route: {checked}");
    // The upgrade path too.
    assert_eq!(svc.ws_refused(None).await, 401);

    // Test controls: the admin key only.
    for path in ["/_test/clock", "/_test/evict", "/_test/alarms/fire"] {
        let body = json!({"advanceMs": 0});
        svc.call(None, "POST", path, Some(body.clone()))
            .await
            .expect(401, "unauthorized");
        svc.post(
            "sk_live_Wrong0123456789abcdefghijklmnopqrstuvwxyz",
            path,
            body.clone(),
        )
        .await
        .expect(401, "unauthorized");
        svc.post(&t.sk, path, body.clone())
            .await
            .expect(403, "forbidden");
    }
    svc.admin("GET", "/_test/clock", None)
        .await
        .expect(405, "method_not_allowed");
    svc.admin("POST", "/_test/nothing", Some(json!({})))
        .await
        .expect(404, "not_found");
    svc.admin("POST", "/_test/clock", Some(json!({"advanceMs": -1})))
        .await
        .expect(400, "invalid_field");
    let caps = capabilities_with_test_controls(&svc, true).await;
    assert_eq!(caps.body["rateLimit"]["algorithm"], "fixed-window");
    assert_eq!(caps.body["rateLimit"]["exact"], true);
    assert_eq!(caps.body["features"]["events"], true);
    assert_eq!(caps.body["features"]["auditLog"], true);
    assert_eq!(caps.body["features"]["graph"], true);

    // Without test hooks, they do not exist.
    let off = Service::start().await;
    for path in ["/_test/clock", "/_test/evict", "/_test/alarms/fire"] {
        off.admin("POST", path, Some(json!({"advanceMs": 1000})))
            .await
            .expect(404, "not_found");
        off.call(None, "POST", path, Some(json!({})))
            .await
            .expect(404, "not_found");
    }
    capabilities_with_test_controls(&off, false).await;
}

/// The capabilities document, whose test controls must all be `on` (enabled, clock, evict,
/// alarms).
async fn capabilities_with_test_controls(svc: &Service, on: bool) -> Resp {
    let caps = svc.call(None, "GET", "/.well-known/authconf", None).await;
    let tc = &caps.ok(200)["testControls"];
    assert_eq!(
        (&tc["enabled"], &tc["clock"], &tc["evict"], &tc["alarms"]),
        (&json!(on), &json!(on), &json!(on), &json!(on))
    );
    caps
}
