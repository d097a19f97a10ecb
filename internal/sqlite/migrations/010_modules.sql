-- Releases made of several software modules (hawkBit's distribution sets
-- and software modules). A release is still an artifacts row (name,
-- version, type, labels); its modules, each with its files, are below.
-- Every existing artifact becomes a release of one module holding its one
-- file, the module's id equal to the artifact's, so the DDI download links
-- devices already hold (/softwaremodules/{id}/artifacts/{file}) stay valid.
CREATE TABLE modules (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	tenant      TEXT NOT NULL REFERENCES tenants(name),
	name        TEXT NOT NULL,
	version     TEXT NOT NULL,
	type        TEXT NOT NULL,
	vendor      TEXT NOT NULL DEFAULT '',
	description TEXT NOT NULL DEFAULT '',
	created_at  INTEGER NOT NULL,
	UNIQUE (tenant, name, version, type)
);
CREATE TABLE module_files (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	module_id  INTEGER NOT NULL REFERENCES modules(id) ON DELETE CASCADE,
	filename   TEXT NOT NULL,
	size       INTEGER NOT NULL,
	sha256     TEXT NOT NULL,
	sha1       TEXT NOT NULL,
	md5        TEXT NOT NULL,
	created_at INTEGER NOT NULL,
	UNIQUE (module_id, filename)
);
CREATE INDEX module_files_sha256 ON module_files (sha256);
CREATE TABLE release_modules (
	artifact_id INTEGER NOT NULL REFERENCES artifacts(id) ON DELETE CASCADE,
	position    INTEGER NOT NULL,
	module_id   INTEGER NOT NULL REFERENCES modules(id),
	PRIMARY KEY (artifact_id, position)
);
CREATE INDEX release_modules_module ON release_modules (module_id);
INSERT INTO modules (id, tenant, name, version, type, created_at)
	SELECT id, tenant, name, version, CASE WHEN type = 'oci-image' THEN 'application' ELSE 'os' END, created_at FROM artifacts;
INSERT INTO module_files (module_id, filename, size, sha256, sha1, md5, created_at)
	SELECT id, filename, size, sha256, sha1, md5, created_at FROM artifacts;
INSERT INTO release_modules (artifact_id, position, module_id) SELECT id, 0, id FROM artifacts;
