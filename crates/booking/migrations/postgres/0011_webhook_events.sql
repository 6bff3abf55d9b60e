-- Webhook events, queued once each and fanned out to endpoints later (API contract, "Webhooks
-- (v1.1)"). The rules, here as well as in code:
--   * an event is one row, written in the transaction that caused it (outbox): its `event_id` is
--     the `webhook-id` of every delivery and attempt;
--   * an event is never deleted and never changed;
--   * transactions of several instances commit in any order, so `seq` alone is not the order in
--     which events become visible: `xact` is the writing transaction's id, and every event whose
--     `xact` is below the current snapshot's `xmin` is committed (or rolled back) for good. The
--     fan-out reads events in (`xact`, `seq`) order below that horizon, so none is skipped;
--   * `webhook_fanout` holds the last event fanned out, as (`xact`, `seq`): a worker of any
--     instance locks it (FOR UPDATE, so one fans out a range at a time), writes the deliveries
--     of the events after it (one per endpoint subscribed, active and created by the event's
--     time) and moves it on in the same transaction. It only moves forward, and there is
--     exactly one.
CREATE TABLE webhook_events (
    seq        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    xact       bigint NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    event_id   uuid NOT NULL,
    event      text NOT NULL CHECK (event IN ('booking.confirmed', 'booking.cancelled',
                                              'hold.expired', 'checkin.created',
                                              'concert.sold_out', 'waitlist.offered')),
    subject_id uuid NOT NULL,
    created_at timestamptz NOT NULL
);

-- The fan-out's order.
CREATE INDEX webhook_events_by_commit ON webhook_events (xact, seq);

CREATE FUNCTION webhook_events_are_kept() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'webhook events are never deleted or changed';
END $$;

CREATE TRIGGER webhook_events_are_kept
BEFORE UPDATE OR DELETE ON webhook_events
FOR EACH ROW EXECUTE FUNCTION webhook_events_are_kept();

CREATE TABLE webhook_fanout (
    one  boolean PRIMARY KEY DEFAULT true CHECK (one),
    xact bigint NOT NULL CHECK (xact >= 0),
    seq  bigint NOT NULL CHECK (seq >= 0)
);

INSERT INTO webhook_fanout (one, xact, seq) VALUES (true, 0, 0);

CREATE FUNCTION webhook_fanout_moves_forward() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'the webhook fan-out cursor is never deleted';
    END IF;
    IF (NEW.xact, NEW.seq) < (OLD.xact, OLD.seq) THEN
        RAISE EXCEPTION 'the webhook fan-out cursor only moves forward';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER webhook_fanout_moves_forward
BEFORE UPDATE OR DELETE ON webhook_fanout
FOR EACH ROW EXECUTE FUNCTION webhook_fanout_moves_forward();

-- `concert.sold_out` (see 0010_webhooks.sql): now one event row, when some endpoint subscribes.
CREATE OR REPLACE FUNCTION webhook_concert_sold_out() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM webhook_endpoints WHERE (events & 16) <> 0 AND disabled_at IS NULL) THEN
        INSERT INTO webhook_events (event_id, event, subject_id, created_at)
        VALUES (webhook_event_id(), 'concert.sold_out', NEW.id, now());
    END IF;
    RETURN NULL;
END $$;
