//! `/admin/*`: the platform admin manages tenants and their keys.

use auth_contract::{
    JwtKeyring, Pagination, RateLimit, TenantCreated, TenantCredentials, TenantEnvelope,
    TenantList, TenantUpdatedDetail,
};
use http::StatusCode;
use serde_json::Value;

use crate::handlers::api_keys::{self, KeySpec};
use crate::http::{
    json, json_object, json_sorted, sorted, ApiError, ApiResult, Fields, Request, Response,
};
use crate::keys::{Environment, KeyHasher, KeyType};
use crate::model::{Plan, TenantRecord, TenantStatus};
use crate::ports::{Ports, StorageError};
use crate::store::{self, TenantFilter, TenantScope};
use crate::users::jwt::{self, JwtSecrets};
use crate::users::onboarding;

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
            let inner = Fields::new(map.clone(), &["requests", "windowSeconds"]).map_err(|_| {
                ApiError::field("rateLimit", "takes only requests and windowSeconds")
            })?;
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
        .map(|p| {
            Plan::parse(&p)
                .ok_or_else(|| ApiError::field("plan", "must be free, pro or enterprise"))
        })
        .transpose()
}

pub fn create_tenant(
    ports: &Ports,
    hasher: &KeyHasher,
    req: &Request,
) -> Result<(Response, TenantRecord), ApiError> {
    let f = Fields::new(
        json_object(req, false)?,
        &["slug", "name", "plan", "rateLimit", "onboarding"],
    )?;
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
    let onboarding_spec = f.get("onboarding").map(onboarding::parse).transpose()?;
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
    let (public, public_token) = api_keys::mint(
        ports,
        hasher,
        &tenant.id,
        &spec("Publishable key", KeyType::Publishable),
    );
    let (secret, secret_token) = api_keys::mint(
        ports,
        hasher,
        &tenant.id,
        &spec("Secret key", KeyType::Secret),
    );
    let onboarding = onboarding_spec
        .as_ref()
        .map(|spec| onboarding::prepare(ports, hasher, &tenant, spec));
    let mut duplicate = false;
    ports
        .db
        .transaction(&mut |db| {
            if store::find_tenant_by_slug_exists(db, &tenant.slug)? {
                duplicate = true;
                return Ok(());
            }
            store::insert_tenant(db, &tenant)?;
            scope.insert_key(db, &public)?;
            scope.insert_key(db, &secret)?;
            store::set_tenant_key_prefixes(
                db,
                &tenant.id,
                &public.display_prefix,
                &secret.display_prefix,
            )?;
            if let Some(o) = &onboarding {
                onboarding::write(db, o, now)?;
            }
            Ok::<(), StorageError>(())
        })
        .map_err(|e| match e {
            StorageError::Constraint(_) => ApiError::Conflict("The slug is already taken."),
            _ => ApiError::Internal,
        })?;
    if duplicate {
        return Err(ApiError::Conflict("The slug is already taken."));
    }
    let created = TenantCreated {
        tenant: tenant.to_wire(),
        credentials: TenantCredentials {
            public_key: public_token,
            secret_key: secret_token,
        },
        // Only an onboarded tenant's answer carries the onboarding state.
        onboarding: onboarding::state(ports.db, &tenant.id)?,
    };
    Ok((
        tenant_answer(StatusCode::CREATED, &created, created.onboarding.is_some()),
        tenant,
    ))
}

/// A whole-number query parameter in `1..=max`, or `default` when absent.
pub(crate) fn page_param(
    query: &[(String, String)],
    name: &str,
    default: u32,
    max: u32,
) -> Result<u32, ApiError> {
    match query.iter().find(|(k, _)| k == name) {
        None => Ok(default),
        Some((_, v)) => v
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                ApiError::query(name, format!("must be a whole number from 1 to {max}"))
            }),
    }
}

