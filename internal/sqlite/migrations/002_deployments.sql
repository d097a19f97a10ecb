-- Devices ask for their attributes (configData) at first contact and after
-- every successful update, as hawkBit does.
ALTER TABLE devices ADD COLUMN attrs_requested INTEGER NOT NULL DEFAULT 1;

CREATE TABLE deployments (
	id               INTEGER PRIMARY KEY AUTOINCREMENT,
	tenant           TEXT NOT NULL,
	device_id        TEXT NOT NULL,
	artifact_id      INTEGER REFERENCES artifacts(id) ON DELETE SET NULL,
	artifact_name    TEXT NOT NULL,
	artifact_version TEXT NOT NULL,
	rollout_id       TEXT,
	wave             INTEGER NOT NULL DEFAULT 0,
	attempt          INTEGER NOT NULL DEFAULT 1,
	type             TEXT NOT NULL,
	force_at         INTEGER,
	maint_window     TEXT,
	delivery         TEXT NOT NULL DEFAULT 'pull',
	update_id        TEXT,
	state            TEXT NOT NULL,
	prev_state       TEXT NOT NULL DEFAULT '',
	progress_cnt     INTEGER NOT NULL DEFAULT 0,
	progress_of      INTEGER NOT NULL DEFAULT 0,
	healthy          INTEGER,
	message          TEXT NOT NULL DEFAULT '',
	created_at       INTEGER NOT NULL,
	updated_at       INTEGER NOT NULL,
	started_at       INTEGER,
	retrieved_at     INTEGER,
	finished_at      INTEGER,
	FOREIGN KEY (tenant, device_id) REFERENCES devices (tenant, id) ON DELETE CASCADE
);
CREATE INDEX deployments_device ON deployments (tenant, device_id, id);
CREATE INDEX deployments_open ON deployments (tenant, device_id)
	WHERE state IN ('scheduled', 'pending', 'downloading', 'downloaded', 'installing', 'cancel_requested');
CREATE INDEX deployments_artifact ON deployments (artifact_id);
CREATE UNIQUE INDEX deployments_update_id ON deployments (tenant, device_id, update_id) WHERE update_id IS NOT NULL;

CREATE TABLE deployment_events (
	id            INTEGER PRIMARY KEY AUTOINCREMENT,
	deployment_id INTEGER NOT NULL REFERENCES deployments(id) ON DELETE CASCADE,
	at            INTEGER NOT NULL,
	state         TEXT NOT NULL,
	execution     TEXT NOT NULL DEFAULT '',
	finished      TEXT NOT NULL DEFAULT '',
	cnt           INTEGER NOT NULL DEFAULT 0,
	of_total      INTEGER NOT NULL DEFAULT 0,
	code          INTEGER,
	details       TEXT NOT NULL DEFAULT '[]',
	source        TEXT NOT NULL
);
CREATE INDEX deployment_events_deployment ON deployment_events (deployment_id, id);
