-- Per-tenant settings beyond anonymous_ddi (JSON, see flotilla.TenantSettings):
-- how devices may authenticate, polling times, and the like.
ALTER TABLE tenants ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';
