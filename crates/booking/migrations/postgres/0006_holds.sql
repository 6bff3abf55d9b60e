-- Holds: a seat kept for one user for a short time while they pay (API contract, "Checkout:
-- holds and payment"). The rules that must never break, stated here as well as in code:
--   * an active hold takes a seat like a confirmed booking: per seat type,
--     remaining == capacity - confirmed bookings - active holds (triggers), and the CHECK on
--     remaining refuses a hold with no seat left;
--   * a user has at most one confirmed booking or active hold per concert: a partial unique index
--     per table, and a trigger on each table that looks at the other. The look is exact because
--     every transaction that writes holds locks its concert's sale row FOR NO KEY UPDATE, and
--     every booking batch locks the sale rows it sells FOR SHARE: the two never overlap, so each
--     trigger sees what the other committed. A hold counts as active until its `expires_at`, when
--     it is expired whether or not a statement has marked it yet;
--   * a hold is taken only while sales are open, against the time the transaction stamps on it;
--   * a hold leaves `active` once: to `released` or `completed` before `expires_at`, to `expired`
--     at or after it, and its seat comes back exactly then; an expired hold may still be
--     `completed` by a payment that arrived late, which then takes a free seat like any booking;
--   * a completed hold names the booking it became.

CREATE TABLE holds (
    id             uuid PRIMARY KEY,
    user_id        uuid NOT NULL,
    concert_id     uuid NOT NULL,
    seat_type_id   uuid NOT NULL,
    status         text NOT NULL
                   CHECK (status IN ('active', 'completed', 'expired', 'released')),
    price_cents    bigint NOT NULL CHECK (price_cents >= 0),
    currency       text NOT NULL,
    created_at     timestamptz NOT NULL,
    expires_at     timestamptz NOT NULL,
    ended_at       timestamptz,
    booking_id     uuid REFERENCES bookings (id) DEFERRABLE INITIALLY DEFERRED,
    provider       text NOT NULL CHECK (provider IN ('simulated', 'stripe')),
    payment_status text NOT NULL
                   CHECK (payment_status IN ('requires_payment', 'succeeded', 'failed', 'refunded')),
    payment_ref    text,
    client_secret  text,
    CHECK (expires_at > created_at),
    CHECK ((status = 'active') = (ended_at IS NULL)),
    CHECK ((status = 'completed') = (booking_id IS NOT NULL)),
    CHECK (status <> 'completed' OR payment_status IN ('succeeded', 'refunded')),
    FOREIGN KEY (seat_type_id, concert_id) REFERENCES seat_types (id, concert_id)
);

CREATE UNIQUE INDEX one_active_hold_per_user_and_concert
    ON holds (user_id, concert_id) WHERE status = 'active';
CREATE INDEX holds_by_user ON holds (user_id, id);
CREATE INDEX active_holds_by_seat_type ON holds (seat_type_id, expires_at) WHERE status = 'active';
CREATE INDEX active_holds_by_expiry ON holds (expires_at) WHERE status = 'active';
CREATE INDEX holds_by_concert ON holds (concert_id, status);

CREATE FUNCTION holds_take_a_seat() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM sales WHERE concert_id = NEW.concert_id
               AND (starts_at <= NEW.created_at OR cancelled_at IS NOT NULL)) THEN
        RAISE EXCEPTION 'booking_closed' USING ERRCODE = 'check_violation';
    END IF;
    IF EXISTS (SELECT 1 FROM sales WHERE concert_id = NEW.concert_id
               AND sales_open_at > NEW.created_at) THEN
        RAISE EXCEPTION 'sales_not_open' USING ERRCODE = 'check_violation';
    END IF;
    IF EXISTS (SELECT 1 FROM bookings WHERE user_id = NEW.user_id
               AND concert_id = NEW.concert_id AND status = 'confirmed') THEN
        RAISE EXCEPTION 'already_booked' USING ERRCODE = 'check_violation';
    END IF;
    UPDATE seat_types SET remaining = remaining - 1 WHERE id = NEW.seat_type_id;
    RETURN NULL;
END $$;

CREATE TRIGGER holds_take_a_seat
AFTER INSERT ON holds
FOR EACH ROW WHEN (NEW.status = 'active') EXECUTE FUNCTION holds_take_a_seat();

