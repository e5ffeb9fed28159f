-- Usage metrics by hour, day and endpoint, and platform admins limited to some tenants.
--
-- usage_metrics: one row per (tenant, metric type, endpoint, hour). `period_start` is the
-- start of the UTC hour, `period_end` one hour later, `day` the UTC date (YYYY-MM-DD) the hour
-- belongs to. `count` is every request the tenant's object answered on that endpoint in that
-- hour, rate-limited ones included; `rate_limited` is how many of them were refused with 429.
-- Rows are written in batches by each tenant's TenantState object (its alarm, every few
-- seconds, and on demand before an admin reads metrics), never once per request.
ALTER TABLE usage_metrics ADD COLUMN day TEXT;
ALTER TABLE usage_metrics ADD COLUMN rate_limited INTEGER NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX IF NOT EXISTS usage_metrics_bucket_idx
  ON usage_metrics(tenant_id, metric_type, endpoint, period_start);
CREATE INDEX IF NOT EXISTS usage_metrics_period_idx ON usage_metrics(period_start);

-- platform_admins: `tenant_scope` 'all' (every tenant) or 'listed' (only the tenants in
-- platform_admin_tenant_permissions); an explicit flag, so losing permission rows never widens
-- an admin's reach. `revoked_at` marks a revoked admin key (its status becomes 'suspended').
ALTER TABLE platform_admins ADD COLUMN tenant_scope TEXT NOT NULL DEFAULT 'all'
  CHECK (tenant_scope IN ('all', 'listed'));
ALTER TABLE platform_admins ADD COLUMN revoked_at INTEGER;
