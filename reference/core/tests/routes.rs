//! The route table [`auth_core::ROUTES`] against the router (`Route::parse` and the front, run
//! by the driver over a host with no storage): every listed route is routed (never 404, never
//! 405), the `Allow` header of every path lists exactly the methods the table gives it, and
//! unknown paths are 404. Storage refuses every call, which also proves that routing, method
//! checks and the "no key" answer need no storage.

mod support;

use auth_core::{Response, ROUTES};

/// Sends a request with no key and no body through the driver; every answer here comes from
/// the front (a host call other than the front's would show in `calls`).
fn send(method: &str, path: &str) -> Response {
    let service = support::service();
    let host = support::FakeHost::new(&service);
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .body(Vec::new())
        .unwrap();
    let driven = support::block_on(auth_core::drive(&service, &host, req));
    let calls = host.calls();
    assert!(
        calls.iter().all(|c| *c == "front"),
        "{method} {path} went past the front without a key: {calls:?}"
    );
    driven.response
}

fn code(resp: &Response) -> String {
    let v: serde_json::Value = serde_json::from_slice(resp.body()).unwrap_or_default();
    v["code"].as_str().unwrap_or("").to_owned()
}

fn concrete(template: &str) -> String {
    template.replace("{id}", "x%3Ay")
}

#[test]
fn routes_are_unique_and_well_formed() {
    for (i, (m, p)) in ROUTES.iter().enumerate() {
        assert!(["GET", "POST", "PUT", "PATCH", "DELETE"].contains(m), "{m}");
        assert!(p.starts_with('/') && !p.ends_with('/'), "{p}");
        assert!(!ROUTES[..i].contains(&(*m, *p)), "{m} {p} is listed twice");
    }
}

#[test]
fn every_listed_route_is_routed() {
    for (method, template) in ROUTES {
        let resp = send(method, &concrete(template));
        let status = resp.status().as_u16();
        assert!(
            status != 404 && status != 405 && status != 500,
            "{method} {template} answered {status} {}",
            code(&resp)
        );
        assert!(resp.headers().contains_key("x-request-id"));
        // Without a key, meta routes answer and every other route asks for one.
        if template.starts_with("/admin/") || template.starts_with("/v1/") {
            assert_eq!(
                (status, code(&resp).as_str()),
                (401, "unauthorized"),
                "{method} {template}"
            );
            assert_eq!(resp.headers()["www-authenticate"], "Bearer");
        } else {
            assert_eq!(status, 200, "{method} {template}");
        }
    }
}

#[test]
fn allow_headers_match_the_route_table() {
    let mut templates: Vec<&str> = ROUTES.iter().map(|(_, p)| *p).collect();
    templates.sort();
    templates.dedup();
    for template in templates {
        let resp = send("TRACE", &concrete(template));
        assert_eq!(resp.status().as_u16(), 405, "{template}");
        assert_eq!(code(&resp), "method_not_allowed");
        let mut allow: Vec<String> = resp.headers()["allow"]
            .to_str()
            .unwrap()
            .split(',')
            .map(|s| s.trim().to_owned())
            .collect();
        let mut listed: Vec<String> = ROUTES
            .iter()
            .filter(|(_, p)| *p == template)
            .map(|(m, _)| m.to_string())
            .collect();
        if listed.iter().any(|m| m == "GET") {
            listed.push("HEAD".into());
        }
        allow.sort();
        listed.sort();
        assert_eq!(allow, listed, "Allow of {template} differs from ROUTES");
    }
}

#[test]
fn head_is_answered_where_get_is_without_a_body() {
    let resp = send("HEAD", "/health");
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.body().is_empty());
}

#[test]
fn unknown_paths_are_not_found() {
    for path in [
        "/",
        "/admin",
        "/admin/",
        "/admin/tenant",
        "/admin/tenants/x/keys/y",
        "/admin/tenants/x/other",
        "/v1",
        "/v1/tenants",
        "/v1/api-keys/x/revoke",
        "/v1/api-keys/x/rotate/y",
        "/v2/tenant",
        "/health/x",
        "/.well-known/other",
        "/%FF",
    ] {
        for method in ["GET", "POST", "DELETE"] {
            let resp = send(method, path);
            assert_eq!(resp.status().as_u16(), 404, "{method} {path}");
            assert_eq!(code(&resp), "not_found");
            assert_eq!(resp.headers()["content-type"], "application/problem+json");
        }
    }
}

#[test]
fn keys_in_the_query_are_refused_before_authentication() {
    for q in ["api_key", "apiKey", "key", "access_token"] {
        for path in ["/v1/tenant", "/admin/tenants"] {
            let resp = send("GET", &format!("{path}?{q}=sk_live_x"));
            assert_eq!(resp.status().as_u16(), 400, "{q}");
            assert_eq!(code(&resp), "credentials_in_query");
        }
    }
}

#[test]
fn the_openapi_document_lists_exactly_the_routes() {
    let doc: serde_json::Value =
        serde_json::from_str(auth_core::handlers::meta::OPENAPI_JSON).expect("valid JSON");
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    assert_eq!(doc["info"]["title"], "auth-service");
    assert_eq!(doc["info"]["version"], auth_core::VERSION);
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in item.as_object().unwrap().keys() {
            if [
                "get", "put", "post", "delete", "patch", "head", "options", "trace",
            ]
            .contains(&m.as_str())
            {
                documented.push((m.to_uppercase(), path.clone()));
            }
        }
    }
    let mut listed: Vec<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    documented.sort();
    listed.sort();
    assert_eq!(documented, listed);
}
