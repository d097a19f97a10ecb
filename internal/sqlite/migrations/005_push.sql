-- Push deliveries are claimed by one server replica at a time.
ALTER TABLE deployments ADD COLUMN push_owner TEXT;
ALTER TABLE deployments ADD COLUMN push_until INTEGER;
CREATE INDEX deployments_push ON deployments (state) WHERE delivery = 'push';
-- A rollout may name its devices instead of selecting them by labels.
ALTER TABLE rollouts ADD COLUMN device_ids TEXT NOT NULL DEFAULT '[]';
