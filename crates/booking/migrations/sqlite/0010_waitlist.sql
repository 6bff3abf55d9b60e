-- The waiting list (API contract, "Waiting list"). The rules, stated here as well as in code:
--   * a fan joins a seat type's list only while it has no seat left, the concert's sales are
--     open (or not open yet) and not closed, and they hold no confirmed booking or active hold for
--     the concert (trigger);
--   * a fan has at most one entry waiting or offered per concert (partial unique index);
--   * an entry moves forward only: waiting -> offered | left; offered -> completed | expired |
--     left; expired -> completed (a payment that arrived after the offer ran out and still found
--     a seat); an entry is never deleted;
--   * an offered entry names its hold, a hold of the same fan and seat type, and keeps it;
--   * the entry follows its hold (trigger): paid -> completed, ran out -> expired, released ->
--     left. That is how an offer that ends hands its seat on: the hold's end returns the seat,
--     and the writer offers it to the next fan in the same transaction;
--   * first come, first served: `seq` numbers entries in the order they joined.
-- The rule that a freed seat goes to the first fan waiting for its type, in the transaction that
-- frees it (so that a seat never shows in public `remaining` while anyone waits for it), is the
-- writer's (`sqlite/waitlist.rs`), checked by the engine's property test.
CREATE TABLE waitlist (
    seq          INTEGER PRIMARY KEY,
    id           BLOB NOT NULL UNIQUE CHECK (length(id) = 16),
    user_id      BLOB NOT NULL CHECK (length(user_id) = 16),
    concert_id   BLOB NOT NULL,
    seat_type_id BLOB NOT NULL,
    status       TEXT NOT NULL
                 CHECK (status IN ('waiting', 'offered', 'completed', 'expired', 'left')),
    created_at   INTEGER NOT NULL,
    -- When it was offered a seat, and when it ended (left, expired, completed).
    offered_at   INTEGER,
    ended_at     INTEGER,
    hold_id      BLOB UNIQUE REFERENCES holds (id),
    CHECK ((hold_id IS NULL) = (offered_at IS NULL)),
    CHECK (status <> 'waiting' OR hold_id IS NULL),
    CHECK (status NOT IN ('offered', 'completed', 'expired') OR hold_id IS NOT NULL),
    CHECK ((status IN ('waiting', 'offered')) = (ended_at IS NULL)),
    FOREIGN KEY (seat_type_id, concert_id) REFERENCES seat_types (id, concert_id)
) STRICT;

CREATE UNIQUE INDEX one_place_per_user_and_concert
    ON waitlist (user_id, concert_id) WHERE status IN ('waiting', 'offered');
-- The line of a seat type, in order.
CREATE INDEX waitlist_line ON waitlist (seat_type_id, seq) WHERE status = 'waiting';
-- "My entries", newest first.
CREATE INDEX waitlist_by_user ON waitlist (user_id, seq);
CREATE INDEX waitlist_by_concert ON waitlist (concert_id, status);

CREATE TRIGGER waitlist_joins_a_sold_out_seat_type
BEFORE INSERT ON waitlist
BEGIN
    SELECT CASE
        WHEN NEW.status <> 'waiting' THEN RAISE(ABORT, 'an entry starts waiting')
        WHEN starts_at <= NEW.created_at OR cancelled_at IS NOT NULL
            THEN RAISE(ABORT, 'booking_closed')
    END
    FROM sales
    WHERE concert_id = NEW.concert_id;
    SELECT RAISE(ABORT, 'seat_type_not_found')
    WHERE NOT EXISTS (SELECT 1 FROM seat_types
                      WHERE id = NEW.seat_type_id AND concert_id = NEW.concert_id);
    SELECT RAISE(ABORT, 'seats_available')
    FROM seat_types
    WHERE id = NEW.seat_type_id AND remaining > 0;
    SELECT RAISE(ABORT, 'already_booked')
    FROM bookings
    WHERE user_id = NEW.user_id AND concert_id = NEW.concert_id AND status = 'confirmed';
    SELECT RAISE(ABORT, 'already_booked')
    FROM holds
    WHERE user_id = NEW.user_id AND concert_id = NEW.concert_id AND status = 'active'
      AND expires_at > NEW.created_at;
END;

CREATE TRIGGER waitlist_only_moves_forward
BEFORE UPDATE OF status ON waitlist
WHEN NEW.status IS NOT OLD.status AND NOT (
       (OLD.status = 'waiting' AND NEW.status IN ('offered', 'left'))
    OR (OLD.status = 'offered' AND NEW.status IN ('completed', 'expired', 'left'))
    OR (OLD.status = 'expired' AND NEW.status = 'completed'))
BEGIN
    SELECT RAISE(ABORT, 'a waiting-list entry only moves forward');
END;

CREATE TRIGGER waitlist_keeps_its_terms
BEFORE UPDATE OF seq, id, user_id, concert_id, seat_type_id, created_at ON waitlist
BEGIN
    SELECT RAISE(ABORT, 'a waiting-list entry only changes its status and offer');
END;

CREATE TRIGGER waitlist_offers_the_fans_own_hold
BEFORE UPDATE OF hold_id ON waitlist
WHEN OLD.hold_id IS NOT NULL OR NOT EXISTS (
    SELECT 1 FROM holds
    WHERE id = NEW.hold_id AND user_id = NEW.user_id AND seat_type_id = NEW.seat_type_id)
BEGIN
    SELECT RAISE(ABORT, 'an offer is a hold of the same fan and seat type, made once');
END;

CREATE TRIGGER waitlist_follows_its_hold
AFTER UPDATE OF status ON holds
WHEN NEW.status IS NOT OLD.status
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
END;

CREATE TRIGGER waitlist_entries_are_never_deleted
BEFORE DELETE ON waitlist
BEGIN
    SELECT RAISE(ABORT, 'waiting-list entries end, they are never deleted');
END;

-- An offer's email is queued with the offer, its text as the offer made it (offers are few; a
-- reference would need a second kind of reference). The outbox's kinds gain it; SQLite cannot
-- change a CHECK in place, so the table is rebuilt (nothing references it).
CREATE TABLE outbox_next (
    message_id   BLOB PRIMARY KEY NOT NULL CHECK (length(message_id) = 16),
    kind         TEXT NOT NULL
                 CHECK (kind IN ('booking_confirmed', 'booking_cancelled', 'waitlist_offered')),
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
    (message_id, kind, booking_id, payload, created_at, attempts, available_at, sent_at,
     last_error, leased)
SELECT message_id, kind, booking_id, payload, created_at, attempts, available_at, sent_at,
       last_error, leased
FROM outbox;

DROP TABLE outbox;
ALTER TABLE outbox_next RENAME TO outbox;
CREATE INDEX outbox_due ON outbox (available_at) WHERE sent_at IS NULL;
CREATE INDEX outbox_by_booking ON outbox (booking_id);
