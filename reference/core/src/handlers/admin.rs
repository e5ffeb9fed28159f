//! `/admin/*`: the platform admin manages tenants and their keys.

use auth_contract::{
    Pagination, RateLimit, TenantCreated, TenantCredentials, TenantEnvelope, TenantList,
};
use http::StatusCode;
use serde_json::Value;

use crate::handlers::api_keys::{self, KeySpec};
use crate::http::{json, json_object, ApiError, ApiResult, Fields, Request};
use crate::keys::{Environment, KeyHasher, KeyType};
use crate::model::{Plan, TenantRecord, TenantStatus};
use crate::ports::{Ports, StorageError};
use crate::store::{self, TenantFilter, TenantScope};

/// Bounds of a rate-limit override.
pub const MAX_OVERRIDE_REQUESTS: i64 = 1_000_000;
pub const MAX_OVERRIDE_WINDOW_SECONDS: i64 = 86_400;

/// A slug is a DNS label, because it doubles as the tenant's subdomain.
pub fn valid_slug(slug: &str) -> bool {
    let b = slug.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

fn parse_rate_limit(f: &Fields) -> Result<Option<Option<RateLimit>>, ApiError> {
    match f.get("rateLimit") {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::Object(map)) => {
            let inner = Fields::new(map.clone(), &["requests", "windowSeconds"])
                .map_err(|_| ApiError::field("rateLimit", "takes only requests and windowSeconds"))?;
            let requests = inner
                .opt_int("requests", 1, MAX_OVERRIDE_REQUESTS)
                .map_err(|_| {
                    ApiError::field(
                        "rateLimit.requests",
                        format!("must be a whole number from 1 to {MAX_OVERRIDE_REQUESTS}"),
                    )
                })?
                .ok_or_else(|| ApiError::field("rateLimit.requests", "is required"))?;
            let window = inner
                .opt_int("windowSeconds", 1, MAX_OVERRIDE_WINDOW_SECONDS)
                .map_err(|_| {
                    ApiError::field(
                        "rateLimit.windowSeconds",
                        format!("must be a whole number from 1 to {MAX_OVERRIDE_WINDOW_SECONDS}"),
                    )
                })?
                .ok_or_else(|| ApiError::field("rateLimit.windowSeconds", "is required"))?;
            Ok(Some(Some(RateLimit {
                requests: requests as u32,
                window_seconds: window as u32,
            })))
        }
        Some(_) => Err(ApiError::field("rateLimit", "must be an object or null")),
    }
}

fn parse_plan(f: &Fields) -> Result<Option<Plan>, ApiError> {
    f.opt_str("plan")?
        .map(|p| Plan::parse(&p).ok_or_else(|| ApiError::field("plan", "must be free, pro or enterprise")))
        .transpose()
}

pub fn create_tenant(ports: &Ports, hasher: &KeyHasher, req: &Request) -> ApiResult {
    let f = Fields::new(json_object(req, false)?, &["slug", "name", "plan", "rateLimit"])?;
    let slug = f.req_str("slug")?;
    if !valid_slug(&slug) {
        return Err(ApiError::field(
            "slug",
            "must be 1 to 63 lowercase letters, digits or hyphens, not starting or ending with a hyphen",
        ));
    }
    let name = f.text("name", 200, true)?.expect("required");
    let plan = parse_plan(&f)?.unwrap_or(Plan::Free);
    let rate_limit = parse_rate_limit(&f)?.flatten();
    let now = ports.clock.now_ms();
    let tenant = TenantRecord {
        id: TenantRecord::id_for_slug(&slug),
        slug,
        name,
        plan,
        status: TenantStatus::Active,
        rate_limit,
        created_at: now,
        updated_at: now,
        deleted_at: None,
    };
    let scope = TenantScope::new(&tenant.id);
    let spec = |name: &str, key_type| KeySpec {
        name: name.into(),
        key_type,
        environment: Environment::Live,
        permissions: Vec::new(),
    };
    let (public, public_token) = api_keys::mint(ports, hasher, &tenant.id, &spec("Publishable key", KeyType::Publishable));
    let (secret, secret_token) = api_keys::mint(ports, hasher, &tenant.id, &spec("Secret key", KeyType::Secret));
    let mut duplicate = false;
    ports.db.transaction(&mut |db| {
        if store::find_tenant_by_slug_exists(db, &tenant.slug)? {
            duplicate = true;
            return Ok(());
        }
        store::insert_tenant(db, &tenant)?;
        scope.insert_key(db, &public)?;
        scope.insert_key(db, &secret)?;
        store::set_tenant_key_prefixes(db, &tenant.id, &public.display_prefix, &secret.display_prefix)?;
        Ok::<(), StorageError>(())
    })
    .map_err(|e| match e {
        StorageError::Constraint(_) => ApiError::Conflict("The slug is already taken."),
        _ => ApiError::Internal,
    })?;
    if duplicate {
        return Err(ApiError::Conflict("The slug is already taken."));
    }
    Ok(json(
        StatusCode::CREATED,
        &TenantCreated {
            tenant: tenant.to_wire(),
            credentials: TenantCredentials {
                public_key: public_token,
                secret_key: secret_token,
            },
        },
    ))
}

