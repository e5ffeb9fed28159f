//! The one list of the relational tables the Worker's objects hold: for each, which object
//! owns it, whether its owner copies it to D1 ([`crate::mirror`]), whether the directory ships
//! its rows to a tenant's object ([`crate::rows`]), and its columns. One `tables!` invocation
//! makes both the list ([`TABLES`]) and a named struct per table for its row images, so the
//! mirror's lists, the shipped tables and the images cannot disagree: a table added to one is
//! added to all. The columns are the migrations' (a unit test compares them).
//!
//! Tables the migrations create that no object writes (`accounts`, `sessions`,
//! `verification_tokens`) are in [`UNUSED`], so every table is named here exactly once.

use auth_core::ports::SqlValue;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Which object holds a table's rows.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Owner {
    /// The directory (`AuthPlatform`): rows no single tenant owns.
    Directory,
    /// Each tenant's object (`TenantState`): that tenant's rows.
    Tenant,
}

/// One table of the list.
#[derive(Debug)]
pub struct Table {
    pub name: &'static str,
    pub owner: Owner,
    /// Its owner copies it to D1. The mail outbox is not: a queued mail is the object's work,
    /// not relational state, and the fewer copies of anything that leads to a single-use code,
    /// the better.
    pub to_d1: bool,
    /// The directory writes rows of it for a tenant (the tenant's creation, onboarding, a key
    /// the admin minted) and ships them to the tenant's object.
    pub shipped: bool,
    /// The columns in table order (a raw identifier's `r#` stripped by [`Table::columns`]).
    raw_columns: &'static [&'static str],
}

impl Table {
    /// The column names, in table order.
    pub fn columns(&self) -> Vec<&'static str> {
        self.raw_columns
            .iter()
            .map(|c| c.trim_start_matches("r#"))
            .collect()
    }
}

/// A row image of one table: a named struct, one field per column.
pub trait RowImage: Sized {
    const TABLE: &'static str;
    /// The values in table order, for SQL.
    fn params(&self) -> Vec<SqlValue>;
    /// From a SQL row in table order (`SELECT *`); `None` when it is too short.
    fn from_sql(row: &[SqlValue]) -> Option<Self>;
}

/// A JSON value from a SQL value.
pub fn to_json(v: &SqlValue) -> Value {
    match v {
        SqlValue::Null => Value::Null,
        SqlValue::Integer(i) => Value::from(*i),
        SqlValue::Text(s) => Value::from(s.as_str()),
    }
}

/// A SQL value from a JSON value (what [`to_json`] made).
pub fn to_sql(v: &Value) -> SqlValue {
    match v {
        Value::Number(n) => n.as_i64().map_or(SqlValue::Null, SqlValue::Integer),
        Value::String(s) => SqlValue::Text(s.clone()),
        Value::Bool(b) => SqlValue::Integer(i64::from(*b)),
        _ => SqlValue::Null,
    }
}

