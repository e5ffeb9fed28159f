//! The OpenAPI document (`openapi.json`, served at `/openapi.json`) against the wire types the
//! core builds its bodies from (`auth-contract`), both ways.
//!
//! Every documented response with a body is mapped to its type ([`TYPED`]; problem documents to
//! [`Problem`]); a response with no mapping fails, so a new route cannot skip the check. For
//! each, the schema schemars derives from the type (as the type serialises: a field skipped when
//! empty is optional, an `Option` without skipping is required and nullable) and the document's
//! schema are reduced to the same [`Shape`] and compared: every property of the type is in the
//! schema and every schema property in the type, the same required set, the same JSON type
//! (string, integer, number, boolean, array, object, any) and nullability, at every depth.
//!
//! The host's `tests/openapi.rs` checks the other half: real answers validate against the
//! document, and the router and the document list the same routes.

use std::collections::{BTreeMap, BTreeSet};

use auth_contract::schemars::{generate::SchemaSettings, JsonSchema};
use auth_contract::*;
use serde_json::Value;

/// Which schema is being read: the document's, or one schemars derived from a type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Document,
    Type,
}

/// A JSON schema reduced to what the wire cares about.
#[derive(Debug, Clone, PartialEq)]
struct Shape {
    kind: Kind,
    nullable: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    /// Any JSON value (a free-form field).
    Any,
    Scalar(&'static str),
    Array(Box<Shape>),
    Object {
        properties: BTreeMap<String, Shape>,
        required: BTreeSet<String>,
        /// The schema of every value, for an object used as a map.
        values: Option<Box<Shape>>,
    },
}

/// The schema schemars derives for `T`, as `T` serialises, with every subschema inline.
fn schema_of<T: JsonSchema>() -> Value {
    let mut settings = SchemaSettings::draft2020_12().for_serialize();
    settings.inline_subschemas = true;
    settings
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value()
}

type Derive = fn() -> Value;

/// Operation, status and the type its body is built from. Problem documents are matched by
/// media type instead (every error is a [`Problem`]).
const TYPED: &[(&str, &str, &str, Derive)] = &[
    ("GET", "/health", "200", schema_of::<Health>),
    (
        "GET",
        "/.well-known/authconf",
        "200",
        schema_of::<Capabilities>,
    ),
    ("GET", "/admin/tenants", "200", schema_of::<TenantList>),
    ("POST", "/admin/tenants", "201", schema_of::<TenantCreated>),
    (
        "GET",
        "/admin/tenants/{id}",
        "200",
        schema_of::<TenantEnvelope>,
    ),
    (
        "PUT",
        "/admin/tenants/{id}",
        "200",
        schema_of::<TenantEnvelope>,
    ),
    (
        "PATCH",
        "/admin/tenants/{id}",
        "200",
        schema_of::<TenantEnvelope>,
    ),
    (
        "DELETE",
        "/admin/tenants/{id}",
        "200",
        schema_of::<TenantEnvelope>,
    ),
    (
        "GET",
        "/admin/tenants/{id}/keys",
        "200",
        schema_of::<ApiKeyList>,
    ),
    (
        "POST",
        "/admin/tenants/{id}/keys",
        "201",
        schema_of::<ApiKeyCreated>,
    ),
    (
        "GET",
        "/admin/tenants/{id}/metrics",
        "200",
        schema_of::<UsageMetrics>,
    ),
    ("GET", "/admin/dashboard", "200", schema_of::<Dashboard>),
    ("GET", "/admin/metrics", "200", schema_of::<UsageMetrics>),
    (
        "GET",
        "/admin/api-keys",
        "200",
        schema_of::<AdminApiKeyList>,
    ),
    (
        "GET",
        "/admin/admins",
        "200",
        schema_of::<PlatformAdminList>,
    ),
    (
        "POST",
        "/admin/admins",
        "201",
        schema_of::<PlatformAdminCreated>,
    ),
    (
        "DELETE",
        "/admin/admins/{id}",
        "200",
        schema_of::<PlatformAdminEnvelope>,
    ),
    ("GET", "/admin/jwt", "200", schema_of::<JwtKeyring>),
    ("POST", "/admin/jwt/rotate", "200", schema_of::<JwtKeyring>),
    (
        "POST",
        "/admin/jwt/retire-previous",
        "200",
        schema_of::<JwtKeyring>,
    ),
    (
        "GET",
        "/v1/tenant",
        "200",
        schema_of::<PublicTenantEnvelope>,
    ),
    ("GET", "/v1/api-keys", "200", schema_of::<ApiKeyList>),
    ("POST", "/v1/api-keys", "201", schema_of::<ApiKeyCreated>),
    (
        "GET",
        "/v1/api-keys/{id}",
        "200",
        schema_of::<ApiKeyEnvelope>,
    ),
    (
        "DELETE",
        "/v1/api-keys/{id}",
        "200",
        schema_of::<ApiKeyEnvelope>,
    ),
    (
        "POST",
        "/v1/api-keys/{id}/rotate",
        "201",
        schema_of::<ApiKeyRotated>,
    ),
    ("GET", "/v1/rate-limit", "200", schema_of::<RateLimitState>),
    ("GET", "/v1/audit-log", "200", schema_of::<AuditPage>),
    ("PUT", "/v1/graph/csv", "200", schema_of::<CsvStored>),
    (
        "POST",
        "/v1/graph/reload",
        "200",
        schema_of::<ReloadSummary>,
    ),
    ("GET", "/v1/graph/state", "200", schema_of::<GraphStateView>),
    ("POST", "/v1/graph/validate", "200", schema_of::<Validation>),
    ("POST", "/v1/graph/check", "200", schema_of::<CheckResult>),
    (
        "POST",
        "/v1/graph/mutations",
        "200",
        schema_of::<MutationResult>,
    ),
    (
        "GET",
        "/v1/graph/mutations",
        "200",
        schema_of::<MutationPage>,
    ),
    ("POST", "/v1/auth/register", "201", schema_of::<UserSession>),
    ("POST", "/v1/auth/login", "200", schema_of::<UserSession>),
    ("POST", "/v1/auth/refresh", "200", schema_of::<UserSession>),
    ("POST", "/v1/auth/logout", "200", schema_of::<UserMessage>),
    ("GET", "/v1/auth/me", "200", schema_of::<UserMe>),
    (
        "GET",
        "/v1/auth/validate",
        "200",
        schema_of::<UserValidation>,
    ),
    (
        "POST",
        "/v1/auth/change-password",
        "200",
        schema_of::<UserMessage>,
    ),
    (
        "POST",
        "/v1/auth/verify-email",
        "200",
        schema_of::<UserMessage>,
    ),
    (
        "POST",
        "/v1/auth/resend-verification",
        "200",
        schema_of::<UserMessage>,
    ),
    (
        "POST",
        "/v1/auth/forgot-password",
        "200",
        schema_of::<UserMessage>,
    ),
    (
        "POST",
        "/v1/auth/reset-password",
        "200",
        schema_of::<UserMessage>,
    ),
];

/// Responses whose body is not built from a wire type, and why.
const UNTYPED: &[(&str, &str, &str, &str)] = &[(
    "GET",
    "/openapi.json",
    "200",
    "the document itself, served as the text of openapi.json",
)];

const METHODS: &[&str] = &["get", "put", "post", "delete", "patch", "head", "options"];

fn document() -> Value {
    serde_json::from_str(auth_core::handlers::meta::OPENAPI_JSON).expect("openapi.json parses")
}

/// Follows a local `$ref` (`#/...`) within `root`.
fn resolve<'a>(root: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let target = r
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("non-local $ref {r}"));
            resolve(
                root,
                root.pointer(target)
                    .unwrap_or_else(|| panic!("dangling $ref {r}")),
            )
        }
        None => schema,
    }
}

