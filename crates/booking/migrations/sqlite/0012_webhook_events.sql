-- Webhook events, queued once each and fanned out to endpoints later (API contract, "Webhooks
-- (v1.1)"). The rules, here as well as in code:
--   * an event is one row, written in the transaction that caused it (outbox): its `event_id` is
--     the `webhook-id` of every delivery and attempt, its `seq` its place in the order of
--     commits (the one writer commits in `seq` order; events are never deleted, so a `seq` is
--     never used twice);
--   * an event is never deleted and never changed;
--   * `webhook_fanout` holds the last event fanned out: the delivery worker, through the writer,
--     writes the deliveries of the events after it (one per endpoint subscribed, active and
--     created by the event's time) and moves it on in the same transaction. It only moves
--     forward, and there is exactly one.
CREATE TABLE webhook_events (
    seq        INTEGER PRIMARY KEY,
    event_id   BLOB NOT NULL CHECK (length(event_id) = 16),
    event      TEXT NOT NULL CHECK (event IN ('booking.confirmed', 'booking.cancelled',
                                              'hold.expired', 'checkin.created',
                                              'concert.sold_out', 'waitlist.offered')),
    subject_id BLOB NOT NULL CHECK (length(subject_id) = 16),
    created_at INTEGER NOT NULL
) STRICT;
-- No index beyond the rowid: one B-tree insert per event in a booking's batch.

CREATE TRIGGER webhook_events_are_never_deleted
BEFORE DELETE ON webhook_events
BEGIN
    SELECT RAISE(ABORT, 'webhook events are never deleted');
END;

CREATE TRIGGER webhook_events_never_change
BEFORE UPDATE ON webhook_events
BEGIN
    SELECT RAISE(ABORT, 'webhook events never change');
END;

CREATE TABLE webhook_fanout (
    one  INTEGER PRIMARY KEY NOT NULL CHECK (one = 1),
    seq  INTEGER NOT NULL CHECK (seq >= 0)
) STRICT;

INSERT INTO webhook_fanout (one, seq) VALUES (1, 0);

CREATE TRIGGER webhook_fanout_is_never_deleted
BEFORE DELETE ON webhook_fanout
BEGIN
    SELECT RAISE(ABORT, 'the webhook fan-out cursor is never deleted');
END;

CREATE TRIGGER webhook_fanout_moves_forward
BEFORE UPDATE ON webhook_fanout
WHEN NEW.one IS NOT OLD.one OR NEW.seq < OLD.seq
BEGIN
    SELECT RAISE(ABORT, 'the webhook fan-out cursor only moves forward');
END;
