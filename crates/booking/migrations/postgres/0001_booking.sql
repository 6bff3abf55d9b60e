-- The Booking service's store on PostgreSQL: seat inventory, bookings, the email outbox and
-- idempotency records. The same rules as the SQLite schema, enforced by the database:
--   * remaining is always between 0 and capacity (CHECK);
--   * remaining == capacity - confirmed bookings: statement-level triggers move the counter by the
--     number of bookings each statement confirms or cancels, so no code path (and no instance of
--     a deployment) can change one without the other;
--   * a user holds at most one confirmed booking per concert (partial unique index);
--   * a seat type belongs to its concert (composite foreign key);
--   * no booking is made or cancelled once its concert has started or was cancelled (triggers,
--     against the instant the writing transaction stamps on the row);
--   * a booking goes confirmed -> cancelled once, and never back; bookings are never deleted.
--   * every update of a sale or a seat type bumps its row's version (a trigger, under the row's
--     lock), so each instance's view can tell a newer state of the row from an older one.
-- Instants are timestamptz, written with millisecond precision.

CREATE TABLE sales (
    concert_id   uuid PRIMARY KEY,
    name         text NOT NULL,
    venue        text NOT NULL,
    starts_at    timestamptz NOT NULL,
    cancelled_at timestamptz,
    version      bigint NOT NULL DEFAULT 0
);

CREATE TABLE seat_types (
    id          uuid PRIMARY KEY,
    concert_id  uuid NOT NULL REFERENCES sales (concert_id),
    name        text NOT NULL,
    price_cents bigint NOT NULL CHECK (price_cents >= 0),
    currency    text NOT NULL CHECK (length(currency) = 3),
    capacity    bigint NOT NULL CHECK (capacity BETWEEN 1 AND 1000000),
    remaining   bigint NOT NULL,
    position    bigserial NOT NULL,
    version     bigint NOT NULL DEFAULT 0,
    CONSTRAINT remaining_within_capacity CHECK (remaining BETWEEN 0 AND capacity),
    UNIQUE (id, concert_id)
);

CREATE INDEX seat_types_by_concert ON seat_types (concert_id, position);

-- Updates of a row are serialized by the row's lock, so its versions follow its commits in order.
CREATE FUNCTION bump_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.version := OLD.version + 1;
    RETURN NEW;
END $$;

CREATE TRIGGER sales_bump_version
BEFORE UPDATE ON sales
FOR EACH ROW EXECUTE FUNCTION bump_version();

CREATE TRIGGER seat_types_bump_version
BEFORE UPDATE ON seat_types
FOR EACH ROW EXECUTE FUNCTION bump_version();

CREATE TABLE bookings (
    id           uuid PRIMARY KEY,
    user_id      uuid NOT NULL,
    concert_id   uuid NOT NULL,
    seat_type_id uuid NOT NULL,
    status       text NOT NULL CHECK (status IN ('confirmed', 'cancelled')),
    price_cents  bigint NOT NULL CHECK (price_cents >= 0),
    currency     text NOT NULL,
    created_at   timestamptz NOT NULL,
    cancelled_at timestamptz,
    CHECK ((status = 'cancelled') = (cancelled_at IS NOT NULL)),
    FOREIGN KEY (seat_type_id, concert_id) REFERENCES seat_types (id, concert_id)
);

CREATE UNIQUE INDEX one_confirmed_booking_per_user_and_concert
    ON bookings (user_id, concert_id) WHERE status = 'confirmed';
CREATE INDEX bookings_by_user ON bookings (user_id, id);
CREATE INDEX bookings_by_concert ON bookings (concert_id, status);

