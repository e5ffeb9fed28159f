//! `/v1/api-keys`: a tenant lists, creates, rotates and revokes its own keys. The admin API
//! reuses [`create`] and [`list`] for `/admin/tenants/{id}/keys`.

use auth_contract::{
    ApiKeyCreated, ApiKeyEnvelope, ApiKeyList, ApiKeyRotated, KeyCreatedDetail, KeyCredentials,
    KeyRotatedDetail, NoDetail,
};
use http::StatusCode;

use crate::auth::TenantCaller;
use crate::http::{json, json_object, sorted, ApiError, ApiResult, Fields, Request, Response};
use crate::keys::{self, Environment, KeyHasher, KeyType};
use crate::model::{is_known_permission, permissions_cover, KeyRecord};
use crate::ports::{Ports, StorageError};
use crate::store::TenantScope;

/// Longest grace period a rotation may give the old key: one week.
pub const MAX_GRACE_SECONDS: i64 = 7 * 24 * 3600;

/// A successful change to a key: the answer, and what the audit log and the tenant's cache need
/// to know about it. Never holds a secret.
#[derive(Debug)]
pub struct Changed {
    pub response: Response,
    pub action: &'static str,
    pub target: String,
    pub detail: serde_json::Value,
    /// The hash of a key that stopped (or will stop) working, to drop from caches.
    pub retired: Option<KeyRecord>,
}

/// What a new key will be.
#[derive(Debug, Clone)]
pub struct KeySpec {
    pub name: String,
    pub key_type: KeyType,
    pub environment: Environment,
    pub permissions: Vec<String>,
}

/// Reads and validates a key-creation body.
pub fn parse_spec(req: &Request) -> Result<KeySpec, ApiError> {
    let f = Fields::new(
        json_object(req, false)?,
        &["name", "type", "environment", "permissions"],
    )?;
    let name = f.text("name", 100, true)?.expect("required");
    let type_name = f.req_str("type")?;
    let key_type = KeyType::parse(&type_name)
        .ok_or_else(|| ApiError::field("type", "must be publishable, secret or restricted"))?;
    let environment = match f.opt_str("environment")? {
        None => Environment::Live,
        Some(e) => Environment::parse(&e)
            .ok_or_else(|| ApiError::field("environment", "must be live or test"))?,
    };
    let permissions = f.opt_str_list("permissions")?.unwrap_or_default();
    if key_type != KeyType::Restricted && !permissions.is_empty() {
        return Err(ApiError::field(
            "permissions",
            "only restricted keys carry permissions",
        ));
    }
    // The message names the position, never the value: a client that pastes a key into the
    // wrong field must not see it echoed (errors never echo secrets).
    if let Some(i) = permissions.iter().position(|p| !is_known_permission(p)) {
        return Err(ApiError::field(
            "permissions",
            format!("item {i} is not a known permission"),
        ));
    }
    let mut permissions = permissions;
    permissions.sort();
    permissions.dedup();
    Ok(KeySpec {
        name,
        key_type,
        environment,
        permissions,
    })
}

/// Refuses a key that would have more power than the caller's own: no escalation through
/// creation or rotation. Secret keys may mint anything; restricted keys only restricted keys
/// that their permissions cover, or publishable keys; test keys only test keys.
pub fn check_power(caller: &TenantCaller, spec: &KeySpec) -> Result<(), ApiError> {
    if caller.key.environment == Environment::Test && spec.environment == Environment::Live {
        return Err(ApiError::Forbidden(
            "Test-mode keys cannot manage live-mode keys.",
        ));
    }
    match caller.key.key_type {
        KeyType::Secret => Ok(()),
        KeyType::Publishable => Err(ApiError::Forbidden(
            "Publishable keys reach public endpoints only.",
        )),
        KeyType::Restricted => match spec.key_type {
            KeyType::Publishable => Ok(()),
            KeyType::Secret => Err(ApiError::Forbidden(
                "A restricted key cannot create or rotate a key with more power than its own.",
            )),
            KeyType::Restricted => {
                if spec
                    .permissions
                    .iter()
                    .all(|p| permissions_cover(&caller.key.permissions, p))
                {
                    Ok(())
                } else {
                    Err(ApiError::Forbidden(
                        "A restricted key cannot create or rotate a key with more power than its own.",
                    ))
                }
            }
        },
    }
}

/// A new key record and its token. The token is returned to the caller once and then dropped.
pub fn mint(
    ports: &Ports,
    hasher: &KeyHasher,
    tenant_id: &str,
    spec: &KeySpec,
) -> (KeyRecord, String) {
    let token = keys::generate(spec.key_type, spec.environment, ports.entropy);
    let record = KeyRecord {
        id: format!("key:{}", keys::random_hex(8, ports.entropy)),
        tenant_id: tenant_id.to_owned(),
        display_prefix: keys::display_prefix(&token),
        key_hash: hasher.hash(&token),
        name: spec.name.clone(),
        key_type: spec.key_type,
        environment: spec.environment,
        permissions: spec.permissions.clone(),
        created_at: ports.clock.now_ms(),
        revoked_at: None,
        expires_at: None,
        replaced_by: None,
    };
    (record, token)
}

