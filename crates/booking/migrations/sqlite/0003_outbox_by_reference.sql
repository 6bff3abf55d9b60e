-- An email about a booking is queued by reference: the outbox row names the booking, and what the
-- email says (concert, venue, start, seat type, price, when) is read from the store when a worker
-- claims it. A rendered payload of a few hundred bytes per booking was about a fifth of the
-- writer's work in an on-sale; a reference is 16 bytes. Rows queued before this migration keep
-- their payload and are sent as they were queued.
--
-- SQLite cannot relax NOT NULL in place, so the table is rebuilt (nothing references it).
CREATE TABLE outbox_next (
    message_id   BLOB PRIMARY KEY NOT NULL CHECK (length(message_id) = 16),
    kind         TEXT NOT NULL CHECK (kind IN ('booking_confirmed', 'booking_cancelled')),
    -- Bookings are never deleted (see bookings_are_never_deleted), so the reference stays good.
    booking_id   BLOB REFERENCES bookings (id),
    payload      TEXT,
    created_at   INTEGER NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    available_at INTEGER NOT NULL,
    sent_at      INTEGER,
    last_error   TEXT,
    leased       INTEGER NOT NULL DEFAULT 0 CHECK (leased IN (0, 1)),
    CONSTRAINT booking_or_payload CHECK ((booking_id IS NULL) <> (payload IS NULL))
) STRICT;

INSERT INTO outbox_next
    (message_id, kind, payload, created_at, attempts, available_at, sent_at, last_error, leased)
SELECT message_id, kind, payload, created_at, attempts, available_at, sent_at, last_error, leased
FROM outbox;

DROP TABLE outbox;
ALTER TABLE outbox_next RENAME TO outbox;
CREATE INDEX outbox_due ON outbox (available_at) WHERE sent_at IS NULL;