macro_rules! tables {
    ($(
        $(#[$doc:meta])*
        $image:ident = $name:literal, $owner:ident, to_d1: $d1:literal, shipped: $shipped:literal,
        [$($col:ident),* $(,)?];
    )*) => {
        /// Every table the objects write, in an order that satisfies their foreign keys.
        pub const TABLES: &[Table] = &[$(Table {
            name: $name,
            owner: Owner::$owner,
            to_d1: $d1,
            shipped: $shipped,
            raw_columns: &[$(stringify!($col)),*],
        }),*];

        $(
            $(#[$doc])*
            #[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
            pub struct $image {
                $(pub $col: Value,)*
            }

            impl RowImage for $image {
                const TABLE: &'static str = $name;

                fn params(&self) -> Vec<SqlValue> {
                    vec![$(to_sql(&self.$col)),*]
                }

                fn from_sql(row: &[SqlValue]) -> Option<Self> {
                    let mut values = row.iter();
                    Some(Self {
                        $($col: to_json(values.next()?),)*
                    })
                }
            }
        )*

        /// Rows of one table, as they travel between the objects: the table is the variant,
        /// never a name spliced into SQL.
        #[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
        #[serde(tag = "table", content = "rows")]
        pub enum TableRows {
            $(
                #[serde(rename = $name)]
                $image(Vec<$image>),
            )*
        }

        impl TableRows {
            pub fn table(&self) -> &'static Table {
                let name = match self {
                    $(Self::$image(_) => $name,)*
                };
                table(name).unwrap_or(&TABLES[0])
            }

            /// Every row's values in table order.
            pub fn params(&self) -> Vec<Vec<SqlValue>> {
                match self {
                    $(Self::$image(rows) => rows.iter().map(RowImage::params).collect(),)*
                }
            }

            /// The rows of `name` from SQL rows in table order; `None` for a table not listed.
            pub fn from_sql(name: &str, rows: &[Vec<SqlValue>]) -> Option<Self> {
                match name {
                    $($name => Some(Self::$image(
                        rows.iter().filter_map(|r| $image::from_sql(r)).collect(),
                    )),)*
                    _ => None,
                }
            }
        }
    };
}

tables! {
    /// A tenant (the directory's; every call to a tenant's object carries its row).
    TenantRow = "tenants", Directory, to_d1: true, shipped: false,
    [id, slug, name, parent_id, depth, plan, status, public_key, secret_key, branding, limits,
     schema_version, created_at, updated_at, deleted_at];
    PlatformAdminRow = "platform_admins", Directory, to_d1: true, shipped: false,
    [id, email, name, role, password_hash, key_hash, status, created_at, last_login_at,
     tenant_scope, revoked_at];
    AdminPermissionRow = "platform_admin_tenant_permissions", Directory, to_d1: true,
    shipped: false,
    [admin_id, tenant_id, permission, granted_at];
    /// A JWT signing key (the directory's; every call to a tenant's object carries them all).
    KeyringRow = "jwt_keys", Directory, to_d1: true, shipped: false,
    [kid, status, created_at, retired_at];
    /// A usage count (flushed by a tenant's object, added up by the directory).
    UsageRow = "usage_metrics", Directory, to_d1: true, shipped: false,
    [id, tenant_id, metric_type, endpoint, count, period_start, period_end, recorded_at, day,
     rate_limited];
    /// A key (its tenant's object owns it; the directory keeps a mirror for routing and lists).
    KeyRow = "api_keys", Tenant, to_d1: true, shipped: true,
    [id, tenant_id, key_prefix, key_hash, name, r#type, environment, permissions, created_at,
     last_used_at, revoked_at, expires_at, replaced_by];
    TenantUserRow = "tenant_users", Tenant, to_d1: true, shipped: true,
    [id, tenant_id, email, username, password_hash, email_verified, name, avatar, metadata,
     status, created_at, updated_at, last_login_at];
    SessionRow = "tenant_user_sessions", Tenant, to_d1: true, shipped: false,
    [id, tenant_id, user_id, family_id, ip_address, user_agent, created_at, expires_at,
     last_activity_at, revoked_at];
    RefreshTokenRow = "refresh_tokens", Tenant, to_d1: true, shipped: false,
    [id, tenant_id, user_id, session_id, family_id, token_hash, created_at, expires_at,
     consumed_at, revoked_at];
    UserTokenRow = "user_tokens", Tenant, to_d1: true, shipped: true,
    [token_hash, tenant_id, user_id, kind, created_at, expires_at, used_at];
    BlacklistRow = "token_blacklist", Tenant, to_d1: true, shipped: false,
    [jti, tenant_id, expires_at, reason, created_at];
    DataSchemaRow = "tenant_data_schemas", Tenant, to_d1: true, shipped: true,
    [id, tenant_id, version, is_active, yaml_content, yaml_hash, compiled_drizzle_types,
     compiled_validators, compilation_status, compilation_error, size_kb, entity_count,
     relationship_count, published_at, activated_at];
    MailRow = "mail_outbox", Tenant, to_d1: false, shipped: true,
    [id, tenant_id, to_email, subject, body_text, template, created_at, attempts,
     next_attempt_at, sent_at, last_error, code_seed];
    OnboardingRow = "tenant_onboarding", Tenant, to_d1: true, shipped: true,
    [tenant_id, admin_email, admin_user_id, template, schema_id, welcome_mail_id, created_at];
}

/// Tables the migrations create that no object writes.
pub const UNUSED: &[&str] = &["accounts", "sessions", "verification_tokens"];

/// The table named `name`.
pub fn table(name: &str) -> Option<&'static Table> {
    TABLES.iter().find(|t| t.name == name)
}

