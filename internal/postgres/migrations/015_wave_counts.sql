-- A rollout's wave counts are read from indexes alone: current attempts by
-- wave and state (retried in the index, so no row is looked up), devices
-- told but not yet polled, and succeeded devices without a good health
-- report. The partial indexes hold only the rows they count.
DROP INDEX deployments_rollout_state;
CREATE INDEX deployments_rollout_state ON deployments (rollout_id, retried, wave, state) WHERE rollout_id IS NOT NULL;
CREATE INDEX deployments_rollout_waiting ON deployments (rollout_id, retried, wave, state, retrieved_at)
	WHERE state = 'pending' AND retrieved_at IS NULL;
CREATE INDEX deployments_rollout_unhealthy ON deployments (rollout_id, retried, wave, state, healthy)
	WHERE state = 'succeeded' AND (healthy IS NULL OR healthy = 0);
