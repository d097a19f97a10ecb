-- Signed releases (TUF): each tenant's online keys (snapshot, timestamp;
-- the private half sealed like other server secrets) and every version of
-- its signed metadata. Root and targets arrive signed by the operator's
-- offline keys; snapshot and timestamp are signed here. The primary keys
-- make concurrent signers (replicas) agree: one version, one writer.
CREATE TABLE tuf_keys (
	tenant     TEXT NOT NULL REFERENCES tenants(name),
	role       TEXT NOT NULL,
	key_id     TEXT NOT NULL,
	public     TEXT NOT NULL,
	private    TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	PRIMARY KEY (tenant, role)
);
CREATE TABLE tuf_metadata (
	tenant     TEXT NOT NULL REFERENCES tenants(name),
	role       TEXT NOT NULL,
	version    BIGINT NOT NULL,
	body       TEXT NOT NULL,
	expires_at BIGINT NOT NULL,
	created_at BIGINT NOT NULL,
	PRIMARY KEY (tenant, role, version)
);