/// The tables `owner` copies to D1, in foreign-key order.
pub fn copied_to_d1(owner: Owner) -> Vec<&'static str> {
    TABLES
        .iter()
        .filter(|t| t.owner == owner && t.to_d1)
        .map(|t| t.name)
        .collect()
}

/// The tables whose rows the directory ships to a tenant's object, in foreign-key order.
pub fn shipped() -> impl Iterator<Item = &'static Table> {
    TABLES.iter().filter(|t| t.shipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every table the migrations create, with its columns in order.
    fn migrated() -> Vec<(String, Vec<String>)> {
        let conn = rusqlite::Connection::open_in_memory().expect("sqlite");
        for (_, script) in auth_core::migrations::MIGRATIONS {
            conn.execute_batch(script).expect("migration");
        }
        let mut tables = conn
            .prepare(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
            )
            .expect("query");
        let names: Vec<String> = tables
            .query_map([], |r| r.get(0))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("names");
        names
            .into_iter()
            .map(|name| {
                let mut info = conn
                    .prepare(&format!("PRAGMA table_info({name})"))
                    .expect("pragma");
                let columns = info
                    .query_map([], |r| r.get::<_, String>(1))
                    .expect("columns")
                    .collect::<Result<_, _>>()
                    .expect("columns");
                (name, columns)
            })
            .collect()
    }

    /// A table added to the migrations and not to the list (or the other way round), or a
    /// column that differs, fails here: the list is the one place that names them.
    #[test]
    fn the_list_names_every_migrated_table_with_its_columns() {
        let migrated = migrated();
        for (name, columns) in &migrated {
            if UNUSED.contains(&name.as_str()) {
                assert!(table(name).is_none(), "{name} is listed twice");
                continue;
            }
            let listed = table(name).unwrap_or_else(|| panic!("{name} is not in TABLES"));
            assert_eq!(&listed.columns(), columns, "the columns of {name}");
        }
        for t in TABLES {
            assert!(
                migrated.iter().any(|(name, _)| name == t.name),
                "{} is listed but not migrated",
                t.name
            );
        }
    }

    #[test]
    fn the_lists_derive_from_the_one_table_list() {
        assert_eq!(
            copied_to_d1(Owner::Directory),
            [
                "tenants",
                "platform_admins",
                "platform_admin_tenant_permissions",
                "jwt_keys",
                "usage_metrics"
            ]
        );
        assert_eq!(
            copied_to_d1(Owner::Tenant),
            [
                "api_keys",
                "tenant_users",
                "tenant_user_sessions",
                "refresh_tokens",
                "user_tokens",
                "token_blacklist",
                "tenant_data_schemas",
                "tenant_onboarding"
            ]
        );
        let names: Vec<_> = shipped().map(|t| t.name).collect();
        assert_eq!(
            names,
            [
                "api_keys",
                "tenant_users",
                "user_tokens",
                "tenant_data_schemas",
                "mail_outbox",
                "tenant_onboarding"
            ]
        );
        // Every shipped table belongs to the tenant's object.
        assert!(shipped().all(|t| t.owner == Owner::Tenant));
    }

    #[test]
    fn an_image_round_trips_by_name_and_an_unknown_table_is_refused() {
        let row = vec![
            SqlValue::Text("kid-1".into()),
            SqlValue::Text("active".into()),
            SqlValue::Integer(5),
            SqlValue::Null,
        ];
        let image = KeyringRow::from_sql(&row).expect("a whole row");
        assert_eq!(image.kid, Value::from("kid-1"));
        assert_eq!(image.params(), row);
        assert!(KeyringRow::from_sql(&row[..3]).is_none(), "a short row");
        let json = serde_json::to_value(&image).expect("serialises");
        assert_eq!(json["status"], "active", "the image names its columns");
        assert!(
            serde_json::from_value::<TableRows>(
                serde_json::json!({"table": "tenants; DROP TABLE x", "rows": []})
            )
            .is_err(),
            "a table that is not listed never decodes"
        );
    }
}
