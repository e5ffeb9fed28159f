//! The OpenAPI document and the router agree both ways (docs/contract.md, "Meta"): every
//! served route is documented and every documented one served, with its security, success
//! status, body schemas, problem documents and `Allow` header.
//!
//! Every answer also passes the checks of `support::Service::send` (no 5xx, always
//! `X-Request-Id`, errors as problem documents).

mod support;

use std::collections::BTreeSet;

use serde_json::{json, Value};

use support::*;

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The documented `(METHOD, path)` pairs, each checked for its security (who may call) and
/// for having responses.
fn documented_operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (m, op) in item.as_object().unwrap() {
            if !METHODS.contains(&m.as_str()) {
                continue;
            }
            documented.insert((m.to_uppercase(), path.clone()));
            // Errors are problem documents; admin and tenant routes say who may call.
            let security = &op["security"];
            if path.starts_with("/admin/") {
                assert_eq!(*security, json!([{"platformAdminKey": []}]), "{m} {path}");
            } else if path.starts_with("/v1/auth/") {
                // End-user routes: an access token, or optionally a tenant key.
                assert!(
                    security.as_array().is_some_and(|s| !s.is_empty()),
                    "{m} {path}"
                );
            } else if path.starts_with("/v1/") {
                assert_eq!(*security, json!([{"tenantKey": []}]), "{m} {path}");
            } else {
                assert_eq!(*security, json!([]), "{m} {path}");
            }
            assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()));
        }
    }
    documented
}

/// Shared responses are problem documents; both key schemes are bearer tokens.
fn check_components(doc: &Value) {
    for (name, r) in doc["components"]["responses"].as_object().unwrap() {
        assert!(
            r["content"].get("application/problem+json").is_some(),
            "{name} is a problem document"
        );
    }
    for scheme in ["platformAdminKey", "tenantKey"] {
        let s = &doc["components"]["securitySchemes"][scheme];
        assert_eq!(
            (s["type"].as_str(), s["scheme"].as_str()),
            (Some("http"), Some("bearer"))
        );
    }
}

/// The routes of the first part of the contract (tenants and API keys), whose answers are
/// checked against the document; later parts' routes are only checked to be routed.
fn strict(template: &str) -> bool {
    !template.starts_with("/v1/") && !template.starts_with("/admin/")
        || template.starts_with("/admin/tenants")
        || template == "/v1/tenant"
        || template.starts_with("/v1/api-keys")
}

/// A valid body for `method template`, if it takes one (`n` keeps slugs and emails apart).
fn body_for(method: &str, template: &str, n: usize) -> Option<Value> {
    match (method, template) {
        ("POST", "/admin/tenants") => Some(json!({"slug": format!("new{n}"), "name":"N"})),
        ("POST", "/admin/admins") => Some(json!({"email": format!("new{n}@example.com")})),
        ("PUT" | "PATCH", _) => Some(json!({"name":"Renamed"})),
        ("POST", "/admin/tenants/{id}/keys" | "/v1/api-keys") => {
            Some(restricted_body("n", json!(["read:api_keys"])))
        }
        _ => None,
    }
}

/// The real path of `template` for a fresh tenant (and key, or platform admin), with the key
/// that may call it.
async fn real_path(h: &Service, template: &str, n: usize) -> (String, Option<String>) {
    let t = h.create_tenant(&format!("route{n}")).await;
    let (k, _) = h.create_key(&t.sk, key_body("k", "secret", None)).await;
    let id = if template == "/admin/admins/{id}" {
        let email = format!("route{n}@example.com");
        let r = h
            .admin("POST", "/admin/admins", Some(json!({ "email": email })))
            .await;
        r.ok(201)["admin"]["id"].as_str().unwrap().to_owned()
    } else if template.starts_with("/admin/") {
        enc(&t.id)
    } else {
        enc(k["id"].as_str().unwrap())
    };
    let key = route_key(template, &t.sk).map(str::to_owned);
    (template.replace("{id}", &id), key)
}

