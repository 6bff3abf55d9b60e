-- The Booking service's store: seat inventory, bookings, the email outbox and idempotency records.
--
-- The rules that must never break are enforced here as well as in code:
--   * remaining is always between 0 and capacity (CHECK);
--   * remaining == capacity - confirmed bookings: triggers move the counter whenever a booking is
--     confirmed or cancelled, so no code path can change one without the other;
--   * a user holds at most one confirmed booking per concert (partial unique index);
--   * a seat type belongs to its concert (composite foreign key);
--   * no booking is made or cancelled once its concert has started (triggers, against the time
--     the transaction runs at);
--   * a booking goes confirmed -> cancelled once, and never back.
-- Instants are INTEGER milliseconds since the Unix epoch (UTC).

CREATE TABLE sales (
    concert_id   BLOB PRIMARY KEY NOT NULL CHECK (length(concert_id) = 16),
    name         TEXT NOT NULL,
    venue        TEXT NOT NULL,
    starts_at    INTEGER NOT NULL,
    cancelled_at INTEGER
) STRICT;

CREATE TABLE seat_types (
    id          BLOB PRIMARY KEY NOT NULL CHECK (length(id) = 16),
    concert_id  BLOB NOT NULL REFERENCES sales (concert_id),
    name        TEXT NOT NULL,
    price_cents INTEGER NOT NULL CHECK (price_cents >= 0),
    currency    TEXT NOT NULL CHECK (length(currency) = 3),
    capacity    INTEGER NOT NULL CHECK (capacity BETWEEN 1 AND 1000000),
    remaining   INTEGER NOT NULL,
    CONSTRAINT remaining_within_capacity CHECK (remaining BETWEEN 0 AND capacity),
    UNIQUE (id, concert_id)
) STRICT;

CREATE INDEX seat_types_by_concert ON seat_types (concert_id);

CREATE TABLE bookings (
    id           BLOB PRIMARY KEY NOT NULL CHECK (length(id) = 16),
    user_id      BLOB NOT NULL CHECK (length(user_id) = 16),
    concert_id   BLOB NOT NULL,
    seat_type_id BLOB NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('confirmed', 'cancelled')),
    price_cents  INTEGER NOT NULL CHECK (price_cents >= 0),
    currency     TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    cancelled_at INTEGER,
    CHECK ((status = 'cancelled') = (cancelled_at IS NOT NULL)),
    FOREIGN KEY (seat_type_id, concert_id) REFERENCES seat_types (id, concert_id)
) STRICT;

-- Exactly one confirmed booking per user and concert, whatever the code does.
CREATE UNIQUE INDEX one_confirmed_booking_per_user_and_concert
    ON bookings (user_id, concert_id) WHERE status = 'confirmed';
-- "My bookings", newest first (ids are UUIDv7, so they sort by time).
CREATE INDEX bookings_by_user ON bookings (user_id, id);
CREATE INDEX bookings_by_concert ON bookings (concert_id, status);

CREATE TRIGGER bookings_take_a_seat
AFTER INSERT ON bookings WHEN NEW.status = 'confirmed'
BEGIN
    SELECT RAISE(ABORT, 'booking_closed')
    FROM sales
    WHERE concert_id = NEW.concert_id
      AND (starts_at <= NEW.created_at OR cancelled_at IS NOT NULL);
    -- Fails the CHECK on remaining when no seat is left: the database itself refuses an oversell.
    UPDATE seat_types SET remaining = remaining - 1 WHERE id = NEW.seat_type_id;
END;

CREATE TRIGGER bookings_only_move_forward
BEFORE UPDATE OF status ON bookings
WHEN NOT (OLD.status = 'confirmed' AND NEW.status = 'cancelled')
BEGIN
    SELECT RAISE(ABORT, 'already_cancelled');
END;

CREATE TRIGGER bookings_cancel_before_start
BEFORE UPDATE OF status ON bookings
WHEN OLD.status = 'confirmed' AND NEW.status = 'cancelled'
BEGIN
    SELECT RAISE(ABORT, 'booking_closed')
    FROM sales
    WHERE concert_id = NEW.concert_id AND starts_at <= NEW.cancelled_at;
END;

CREATE TRIGGER bookings_return_the_seat
AFTER UPDATE OF status ON bookings
WHEN OLD.status = 'confirmed' AND NEW.status = 'cancelled'
BEGIN
    UPDATE seat_types SET remaining = remaining + 1 WHERE id = NEW.seat_type_id;
END;

CREATE TRIGGER bookings_are_never_deleted
BEFORE DELETE ON bookings
BEGIN
    SELECT RAISE(ABORT, 'bookings are cancelled, never deleted');
END;

-- Emails queued in the same transaction as the booking change they announce (transactional
-- outbox). A worker leases due messages by moving available_at into the future, and marks them
-- sent once the mail transport has them.
CREATE TABLE outbox (
    message_id   BLOB PRIMARY KEY NOT NULL CHECK (length(message_id) = 16),
    kind         TEXT NOT NULL CHECK (kind IN ('booking_confirmed', 'booking_cancelled')),
    payload      TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    available_at INTEGER NOT NULL,
    sent_at      INTEGER,
    last_error   TEXT
) STRICT;

CREATE INDEX outbox_due ON outbox (available_at) WHERE sent_at IS NULL;

-- The saved answer to a POST /bookings sent with an Idempotency-Key, committed with the booking.
CREATE TABLE idempotency_keys (
    user_id         BLOB NOT NULL,
    idempotency_key TEXT NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    request_hash    BLOB NOT NULL,
    response_status INTEGER NOT NULL,
    response_body   TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (user_id, idempotency_key)
) STRICT, WITHOUT ROWID;
