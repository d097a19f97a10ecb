-- The distinct label sets of each tenant's devices, and each device's set.
-- A selector is decided once per set (in Go, so that both databases agree
-- on what it means), and the devices of the matching sets are found through
-- devices_tenant_label_set instead of by reading the whole fleet. The store
-- adds a set before the first device that carries it; sets are never
-- removed (one that no device carries any more matches nothing).
CREATE TABLE label_sets (
	id     INTEGER PRIMARY KEY AUTOINCREMENT,
	tenant TEXT NOT NULL,
	labels TEXT NOT NULL,
	UNIQUE (tenant, labels)
);
INSERT INTO label_sets (tenant, labels) SELECT DISTINCT tenant, labels FROM devices ORDER BY tenant, labels;
ALTER TABLE devices ADD COLUMN label_set INTEGER NOT NULL DEFAULT 0;
UPDATE devices SET label_set = (SELECT s.id FROM label_sets s WHERE s.tenant = devices.tenant AND s.labels = devices.labels);
CREATE INDEX devices_tenant_label_set ON devices (tenant, label_set, id);
