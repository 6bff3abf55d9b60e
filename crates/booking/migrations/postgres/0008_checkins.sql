-- Check-ins: a ticket's one successful scan at the door. The rules, here as well as in code:
--   * a ticket is checked in at most once (primary key): however many doors of however many
--     Booking instances scan it at the same moment, one insert wins and the others find it;
--   * only a confirmed booking is checked in (trigger, in the statement that checks it in): a
--     cancelled ticket is refused at the door;
--   * a check-in is never changed or deleted.
-- `nonce` is the scanner's name for its request: the same scan sent again (a retry after a lost
-- answer) finds its own check-in and gets the same answer.
CREATE TABLE checkins (
    booking_id    uuid PRIMARY KEY REFERENCES bookings (id),
    checked_in_at timestamptz NOT NULL,
    nonce         text CHECK (nonce IS NULL OR length(nonce) BETWEEN 1 AND 128),
    scanned_by    uuid NOT NULL
);

CREATE FUNCTION checkins_of_confirmed_bookings_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT status FROM bookings WHERE id = NEW.booking_id) IS DISTINCT FROM 'confirmed' THEN
        RAISE EXCEPTION 'ticket_cancelled' USING ERRCODE = 'check_violation',
            CONSTRAINT = 'checkins_of_confirmed_bookings_only';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER checkins_of_confirmed_bookings_only
BEFORE INSERT ON checkins
FOR EACH ROW EXECUTE FUNCTION checkins_of_confirmed_bookings_only();

CREATE FUNCTION checkins_are_kept() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'check-ins are never changed or deleted';
END $$;

CREATE TRIGGER checkins_are_kept
BEFORE UPDATE OR DELETE OR TRUNCATE ON checkins
FOR EACH STATEMENT EXECUTE FUNCTION checkins_are_kept();
