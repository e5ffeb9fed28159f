//! Rate limiting (docs/contract.md, "Rate limiting (the tenant's Durable Object)"), where
//! only the reference can go: exact counts under 200 concurrent requests, plan defaults and
//! overrides on the service clock, and requests refused before admission consuming nothing.
//!
//! Each test runs its own service on 127.0.0.1 with a data dir of its own; every answer
//! passes the checks of `support::Service::send`.

mod support;

use futures::future::join_all;
use serde_json::json;

use support::{enc, Service};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rate_limit_is_exact_under_200_concurrent_requests() {
    let svc = Service::with_hooks().await;
    let a = svc.tenant_with_limit("rl-a", 50, 3600).await;
    let b = svc.tenant_with_limit("rl-b", 50, 3600).await;
    svc.start_of_next_window(3600).await;

    let burst = (0..200).map(|_| svc.use_key(&a.sk));
    let answers = join_all(burst).await;
    let ok: Vec<_> = answers.iter().filter(|r| r.status == 200).collect();
    let refused: Vec<_> = answers.iter().filter(|r| r.status == 429).collect();
    assert_eq!(
        (ok.len(), refused.len()),
        (50, 150),
        "exactly the limit succeeds"
    );

    // Each success saw a distinct remaining count: 49, 48, ..., 0.
    let mut remaining: Vec<u64> = ok
        .iter()
        .map(|r| {
            let (limit, remaining, reset) = r.rate_headers();
            assert_eq!(limit, 50);
            assert!(reset > 3000 && reset <= 3600, "reset {reset}");
            assert_eq!(r.header("ratelimit-policy"), "50;w=3600");
            remaining
        })
        .collect();
    remaining.sort_unstable();
    assert_eq!(remaining, (0..50).collect::<Vec<u64>>());
    for r in &refused {
        r.expect(429, "rate_limited");
        let (limit, remaining, reset) = r.rate_headers();
        assert_eq!((limit, remaining), (50, 0));
        assert_eq!(r.header("ratelimit-policy"), "50;w=3600");
        let retry: u64 = r
            .header("retry-after")
            .parse()
            .expect("Retry-After seconds");
        assert!(
            (1..=3600).contains(&retry) && retry == reset,
            "Retry-After {retry}"
        );
    }

    // The state route counts too: it is refused, or reports nothing left.
    let r = svc.call(Some(&a.sk), "GET", "/v1/rate-limit", None).await;
    match r.status {
        429 => {
            r.expect(429, "rate_limited");
        }
        200 => assert_eq!(r.body["remaining"], 0),
        s => panic!("unexpected {s}: {}", r.text),
    }
    // Other routes and key types share the tenant's quota.
    svc.use_key(&a.pk).await.expect(429, "rate_limited");

    // Tenant B is untouched by A's burst.
    let r = svc.call(Some(&b.sk), "GET", "/v1/rate-limit", None).await;
    let body = r.ok(200).clone();
    assert_eq!(body["tenantId"], b.id);
    assert_eq!(body["algorithm"], "fixed-window");
    assert_eq!(body["limit"], 50);
    assert_eq!(body["remaining"], 49);
    assert_eq!(body["windowSeconds"], 3600);
    assert!(body["reset"].as_u64().unwrap() <= 3600);
    assert_eq!(r.rate_headers().1, 49);

    // Refused requests consumed nothing: the next window holds the whole quota again.
    svc.start_of_next_window(3600).await;
    let r = svc.call(Some(&a.pk), "GET", "/v1/rate-limit", None).await;
    let body = r.ok(200);
    assert_eq!(
        (body["limit"].as_u64(), body["remaining"].as_u64()),
        (Some(50), Some(49))
    );
    let answers = join_all((0..60).map(|_| svc.use_key(&a.sk))).await;
    assert_eq!(answers.iter().filter(|r| r.status == 200).count(), 49);
    assert_eq!(answers.iter().filter(|r| r.status == 429).count(), 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_defaults_and_rate_limit_override_apply() {
    let svc = Service::with_hooks().await;
    for (plan, limit) in [("free", 100), ("pro", 1000), ("enterprise", 10000)] {
        let r = svc
            .new_tenant(json!({"slug": format!("plan-{plan}"), "name": "P", "plan": plan}))
            .await;
        let sk = r.ok(201)["credentials"]["secretKey"]
            .as_str()
            .unwrap()
            .to_owned();
        let id = r.body["tenant"]["id"].as_str().unwrap().to_owned();
        let r = svc.call(Some(&sk), "GET", "/v1/rate-limit", None).await;
        assert_eq!(r.ok(200)["limit"], limit);
        assert_eq!(r.body["windowSeconds"], 60);
        assert_eq!(r.header("ratelimit-policy"), format!("{limit};w=60"));
        // The override takes effect on the very next request.
        svc.admin(
            "PATCH",
            &format!("/admin/tenants/{}", enc(&id)),
            Some(json!({"rateLimit": {"requests": 7, "windowSeconds": 30}})),
        )
        .await
        .ok(200);
        let r = svc.call(Some(&sk), "GET", "/v1/rate-limit", None).await;
        assert_eq!(r.ok(200)["limit"], 7);
        assert_eq!(r.body["windowSeconds"], 30);
        assert_eq!(r.header("ratelimit-policy"), "7;w=30");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_refused_before_admission_consume_no_quota() {
    let (svc, t, other) = Service::hooks_with_hourly_tenant("rl-unadmitted", 10).await;
    let (k, secret) = svc.secret_key(&t.sk, "doomed").await;
    svc.revoke(&t.sk, k["id"].as_str().unwrap()).await.ok(200);
    // A revoked key, a key naming another tenant, and no key: none of them counts.
    for r in join_all((0..30).map(|_| svc.use_key(&secret))).await {
        r.expect(401, "unauthorized");
    }
    for _ in 0..5 {
        svc.send(
            svc.req("GET", "/v1/tenant")
                .bearer_auth(&t.sk)
                .header("x-tenant-id", &other.id),
        )
        .await
        .expect(403, "tenant_mismatch");
        svc.call(None, "GET", "/v1/tenant", None)
            .await
            .expect(401, "unauthorized");
    }
    let r = svc.call(Some(&t.sk), "GET", "/v1/rate-limit", None).await;
    assert_eq!(
        r.ok(200)["remaining"],
        10 - 3,
        "creation, revocation, this read"
    );
}
