CREATE TABLE tenants (
	name          TEXT PRIMARY KEY,
	anonymous_ddi INTEGER NOT NULL DEFAULT 0,
	created_at    INTEGER NOT NULL
);

CREATE TABLE tokens (
	id         TEXT PRIMARY KEY,
	tenant     TEXT NOT NULL REFERENCES tenants(name),
	name       TEXT NOT NULL DEFAULT '',
	hash       TEXT NOT NULL UNIQUE,
	scopes     TEXT NOT NULL,
	created_at INTEGER NOT NULL,
	expires_at INTEGER,
	revoked_at INTEGER
);
CREATE INDEX tokens_tenant ON tokens (tenant, created_at);

CREATE TABLE artifacts (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	tenant      TEXT NOT NULL REFERENCES tenants(name),
	name        TEXT NOT NULL,
	version     TEXT NOT NULL,
	filename    TEXT NOT NULL,
	type        TEXT NOT NULL,
	labels      TEXT NOT NULL DEFAULT '{}',
	description TEXT NOT NULL DEFAULT '',
	size        INTEGER NOT NULL,
	sha256      TEXT NOT NULL,
	sha1        TEXT NOT NULL,
	md5         TEXT NOT NULL,
	created_at  INTEGER NOT NULL,
	UNIQUE (tenant, name, version)
);
CREATE INDEX artifacts_sha256 ON artifacts (sha256);

CREATE TABLE devices (
	tenant       TEXT NOT NULL REFERENCES tenants(name),
	id           TEXT NOT NULL,
	labels       TEXT NOT NULL DEFAULT '{}',
	attributes   TEXT NOT NULL DEFAULT '{}',
	version      TEXT NOT NULL DEFAULT '',
	address      TEXT NOT NULL DEFAULT '',
	token_hash   TEXT,
	token        TEXT,
	last_seen_at INTEGER,
	created_at   INTEGER NOT NULL,
	updated_at   INTEGER NOT NULL,
	PRIMARY KEY (tenant, id)
);
CREATE UNIQUE INDEX devices_token_hash ON devices (token_hash) WHERE token_hash IS NOT NULL;
