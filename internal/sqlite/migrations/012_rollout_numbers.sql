-- hawkBit's Management API numbers rollouts (Flotilla's ids are strings)
-- and keeps their target filter query and description. A rollout gets a
-- number when the hawkBit API first shows it.
CREATE TABLE rollout_numbers (
	num         INTEGER PRIMARY KEY AUTOINCREMENT,
	rollout_id  TEXT NOT NULL UNIQUE REFERENCES rollouts(id) ON DELETE CASCADE,
	filter      TEXT NOT NULL DEFAULT '',
	description TEXT NOT NULL DEFAULT ''
);
