//! Errors (docs/contract.md, "Errors"): bodies checked for size, media type and syntax,
//! unknown routes and wrong methods, and odd inputs on every route never yielding a 500.
//!
//! Every answer also passes the checks of `support::Service::send` (no 5xx, always
//! `X-Request-Id`, errors as problem documents).

mod support;

use support::*;

#[tokio::test]
async fn bodies_are_checked_for_size_media_type_and_syntax() {
    let (h, t) = Service::start_with_tenant("acme").await;
    let big = format!(
        "{{\"slug\":\"big\",\"name\":\"{}\"}}",
        "x".repeat(65 * 1024)
    );
    let tenant_path = format!("/admin/tenants/{}", enc(&t.id));
    for (m, path, key, ct) in [
        ("POST", "/admin/tenants", ADMIN_KEY, "application/json"),
        ("POST", "/v1/api-keys", t.sk.as_str(), "application/json"),
        ("PATCH", tenant_path.as_str(), ADMIN_KEY, "text/plain"),
    ] {
        let r = h.send_body(m, path, key, ct, big.clone()).await;
        r.expect(413, "payload_too_large");
    }
    // Just under the limit is read (and then judged on its fields).
    let name_len = 64 * 1024 - "{\"slug\":\"big\",\"name\":\"\"}".len();
    let at_limit = format!("{{\"slug\":\"big\",\"name\":\"{}\"}}", "x".repeat(name_len));
    assert_eq!(at_limit.len(), 64 * 1024);
    let r = h.post_tenant_raw(at_limit).await;
    r.expect_field("invalid_field", "name");

    for ct in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data"),
    ] {
        let mut rb = h
            .req("POST", "/admin/tenants")
            .bearer_auth(ADMIN_KEY)
            .body(r#"{"slug":"ct","name":"C"}"#);
        if let Some(ct) = ct {
            rb = rb.header("content-type", ct);
        }
        h.send(rb).await.expect(415, "unsupported_media_type");
    }
    let r = h
        .send_body(
            "POST",
            "/admin/tenants",
            ADMIN_KEY,
            "application/json; charset=utf-8",
            r#"{"slug":"ct","name":"C"}"#,
        )
        .await;
    r.ok(201);

    for (body, what) in [
        ("{", "truncated"),
        ("{\"slug\":\"x\",}", "trailing comma"),
        ("not json", "text"),
        ("", "empty"),
        ("[]", "an array"),
        ("\"slug\"", "a string"),
        ("null", "null"),
        ("{\"slug\":\"x\"}{}", "two values"),
    ] {
        for (m, p, key) in [
            ("POST", "/admin/tenants".to_owned(), ADMIN_KEY),
            ("PUT", format!("/admin/tenants/{}", enc(&t.id)), ADMIN_KEY),
            ("POST", "/v1/api-keys".to_owned(), t.sk.as_str()),
        ] {
            let r = h.send_body(m, &p, key, "application/json", body).await;
            r.expect(400, "invalid_json");
            assert!(!r.text.contains(&t.sk[8..]), "{what}");
        }
    }
    let r = h
        .post_tenant_raw("{\n  \"slug\": \"x\",\n  \"name\": }")
        .await;
    r.expect(400, "invalid_json");
    let detail = r.body["detail"].as_str().unwrap();
    assert!(
        detail.contains("line 3") && detail.contains("column"),
        "{detail}"
    );
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405_with_allow() {
    let (h, t) = Service::start_with_tenant("acme").await;
    for path in [
        "/",
        "/nope",
        "/admin",
        "/admin/tenant",
        "/admin/tenants/tenant:acme/keys/x",
        "/admin/tenants/tenant:acme/users",
        "/v1",
        "/v1/tenants",
        "/v1/api-keys/x/revoke",
        "/v2/api-keys",
        "/health/",
        "/.well-known",
        "/%FF%FE",
    ] {
        for key in [None, Some(ADMIN_KEY), Some(t.sk.as_str())] {
            for m in ["GET", "POST", "DELETE"] {
                h.call(key, m, path, None).await.expect(404, "not_found");
            }
        }
    }
    // `<method> <path> -> <Allow>`, one a line.
    const WRONG_METHODS: &str = "
    POST /health -> GET, HEAD
    DELETE /openapi.json -> GET, HEAD
    PUT /.well-known/authconf -> GET, HEAD
    DELETE /admin/tenants -> GET, HEAD, POST
    PATCH /admin/tenants -> GET, HEAD, POST
    POST /admin/tenants/tenant:acme -> GET, HEAD, PUT, PATCH, DELETE
    PUT /admin/tenants/tenant:acme/keys -> GET, HEAD, POST
    POST /v1/tenant -> GET, HEAD
    DELETE /v1/api-keys -> GET, HEAD, POST
    PUT /v1/api-keys/key:0123456789abcdef -> GET, HEAD, DELETE
    GET /v1/api-keys/key:0123456789abcdef/rotate -> POST
    OPTIONS /v1/tenant -> GET, HEAD
    ";
    for line in WRONG_METHODS
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
    {
        let (call, allow) = line.split_once(" -> ").unwrap();
        let (m, path) = call.split_once(' ').unwrap();
        // Before authentication, and the same with a key.
        for key in [None, Some(t.sk.as_str())] {
            let r = h.call(key, m, path, None).await;
            r.expect(405, "method_not_allowed");
            assert_eq!(r.header("allow"), allow, "{m} {path}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_inputs_never_yield_a_500() {
    let (h, t) = Service::start_with_tenant("acme").await;
    // The admin routes work on a tenant of their own, since one of them deletes it.
    let victim = h.create_tenant("victim").await;
    let (k, _) = h.create_key(&t.sk, key_body("k", "secret", None)).await;
    let key_id = enc(k["id"].as_str().unwrap());
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let bodies: Vec<Vec<u8>> = vec![
        vec![0xff, 0xfe, 0x00, 0x7b],
        b"{\"name\":\"\\u0000\",\"slug\":\"a\\u0000\"}".to_vec(),
        b"{\"name\":\"\\ud800\"}".to_vec(),
        deep.into_bytes(),
        b"{\"expiresInSeconds\":1e400,\"rateLimit\":{\"requests\":1e400}}".to_vec(),
        b"{\"expiresInSeconds\":18446744073709551616}".to_vec(),
        b"{\"name\":{\"a\":1},\"type\":{},\"permissions\":[[]],\"plan\":[]}".to_vec(),
        b"{\"slug\":\"\xc3\xa9\",\"name\":\"\xe2\x80\xae\"}".to_vec(),
        b"{\"a\":1,\"a\":2}".to_vec(),
        b"\xef\xbb\xbf{}".to_vec(),
    ];
    let ids = [
        "x",
        "%00",
        "tenant%3A%00",
        "key%3A%F0%9F%92%A9",
        "..%2F..%2Fetc",
        "%2e%2e",
    ];
    for (method, template) in auth_core::ROUTES {
        let key = route_key(template, &t.sk);
        let real = if template.starts_with("/admin/") {
            enc(&victim.id)
        } else {
            key_id.clone()
        };
        let mut paths = vec![template.replace("{id}", &real)];
        if template.contains("{id}") {
            paths.extend(ids.iter().map(|i| template.replace("{id}", i)));
        }
        for path in paths {
            for (body, query) in bodies.iter().flat_map(|b| {
                // Each body also with an odd query (which the routing check refuses before
                // any body is read).
                [
                    (b, ""),
                    (
                        b,
                        "?page=%FF&limit=99999999999999999999&after=-1&since=x&tenant_id=%00",
                    ),
                ]
            }) {
                let mut rb = h
                    .req(method, &format!("{path}{query}"))
                    .header("content-type", "application/json")
                    .header("x-tenant-id", "tenant:acme")
                    .body(body.clone());
                if let Some(k) = key {
                    rb = rb.bearer_auth(k);
                }
                // `send` fails the test on any 500 or malformed error.
                let r = h.send(rb).await;
                assert!(r.status < 500, "{method} {path}: {}", r.text);
            }
        }
    }
    // The service is still healthy, the caller's key untouched, and nothing odd was stored.
    h.call(None, "GET", "/health", None).await.ok(200);
    assert!(h.works(&t.sk).await);
    let r = h.admin("GET", "/admin/tenants", None).await;
    assert_eq!(r.ok(200)["pagination"]["total"], 2);
}