fn page_param(query: &[(String, String)], name: &str, default: u32, max: u32) -> Result<u32, ApiError> {
    match query.iter().find(|(k, _)| k == name) {
        None => Ok(default),
        Some((_, v)) => v
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| ApiError::query(name, format!("must be a whole number from 1 to {max}"))),
    }
}

pub fn list_tenants(ports: &Ports, query: &[(String, String)]) -> ApiResult {
    let mut filter = TenantFilter::default();
    for (k, v) in query {
        match k.as_str() {
            "status" => {
                filter.status = Some(TenantStatus::parse(v).ok_or_else(|| {
                    ApiError::query("status", "must be active, suspended or deleted")
                })?)
            }
            "plan" => {
                filter.plan = Some(
                    Plan::parse(v)
                        .ok_or_else(|| ApiError::query("plan", "must be free, pro or enterprise"))?,
                )
            }
            "page" | "limit" => {}
            other => return Err(ApiError::query(other, "is not a known parameter")),
        }
    }
    let page = page_param(query, "page", 1, u32::MAX)?;
    let limit = page_param(query, "limit", 20, 100)?;
    let offset = u64::from(page - 1) * u64::from(limit);
    let (tenants, total) = store::list_tenants(ports.db, &filter, offset, limit)?;
    Ok(json(
        StatusCode::OK,
        &TenantList {
            tenants: tenants.iter().map(TenantRecord::to_wire).collect(),
            pagination: Pagination {
                page,
                limit,
                total,
                pages: total.div_ceil(u64::from(limit)),
            },
        },
    ))
}

fn existing(ports: &Ports, id: &str) -> Result<TenantRecord, ApiError> {
    // `{id}` arrives percent-decoded, so `tenant%3Aacme` and `tenant:acme` are one id.
    store::find_tenant(ports.db, id)?.ok_or(ApiError::NotFound)
}

pub fn get_tenant(ports: &Ports, id: &str) -> ApiResult {
    let tenant = existing(ports, id)?;
    Ok(json(StatusCode::OK, &TenantEnvelope { tenant: tenant.to_wire() }))
}

pub fn update_tenant(ports: &Ports, id: &str, req: &Request) -> ApiResult {
    let f = Fields::new(json_object(req, false)?, &["name", "plan", "status", "rateLimit"])?;
    let name = f.text("name", 200, false)?;
    let plan = parse_plan(&f)?;
    let status = f
        .opt_str("status")?
        .map(|s| match s.as_str() {
            "active" => Ok(TenantStatus::Active),
            "suspended" => Ok(TenantStatus::Suspended),
            _ => Err(ApiError::field("status", "must be active or suspended (use DELETE to delete)")),
        })
        .transpose()?;
    let rate_limit = parse_rate_limit(&f)?;
    let mut tenant = existing(ports, id)?;
    if tenant.status == TenantStatus::Deleted {
        return Err(ApiError::Conflict("A deleted tenant cannot be changed."));
    }
    if let Some(n) = name {
        tenant.name = n;
    }
    if let Some(p) = plan {
        tenant.plan = p;
    }
    if let Some(s) = status {
        tenant.status = s;
    }
    if let Some(r) = rate_limit {
        tenant.rate_limit = r;
    }
    tenant.updated_at = ports.clock.now_ms();
    store::update_tenant(ports.db, &tenant)?;
    Ok(json(StatusCode::OK, &TenantEnvelope { tenant: tenant.to_wire() }))
}

pub fn delete_tenant(ports: &Ports, id: &str) -> ApiResult {
    let mut tenant = existing(ports, id)?;
    if tenant.status != TenantStatus::Deleted {
        let now = ports.clock.now_ms();
        tenant.status = TenantStatus::Deleted;
        tenant.deleted_at = Some(now);
        tenant.updated_at = now;
        store::update_tenant(ports.db, &tenant)?;
    }
    Ok(json(StatusCode::OK, &TenantEnvelope { tenant: tenant.to_wire() }))
}

fn live_tenant_scope(ports: &Ports, id: &str) -> Result<TenantScope, ApiError> {
    let tenant = existing(ports, id)?;
    if tenant.status == TenantStatus::Deleted {
        return Err(ApiError::Conflict("The tenant is deleted."));
    }
    Ok(TenantScope::new(&tenant.id))
}

pub fn list_tenant_keys(ports: &Ports, id: &str) -> ApiResult {
    let scope = live_tenant_scope(ports, id)?;
    api_keys::list(ports, &scope, None)
}

pub fn create_tenant_key(ports: &Ports, hasher: &KeyHasher, id: &str, req: &Request) -> ApiResult {
    let spec = api_keys::parse_spec(req)?;
    let scope = live_tenant_scope(ports, id)?;
    api_keys::create(ports, hasher, &scope, &spec)
}
