//! Tenant routing (docs/contract.md, "Tenant routing"): every routing source present
//! (header, subdomain, query) must name the key's tenant.
//!
//! Every answer also passes the checks of `support::Service::send` (no 5xx, always
//! `X-Request-Id`, errors as problem documents).

mod support;

use support::*;

#[tokio::test]
async fn routing_sources_must_all_name_the_keys_tenant() {
    let (h, a) = Service::start_with_tenant("alpha").await;
    h.create_tenant("beta").await;
    let port = h.base.rsplit(':').next().unwrap().to_owned();
    // (X-Tenant-ID, Host, ?tenant_id=, expected status)
    type Case<'a> = (Option<&'a str>, Option<String>, Option<&'a str>, u16);
    let cases: Vec<Case> = vec![
        (None, None, None, 200),
        (Some("tenant:alpha"), None, None, 200),
        (Some("alpha"), None, None, 200),
        (Some("tenant:beta"), None, None, 403),
        (Some("beta"), None, None, 403),
        (Some("tenant:nope"), None, None, 403),
        (Some(""), None, None, 403),
        (Some("tenant:ALPHA"), None, None, 403),
        (None, Some(format!("alpha.{BASE_DOMAIN}")), None, 200),
        (None, Some(format!("alpha.{BASE_DOMAIN}:{port}")), None, 200),
        (None, Some(format!("ALPHA.AUTH.TEST:{port}")), None, 200),
        (None, Some(format!("beta.{BASE_DOMAIN}")), None, 403),
        (None, Some(format!("nope.{BASE_DOMAIN}")), None, 403),
        (None, Some(format!("x.alpha.{BASE_DOMAIN}")), None, 403),
        (None, Some(BASE_DOMAIN.to_owned()), None, 200),
        (None, Some("alpha.example.com".to_owned()), None, 200),
        (None, None, Some("tenant:alpha"), 200),
        (None, None, Some("tenant%3Aalpha"), 200),
        (None, None, Some("tenant:beta"), 403),
        (None, None, Some("tenant:nope"), 403),
        (
            Some("tenant:alpha"),
            Some(format!("alpha.{BASE_DOMAIN}")),
            Some("tenant:alpha"),
            200,
        ),
        (
            Some("tenant:alpha"),
            Some(format!("beta.{BASE_DOMAIN}")),
            None,
            403,
        ),
        (
            Some("tenant:beta"),
            Some(format!("alpha.{BASE_DOMAIN}")),
            None,
            403,
        ),
        (Some("tenant:alpha"), None, Some("tenant:beta"), 403),
        (
            None,
            Some(format!("alpha.{BASE_DOMAIN}")),
            Some("tenant:beta"),
            403,
        ),
    ];
    for (header, host, query, want) in cases {
        for (method, path) in [("GET", "/v1/tenant"), ("GET", "/v1/api-keys")] {
            let path = match query {
                Some(q) => format!("{path}?tenant_id={q}"),
                None => path.to_owned(),
            };
            let mut rb = h.req(method, &path).bearer_auth(&a.sk);
            if let Some(x) = header {
                rb = rb.header("x-tenant-id", x);
            }
            if let Some(host) = &host {
                rb = rb.header("host", host.as_str());
            }
            let r = h.send(rb).await;
            let ctx = format!("{header:?} {host:?} {query:?} {path}");
            if want == 200 {
                r.ok(200);
            } else {
                r.expect(403, "tenant_mismatch");
                assert!(
                    !r.text.contains("beta") && !r.text.contains("nope"),
                    "{ctx}: no echo"
                );
            }
        }
    }
    // A mismatch on a write changes nothing.
    let r = h
        .send(
            h.req("POST", "/v1/api-keys")
                .bearer_auth(&a.sk)
                .header("x-tenant-id", "tenant:beta")
                .json(&key_body("n", "secret", None)),
        )
        .await;
    r.expect(403, "tenant_mismatch");
    let r = h.call(Some(&a.sk), "GET", "/v1/api-keys", None).await;
    assert_eq!(r.ok(200)["apiKeys"].as_array().unwrap().len(), 2);
    // A bad key is 401 whatever the other sources say.
    h.send(
        h.req("GET", "/v1/tenant")
            .bearer_auth("sk_live_bad")
            .header("x-tenant-id", "tenant:alpha"),
    )
    .await
    .expect(401, "unauthorized");
}