/// `GET /admin/tenants`, limited to `only` for an admin limited to some tenants.
pub fn list_tenants(
    ports: &Ports,
    query: &[(String, String)],
    only: Option<&[String]>,
) -> ApiResult {
    let mut filter = TenantFilter {
        only: only.map(<[String]>::to_vec),
        ..TenantFilter::default()
    };
    for (k, v) in query {
        match k.as_str() {
            "status" => {
                filter.status = Some(TenantStatus::parse(v).ok_or_else(|| {
                    ApiError::query("status", "must be active, suspended or deleted")
                })?)
            }
            "plan" => {
                filter.plan =
                    Some(Plan::parse(v).ok_or_else(|| {
                        ApiError::query("plan", "must be free, pro or enterprise")
                    })?)
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

/// A tenant answer. One that carries the onboarding state has always gone out with its keys
/// sorted (it was put together as a `Value`), one without in the types' field order: each
/// keeps its bytes.
fn tenant_answer(status: StatusCode, body: &impl serde::Serialize, onboarded: bool) -> Response {
    if onboarded {
        json_sorted(status, body)
    } else {
        json(status, body)
    }
}

fn existing(ports: &Ports, id: &str) -> Result<TenantRecord, ApiError> {
    // `{id}` arrives percent-decoded, so `tenant%3Aacme` and `tenant:acme` are one id.
    store::find_tenant(ports.db, id)?.ok_or(ApiError::NotFound)
}

pub fn get_tenant(ports: &Ports, id: &str) -> ApiResult {
    let tenant = existing(ports, id)?;
    let envelope = TenantEnvelope {
        tenant: tenant.to_wire(),
        onboarding: onboarding::state(ports.db, &tenant.id)?,
    };
    Ok(tenant_answer(
        StatusCode::OK,
        &envelope,
        envelope.onboarding.is_some(),
    ))
}

/// Applies a partial update. Answers the response, the tenant as it now is, and the changed
/// fields (for the audit log).
pub fn update_tenant(
    ports: &Ports,
    id: &str,
    req: &Request,
) -> Result<(Response, TenantRecord, Value), ApiError> {
    let f = Fields::new(
        json_object(req, false)?,
        &["name", "plan", "status", "rateLimit"],
    )?;
    let name = f.text("name", 200, false)?;
    let plan = parse_plan(&f)?;
    let status = f
        .opt_str("status")?
        .map(|s| match s.as_str() {
            "active" => Ok(TenantStatus::Active),
            "suspended" => Ok(TenantStatus::Suspended),
            _ => Err(ApiError::field(
                "status",
                "must be active or suspended (use DELETE to delete)",
            )),
        })
        .transpose()?;
    let rate_limit = parse_rate_limit(&f)?;
    let f_names: Vec<String> = ["name", "plan", "status", "rateLimit"]
        .iter()
        .filter(|n| f.has(n))
        .map(|n| (*n).to_owned())
        .collect();
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
    let changed = ["name", "plan", "status", "rateLimit"]
        .iter()
        .filter(|f| f_has(&f_names, f))
        .map(|f| (*f).to_owned())
        .collect();
    let response = json(
        StatusCode::OK,
        &TenantEnvelope {
            tenant: tenant.to_wire(),
            onboarding: None,
        },
    );
    Ok((response, tenant, sorted(&TenantUpdatedDetail { changed })))
}

fn f_has(names: &[String], f: &str) -> bool {
    names.iter().any(|n| n == f)
}

pub fn delete_tenant(ports: &Ports, id: &str) -> Result<(Response, TenantRecord), ApiError> {
    let mut tenant = existing(ports, id)?;
    if tenant.status != TenantStatus::Deleted {
        let now = ports.clock.now_ms();
        tenant.status = TenantStatus::Deleted;
        tenant.deleted_at = Some(now);
        tenant.updated_at = now;
        store::update_tenant(ports.db, &tenant)?;
    }
    let response = json(
        StatusCode::OK,
        &TenantEnvelope {
            tenant: tenant.to_wire(),
            onboarding: None,
        },
    );
    Ok((response, tenant))
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

pub fn create_tenant_key(
    ports: &Ports,
    hasher: &KeyHasher,
    id: &str,
    req: &Request,
) -> Result<(api_keys::Changed, String), ApiError> {
    let spec = api_keys::parse_spec(req)?;
    let scope = live_tenant_scope(ports, id)?;
    let changed = api_keys::create(ports, hasher, &scope, &spec)?;
    Ok((changed, scope.tenant_id().to_owned()))
}

/// What `/admin/jwt[/...]` asks of the keyring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtAction {
    List,
    Rotate,
    RetirePrevious,
}

/// `/admin/jwt`, `/admin/jwt/rotate` and `/admin/jwt/retire-previous`: the signing keyring.
/// Every answer is `{"currentKid","keys":[{"kid","status","createdAt","retiredAt"}]}`, never
/// a secret.
pub fn jwt_keyring(
    ports: &Ports,
    secrets: Option<&JwtSecrets>,
    action: JwtAction,
    req: &Request,
) -> ApiResult {
    let secrets = secrets.ok_or(ApiError::Conflict(
        "End-user auth has no signing secret configured.",
    ))?;
    if action != JwtAction::List {
        Fields::new(json_object(req, true)?, &[])?;
    }
    let now = ports.clock.now_ms();
    match action {
        JwtAction::List => {}
        JwtAction::Rotate => jwt::rotate(ports.db, secrets, ports.entropy, now)?,
        JwtAction::RetirePrevious => {
            jwt::retire_previous(ports.db, now)?;
        }
    }
    let keys = jwt::list_keys(ports.db)?;
    let (current, _) = jwt::signing_key(ports.db, secrets)?;
    Ok(json_sorted(
        StatusCode::OK,
        &JwtKeyring {
            current_kid: current,
            keys: keys.iter().map(jwt::KeyEntry::to_wire).collect(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn slugs_are_dns_labels() {
        for ok in ["a", "acme", "a-b", "0", "a1-2b", &"a".repeat(63)] {
            assert!(valid_slug(ok), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "-",
            "Acme",
            "a_b",
            "a.b",
            "a b",
            "é",
            "tenant:acme",
            &"a".repeat(64),
        ] {
            assert!(!valid_slug(bad), "{bad}");
        }
    }

    fn rate(v: Value) -> Result<Option<Option<RateLimit>>, ApiError> {
        let Value::Object(m) = json!({ "rateLimit": v }) else {
            unreachable!()
        };
        parse_rate_limit(&Fields::new(m, &["rateLimit"]).unwrap())
    }

    fn field_of(e: ApiError) -> String {
        match e {
            ApiError::InvalidField { field, .. } => field,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rate_limits_are_bounded_objects_or_null() {
        assert_eq!(rate(Value::Null).unwrap(), Some(None));
        assert_eq!(
            rate(json!({"requests": 1, "windowSeconds": 86_400})).unwrap(),
            Some(Some(RateLimit {
                requests: 1,
                window_seconds: 86_400
            }))
        );
        assert!(rate(json!({"requests": 1_000_000, "windowSeconds": 1})).is_ok());
        let f = Fields::new(serde_json::Map::new(), &["rateLimit"]).unwrap();
        assert_eq!(parse_rate_limit(&f).unwrap(), None);
        for (v, field) in [
            (
                json!({"requests": 0, "windowSeconds": 60}),
                "rateLimit.requests",
            ),
            (
                json!({"requests": 1_000_001, "windowSeconds": 60}),
                "rateLimit.requests",
            ),
            (
                json!({"requests": 1.5, "windowSeconds": 60}),
                "rateLimit.requests",
            ),
            (
                json!({"requests": "5", "windowSeconds": 60}),
                "rateLimit.requests",
            ),
            (json!({"windowSeconds": 60}), "rateLimit.requests"),
            (
                json!({"requests": 5, "windowSeconds": 0}),
                "rateLimit.windowSeconds",
            ),
            (
                json!({"requests": 5, "windowSeconds": 86_401}),
                "rateLimit.windowSeconds",
            ),
            (json!({"requests": 5}), "rateLimit.windowSeconds"),
            (
                json!({"requests": 5, "windowSeconds": 60, "burst": 1}),
                "rateLimit",
            ),
            (json!(100), "rateLimit"),
            (json!("100/min"), "rateLimit"),
        ] {
            assert_eq!(field_of(rate(v.clone()).unwrap_err()), field, "{v}");
        }
    }

    #[test]
    fn page_params_are_bounded() {
        let q = |s: &str| crate::http::query_pairs(Some(s));
        assert_eq!(page_param(&q(""), "limit", 20, 100).unwrap(), 20);
        assert_eq!(page_param(&q("limit=100"), "limit", 20, 100).unwrap(), 100);
        for bad in [
            "limit=0",
            "limit=101",
            "limit=-1",
            "limit=x",
            "limit=",
            "limit=1.5",
        ] {
            let e = page_param(&q(bad), "limit", 20, 100).unwrap_err();
            assert!(
                matches!(e, ApiError::InvalidQuery { ref field, .. } if field == "limit"),
                "{bad}"
            );
        }
    }
}
