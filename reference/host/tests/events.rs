//! Events over a real WebSocket client (docs/contract.md, "Events (WebSocket)"): the
//! protocol and tenant isolation, closes on revocation, grace, shutdown and slow consumers.
//!
//! Each test runs its own service on 127.0.0.1 with a data dir of its own; every answer
//! passes the checks of `support::Service::send`.

mod support;

use std::time::Duration;

use futures::future::join_all;
use serde_json::json;

use support::{assert_no_secret, enc, Frame, Service, ADMIN_KEY, CLOSE_CREDENTIAL_ENDED};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_open_websockets() {
    let mut svc = Service::with_hooks().await;
    let t = svc.create_tenant("ws-shutdown").await;
    let mut ws = svc.ws_connected(&t.sk, &t.id).await;
    svc.restart().await;
    // The old service is gone: its socket is closed (1001 going away, or at least ended),
    // and nothing answers on it any more.
    match ws.next_frame(Duration::from_secs(2)).await {
        Frame::Close(_) | Frame::Ended => {}
        Frame::Silent => {
            ws.send_text(r#"{"type":"ping"}"#).await;
            let after = ws.next_frame(Duration::from_secs(1)).await;
            panic!("the socket outlived shutdown(); a ping got {after:?}");
        }
        Frame::Json(v) => panic!("the socket outlived shutdown(): {v}"),
    }
}

/// Enough frames to fill the kernel's buffers on loopback (up to 4 MiB of send buffer) and
/// then the socket's queue of 256 frames: about 11,000 events, 3 to 4 s here.
const SLOW_ROUNDS: usize = 220;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_closed_with_1013() {
    let (svc, t) = Service::hooks_with_tenant("slow").await;
    let mut slow = svc.ws_slow_reader(&t.sk).await;
    let mut fast = svc.ws_connected(&t.sk, &t.id).await;
    // Generate events while the slow socket reads nothing; the fast one keeps up.
    let started = std::time::Instant::now();
    let mut made = 0;
    let path = format!("/admin/tenants/{}", enc(&t.id));
    for round in 0..SLOW_ROUNDS {
        let batch = join_all((0..50).map(|i| {
            svc.admin(
                "PATCH",
                &path,
                Some(json!({"name": format!("{round}-{i}-{}", "x".repeat(190))})),
            )
        }))
        .await;
        assert!(batch.iter().all(|r| r.status == 200));
        made += 50;
        for _ in 0..50 {
            assert_eq!(fast.next_event().await["action"], "tenant.updated");
        }
    }
    eprintln!("{made} events in {:?}", started.elapsed());
    // Now read: some events, then the close with 1013.
    let mut events = 0;
    let end = loop {
        match slow.next_frame(Duration::from_secs(5)).await {
            Frame::Json(v) if v["type"] == "event" || v["type"] == "connected" => events += 1,
            Frame::Json(v) => panic!("unexpected {v}"),
            other => break other,
        }
    };
    assert!(
        matches!(end, Frame::Close(Some(1013))),
        "closed with 1013, got {end:?} after {made} events, {events} read"
    );
    assert!(
        events < made,
        "dropped rather than buffered: {events} of {made}"
    );
    fast.ping_pong().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_events_protocol_and_tenant_isolation() {
    let (svc, a) = Service::hooks_with_tenant("ws-a").await;
    let b = svc.create_tenant("ws-b").await;
    let a_sk_id = svc.key_id_of(&a.sk, &a.sk).await;

    let mut wa = svc.ws(Some(&a.sk)).await.expect("upgrade");
    let hello = wa.next_json().await;
    assert_eq!(hello["type"], "connected");
    assert_eq!(hello["tenantId"], a.id);
    assert_eq!(hello["keyId"], a_sk_id);
    assert!(hello["timestamp"].as_i64().unwrap() > 1_600_000_000_000);
    let mut wb = svc.ws_connected(&b.sk, &b.id).await;

    // Protocol.
    wa.ping_pong().await;
    wa.send_text("not json").await;
    assert_eq!(
        wa.next_json().await,
        json!({"type":"error","error":"Invalid message format"})
    );
    wa.send_binary(&[0x7b, 0x7d]).await;
    assert_eq!(
        wa.next_json().await,
        json!({"type":"error","error":"Invalid message format"})
    );
    wa.send_text(r#"{"type":"subscribe"}"#).await;
    assert_eq!(
        wa.next_json().await,
        json!({"type":"error","error":"Unknown message type"})
    );
    wa.send_text(r#"{"kind":"ping"}"#).await;
    let e = wa.next_json().await;
    assert_eq!(e["type"], "error", "{e}");
    assert!(e["error"].is_string());
    wa.ping_pong().await;

    // An event in A reaches A's sockets only.
    let (k, secret) = svc.secret_key(&a.sk, "evented").await;
    let rec = wa.next_event().await;
    assert_eq!(rec["action"], "api_key.created");
    assert_eq!(rec["tenantId"], a.id);
    assert_eq!(rec["target"], k["id"]);
    assert_eq!(rec["actorKeyId"], a_sk_id);
    assert_no_secret(&rec.to_string(), std::slice::from_ref(&secret));
    svc.patch_tenant(&a.id, json!({"name": "A2"})).await.ok(200);
    assert_eq!(wa.next_event().await["action"], "tenant.updated");
    assert!(matches!(
        wb.next_frame(Duration::from_millis(300)).await,
        Frame::Silent
    ));
    wb.ping_pong().await;

    // A socket opened with a key closes with 1008 when that key is revoked; the others stay.
    let mut wk = svc.ws_connected(&secret, &a.id).await;
    let (rk, rk_secret) = svc.restricted_key(&a.sk, &["read:events"]).await;
    assert_eq!(wa.next_event().await["action"], "api_key.created");
    let mut wr = svc.ws_connected(&rk_secret, &a.id).await;
    svc.revoke(&a.sk, k["id"].as_str().unwrap()).await.ok(200);
    assert_eq!(wk.closed_with().await, Some(CLOSE_CREDENTIAL_ENDED));
    assert_eq!(wa.next_event().await["action"], "api_key.revoked");
    assert_eq!(wr.next_event().await["action"], "api_key.revoked");
    // ... or rotated without grace.
    svc.rotate(&a.sk, rk["id"].as_str().unwrap(), None)
        .await
        .ok(201);
    assert_eq!(wr.closed_with().await, Some(CLOSE_CREDENTIAL_ENDED));
    assert_eq!(wa.next_event().await["action"], "api_key.rotated");
    wa.ping_pong().await;
    // A revoked key cannot open one.
    assert_eq!(svc.ws_refused(Some(&secret)).await, 401);

    // Permissions and refusals.
    let (_, no_events) = svc.restricted_key(&a.sk, &["read:api_keys"]).await;
    assert_eq!(svc.ws_refused(Some(&no_events)).await, 403);
    assert_eq!(svc.ws_refused(Some(&a.pk)).await, 403);
    assert_eq!(svc.ws_refused(None).await, 401);
    assert_eq!(svc.ws_refused(Some("sk_live_notakey")).await, 401);
    assert_eq!(svc.ws_refused(Some(ADMIN_KEY)).await, 403);
    let r = svc.call(Some(&a.sk), "GET", "/v1/events", None).await;
    assert_eq!(r.status, 426, "{}", r.text);
    assert_eq!(r.header("upgrade"), "websocket");
    svc.call(None, "GET", "/v1/events", None)
        .await
        .expect(401, "unauthorized");

    // Suspending the tenant closes all its sockets, and only its.
    let mut wa2 = svc.ws_connected(&a.sk, &a.id).await;
    svc.patch_tenant(&a.id, json!({"status": "suspended"}))
        .await
        .ok(200);
    assert_eq!(wa2.next_event().await["action"], "tenant.updated");
    assert_eq!(wa.closed_with().await, Some(CLOSE_CREDENTIAL_ENDED));
    assert_eq!(wa2.closed_with().await, Some(CLOSE_CREDENTIAL_ENDED));
    wb.ping_pong().await;
    // Deleting closes them too.
    svc.admin("DELETE", &format!("/admin/tenants/{}", enc(&b.id)), None)
        .await
        .ok(200);
    let rec = wb.next_event().await;
    assert_eq!(
        (&rec["action"], &rec["actorKeyId"], &rec["target"]),
        (
            &json!("tenant.deleted"),
            &json!("platform_admin"),
            &json!(b.id)
        )
    );
    assert_eq!(wb.closed_with().await, Some(CLOSE_CREDENTIAL_ENDED));
    // Closed for good: the deleted tenant's key cannot open another.
    assert_eq!(svc.ws_refused(Some(&b.sk)).await, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_of_a_key_rotated_with_grace_lives_until_the_grace_ends() {
    let (svc, t) = Service::hooks_with_tenant("ws-grace").await;
    let (k, secret) = svc.secret_key(&t.sk, "graced").await;
    let mut ws = svc.ws_connected(&secret, &t.id).await;
    svc.rotate(
        &t.sk,
        k["id"].as_str().unwrap(),
        Some(json!({"expiresInSeconds": 600})),
    )
    .await
    .ok(201);
    // The key still works, so its socket stays open and gets the event.
    svc.use_key(&secret).await.ok(200);
    assert_eq!(ws.next_event().await["action"], "api_key.rotated");
    ws.ping_pong().await;
    svc.advance(601_000).await;
    assert_eq!(ws.closed_with().await, Some(CLOSE_CREDENTIAL_ENDED));
}
