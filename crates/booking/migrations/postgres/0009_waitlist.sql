-- The waiting list (API contract, "Waiting list"). The rules, stated here as well as in code:
--   * a fan joins a seat type's list only while it has no seat left, the concert is not closed,
--     and they hold no confirmed booking or active hold for the concert (trigger; the joining
--     transaction holds the concert's sale `FOR NO KEY UPDATE`, as every transaction that frees
--     or takes its seats locks it too, so the check cannot miss a seat freed at the same moment);
--   * a fan has at most one entry waiting or offered per concert (partial unique index);
--   * an entry moves forward only: waiting -> offered | left | expired; offered -> completed |
--     expired | left; expired -> completed (a payment that arrived after the offer ran out and
--     still found a seat); an entry is never deleted;
--   * an offered entry names its hold, a hold of the same fan and seat type, and keeps it;
--   * the entry follows its hold (trigger): paid -> completed, ran out -> expired, released ->
--     left. That is how an offer that ends hands its seat on: the hold's end returns the seat,
--     and the transaction offers it to the next fan;
--   * first come, first served: `seq` numbers entries in the order they joined.
-- The rule that a freed seat goes to the first fan waiting for its type, in the transaction that
-- frees it, is `postgres/waitlist.rs`'s, checked by the engine's property test.
CREATE TABLE waitlist (
    seq          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id           uuid NOT NULL UNIQUE,
    user_id      uuid NOT NULL,
    concert_id   uuid NOT NULL,
    seat_type_id uuid NOT NULL,
    status       text NOT NULL
                 CHECK (status IN ('waiting', 'offered', 'completed', 'expired', 'left')),
    created_at   timestamptz NOT NULL,
    offered_at   timestamptz,
    ended_at     timestamptz,
    hold_id      uuid UNIQUE REFERENCES holds (id),
    CHECK ((hold_id IS NULL) = (offered_at IS NULL)),
    CHECK (status <> 'waiting' OR hold_id IS NULL),
    CHECK (status NOT IN ('offered', 'completed') OR hold_id IS NOT NULL),
    CHECK ((status IN ('waiting', 'offered')) = (ended_at IS NULL)),
    FOREIGN KEY (seat_type_id, concert_id) REFERENCES seat_types (id, concert_id)
);

CREATE UNIQUE INDEX one_place_per_user_and_concert
    ON waitlist (user_id, concert_id) WHERE status IN ('waiting', 'offered');
CREATE INDEX waitlist_line ON waitlist (seat_type_id, seq) WHERE status = 'waiting';
CREATE INDEX waitlist_by_user ON waitlist (user_id, id);
CREATE INDEX waitlist_by_concert ON waitlist (concert_id, status);

CREATE FUNCTION waitlist_joins_a_sold_out_seat_type() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status <> 'waiting' THEN
        RAISE EXCEPTION 'an entry starts waiting' USING ERRCODE = 'check_violation';
    END IF;
    IF EXISTS (SELECT 1 FROM sales WHERE concert_id = NEW.concert_id
               AND (starts_at <= NEW.created_at OR cancelled_at IS NOT NULL)) THEN
        RAISE EXCEPTION 'booking_closed' USING ERRCODE = 'check_violation';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM seat_types WHERE id = NEW.seat_type_id
                   AND concert_id = NEW.concert_id) THEN
        RAISE EXCEPTION 'seat_type_not_found' USING ERRCODE = 'check_violation';
    END IF;
    IF EXISTS (SELECT 1 FROM seat_types WHERE id = NEW.seat_type_id AND remaining > 0) THEN
        RAISE EXCEPTION 'seats_available' USING ERRCODE = 'check_violation';
    END IF;
    IF EXISTS (SELECT 1 FROM bookings WHERE user_id = NEW.user_id
               AND concert_id = NEW.concert_id AND status = 'confirmed')
       OR EXISTS (SELECT 1 FROM holds WHERE user_id = NEW.user_id
               AND concert_id = NEW.concert_id AND status = 'active'
               AND expires_at > NEW.created_at) THEN
        RAISE EXCEPTION 'already_booked' USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER waitlist_joins_a_sold_out_seat_type
BEFORE INSERT ON waitlist
FOR EACH ROW EXECUTE FUNCTION waitlist_joins_a_sold_out_seat_type();

CREATE FUNCTION waitlist_only_moves_forward() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status IS DISTINCT FROM OLD.status AND NOT (
           (OLD.status = 'waiting' AND NEW.status IN ('offered', 'left', 'expired'))
        OR (OLD.status = 'offered' AND NEW.status IN ('completed', 'expired', 'left'))
        OR (OLD.status = 'expired' AND NEW.status = 'completed')) THEN
        RAISE EXCEPTION 'a waiting-list entry only moves forward' USING ERRCODE = 'check_violation';
    END IF;
    IF (NEW.seq, NEW.id, NEW.user_id, NEW.concert_id, NEW.seat_type_id, NEW.created_at)
       IS DISTINCT FROM
       (OLD.seq, OLD.id, OLD.user_id, OLD.concert_id, OLD.seat_type_id, OLD.created_at) THEN
        RAISE EXCEPTION 'a waiting-list entry only changes its status and offer'
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.hold_id IS DISTINCT FROM OLD.hold_id AND (OLD.hold_id IS NOT NULL OR NOT EXISTS (
        SELECT 1 FROM holds WHERE id = NEW.hold_id AND user_id = NEW.user_id
          AND seat_type_id = NEW.seat_type_id)) THEN
        RAISE EXCEPTION 'an offer is a hold of the same fan and seat type, made once'
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER waitlist_only_moves_forward
BEFORE UPDATE ON waitlist
FOR EACH ROW EXECUTE FUNCTION waitlist_only_moves_forward();

CREATE FUNCTION waitlist_follows_its_hold() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE waitlist
    SET status = CASE NEW.status
                     WHEN 'completed' THEN 'completed'
                     WHEN 'expired' THEN 'expired'
                     ELSE 'left'
                 END,
        ended_at = coalesce(ended_at, NEW.ended_at)
    WHERE hold_id = NEW.id
      AND (status = 'offered' OR (status = 'expired' AND NEW.status = 'completed'));
    RETURN NULL;
END $$;

CREATE TRIGGER waitlist_follows_its_hold
AFTER UPDATE ON holds
FOR EACH ROW WHEN (NEW.status IS DISTINCT FROM OLD.status)
EXECUTE FUNCTION waitlist_follows_its_hold();

CREATE FUNCTION waitlist_entries_are_never_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'waiting-list entries end, they are never deleted';
END $$;

CREATE TRIGGER waitlist_entries_are_never_deleted
BEFORE DELETE OR TRUNCATE ON waitlist
FOR EACH STATEMENT EXECUTE FUNCTION waitlist_entries_are_never_deleted();

-- An offer's email is queued with the offer, its text as the offer made it.
ALTER TABLE outbox DROP CONSTRAINT outbox_kind_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_kind_check
    CHECK (kind IN ('booking_confirmed', 'booking_cancelled', 'waitlist_offered'));
