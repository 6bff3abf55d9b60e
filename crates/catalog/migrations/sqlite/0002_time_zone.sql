-- A concert takes place in a time zone: the venue's clocks, in which emails give its start.
-- Concerts created before zones existed are in UTC, as their emails said.
ALTER TABLE concerts ADD COLUMN time_zone TEXT NOT NULL DEFAULT 'UTC'
    CHECK (length(time_zone) BETWEEN 1 AND 64);

-- Booking learns a concert's artist and zone when the concert is pushed to it: push every concert
-- still on sale once more (the reconciler pushes what has `synced_version < version`).
UPDATE concerts SET version = version + 1
 WHERE cancelled_at IS NULL AND starts_at > CAST(unixepoch('subsec') * 1000 AS INTEGER);
