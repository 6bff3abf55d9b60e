-- Holds: a seat kept for one user for a short time while they pay (API contract, "Checkout:
-- holds and payment"). The rules that must never break, stated here as well as in code:
--   * an active hold takes a seat like a confirmed booking: per seat type,
--     remaining == capacity - confirmed bookings - active holds (triggers), and the CHECK on
--     remaining refuses a hold with no seat left;
--   * a user has at most one confirmed booking or active hold per concert (a partial unique index
--     per table, and a trigger on each table that looks at the other: the single writer runs one
--     statement at a time, so the look cannot miss a concurrent row). A hold counts as active
--     until its `expires_at`, when it is expired whether or not a statement has marked it yet;
--   * a hold is taken only while sales are open, against the time the transaction stamps on it;
--   * a hold leaves `active` once: to `released` or `completed` before `expires_at`, to `expired`
--     at or after it, and its seat comes back exactly then; an expired hold may still be
--     `completed` by a payment that arrived late, which then takes a free seat like any booking;
--   * a completed hold names the booking it became.
-- Instants are INTEGER milliseconds since the Unix epoch (UTC).

CREATE TABLE holds (
    id             BLOB PRIMARY KEY NOT NULL CHECK (length(id) = 16),
    user_id        BLOB NOT NULL CHECK (length(user_id) = 16),
    concert_id     BLOB NOT NULL,
    seat_type_id   BLOB NOT NULL,
    status         TEXT NOT NULL
                   CHECK (status IN ('active', 'completed', 'expired', 'released')),
    price_cents    INTEGER NOT NULL CHECK (price_cents >= 0),
    currency       TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    -- When it left `active`.
    ended_at       INTEGER,
    booking_id     BLOB REFERENCES bookings (id) DEFERRABLE INITIALLY DEFERRED,
    provider       TEXT NOT NULL CHECK (provider IN ('simulated', 'stripe')),
    payment_status TEXT NOT NULL
                   CHECK (payment_status IN ('requires_payment', 'succeeded', 'failed', 'refunded')),
    -- The provider's name for the payment (a PaymentIntent id), once there is one.
    payment_ref    TEXT,
    client_secret  TEXT,
    CHECK (expires_at > created_at),
    CHECK ((status = 'active') = (ended_at IS NULL)),
    CHECK ((status = 'completed') = (booking_id IS NOT NULL)),
    CHECK (status <> 'completed' OR payment_status IN ('succeeded', 'refunded')),
    FOREIGN KEY (seat_type_id, concert_id) REFERENCES seat_types (id, concert_id)
) STRICT;

CREATE UNIQUE INDEX one_active_hold_per_user_and_concert
    ON holds (user_id, concert_id) WHERE status = 'active';
-- "My holds", newest first (ids are UUIDv7).
CREATE INDEX holds_by_user ON holds (user_id, id);
-- What falls due next, per seat type and overall.
CREATE INDEX active_holds_by_seat_type ON holds (seat_type_id, expires_at) WHERE status = 'active';
CREATE INDEX active_holds_by_expiry ON holds (expires_at) WHERE status = 'active';
CREATE INDEX holds_by_concert ON holds (concert_id, status);

CREATE TRIGGER holds_take_a_seat
AFTER INSERT ON holds WHEN NEW.status = 'active'
BEGIN
    SELECT CASE
        WHEN starts_at <= NEW.created_at OR cancelled_at IS NOT NULL
            THEN RAISE(ABORT, 'booking_closed')
        WHEN sales_open_at > NEW.created_at
            THEN RAISE(ABORT, 'sales_not_open')
    END
    FROM sales
    WHERE concert_id = NEW.concert_id;
    SELECT RAISE(ABORT, 'already_booked')
    FROM bookings
    WHERE user_id = NEW.user_id AND concert_id = NEW.concert_id AND status = 'confirmed';
    UPDATE seat_types SET remaining = remaining - 1 WHERE id = NEW.seat_type_id;
END;

CREATE TRIGGER holds_only_move_forward
BEFORE UPDATE OF status ON holds
WHEN NEW.status IS NOT OLD.status AND NOT (
       (OLD.status = 'active' AND NEW.status IN ('released', 'completed')
            AND NEW.ended_at < OLD.expires_at)
    OR (OLD.status = 'active' AND NEW.status = 'expired' AND NEW.ended_at >= OLD.expires_at)
    OR (OLD.status = 'expired' AND NEW.status = 'completed'))
BEGIN
    SELECT RAISE(ABORT, 'hold_not_active');
END;

CREATE TRIGGER holds_keep_their_terms
BEFORE UPDATE OF id, user_id, concert_id, seat_type_id, price_cents, currency, created_at,
    expires_at, provider ON holds
BEGIN
    SELECT RAISE(ABORT, 'a hold only changes its status and payment');
END;

CREATE TRIGGER holds_return_the_seat
AFTER UPDATE OF status ON holds
WHEN OLD.status = 'active' AND NEW.status <> 'active'
BEGIN
    UPDATE seat_types SET remaining = remaining + 1 WHERE id = NEW.seat_type_id;
END;

CREATE TRIGGER holds_are_never_deleted
BEFORE DELETE ON holds
BEGIN
    SELECT RAISE(ABORT, 'holds end, they are never deleted');
END;

-- A confirmed booking is refused to a user who holds a seat of the same concert: one booking or
-- hold per user and concert. A hold being completed leaves `active` before its booking is
-- inserted, in the same transaction; a hold past its `expires_at` is expired already, whether or
-- not a statement has said so yet.
DROP TRIGGER bookings_take_a_seat;

CREATE TRIGGER bookings_take_a_seat
AFTER INSERT ON bookings WHEN NEW.status = 'confirmed'
BEGIN
    SELECT CASE
        WHEN starts_at <= NEW.created_at OR cancelled_at IS NOT NULL
            THEN RAISE(ABORT, 'booking_closed')
        WHEN sales_open_at > NEW.created_at
            THEN RAISE(ABORT, 'sales_not_open')
    END
    FROM sales
    WHERE concert_id = NEW.concert_id;
    SELECT RAISE(ABORT, 'already_booked')
    FROM holds
    WHERE user_id = NEW.user_id AND concert_id = NEW.concert_id AND status = 'active'
      AND expires_at > NEW.created_at;
    -- Fails the CHECK on remaining when no seat is left: the database itself refuses an oversell.
    UPDATE seat_types SET remaining = remaining - 1 WHERE id = NEW.seat_type_id;
END;

-- Money to give back, queued in the transaction that decides it (a payment that arrived for a
-- hold that had ended; a paid booking cancelled, by its holder or with its concert) and handed to
-- the payment provider by a worker until the provider confirms it. A payment is refunded at most once (its reference is unique).
CREATE TABLE refunds (
    id           BLOB PRIMARY KEY NOT NULL CHECK (length(id) = 16),
    hold_id      BLOB REFERENCES holds (id),
    booking_id   BLOB REFERENCES bookings (id),
    provider     TEXT NOT NULL CHECK (provider IN ('simulated', 'stripe')),
    payment_ref  TEXT NOT NULL UNIQUE,
    amount_cents INTEGER NOT NULL CHECK (amount_cents > 0),
    currency     TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    available_at INTEGER NOT NULL,
    refunded_at  INTEGER,
    last_error   TEXT,
    CHECK (hold_id IS NOT NULL OR booking_id IS NOT NULL)
) STRICT;

CREATE INDEX refunds_due ON refunds (available_at) WHERE refunded_at IS NULL;

-- A booking's payment, when it was paid: through which provider, the provider's name for the
-- charge, the amount, and whether it was refunded since. NULL for a free seat and for bookings
-- made before payments existed.
ALTER TABLE bookings ADD COLUMN payment_provider TEXT CHECK (payment_provider IN ('simulated', 'stripe'));
ALTER TABLE bookings ADD COLUMN payment_ref TEXT;
ALTER TABLE bookings ADD COLUMN amount_cents INTEGER CHECK (amount_cents > 0);
ALTER TABLE bookings ADD COLUMN payment_status TEXT CHECK (payment_status IN ('succeeded', 'refunded'));
