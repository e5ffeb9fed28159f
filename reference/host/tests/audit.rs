//! The audit log (docs/contract.md, "Audit log"): concurrent changes losing no record, and
//! the log's order, pages, actors and request ids, with no secret in it.
//!
//! Each test runs its own service on 127.0.0.1 with a data dir of its own; every answer
//! passes the checks of `support::Service::send`.

mod support;

use std::collections::HashSet;

use serde_json::{json, Value};

use support::{assert_gapless, assert_no_secret, enc, Service, Tenant};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_key_creations_lose_no_update() {
    let (svc, t) = Service::hooks_with_tenant("many").await;
    let answers = svc
        .post_concurrently(
            &t.sk,
            "/v1/api-keys",
            50,
            |i| json!({"name": format!("k{i}"), "type": "secret", "environment": "live"}),
        )
        .await;
    let mut ids = HashSet::new();
    let mut secrets = HashSet::new();
    for r in &answers {
        let b = r.ok(201);
        ids.insert(b["apiKey"]["id"].as_str().unwrap().to_owned());
        secrets.insert(b["credentials"]["keySecret"].as_str().unwrap().to_owned());
    }
    assert_eq!((ids.len(), secrets.len()), (50, 50));

    let r = svc.call(Some(&t.sk), "GET", "/v1/api-keys", None).await;
    let listed: HashSet<String> = r.ok(200)["apiKeys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed.len(), 52, "the two first keys and the 50 new ones");
    assert!(ids.is_subset(&listed));

    let records = svc.audit(&t.sk, 17).await;
    assert_gapless(&records);
    assert_eq!(records[0]["action"], "tenant.created");
    let created: Vec<&Value> = records
        .iter()
        .filter(|r| r["action"] == "api_key.created")
        .collect();
    assert_eq!(created.len(), 50);
    let targets: HashSet<String> = created
        .iter()
        .map(|r| r["target"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(targets, ids);
    let secrets: Vec<String> = secrets.into_iter().collect();
    assert_no_secret(&serde_json::to_string(&records).unwrap(), &secrets);
}

/// An audit record as the test expects it: (action, actor, target, request id).
type Expected = (String, String, String, String);

/// Changes by the tenant's key `sk` (id `sk_id`), another of its keys and the platform admin:
/// the records they must leave, in order, and the secrets they issued.
async fn make_changes(
    svc: &Service,
    tid: &str,
    sk: &str,
    sk_id: &str,
) -> (Vec<Expected>, Vec<String>) {
    // (action, actor, target, request id) expected, in order.
    let mut expected: Vec<Expected> = Vec::new();
    let mut secrets = Vec::new();
    let mut key_ids = Vec::new();
    for i in 0..4 {
        let r = svc
            .post(
                sk,
                "/v1/api-keys",
                json!({"name": format!("a{i}"), "type": "secret", "environment": "live"}),
            )
            .await;
        let b = r.ok(201);
        let id = b["apiKey"]["id"].as_str().unwrap().to_owned();
        secrets.push(b["credentials"]["keySecret"].as_str().unwrap().to_owned());
        expected.push((
            "api_key.created".into(),
            sk_id.to_owned(),
            id.clone(),
            r.request_id(),
        ));
        key_ids.push(id);
    }
    let r = svc.rotate(sk, &key_ids[0], None).await;
    let b = r.ok(201);
    secrets.push(b["credentials"]["keySecret"].as_str().unwrap().to_owned());
    expected.push((
        "api_key.rotated".into(),
        sk_id.to_owned(),
        key_ids[0].clone(),
        r.request_id(),
    ));
    // An action made with another key of the tenant names that key.
    let other_id = key_ids[1].clone();
    let other_secret = secrets[1].clone();
    let r = svc.revoke(&other_secret, &key_ids[2]).await;
    r.ok(200);
    expected.push((
        "api_key.revoked".into(),
        other_id,
        key_ids[2].clone(),
        r.request_id(),
    ));
    let r = svc
        .admin(
            "PATCH",
            &format!("/admin/tenants/{}", enc(tid)),
            Some(json!({"name": "Renamed"})),
        )
        .await;
    r.ok(200);
    expected.push((
        "tenant.updated".into(),
        "platform_admin".into(),
        tid.to_owned(),
        r.request_id(),
    ));
    let r = svc
        .admin(
            "POST",
            &format!("/admin/tenants/{}/keys", enc(tid)),
            Some(json!({"name": "by-admin", "type": "secret", "environment": "live"})),
        )
        .await;
    let b = r.ok(201);
    secrets.push(b["credentials"]["keySecret"].as_str().unwrap().to_owned());
    expected.push((
        "api_key.created".into(),
        "platform_admin".into(),
        b["apiKey"]["id"].as_str().unwrap().to_owned(),
        r.request_id(),
    ));
    // Reads are not audited.
    svc.call(Some(sk), "GET", "/v1/api-keys", None)
        .await
        .ok(200);

    (expected, secrets)
}

/// Every record has the contract's fields, its tenant and an RFC 3339 time.
fn check_record_shapes(records: &[Value], tid: &str) {
    for r in records {
        assert_eq!(r["tenantId"], tid);
        let at = r["createdAt"].as_str().unwrap();
        assert!(
            at.len() == 20 && at.ends_with('Z'),
            "RFC 3339 createdAt {at}"
        );
        assert!(r["detail"].is_object(), "{r}");
        let mut names: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "action",
                "actorKeyId",
                "createdAt",
                "detail",
                "requestId",
                "seq",
                "target",
                "tenantId"
            ]
        );
    }
}

/// Paging with after and limit, and bad query parameters.
async fn paging(svc: &Service, sk: &str, records: &[Value]) {
    // Paging: after and limit.
    let n = records.len() as i64;
    let r = svc
        .call(Some(sk), "GET", "/v1/audit-log?after=2&limit=3", None)
        .await;
    let page = r.ok(200);
    assert_eq!(
        page["records"].as_array().unwrap().to_vec(),
        records[2..5].to_vec()
    );
    assert_eq!(page["nextAfter"], 5);
    let r = svc
        .call(Some(sk), "GET", &format!("/v1/audit-log?after={n}"), None)
        .await;
    assert_eq!(r.ok(200)["records"], json!([]));
    assert!(r.body["nextAfter"].is_null());
    let r = svc.call(Some(sk), "GET", "/v1/audit-log", None).await;
    assert_eq!(r.ok(200)["records"].as_array().unwrap().len() as i64, n);
    for q in ["after=-1", "after=x", "limit=0", "limit=1001", "since=3"] {
        let r = svc
            .call(Some(sk), "GET", &format!("/v1/audit-log?{q}"), None)
            .await;
        r.expect(400, "invalid_query");
        assert_eq!(r.body["field"], q.split('=').next().unwrap(), "{}", r.text);
    }
}

/// Who may read the log.
async fn readers(svc: &Service, sk: &str, pk: &str) {
    // Who may read it.
    svc.call(Some(pk), "GET", "/v1/audit-log", None)
        .await
        .expect(403, "forbidden");
    let (_, rk_without) = svc.restricted_key(sk, &["read:api_keys"]).await;
    svc.call(Some(&rk_without), "GET", "/v1/audit-log", None)
        .await
        .expect(403, "forbidden");
    let (_, rk_with) = svc.restricted_key(sk, &["read:audit_log"]).await;
    svc.call(Some(&rk_with), "GET", "/v1/audit-log", None)
        .await
        .ok(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_log_orders_pages_names_actor_and_request_and_holds_no_secret() {
    let svc = Service::with_hooks().await;
    let r = svc
        .new_tenant(json!({"slug": "audited", "name": "Audited",
                        "rateLimit": {"requests": 100000, "windowSeconds": 60}}))
        .await;
    let created_rid = r.request_id();
    let Tenant {
        id: tid, sk, pk, ..
    } = Tenant::from_created(r.ok(201));
    let sk_id = svc.key_id_of(&sk, &sk).await;
    let mut ws = svc.ws_connected(&sk, &tid).await;

    let mut expected: Vec<Expected> = vec![(
        "tenant.created".into(),
        "platform_admin".into(),
        tid.clone(),
        created_rid,
    )];
    let mut secrets = vec![sk.clone(), pk.clone()];
    let (changes, issued) = make_changes(&svc, &tid, &sk, &sk_id).await;
    expected.extend(changes);
    secrets.extend(issued);

    let records = svc.audit(&sk, 1000).await;
    assert_gapless(&records);
    let got: Vec<Expected> = records
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap().to_owned();
            (s("action"), s("actorKeyId"), s("target"), s("requestId"))
        })
        .collect();
    assert_eq!(got, expected);
    check_record_shapes(&records, &tid);
    assert_no_secret(&serde_json::to_string(&records).unwrap(), &secrets);

    // The socket saw every record after it connected, in order, as the log holds them.
    let mut pushed = Vec::new();
    for _ in 1..records.len() {
        pushed.push(ws.next_event().await);
    }
    assert_eq!(pushed, records[1..].to_vec());
    assert_no_secret(&serde_json::to_string(&pushed).unwrap(), &secrets);

    paging(&svc, &sk, &records).await;
    readers(&svc, &sk, &pk).await;
    ws.close().await;
}
