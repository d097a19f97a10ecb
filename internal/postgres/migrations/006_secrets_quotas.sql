-- Credentials the server reads back are kept sealed (package secret): the
-- device token copy in devices.token, and the node token sent to a push
-- node in devices.node_token. Plain-text device tokens of earlier versions
-- are sealed at the next start.
ALTER TABLE devices ADD COLUMN node_token TEXT;
-- Status entries devices reported per deployment, for hawkBit's quota.
ALTER TABLE deployments ADD COLUMN device_events BIGINT NOT NULL DEFAULT 0;
UPDATE deployments SET device_events = (SELECT COUNT(*) FROM deployment_events e WHERE e.deployment_id = deployments.id AND e.source = 'device');
-- Installation-wide settings: which secret key sealed the secrets, which
-- one-time conversions ran.
CREATE TABLE server_settings (
	name  TEXT PRIMARY KEY,
	value TEXT NOT NULL
);
