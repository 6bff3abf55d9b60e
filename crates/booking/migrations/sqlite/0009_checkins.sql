-- Check-ins: a ticket's one successful scan at the door. The rules, here as well as in code:
--   * a ticket is checked in at most once (primary key): however many doors scan it at the same
--     moment, one insert wins and the others find it;
--   * only a confirmed booking is checked in (trigger, in the transaction that checks it in): a
--     cancelled ticket is refused at the door;
--   * a check-in is never changed or deleted.
-- `nonce` is the scanner's name for its request: the same scan sent again (a retry after a lost
-- answer) finds its own check-in and gets the same answer.
CREATE TABLE checkins (
    booking_id    BLOB PRIMARY KEY NOT NULL REFERENCES bookings (id),
    checked_in_at INTEGER NOT NULL,
    nonce         TEXT CHECK (nonce IS NULL OR length(nonce) BETWEEN 1 AND 128),
    scanned_by    BLOB NOT NULL CHECK (length(scanned_by) = 16)
) STRICT;

CREATE TRIGGER checkins_of_confirmed_bookings_only
BEFORE INSERT ON checkins
WHEN (SELECT status FROM bookings WHERE id = NEW.booking_id) IS NOT 'confirmed'
BEGIN
    SELECT RAISE(ABORT, 'ticket_cancelled');
END;

CREATE TRIGGER checkins_never_change
BEFORE UPDATE ON checkins
BEGIN
    SELECT RAISE(ABORT, 'check-ins never change');
END;

CREATE TRIGGER checkins_are_never_deleted
BEFORE DELETE ON checkins
BEGIN
    SELECT RAISE(ABORT, 'check-ins are never deleted');
END;
