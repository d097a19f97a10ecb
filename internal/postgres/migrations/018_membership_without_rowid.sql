-- Nothing to do here: SQLite's migration 018 stores rollout membership
-- WITHOUT ROWID and without the per-row foreign key that PostgreSQL's 017
-- already dropped. Kept so that both dialects number their migrations
-- alike.
SELECT 1;
