ALTER TABLE deployments ADD COLUMN retried INTEGER NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX deployments_rollout_device ON deployments (rollout_id, device_id, attempt) WHERE rollout_id IS NOT NULL;
CREATE INDEX deployments_rollout_state ON deployments (rollout_id, wave, state) WHERE rollout_id IS NOT NULL;

CREATE TABLE policies (
	tenant     TEXT NOT NULL REFERENCES tenants(name),
	name       TEXT NOT NULL,
	spec       TEXT NOT NULL,
	created_at INTEGER NOT NULL,
	updated_at INTEGER NOT NULL,
	PRIMARY KEY (tenant, name)
);

CREATE TABLE rollouts (
	id               TEXT PRIMARY KEY,
	tenant           TEXT NOT NULL REFERENCES tenants(name),
	name             TEXT NOT NULL,
	artifact_id      INTEGER REFERENCES artifacts(id) ON DELETE SET NULL,
	artifact_name    TEXT NOT NULL,
	artifact_version TEXT NOT NULL,
	selector         TEXT NOT NULL DEFAULT '',
	type             TEXT NOT NULL,
	force_at         INTEGER,
	maint_window     TEXT,
	policy           TEXT NOT NULL,
	policy_name      TEXT NOT NULL DEFAULT '',
	delivery         TEXT NOT NULL DEFAULT 'pull',
	channel          TEXT NOT NULL DEFAULT '',
	wave_count       INTEGER NOT NULL DEFAULT 1,
	groups_spec      TEXT NOT NULL DEFAULT '[]',
	status           TEXT NOT NULL,
	reason           TEXT NOT NULL DEFAULT '',
	start_when_ready INTEGER NOT NULL DEFAULT 0,
	total            INTEGER NOT NULL DEFAULT 0,
	created_at       INTEGER NOT NULL,
	updated_at       INTEGER NOT NULL,
	started_at       INTEGER,
	finished_at      INTEGER,
	lease_owner      TEXT,
	lease_until      INTEGER,
	version          INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX rollouts_tenant ON rollouts (tenant, created_at);
CREATE INDEX rollouts_active ON rollouts (status) WHERE status IN ('creating', 'running', 'paused');

CREATE TABLE rollout_waves (
	rollout_id  TEXT NOT NULL REFERENCES rollouts(id) ON DELETE CASCADE,
	idx         INTEGER NOT NULL,
	name        TEXT NOT NULL,
	size        INTEGER NOT NULL,
	status      TEXT NOT NULL,
	started_at  INTEGER,
	success_at  INTEGER,
	finished_at INTEGER,
	error_ack   INTEGER NOT NULL DEFAULT 0,
	reason      TEXT NOT NULL DEFAULT '',
	PRIMARY KEY (rollout_id, idx)
);

CREATE TABLE rollout_devices (
	rollout_id TEXT NOT NULL REFERENCES rollouts(id) ON DELETE CASCADE,
	device_id  TEXT NOT NULL,
	wave       INTEGER NOT NULL,
	PRIMARY KEY (rollout_id, device_id)
);

CREATE TABLE rollout_runs (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	rollout_id TEXT NOT NULL REFERENCES rollouts(id) ON DELETE CASCADE,
	wave       INTEGER NOT NULL,
	started_at INTEGER NOT NULL,
	ended_at   INTEGER,
	counts     TEXT NOT NULL DEFAULT '{}',
	reason     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX rollout_runs_rollout ON rollout_runs (rollout_id, id);

CREATE TABLE channels (
	tenant           TEXT NOT NULL REFERENCES tenants(name),
	name             TEXT NOT NULL,
	artifact_id      INTEGER REFERENCES artifacts(id) ON DELETE SET NULL,
	artifact_name    TEXT NOT NULL DEFAULT '',
	artifact_version TEXT NOT NULL DEFAULT '',
	selector         TEXT NOT NULL DEFAULT '',
	policy           TEXT NOT NULL DEFAULT '{}',
	policy_name      TEXT NOT NULL DEFAULT '',
	waves            INTEGER NOT NULL DEFAULT 1,
	rollout_id       TEXT NOT NULL DEFAULT '',
	created_at       INTEGER NOT NULL,
	updated_at       INTEGER NOT NULL,
	PRIMARY KEY (tenant, name)
);
