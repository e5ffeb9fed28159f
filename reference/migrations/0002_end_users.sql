-- End-user auth (the seed's Auth.js-style tables, without the upstream defects): users per
-- tenant, sessions, rotating refresh tokens, single-use email tokens of distinct kinds, the
-- access-token blacklist, the JWT keyring (key ids only, never a secret) and the mail outbox.
-- Every secret-bearing value (refresh tokens, email tokens) is stored only as
-- HMAC-SHA256(pepper, token); passwords as argon2id PHC strings.
-- Timestamps are milliseconds since the Unix epoch.

CREATE TABLE IF NOT EXISTS tenant_users (
  id TEXT PRIMARY KEY,
  tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  email TEXT NOT NULL,
  username TEXT,
  password_hash TEXT NOT NULL,
  email_verified INTEGER NOT NULL DEFAULT 0,
  name TEXT,
  avatar TEXT,
  metadata TEXT,
  status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'deleted')),
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  last_login_at INTEGER,
  UNIQUE (tenant_id, email)
);

CREATE TABLE IF NOT EXISTS tenant_user_sessions (
  id TEXT PRIMARY KEY,
  tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  user_id TEXT NOT NULL REFERENCES tenant_users(id) ON DELETE CASCADE,
  family_id TEXT NOT NULL,
  ip_address TEXT,
  user_agent TEXT,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  last_activity_at INTEGER,
  revoked_at INTEGER
);
CREATE INDEX IF NOT EXISTS tenant_user_sessions_user_idx ON tenant_user_sessions(tenant_id, user_id);

CREATE TABLE IF NOT EXISTS refresh_tokens (
  id TEXT PRIMARY KEY,
  tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  user_id TEXT NOT NULL REFERENCES tenant_users(id) ON DELETE CASCADE,
  session_id TEXT NOT NULL REFERENCES tenant_user_sessions(id) ON DELETE CASCADE,
  family_id TEXT NOT NULL,
  token_hash TEXT NOT NULL UNIQUE,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  consumed_at INTEGER,
  revoked_at INTEGER
);
CREATE INDEX IF NOT EXISTS refresh_tokens_family_idx ON refresh_tokens(tenant_id, family_id);

CREATE TABLE IF NOT EXISTS user_tokens (
  token_hash TEXT PRIMARY KEY,
  tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  user_id TEXT NOT NULL REFERENCES tenant_users(id) ON DELETE CASCADE,
  kind TEXT NOT NULL CHECK (kind IN ('verify_email', 'reset_password')),
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  used_at INTEGER
);
CREATE INDEX IF NOT EXISTS user_tokens_user_idx ON user_tokens(tenant_id, user_id, kind);

CREATE TABLE IF NOT EXISTS token_blacklist (
  jti TEXT PRIMARY KEY,
  tenant_id TEXT NOT NULL,
  expires_at INTEGER NOT NULL,
  reason TEXT NOT NULL,
  created_at INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS jwt_keys (
  kid TEXT PRIMARY KEY,
  status TEXT NOT NULL CHECK (status IN ('current', 'previous', 'retired')),
  created_at INTEGER NOT NULL,
  retired_at INTEGER
);

CREATE TABLE IF NOT EXISTS mail_outbox (
  id TEXT PRIMARY KEY,
  tenant_id TEXT,
  to_email TEXT NOT NULL,
  subject TEXT NOT NULL,
  body_text TEXT NOT NULL,
  template TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER NOT NULL,
  sent_at INTEGER,
  last_error TEXT
);
CREATE INDEX IF NOT EXISTS mail_outbox_due_idx ON mail_outbox(sent_at, next_attempt_at);

CREATE TABLE IF NOT EXISTS tenant_onboarding (
  tenant_id TEXT PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
  admin_email TEXT NOT NULL,
  admin_user_id TEXT NOT NULL,
  template TEXT NOT NULL,
  schema_id TEXT NOT NULL,
  welcome_mail_id TEXT NOT NULL,
  created_at INTEGER NOT NULL
);