fn is_null_schema(s: &Value) -> bool {
    s.get("type").and_then(Value::as_str) == Some("null")
        || s.get("const").is_some_and(Value::is_null)
}

fn scalar(name: &str) -> &'static str {
    match name {
        "string" => "string",
        "integer" => "integer",
        "number" => "number",
        "boolean" => "boolean",
        other => panic!("unexpected JSON type {other}"),
    }
}

/// The type of a `const` or `enum` value (the document writes some without `type`).
fn type_of_value(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "string",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        other => panic!("unexpected const {other}"),
    }
}

/// Reduces a schema of `root` to its [`Shape`].
fn shape(root: &Value, schema: &Value, side: Side) -> Shape {
    let s = resolve(root, schema);
    if s == &Value::Bool(true) {
        return Shape {
            kind: Kind::Any,
            nullable: true,
        };
    }
    // `allOf` with one member wraps a `$ref` to add a default or a description.
    if let Some([only]) = s.get("allOf").and_then(Value::as_array).map(Vec::as_slice) {
        return shape(root, only, side);
    }
    for union in ["oneOf", "anyOf"] {
        if let Some(members) = s.get(union).and_then(Value::as_array) {
            let others: Vec<&Value> = members
                .iter()
                .filter(|m| !is_null_schema(resolve(root, m)))
                .collect();
            let [only] = others.as_slice() else {
                panic!("a {union} of several non-null members is not a wire shape: {s}");
            };
            let mut inner = shape(root, only, side);
            inner.nullable |= others.len() < members.len();
            return inner;
        }
    }
    let mut nullable = false;
    let type_name = match s.get("type") {
        Some(Value::String(t)) => Some(t.as_str()),
        Some(Value::Array(ts)) => {
            let names: Vec<&str> = ts.iter().filter_map(Value::as_str).collect();
            nullable = names.contains(&"null");
            let rest: Vec<&str> = names.into_iter().filter(|t| *t != "null").collect();
            let [only] = rest.as_slice() else {
                panic!("a schema of several types is not a wire shape: {s}");
            };
            Some(*only)
        }
        _ => None,
    };
    let kind = match type_name {
        Some("object") => object(root, s, side),
        Some("array") => Kind::Array(Box::new(shape(
            root,
            s.get("items").unwrap_or(&Value::Bool(true)),
            side,
        ))),
        Some(t) => Kind::Scalar(scalar(t)),
        None => {
            if let Some(c) = s.get("const") {
                Kind::Scalar(type_of_value(c))
            } else if let Some(first) = s.get("enum").and_then(|e| e.get(0)) {
                Kind::Scalar(type_of_value(first))
            } else {
                // No type, no const, no enum: any value.
                return Shape {
                    kind: Kind::Any,
                    nullable: true,
                };
            }
        }
    };
    Shape { kind, nullable }
}

