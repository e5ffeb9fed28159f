//! Onboarding of a new tenant (`POST /admin/tenants` with `"onboarding":{"adminEmail",
//! "template"}`): in the same transaction as the tenant and its keys, the tenant's data schema
//! from a template shipped in `reference/templates/` (`tenant_data_schemas`, status `pending`:
//! the reference stores schemas, it does not compile them), the first admin user (no usable
//! password yet), a single-use set-password token (the `reset_password` kind, 72 hours) and a
//! welcome mail carrying it and the documentation link, queued in the outbox. The mail carries
//! no API key: the keys are in the admin's answer only.

use auth_contract::OnboardingState;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::store::{self, TokenKind, UserRecord};
use super::{mail, normalise_email};
use crate::http::ApiError;
use crate::keys::{self, KeyHasher};
use crate::model::{rfc3339, TenantRecord};
use crate::ports::{Ports, Sql, SqlValue, StorageError};

/// The schema templates shipped with the reference, by name.
pub const TEMPLATES: &[(&str, &str)] = &[
    ("basic", include_str!("../../../templates/basic.yaml")),
    ("rbac", include_str!("../../../templates/rbac.yaml")),
];
/// Version recorded for a schema made from a template.
pub const TEMPLATE_VERSION: &str = "1.0.0";
/// Lifetime of the set-password token of the welcome mail: 72 hours.
pub const WELCOME_TOKEN_TTL_MS: i64 = 72 * 3600 * 1000;
/// Where the welcome mail points for documentation.
pub const DOCS_LINK: &str =
    "docs/contract.md in the auth-service repository, and GET /openapi.json of the service";

/// A validated `onboarding` object.
#[derive(Debug, Clone, PartialEq)]
pub struct OnboardingSpec {
    pub admin_email: String,
    pub template: String,
}

/// Reads the `onboarding` field of a tenant-creation body.
pub fn parse(v: &Value) -> Result<OnboardingSpec, ApiError> {
    let Value::Object(map) = v else {
        return Err(ApiError::field("onboarding", "must be an object"));
    };
    if let Some(k) = map
        .keys()
        .find(|k| !["adminEmail", "template"].contains(&k.as_str()))
    {
        return Err(ApiError::field(
            format!("onboarding.{k}"),
            "is not a known field",
        ));
    }
    let admin_email = map
        .get("adminEmail")
        .and_then(Value::as_str)
        .and_then(normalise_email)
        .ok_or_else(|| ApiError::field("onboarding.adminEmail", "must be an email address"))?;
    let template = match map.get("template") {
        None => "basic".to_owned(),
        Some(Value::String(t)) if TEMPLATES.iter().any(|(n, _)| n == t) => t.clone(),
        Some(_) => {
            let names: Vec<&str> = TEMPLATES.iter().map(|(n, _)| *n).collect();
            return Err(ApiError::field(
                "onboarding.template",
                format!("must be one of {}", names.join(", ")),
            ));
        }
    };
    Ok(OnboardingSpec {
        admin_email,
        template,
    })
}

/// Everything onboarding writes, prepared outside the transaction.
#[derive(Debug, Clone)]
pub struct Prepared {
    spec: OnboardingSpec,
    user: UserRecord,
    schema_id: String,
    token_hash: String,
    mail: mail::OutboxMail,
}

pub fn prepare(
    ports: &Ports,
    hasher: &KeyHasher,
    tenant: &TenantRecord,
    spec: &OnboardingSpec,
) -> Prepared {
    let now = ports.clock.now_ms();
    let (seed, token) = mail::new_code(ports.entropy, hasher, "pr");
    let user = UserRecord {
        id: format!("user:{}", keys::random_hex(16, ports.entropy)),
        tenant_id: tenant.id.clone(),
        email: spec.admin_email.clone(),
        username: None,
        name: Some("Administrator".into()),
        // Not a PHC string: no password verifies until the admin sets one with the token.
        password_hash: "!".into(),
        email_verified: false,
        status: super::store::UserStatus::Active,
        created_at: now,
        updated_at: now,
        last_login_at: None,
    };
    let mail = mail::OutboxMail {
        id: format!("mail:{}", keys::random_hex(16, ports.entropy)),
        tenant_id: Some(tenant.id.clone()),
        to: spec.admin_email.clone(),
        subject: format!("Welcome to auth-service, {}", tenant.name),
        text: format!(
            "Welcome! The tenant {name} ({id}) is ready, with the \"{template}\" data schema.\n\n\
             An administrator account was created for {email}. Choose its password with \
             POST /v1/auth/reset-password (X-Tenant-ID: {id}) and this single-use code, valid \
             for 72 hours:\n\n{code}\n\nDocumentation: {DOCS_LINK}.\n",
            name = tenant.name,
            id = tenant.id,
            template = spec.template,
            email = spec.admin_email,
            code = mail::CODE_SLOT,
        ),
        template: "welcome".into(),
        attempts: 0,
        code_seed: Some(seed),
    };
    Prepared {
        spec: spec.clone(),
        user,
        schema_id: format!("schema:{}", keys::random_hex(16, ports.entropy)),
        token_hash: hasher.hash(&token),
        mail,
    }
}

