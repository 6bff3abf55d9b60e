-- On-sale time: a concert's sales open at `sales_open_at`; NULL: open as soon as the concert is
-- provisioned, as every concert before this column was.
ALTER TABLE sales ADD COLUMN sales_open_at timestamptz;

-- The seat-taking trigger also refuses bookings made before the on-sale, against the instant the
-- writing transaction stamps on the rows, like the close at the start.
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
    -- Fails the CHECK on remaining when too few seats are left: the database refuses an oversell.
    UPDATE seat_types st SET remaining = st.remaining - n.taken
    FROM (SELECT seat_type_id, count(*) AS taken FROM new_rows
          WHERE status = 'confirmed' GROUP BY seat_type_id) n
    WHERE st.id = n.seat_type_id;
    RETURN NULL;
END $$;
