-- The seed's nine tables, in the SQLite dialect that D1 speaks. Applied in order by the native
-- host at start (tracked in d1_migrations, the table wrangler uses), and by
-- `wrangler d1 migrations apply` for a Worker deployment.
-- Timestamps are milliseconds since the Unix epoch. Enumerations are CHECKed, not just typed.

CREATE TABLE IF NOT EXISTS tenants (
  id TEXT PRIMARY KEY,
  slug TEXT NOT NULL UNIQUE,
  name TEXT NOT NULL,
  parent_id TEXT REFERENCES tenants(id),
  depth INTEGER NOT NULL DEFAULT 0,
  plan TEXT NOT NULL DEFAULT 'free' CHECK (plan IN ('free', 'pro', 'enterprise')),
  status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'deleted')),
  public_key TEXT,
  secret_key TEXT,
  branding TEXT,
  limits TEXT,
  schema_version TEXT NOT NULL DEFAULT '1.0.0',
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  deleted_at INTEGER
);
CREATE INDEX IF NOT EXISTS tenants_status_idx ON tenants(status);
CREATE INDEX IF NOT EXISTS tenants_plan_idx ON tenants(plan);
CREATE INDEX IF NOT EXISTS tenants_parent_idx ON tenants(parent_id);

CREATE TABLE IF NOT EXISTS api_keys (
  id TEXT PRIMARY KEY,
  tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  key_prefix TEXT NOT NULL,
  key_hash TEXT NOT NULL UNIQUE,
  name TEXT NOT NULL,
  type TEXT NOT NULL CHECK (type IN ('publishable', 'secret', 'restricted')),
  environment TEXT NOT NULL CHECK (environment IN ('live', 'test')),
  permissions TEXT NOT NULL DEFAULT '[]',
  created_at INTEGER NOT NULL,
  last_used_at INTEGER,
  revoked_at INTEGER,
  expires_at INTEGER,
  replaced_by TEXT
);
CREATE INDEX IF NOT EXISTS api_keys_tenant_idx ON api_keys(tenant_id, created_at);
CREATE INDEX IF NOT EXISTS api_keys_revoked_idx ON api_keys(revoked_at);

CREATE TABLE IF NOT EXISTS platform_admins (
  id TEXT PRIMARY KEY,
  email TEXT NOT NULL UNIQUE,
  name TEXT,
  role TEXT NOT NULL DEFAULT 'readonly' CHECK (role IN ('superadmin', 'support', 'billing', 'readonly')),
  password_hash TEXT,
  key_hash TEXT UNIQUE,
  status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
  created_at INTEGER NOT NULL,
  last_login_at INTEGER
);

CREATE TABLE IF NOT EXISTS platform_admin_tenant_permissions (
  admin_id TEXT NOT NULL REFERENCES platform_admins(id) ON DELETE CASCADE,
  tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  permission TEXT NOT NULL,
  granted_at INTEGER NOT NULL,
  UNIQUE (admin_id, tenant_id)
);

CREATE TABLE IF NOT EXISTS tenant_data_schemas (
  id TEXT PRIMARY KEY,
  tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  version TEXT NOT NULL,
  is_active INTEGER NOT NULL DEFAULT 0,
  yaml_content TEXT,
  yaml_hash TEXT,
  compiled_drizzle_types TEXT,
  compiled_validators TEXT,
  compilation_status TEXT NOT NULL DEFAULT 'pending' CHECK (compilation_status IN ('pending', 'compiling', 'success', 'failed')),
  compilation_error TEXT,
  size_kb REAL,
  entity_count INTEGER,
  relationship_count INTEGER,
  published_at INTEGER,
  activated_at INTEGER,
  UNIQUE (tenant_id, version)
);

CREATE TABLE IF NOT EXISTS usage_metrics (
  id TEXT PRIMARY KEY,
  tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  metric_type TEXT NOT NULL CHECK (metric_type IN ('auth_requests', 'authz_queries', 'api_calls', 'storage_mb', 'schema_updates')),
  endpoint TEXT,
  count INTEGER NOT NULL DEFAULT 0,
  period_start INTEGER NOT NULL,
  period_end INTEGER NOT NULL,
  recorded_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS usage_metrics_tenant_idx ON usage_metrics(tenant_id, period_start);

CREATE TABLE IF NOT EXISTS accounts (
  id TEXT PRIMARY KEY,
  user_id TEXT NOT NULL REFERENCES platform_admins(id) ON DELETE CASCADE,
  type TEXT NOT NULL,
  provider TEXT NOT NULL,
  provider_account_id TEXT NOT NULL,
  access_token TEXT,
  refresh_token TEXT,
  expires_at INTEGER,
  scope TEXT,
  created_at INTEGER NOT NULL,
  UNIQUE (user_id, provider, provider_account_id)
);

CREATE TABLE IF NOT EXISTS sessions (
  id TEXT PRIMARY KEY,
  session_token TEXT NOT NULL UNIQUE,
  user_id TEXT NOT NULL REFERENCES platform_admins(id) ON DELETE CASCADE,
  expires_at INTEGER NOT NULL,
  created_at INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS verification_tokens (
  identifier TEXT NOT NULL,
  token TEXT NOT NULL,
  expires_at INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  UNIQUE (identifier, token)
);