/// Creates a key in `scope` and answers 201 with its secret, shown this once.
pub fn create(
    ports: &Ports,
    hasher: &KeyHasher,
    scope: &TenantScope,
    spec: &KeySpec,
) -> Result<Changed, ApiError> {
    let (record, token) = mint(ports, hasher, scope.tenant_id(), spec);
    scope.insert_key(ports.db, &record)?;
    Ok(Changed {
        response: json(
            StatusCode::CREATED,
            &ApiKeyCreated {
                api_key: record.to_wire(),
                credentials: KeyCredentials { key_secret: token },
            },
        ),
        action: "api_key.created",
        target: record.id.clone(),
        detail: sorted(&KeyCreatedDetail {
            key_type: record.key_type.as_str().into(),
            environment: record.environment.as_str().into(),
            permissions: record.permissions.clone(),
        }),
        retired: None,
    })
}

pub fn list(ports: &Ports, scope: &TenantScope, only: Option<Environment>) -> ApiResult {
    let keys = scope.list_keys(ports.db, only)?;
    Ok(json(
        StatusCode::OK,
        &ApiKeyList {
            api_keys: keys.iter().map(KeyRecord::to_wire).collect(),
        },
    ))
}

/// A key of the caller's tenant that the caller may see; another tenant's key, or a live key
/// asked for with a test key, is 404 exactly like a key that does not exist.
fn visible_key(ports: &Ports, caller: &TenantCaller, id: &str) -> Result<KeyRecord, ApiError> {
    let key = caller
        .scope
        .get_key(ports.db, id)?
        .ok_or(ApiError::NotFound)?;
    if caller
        .visible_environment()
        .is_some_and(|env| env != key.environment)
    {
        return Err(ApiError::NotFound);
    }
    Ok(key)
}

pub fn get(ports: &Ports, caller: &TenantCaller, id: &str) -> ApiResult {
    caller.require("read:api_keys")?;
    let key = visible_key(ports, caller, id)?;
    Ok(json(
        StatusCode::OK,
        &ApiKeyEnvelope {
            api_key: key.to_wire(),
        },
    ))
}

pub fn revoke(ports: &Ports, caller: &TenantCaller, id: &str) -> Result<Changed, ApiError> {
    caller.require("write:api_keys")?;
    let key = visible_key(ports, caller, id)?;
    check_power(caller, &spec_of(&key))?;
    caller
        .scope
        .revoke_key(ports.db, id, ports.clock.now_ms())?;
    let key = visible_key(ports, caller, id)?;
    Ok(Changed {
        response: json(
            StatusCode::OK,
            &ApiKeyEnvelope {
                api_key: key.to_wire(),
            },
        ),
        action: "api_key.revoked",
        target: key.id.clone(),
        detail: sorted(&NoDetail {}),
        retired: Some(key),
    })
}

fn spec_of(key: &KeyRecord) -> KeySpec {
    KeySpec {
        name: key.name.clone(),
        key_type: key.key_type,
        environment: key.environment,
        permissions: key.permissions.clone(),
    }
}

pub fn rotate(
    ports: &Ports,
    hasher: &KeyHasher,
    caller: &TenantCaller,
    id: &str,
    req: &Request,
) -> Result<Changed, ApiError> {
    caller.require("write:api_keys")?;
    let f = Fields::new(json_object(req, true)?, &["expiresInSeconds"])?;
    let grace = f
        .opt_int("expiresInSeconds", 0, MAX_GRACE_SECONDS)?
        .unwrap_or(0);
    let old = visible_key(ports, caller, id)?;
    let spec = spec_of(&old);
    check_power(caller, &spec)?;
    let now = ports.clock.now_ms();
    if !old.usable_at(now) || old.replaced_by.is_some() {
        return Err(ApiError::Conflict(
            "Only a key that is in use and not yet rotated can be rotated.",
        ));
    }
    let (new, token) = mint(ports, hasher, caller.scope.tenant_id(), &spec);
    let mut retired = false;
    // Insert the successor and retire the old key in one transaction, with the retirement a
    // compare-and-set: concurrent rotations of one key leave exactly one successor.
    ports.db.transaction(&mut |db| {
        retired = caller
            .scope
            .retire_key(db, &old.id, &new.id, now + grace * 1000, grace == 0)?;
        if retired {
            caller.scope.insert_key(db, &new)?;
        }
        Ok::<(), StorageError>(())
    })?;
    if !retired {
        return Err(ApiError::Conflict(
            "The key was rotated or revoked meanwhile.",
        ));
    }
    let previous = caller
        .scope
        .get_key(ports.db, &old.id)?
        .ok_or(ApiError::Internal)?;
    Ok(Changed {
        response: json(
            StatusCode::CREATED,
            &ApiKeyRotated {
                api_key: new.to_wire(),
                credentials: KeyCredentials { key_secret: token },
                previous_key: previous.to_wire(),
            },
        ),
        action: "api_key.rotated",
        target: old.id.clone(),
        detail: sorted(&KeyRotatedDetail {
            new_key_id: new.id.clone(),
            grace_seconds: grace,
        }),
        retired: Some(previous),
    })
}
