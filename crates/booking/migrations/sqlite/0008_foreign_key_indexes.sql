-- Indexes on the columns that refer to bookings. Completing a paid hold names its booking in the
-- hold before the booking row exists (the hold must stop being active before the booking's
-- triggers look for it), which leaves a deferred foreign-key violation open for a moment. While
-- one is open, SQLite looks for the rows that refer to every booking inserted — in each table that
-- refers to bookings — and without these indexes that was a scan of every hold, email and refund
-- ever kept: each payment cost time in proportion to the shop's whole history.
CREATE INDEX holds_by_booking ON holds (booking_id);
CREATE INDEX outbox_by_booking ON outbox (booking_id);
CREATE INDEX refunds_by_booking ON refunds (booking_id);