fn object(root: &Value, s: &Value, side: Side) -> Kind {
    let required: BTreeSet<String> = s
        .get("required")
        .and_then(Value::as_array)
        .map(|r| {
            r.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let mut properties = BTreeMap::new();
    for (name, field) in s
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let mut field = shape(root, field, side);
        // A type's field is optional only when it is skipped in serialising (`Option`s skip
        // when `None`): absent then, never `null`, although schemars lists `null` among its
        // types.
        if side == Side::Type && !required.contains(name) {
            field.nullable = false;
        }
        properties.insert(name.clone(), field);
    }
    let values = match s.get("additionalProperties") {
        Some(v @ Value::Object(_)) => Some(Box::new(shape(root, v, side))),
        _ => None,
    };
    Kind::Object {
        properties,
        required,
        values,
    }
}

fn kind_name(k: &Kind) -> String {
    match k {
        Kind::Any => "any".into(),
        Kind::Scalar(s) => (*s).into(),
        Kind::Array(_) => "array".into(),
        Kind::Object {
            values: Some(_),
            properties,
            ..
        } if properties.is_empty() => "map".into(),
        Kind::Object { .. } => "object".into(),
    }
}

/// Every difference between the document's shape and the type's, one line each.
fn differences(at: &str, doc: &Shape, ty: &Shape, out: &mut Vec<String>) {
    if kind_name(&doc.kind) != kind_name(&ty.kind) {
        out.push(format!(
            "{at}: the document says {}, the type {}",
            kind_name(&doc.kind),
            kind_name(&ty.kind)
        ));
        return;
    }
    if doc.kind != Kind::Any && doc.nullable != ty.nullable {
        let says = |n: bool| if n { "nullable" } else { "not nullable" };
        out.push(format!(
            "{at}: the document says {}, the type {}",
            says(doc.nullable),
            says(ty.nullable)
        ));
    }
    match (&doc.kind, &ty.kind) {
        (Kind::Array(d), Kind::Array(t)) => differences(&format!("{at}[]"), d, t, out),
        (
            Kind::Object {
                properties: dp,
                required: dr,
                values: dv,
            },
            Kind::Object {
                properties: tp,
                required: tr,
                values: tv,
            },
        ) => {
            for name in tp.keys().filter(|n| !dp.contains_key(*n)) {
                out.push(format!("{at}.{name}: in the type, not in the document"));
            }
            for name in dp.keys().filter(|n| !tp.contains_key(*n)) {
                out.push(format!("{at}.{name}: in the document, not in the type"));
            }
            // Required-ness is compared on the properties both sides have.
            let (dr, tr): (BTreeSet<_>, BTreeSet<_>) = (
                dr.iter().filter(|n| tp.contains_key(*n)).collect(),
                tr.iter().filter(|n| dp.contains_key(*n)).collect(),
            );
            for name in tr.difference(&dr) {
                out.push(format!(
                    "{at}.{name}: required by the type, optional in the document"
                ));
            }
            for name in dr.difference(&tr) {
                out.push(format!(
                    "{at}.{name}: required by the document, optional in the type"
                ));
            }
            for (name, d) in dp {
                if let Some(t) = tp.get(name) {
                    differences(&format!("{at}.{name}"), d, t, out);
                }
            }
            if let (Some(d), Some(t)) = (dv, tv) {
                differences(&format!("{at}.*"), d, t, out);
            }
        }
        _ => {}
    }
}

/// The documented responses: `(METHOD, path, status, response object)`, shared ones resolved.
fn responses(doc: &Value) -> Vec<(String, String, String, Value)> {
    let mut all = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            if !METHODS.contains(&method.as_str()) {
                continue;
            }
            for (status, r) in op["responses"].as_object().expect("responses") {
                all.push((
                    method.to_uppercase(),
                    path.clone(),
                    status.clone(),
                    resolve(doc, r).clone(),
                ));
            }
        }
    }
    all
}

