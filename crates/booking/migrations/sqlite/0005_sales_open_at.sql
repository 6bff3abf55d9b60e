-- On-sale time: a concert's sales open at `sales_open_at` (milliseconds since the epoch, UTC);
-- NULL: open as soon as the concert is provisioned, as every concert before this column was.
ALTER TABLE sales ADD COLUMN sales_open_at INTEGER;

-- The seat-taking trigger also refuses a booking made before the on-sale, against the time the
-- transaction stamps on the row, like the close at the start: one lookup of the sale for both.
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
    -- Fails the CHECK on remaining when no seat is left: the database itself refuses an oversell.
    UPDATE seat_types SET remaining = remaining - 1 WHERE id = NEW.seat_type_id;
END;
