-- The device list pages by last sighting and by version, newest or oldest
-- first, without sorting the fleet.
CREATE INDEX devices_tenant_seen ON devices (tenant, COALESCE(last_seen_at, 0), id);
CREATE INDEX devices_tenant_version ON devices (tenant, version, id);
