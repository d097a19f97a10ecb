-- last_seen_at is the row rewritten most often (about once a minute per
-- polling device): one index under it, not two. The offline sweep reads
-- each tenant's range through the device list's (tenant, last seen, id).
DROP INDEX devices_last_seen;