-- New confirmed bookings take their seats: one UPDATE per seat type per statement, however many
-- bookings the statement inserts (a group commit inserts hundreds at once).
CREATE FUNCTION bookings_take_seats() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM new_rows n JOIN sales s USING (concert_id)
        WHERE n.status = 'confirmed'
          AND (s.starts_at <= n.created_at OR s.cancelled_at IS NOT NULL)
    ) THEN
        RAISE EXCEPTION 'booking_closed' USING ERRCODE = 'check_violation';
    END IF;
    -- Fails the CHECK on remaining when too few seats are left: the database refuses an oversell.
    UPDATE seat_types st SET remaining = st.remaining - n.taken
    FROM (SELECT seat_type_id, count(*) AS taken FROM new_rows
          WHERE status = 'confirmed' GROUP BY seat_type_id) n
    WHERE st.id = n.seat_type_id;
    RETURN NULL;
END $$;

CREATE TRIGGER bookings_take_seats
AFTER INSERT ON bookings REFERENCING NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION bookings_take_seats();

CREATE FUNCTION bookings_only_move_forward() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status IS DISTINCT FROM OLD.status THEN
        IF NOT (OLD.status = 'confirmed' AND NEW.status = 'cancelled') THEN
            RAISE EXCEPTION 'already_cancelled' USING ERRCODE = 'check_violation';
        END IF;
        IF EXISTS (SELECT 1 FROM sales WHERE concert_id = NEW.concert_id
                   AND starts_at <= NEW.cancelled_at) THEN
            RAISE EXCEPTION 'booking_closed' USING ERRCODE = 'check_violation';
        END IF;
    END IF;
    IF (NEW.id, NEW.user_id, NEW.concert_id, NEW.seat_type_id, NEW.price_cents, NEW.currency,
        NEW.created_at)
       IS DISTINCT FROM
       (OLD.id, OLD.user_id, OLD.concert_id, OLD.seat_type_id, OLD.price_cents, OLD.currency,
        OLD.created_at) THEN
        RAISE EXCEPTION 'a booking only changes its status' USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER bookings_only_move_forward
BEFORE UPDATE ON bookings
FOR EACH ROW EXECUTE FUNCTION bookings_only_move_forward();

-- Cancelled bookings give their seats back, one UPDATE per seat type per statement.
CREATE FUNCTION bookings_return_seats() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE seat_types st SET remaining = st.remaining + n.returned
    FROM (SELECT new_rows.seat_type_id, count(*) AS returned
          FROM new_rows JOIN old_rows USING (id)
          WHERE old_rows.status = 'confirmed' AND new_rows.status = 'cancelled'
          GROUP BY new_rows.seat_type_id) n
    WHERE st.id = n.seat_type_id;
    RETURN NULL;
END $$;

CREATE TRIGGER bookings_return_seats
AFTER UPDATE ON bookings REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION bookings_return_seats();

CREATE FUNCTION bookings_are_never_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'bookings are cancelled, never deleted';
END $$;

CREATE TRIGGER bookings_are_never_deleted
BEFORE DELETE OR TRUNCATE ON bookings
FOR EACH STATEMENT EXECUTE FUNCTION bookings_are_never_deleted();

-- Emails queued in the same transaction as the booking change they announce (transactional
-- outbox). Workers in any process claim due messages with FOR UPDATE SKIP LOCKED and a lease.
CREATE TABLE outbox (
    message_id   uuid PRIMARY KEY,
    kind         text NOT NULL CHECK (kind IN ('booking_confirmed', 'booking_cancelled')),
    payload      text NOT NULL,
    created_at   timestamptz NOT NULL,
    attempts     integer NOT NULL DEFAULT 0,
    available_at timestamptz NOT NULL,
    sent_at      timestamptz,
    last_error   text,
    leased       boolean NOT NULL DEFAULT false
);

CREATE INDEX outbox_due ON outbox (available_at) WHERE sent_at IS NULL;

CREATE TABLE idempotency_keys (
    user_id         uuid NOT NULL,
    idempotency_key text NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    request_hash    bytea NOT NULL,
    response_status integer NOT NULL,
    response_body   text NOT NULL,
    created_at      timestamptz NOT NULL,
    PRIMARY KEY (user_id, idempotency_key)
);
