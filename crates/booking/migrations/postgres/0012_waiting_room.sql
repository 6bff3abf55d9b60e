-- Waiting room for on-sales (API contract v1.1): people admitted from the concert's queue per
-- minute, and how long an admission lasts, in seconds, as Catalog provisions them. Both NULL: no
-- waiting room, as every concert before these columns; a sale has both or neither.
ALTER TABLE sales
    ADD COLUMN waiting_room_admit_per_minute integer
        CONSTRAINT waiting_room_admit_per_minute_range
            CHECK (waiting_room_admit_per_minute BETWEEN 1 AND 1000000),
    ADD COLUMN waiting_room_admission_ttl_seconds integer
        CONSTRAINT waiting_room_admission_ttl_range
            CHECK (waiting_room_admission_ttl_seconds BETWEEN 60 AND 86400),
    ADD CONSTRAINT waiting_room_complete
        CHECK ((waiting_room_admit_per_minute IS NULL) = (waiting_room_admission_ttl_seconds IS NULL));
