CREATE INDEX devices_last_seen ON devices (last_seen_at);
