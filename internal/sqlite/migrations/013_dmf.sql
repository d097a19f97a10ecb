-- hawkBit's Device Management Federation API (AMQP). A device registered
-- over DMF has the exchange to answer it on, and the link (AMQP
-- connection) it came in on.
ALTER TABLE devices ADD COLUMN dmf_exchange TEXT;
ALTER TABLE devices ADD COLUMN dmf_link TEXT NOT NULL DEFAULT '';
CREATE INDEX devices_dmf ON devices (tenant, id) WHERE dmf_exchange IS NOT NULL;
-- The outbox: a message owed to a DMF device, written by the same
-- transaction as the change that calls for it (these triggers), published
-- after the commit and deleted once the broker confirmed it.
CREATE TABLE dmf_outbox (
	id            INTEGER PRIMARY KEY AUTOINCREMENT,
	tenant        TEXT NOT NULL,
	device_id     TEXT NOT NULL,
	deployment_id INTEGER,
	state         TEXT NOT NULL,
	exchange      TEXT NOT NULL DEFAULT '',
	link          TEXT NOT NULL DEFAULT '',
	created_at    INTEGER NOT NULL,
	claimed_by    TEXT,
	claimed_until INTEGER
);
-- What was last sent for an open deployment (the window sweep sends again
-- only when the answer changed).
CREATE TABLE dmf_sent (
	deployment_id INTEGER PRIMARY KEY,
	topic         TEXT NOT NULL,
	sent_at       INTEGER NOT NULL
);
CREATE TRIGGER dmf_outbox_created AFTER INSERT ON deployments
WHEN NEW.state IN ('pending', 'cancel_requested') AND NEW.delivery = 'pull'
	AND EXISTS (SELECT 1 FROM devices WHERE tenant = NEW.tenant AND id = NEW.device_id AND dmf_exchange IS NOT NULL)
BEGIN
	INSERT INTO dmf_outbox (tenant, device_id, deployment_id, state, created_at) VALUES (NEW.tenant, NEW.device_id, NEW.id, NEW.state, NEW.updated_at);
END;
CREATE TRIGGER dmf_outbox_changed AFTER UPDATE OF state ON deployments
WHEN NEW.state <> OLD.state AND NEW.state IN ('pending', 'cancel_requested') AND NEW.delivery = 'pull'
	AND EXISTS (SELECT 1 FROM devices WHERE tenant = NEW.tenant AND id = NEW.device_id AND dmf_exchange IS NOT NULL)
BEGIN
	INSERT INTO dmf_outbox (tenant, device_id, deployment_id, state, created_at) VALUES (NEW.tenant, NEW.device_id, NEW.id, NEW.state, NEW.updated_at);
END;
CREATE TRIGGER dmf_outbox_deleted AFTER DELETE ON devices
WHEN OLD.dmf_exchange IS NOT NULL
BEGIN
	INSERT INTO dmf_outbox (tenant, device_id, deployment_id, state, exchange, link, created_at) VALUES (OLD.tenant, OLD.id, NULL, 'deleted', OLD.dmf_exchange, OLD.dmf_link, OLD.updated_at);
END;