/// Compares every documented response body with its type; the list of what differs.
fn check(doc: &Value) -> Vec<String> {
    let typed = TYPED;
    let problem = schema_of::<Problem>();
    let mut out = Vec::new();
    let mut used = BTreeSet::new();
    let mut problems_seen = BTreeSet::new();
    for (method, path, status, response) in responses(doc) {
        let Some(content) = response.get("content").and_then(Value::as_object) else {
            continue; // no body (a 101, a 204)
        };
        for (media, body) in content {
            let at = format!("{method} {path} {status} {media}");
            let derived = if media == PROBLEM_JSON {
                // Every problem response shares one schema: compared once.
                if !problems_seen.insert(body["schema"].to_string()) {
                    continue;
                }
                problem.clone()
            } else if let Some((.., derive)) = typed.iter().find(|(m, p, s, _)| {
                (*m, *p, *s) == (method.as_str(), path.as_str(), status.as_str())
            }) {
                used.insert((method.clone(), path.clone(), status.clone()));
                derive()
            } else if UNTYPED.iter().any(|(m, p, s, _)| {
                (*m, *p, *s) == (method.as_str(), path.as_str(), status.as_str())
            }) {
                continue;
            } else {
                out.push(format!("{at}: no wire type is mapped to this response"));
                continue;
            };
            let documented = shape(doc, &body["schema"], Side::Document);
            differences(
                &at,
                &documented,
                &shape(&derived, &derived, Side::Type),
                &mut out,
            );
        }
    }
    for (m, p, s, _) in typed {
        if !used.contains(&(m.to_string(), p.to_string(), s.to_string())) {
            out.push(format!(
                "{m} {p} {s}: mapped to a type but not documented with a JSON body"
            ));
        }
    }
    out
}

#[test]
fn every_documented_response_matches_its_wire_type_both_ways() {
    let found = check(&document());
    assert!(
        found.is_empty(),
        "openapi.json and the auth-contract types differ:\n{}",
        found.join("\n")
    );
}
