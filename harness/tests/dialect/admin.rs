//! The admin API of the dialect (§4): the `{status:"success", data}` envelope, the
//! `requireKeyType("secret")` guard with its `{error, message}` bodies, tenant CRUD with soft
//! delete, and admin key minting.

use axum::http::Method;
use axum::response::Response;
use serde_json::{json, Value};

use super::{decode, hex, new_prefix, not_found, now_s, reply, Call, Fake, Key, Store};

fn key_required() -> Response {
    reply(
        401,
        json!({"error": "API_KEY_REQUIRED", "message": "secret API key required"}),
    )
}

fn failed(status: u16, msg: &str) -> Response {
    reply(status, json!({"status": "error", "error": msg}))
}

/// The tenant router plus `requireKeyType("secret")` (§3, §10): the caller's key, or the
/// refusal to send.
pub(crate) fn authenticate(fake: &Fake, call: &Call) -> Result<Key, Response> {
    let d = fake.defects;
    // D11: with X-Tenant-ID present the Authorization header is never examined.
    if d.d11_tenant_status_ignored && !call.tenant_headers().is_empty() {
        return Err(key_required());
    }
    let Some(token) = call
        .header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return Err(key_required());
    };
    let (prefix, secret) = match token.split_once(':') {
        Some((p, s)) => (p, Some(s)),
        None => (token, None),
    };
    let store = fake.store.lock().expect("store");
    let Some(key) = store
        .keys
        .iter()
        .find(|k| k.prefix == prefix && k.revoked_at.is_none())
        .cloned()
    else {
        return Err(key_required());
    };
    let secret_ok = match (&key.secret, secret) {
        (Some(s), Some(given)) => s == given,
        (Some(_), None) => false,
        // D12: a key without a secret is accepted on its prefix alone.
        (None, _) => d.d12_prefix_alone,
    };
    if !secret_ok {
        return Err(key_required());
    }
    let Some(tenant) = store.tenants.get(&key.tenant_id) else {
        return Err(key_required());
    };
    if !d.d11_tenant_status_ignored && tenant.status == "deleted" {
        return Err(key_required());
    }
    if key.kind != "secret" {
        return Err(reply(
            403,
            json!({"error": "INVALID_KEY_TYPE",
                   "message": format!("secret API key required, got {}", key.kind)}),
        ));
    }
    // D1: nothing checks that the key belongs to the platform tenant.
    if !d.d1_tenant_secret_is_admin && key.tenant_id != "tenant_000" {
        return Err(reply(
            403,
            json!({"error": "FORBIDDEN", "message": "platform API key required"}),
        ));
    }
    Ok(key)
}

pub(crate) fn route(fake: &Fake, call: &Call) -> Response {
    let segs: Vec<String> = call
        .path
        .trim_start_matches('/')
        .split('/')
        .map(decode)
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let m = &call.method;
    let known = matches!(
        (m.as_str(), segs.as_slice()),
        ("GET", ["admin", "dashboard" | "metrics" | "tenants"])
            | ("POST", ["admin", "tenants"])
            | ("GET" | "PUT" | "DELETE", ["admin", "tenants", _])
            | ("GET" | "POST", ["admin", "tenants", _, "keys"])
    );
    if !known {
        return not_found(&call.path);
    }
    if let Err(r) = authenticate(fake, call) {
        return r;
    }
    let mut store = fake.store.lock().expect("store");
    match (segs.as_slice(), m) {
        (["admin", "dashboard"], _) => dashboard(&store),
        (["admin", "metrics"], _) => reply(200, json!({"status": "success", "data": {}})),
        (["admin", "tenants"], &Method::GET) => list(&store, call),
        (["admin", "tenants"], _) => match call.json() {
            Ok(body) => create(fake, &mut store, &body),
            Err(r) => r,
        },
        (["admin", "tenants", id], &Method::GET) => match store.tenants.get(*id) {
            Some(t) => {
                let keys = store.keys.iter().filter(|k| k.tenant_id == *id).count();
                let mut row = t.row();
                row["stats"] = json!({"apiKeys": keys, "users": 1});
                reply(200, json!({"status": "success", "data": row}))
            }
            None => failed(404, "Tenant not found"),
        },
        (["admin", "tenants", id], &Method::PUT) => match call.json() {
            Ok(body) => update(&mut store, id, &body),
            Err(r) => r,
        },
        (["admin", "tenants", id], _) => match store.tenants.get_mut(*id) {
            Some(t) => {
                t.status = "deleted".into();
                t.updated_at = now_s();
                reply(
                    200,
                    json!({"status": "success", "message": "Tenant deleted"}),
                )
            }
            None => failed(404, "Tenant not found"),
        },
        (["admin", "tenants", id, "keys"], &Method::GET) => {
            // Upstream answers 200 `[]` for an unknown tenant (D16, not carried).
            if !store.tenants.contains_key(*id) {
                return failed(404, "Tenant not found");
            }
            let data: Vec<Value> = store
                .keys
                .iter()
                .filter(|k| k.tenant_id == *id)
                .map(|k| {
                    json!({"id": k.id, "tenantId": k.tenant_id, "keyPrefix": k.prefix,
                           "name": k.name, "type": k.kind, "environment": k.environment,
                           "permissions": k.permissions, "createdAt": k.created_at,
                           "lastUsedAt": null, "revokedAt": k.revoked_at})
                })
                .collect();
            reply(200, json!({"status": "success", "data": data}))
        }
        (["admin", "tenants", id, "keys"], _) => match call.json() {
            Ok(body) => mint(fake, &mut store, id, &body),
            Err(r) => r,
        },
        _ => not_found(&call.path),
    }
}