/// Writes the prepared onboarding, inside the tenant-creation transaction.
pub fn write(db: &dyn Sql, p: &Prepared, now: i64) -> Result<(), StorageError> {
    let tenant_id = p.user.tenant_id.as_str();
    let yaml = TEMPLATES
        .iter()
        .find(|(n, _)| *n == p.spec.template)
        .map(|(_, y)| *y)
        .unwrap_or_default();
    db.execute(
        "INSERT INTO tenant_data_schemas (id, tenant_id, version, is_active, yaml_content, \
         yaml_hash, compilation_status, size_kb, published_at, activated_at) \
         VALUES (?, ?, ?, 1, ?, ?, 'pending', ?, ?, ?)",
        &[
            p.schema_id.as_str().into(),
            tenant_id.into(),
            TEMPLATE_VERSION.into(),
            yaml.into(),
            keys::hex(&Sha256::digest(yaml.as_bytes())).into(),
            // REAL column; stored as text of the number, read back by SQLite as a number.
            SqlValue::Text(format!("{:.3}", yaml.len() as f64 / 1024.0)),
            now.into(),
            now.into(),
        ],
    )?;
    store::insert_user(db, &p.user)?;
    db.execute(
        "UPDATE tenant_users SET metadata = ? WHERE tenant_id = ? AND id = ?",
        &[
            r#"{"role":"admin"}"#.into(),
            tenant_id.into(),
            p.user.id.as_str().into(),
        ],
    )?;
    store::insert_user_token(
        db,
        tenant_id,
        &p.user.id,
        TokenKind::ResetPassword,
        &p.token_hash,
        now,
        WELCOME_TOKEN_TTL_MS,
    )?;
    mail::enqueue(db, &p.mail, now)?;
    db.execute(
        "INSERT INTO tenant_onboarding (tenant_id, admin_email, admin_user_id, template, \
         schema_id, welcome_mail_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        &[
            tenant_id.into(),
            p.spec.admin_email.as_str().into(),
            p.user.id.as_str().into(),
            p.spec.template.as_str().into(),
            p.schema_id.as_str().into(),
            p.mail.id.as_str().into(),
            now.into(),
        ],
    )
    .map(drop)
}

/// The onboarding state of a tenant, if it was onboarded.
pub fn state(db: &dyn Sql, tenant_id: &str) -> Result<Option<OnboardingState>, StorageError> {
    let rows = db.query(
        "SELECT o.admin_email, o.admin_user_id, o.template, o.schema_id, o.created_at, \
         m.sent_at, u.password_hash \
         FROM tenant_onboarding o \
         LEFT JOIN mail_outbox m ON m.id = o.welcome_mail_id \
         LEFT JOIN tenant_users u ON u.id = o.admin_user_id AND u.tenant_id = o.tenant_id \
         WHERE o.tenant_id = ?",
        &[tenant_id.into()],
    )?;
    Ok(rows.first().map(|r| {
        let text = |i: usize| r[i].as_str().unwrap_or_default().to_owned();
        let sent = r[5].as_i64();
        OnboardingState {
            admin_email: text(0),
            admin_user_id: text(1),
            template: text(2),
            schema_id: text(3),
            schema_version: TEMPLATE_VERSION.into(),
            welcome_email: if sent.is_some() { "sent" } else { "queued" }.into(),
            welcome_email_sent_at: sent.map(rfc3339),
            admin_password_set: r[6].as_str().is_some_and(|h| h.starts_with('$')),
            created_at: rfc3339(r[4].as_i64().unwrap_or(0)),
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field_of(e: ApiError) -> String {
        match e {
            ApiError::InvalidField { field, .. } => field,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn onboarding_specs_are_checked() {
        let ok = parse(&json!({"adminEmail": "Admin@Acme.io"})).unwrap();
        assert_eq!(ok.admin_email, "admin@acme.io");
        assert_eq!(ok.template, "basic");
        assert_eq!(
            parse(&json!({"adminEmail": "a@b.co", "template": "rbac"}))
                .unwrap()
                .template,
            "rbac"
        );
        assert_eq!(field_of(parse(&json!("x")).unwrap_err()), "onboarding");
        assert_eq!(
            field_of(parse(&json!({})).unwrap_err()),
            "onboarding.adminEmail"
        );
        assert_eq!(
            field_of(parse(&json!({"adminEmail": "a@b.co", "template": "nope"})).unwrap_err()),
            "onboarding.template"
        );
        assert_eq!(
            field_of(parse(&json!({"adminEmail": "a@b.co", "extra": 1})).unwrap_err()),
            "onboarding.extra"
        );
        for (name, yaml) in TEMPLATES {
            assert!(yaml.contains("entities:"), "{name}");
        }
    }
}
