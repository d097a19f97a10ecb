-- hawkBit's targets have a display name and a description.
ALTER TABLE devices ADD COLUMN name TEXT NOT NULL DEFAULT '';
ALTER TABLE devices ADD COLUMN description TEXT NOT NULL DEFAULT '';