/// The answer has the operation's one documented success status and conforms to its
/// schema, and so does the request body.
fn check_success(doc: &Value, method: &str, template: &str, r: &Resp, body: Option<&Value>) {
    let op = &doc["paths"][template][method.to_lowercase()];
    let success: Vec<&String> = op["responses"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|s| s.starts_with('2'))
        .collect();
    assert_eq!(success.len(), 1, "{method} {template}: one success status");
    assert_eq!(
        r.status.to_string(),
        *success[0],
        "{method} {template}: {}",
        r.text
    );
    if let Some(schema) =
        op["responses"][success[0].as_str()]["content"]["application/json"].get("schema")
    {
        conforms(doc, schema, &r.body, &format!("{method} {template}"))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    if let Some(b) = body {
        let schema = &op["requestBody"]["content"]["application/json"]["schema"];
        conforms(doc, schema, b, "request").unwrap_or_else(|e| panic!("{e}"));
    }
}

/// A wrong method on `path` is a 405 problem that conforms to the Problem schema, and its
/// `Allow` names exactly the methods ROUTES serves there (HEAD with GET).
async fn check_wrong_method(
    h: &Service,
    doc: &Value,
    key: Option<&str>,
    path: &str,
    template: &str,
) {
    let wrong = h.call(key, "TRACE", path, None).await;
    wrong.expect(405, "method_not_allowed");
    assert_conforms(doc, "Problem", &wrong.body);
    let allow: BTreeSet<String> = wrong
        .header("allow")
        .split(", ")
        .map(str::to_owned)
        .collect();
    let mut expected: BTreeSet<String> = auth_core::ROUTES
        .iter()
        .filter(|(_, p)| *p == template)
        .map(|(m, _)| m.to_string())
        .collect();
    if expected.contains("GET") {
        expected.insert("HEAD".into());
    }
    assert_eq!(allow, expected, "Allow of {template} matches ROUTES");
}

#[tokio::test]
async fn the_openapi_document_and_the_router_agree_both_ways() {
    let h = Service::start().await;
    let doc = h.call(None, "GET", "/openapi.json", None).await.body;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    assert_eq!(doc["info"]["title"], "auth-service");
    assert_eq!(doc["info"]["version"], "0.1.0");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));

    let documented = documented_operations(&doc);
    let listed: BTreeSet<(String, String)> = auth_core::ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(
        listed.len(),
        auth_core::ROUTES.len(),
        "ROUTES has no duplicates"
    );
    let missing_in_doc: Vec<_> = listed.difference(&documented).collect();
    let missing_in_routes: Vec<_> = documented.difference(&listed).collect();
    assert!(
        missing_in_doc.is_empty(),
        "served but not documented: {missing_in_doc:?}"
    );
    assert!(
        missing_in_routes.is_empty(),
        "documented but not served: {missing_in_routes:?}"
    );
    check_components(&doc);

    // Each route is really routed. The routes of this part of the contract (tenants and API
    // keys), called with real ids, answer their documented success status with a body that
    // conforms to the documented schema, and a wrong method with a conforming problem.
    for (n, (method, template)) in auth_core::ROUTES.iter().enumerate() {
        let n = n + 1;
        let (path, key) = real_path(&h, template, n).await;
        let body = body_for(method, template, n);
        let r = h.call(key.as_deref(), method, &path, body.clone()).await;
        assert!(
            !["not_found", "method_not_allowed"].contains(&r.code()),
            "{method} {template} is not routed: {}",
            r.text
        );
        if strict(template) {
            check_success(&doc, method, template, &r, body.as_ref());
            check_wrong_method(&h, &doc, key.as_deref(), &path, template).await;
        }
    }
    // A validation error conforms as well, with field and errors.
    let r = h.new_tenant(json!({"slug":"BAD","name":"x"})).await;
    r.expect_field("invalid_field", "slug");
    assert_conforms(&doc, "Problem", &r.body);
}
