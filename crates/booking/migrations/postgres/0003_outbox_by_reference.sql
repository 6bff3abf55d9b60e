-- An email about a booking is queued by reference: the outbox row names the booking, and what the
-- email says (concert, venue, start, seat type, price, when) is read from the store when a worker
-- claims it. Rows of a few hundred bytes of rendered email per booking made the booking batch's
-- outbox INSERT its slowest statement; a reference is 16 bytes. Rows queued before this migration
-- keep their payload and are sent as they were queued.
ALTER TABLE outbox
    ADD COLUMN booking_id uuid REFERENCES bookings (id),
    ALTER COLUMN payload DROP NOT NULL,
    ADD CONSTRAINT booking_or_payload CHECK ((booking_id IS NULL) <> (payload IS NULL));