fn dashboard(store: &Store) -> Response {
    let active = store
        .tenants
        .values()
        .filter(|t| t.status == "active")
        .count();
    let keys = store.keys.iter().filter(|k| k.revoked_at.is_none()).count();
    reply(
        200,
        json!({"status": "success", "timestamp": "2026-01-01T00:00:00.000Z",
               "metrics": {"activeTenants": active, "activeAPIKeys": keys, "totalAdmins": 1,
                           "environment": "development"}}),
    )
}

fn list(store: &Store, call: &Call) -> Response {
    let page: usize = call
        .query
        .get("page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1)
        .max(1);
    let limit: usize = call
        .query
        .get("limit")
        .and_then(|p| p.parse().ok())
        .unwrap_or(20)
        .max(1);
    let status = call
        .query
        .get("status")
        .map(String::as_str)
        .unwrap_or("active");
    let all: Vec<Value> = store
        .tenants
        .values()
        .filter(|t| t.status == status)
        .map(|t| t.row())
        .collect();
    let total = all.len();
    let data: Vec<Value> = all
        .into_iter()
        .skip((page - 1) * limit)
        .take(limit)
        .collect();
    reply(
        200,
        json!({"status": "success", "data": data,
               "pagination": {"page": page, "limit": limit, "total": total,
                              "pages": total.div_ceil(limit)}}),
    )
}

fn create(fake: &Fake, store: &mut Store, body: &Value) -> Response {
    let (Some(slug), Some(name)) = (
        body.get("slug").and_then(Value::as_str),
        body.get("name").and_then(Value::as_str),
    ) else {
        return failed(400, "slug and name are required");
    };
    if slug.is_empty()
        || !slug
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return failed(
            400,
            "slug must contain only lowercase letters, numbers, and hyphens",
        );
    }
    // D13: only the camelCase `parentId` is read; the documented `parent_id` is ignored.
    let parent = body.get("parentId").or_else(|| {
        (!fake.defects.d13_parent_id_ignored)
            .then(|| body.get("parent_id"))
            .flatten()
    });
    let parent = match parent.and_then(Value::as_str) {
        Some(p) => match store.tenants.get(p) {
            Some(t) if t.depth >= 5 => return failed(400, "maximum nesting depth (5) exceeded"),
            Some(t) => Some((t.id.clone(), t.depth)),
            None => return failed(404, "parent_id not found"),
        },
        None => None,
    };
    if store.tenants.values().any(|t| t.slug == slug) {
        return failed(409, "slug already exists");
    }
    let id = format!("tenant:{slug}");
    let (mut t, secret) = store.add_tenant(&id, slug, name, parent);
    if let Some(plan) = body.get("plan").and_then(Value::as_str) {
        t.plan = plan.to_owned();
        store.tenants.insert(id.clone(), t.clone());
    }
    reply(
        201,
        json!({"status": "success", "data": {
            "tenant": {"id": t.id, "slug": t.slug, "name": t.name, "plan": t.plan,
                       "status": "active", "depth": t.depth, "parentId": t.parent_id},
            "credentials": {"publicKey": {"prefix": t.public_prefix},
                            "secretKey": {"prefix": t.secret_prefix, "secret": secret}}}}),
    )
}

/// `PUT /admin/tenants/:id`: plan, branding, limits upstream. The fake also takes `name`
/// and `status` (active or suspended) so that the suite's setup steps can suspend a tenant;
/// the upstream's inability to (D15) is not a carried defect.
fn update(store: &mut Store, id: &str, body: &Value) -> Response {
    let Some(t) = store.tenants.get_mut(id) else {
        return failed(404, "Tenant not found");
    };
    if let Some(p) = body.get("plan").and_then(Value::as_str) {
        t.plan = p.to_owned();
    }
    if let Some(n) = body.get("name").and_then(Value::as_str) {
        t.name = n.to_owned();
    }
    if let Some(s) = body.get("status").and_then(Value::as_str) {
        if t.status != "deleted" && matches!(s, "active" | "suspended") {
            t.status = s.to_owned();
        }
    }
    t.updated_at = now_s();
    reply(
        200,
        json!({"status": "success", "message": "Tenant updated"}),
    )
}

fn mint(fake: &Fake, store: &mut Store, id: &str, body: &Value) -> Response {
    if !store.tenants.contains_key(id) {
        return failed(404, "Tenant not found");
    }
    let kind = match body.get("type").and_then(Value::as_str).unwrap_or("secret") {
        "public" | "publishable" => "public",
        "restricted" => "restricted",
        "secret" => "secret",
        _ => return failed(500, "Failed to create API key"),
    };
    let environment = body
        .get("environment")
        .and_then(Value::as_str)
        .unwrap_or("live")
        .to_owned();
    let name = body
        .get("name")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{kind} key"));
    let permissions = body.get("permissions").map(Value::to_string);
    let prefix = new_prefix(
        kind,
        if environment == "test" {
            "test"
        } else {
            "live"
        },
    );
    // Upstream: only secret keys get a secret. Without D12 restricted keys get one too, so
    // that no restricted key authenticates by its prefix alone.
    let secret = (kind == "secret" || (kind == "restricted" && !fake.defects.d12_prefix_alone))
        .then(|| hex(32));
    let key_id = store.add_key(id, &prefix, secret.clone(), &name, kind, permissions);
    if let Some(k) = store.keys.last_mut() {
        k.environment = environment.clone();
    }
    let mut data =
        json!({"id": key_id, "prefix": prefix, "type": kind, "environment": environment});
    if let Some(s) = secret {
        data["secret"] = json!(s);
    }
    reply(201, json!({"status": "success", "data": data}))
}
