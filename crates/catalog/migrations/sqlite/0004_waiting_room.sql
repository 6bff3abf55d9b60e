-- Waiting room for on-sales (API contract v1.1): people admitted from the queue per minute, and
-- how long an admission lasts, in seconds. Both NULL: no waiting room. The second column's checks
-- see the first, so that a concert has either both or neither (SQLite checks a column constraint
-- against the whole row).
ALTER TABLE concerts ADD COLUMN waiting_room_admit_per_minute INTEGER
    CONSTRAINT waiting_room_admit_per_minute_range
        CHECK (waiting_room_admit_per_minute BETWEEN 1 AND 1000000);
ALTER TABLE concerts ADD COLUMN waiting_room_admission_ttl_seconds INTEGER
    CONSTRAINT waiting_room_admission_ttl_range
        CHECK (waiting_room_admission_ttl_seconds BETWEEN 60 AND 86400)
    CONSTRAINT waiting_room_complete
        CHECK ((waiting_room_admit_per_minute IS NULL) = (waiting_room_admission_ttl_seconds IS NULL));
