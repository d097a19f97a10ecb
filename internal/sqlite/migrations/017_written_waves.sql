-- A large rollout writes its first wave's deployments when it starts and
-- the others in the background, each before its wave starts. A wave not
-- yet written has written = 0; its members are in rollout_devices.
ALTER TABLE rollout_waves ADD COLUMN written INTEGER NOT NULL DEFAULT 1;
-- The last deployment id when the rollout started: a member whose device
-- got a newer deployment elsewhere before its wave was written was
-- superseded, as it would have been had its deployment existed.
ALTER TABLE rollouts ADD COLUMN written_after BIGINT NOT NULL DEFAULT 0;
-- Deployments made outside rollouts, newest last: what supersedes the
-- members of a wave written after its rollout started.
CREATE INDEX deployments_direct ON deployments (tenant, id) WHERE rollout_id IS NULL;