CREATE FUNCTION holds_only_move_forward() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status IS DISTINCT FROM OLD.status AND NOT (
           (OLD.status = 'active' AND NEW.status IN ('released', 'completed')
                AND NEW.ended_at < OLD.expires_at)
        OR (OLD.status = 'active' AND NEW.status = 'expired' AND NEW.ended_at >= OLD.expires_at)
        OR (OLD.status = 'expired' AND NEW.status = 'completed')) THEN
        RAISE EXCEPTION 'hold_not_active' USING ERRCODE = 'check_violation';
    END IF;
    IF (NEW.id, NEW.user_id, NEW.concert_id, NEW.seat_type_id, NEW.price_cents, NEW.currency,
        NEW.created_at, NEW.expires_at, NEW.provider)
       IS DISTINCT FROM
       (OLD.id, OLD.user_id, OLD.concert_id, OLD.seat_type_id, OLD.price_cents, OLD.currency,
        OLD.created_at, OLD.expires_at, OLD.provider) THEN
        RAISE EXCEPTION 'a hold only changes its status and payment'
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER holds_only_move_forward
BEFORE UPDATE ON holds
FOR EACH ROW EXECUTE FUNCTION holds_only_move_forward();

CREATE FUNCTION holds_return_the_seat() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE seat_types SET remaining = remaining + 1 WHERE id = NEW.seat_type_id;
    RETURN NULL;
END $$;

CREATE TRIGGER holds_return_the_seat
AFTER UPDATE ON holds
FOR EACH ROW WHEN (OLD.status = 'active' AND NEW.status <> 'active')
EXECUTE FUNCTION holds_return_the_seat();

CREATE FUNCTION holds_are_never_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'holds end, they are never deleted';
END $$;

CREATE TRIGGER holds_are_never_deleted
BEFORE DELETE OR TRUNCATE ON holds
FOR EACH STATEMENT EXECUTE FUNCTION holds_are_never_deleted();

-- A confirmed booking is refused to a user who holds a seat of the same concert (a hold not yet
-- past its `expires_at`).
CREATE OR REPLACE FUNCTION bookings_take_seats() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM new_rows n JOIN sales s USING (concert_id)
        WHERE n.status = 'confirmed'
          AND (s.starts_at <= n.created_at OR s.cancelled_at IS NOT NULL)
    ) THEN
        RAISE EXCEPTION 'booking_closed' USING ERRCODE = 'check_violation';
    END IF;
    IF EXISTS (
        SELECT 1 FROM new_rows n JOIN sales s USING (concert_id)
        WHERE n.status = 'confirmed' AND s.sales_open_at > n.created_at
    ) THEN
        RAISE EXCEPTION 'sales_not_open' USING ERRCODE = 'check_violation';
    END IF;
    IF EXISTS (
        SELECT 1 FROM new_rows n JOIN holds h
          ON h.user_id = n.user_id AND h.concert_id = n.concert_id AND h.status = 'active'
         AND h.expires_at > n.created_at
        WHERE n.status = 'confirmed'
    ) THEN
        RAISE EXCEPTION 'already_booked' USING ERRCODE = 'check_violation';
    END IF;
    -- Fails the CHECK on remaining when too few seats are left: the database refuses an oversell.
    UPDATE seat_types st SET remaining = st.remaining - n.taken
    FROM (SELECT seat_type_id, count(*) AS taken FROM new_rows
          WHERE status = 'confirmed' GROUP BY seat_type_id) n
    WHERE st.id = n.seat_type_id;
    RETURN NULL;
END $$;

-- Money to give back, queued in the transaction that decides it (a payment that arrived for a
-- hold that had ended; a paid booking cancelled, by its holder or with its concert) and handed to
-- the payment provider by a worker until the provider confirms it. A payment is refunded at most once (its reference is unique).
CREATE TABLE refunds (
    id           uuid PRIMARY KEY,
    hold_id      uuid REFERENCES holds (id),
    booking_id   uuid REFERENCES bookings (id),
    provider     text NOT NULL CHECK (provider IN ('simulated', 'stripe')),
    payment_ref  text NOT NULL UNIQUE,
    amount_cents bigint NOT NULL CHECK (amount_cents > 0),
    currency     text NOT NULL,
    created_at   timestamptz NOT NULL,
    attempts     integer NOT NULL DEFAULT 0,
    available_at timestamptz NOT NULL,
    refunded_at  timestamptz,
    last_error   text,
    CHECK (hold_id IS NOT NULL OR booking_id IS NOT NULL)
);

CREATE INDEX refunds_due ON refunds (available_at) WHERE refunded_at IS NULL;

-- A booking's payment, when it was paid: through which provider, the provider's name for the
-- charge, the amount, and whether it was refunded since. NULL for a free seat and for bookings
-- made before payments existed.
ALTER TABLE bookings
    ADD COLUMN payment_provider text CHECK (payment_provider IN ('simulated', 'stripe')),
    ADD COLUMN payment_ref text,
    ADD COLUMN amount_cents bigint CHECK (amount_cents > 0),
    ADD COLUMN payment_status text CHECK (payment_status IN ('succeeded', 'refunded')),
    ADD CONSTRAINT payment_whole CHECK (
        (payment_provider IS NULL) = (payment_ref IS NULL)
        AND (payment_provider IS NULL) = (amount_cents IS NULL)
        AND (payment_provider IS NULL) = (payment_status IS NULL));
