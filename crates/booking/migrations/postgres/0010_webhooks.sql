-- Webhooks (API contract, "Webhooks (v1.1)"): organisers' endpoints and the deliveries of events
-- to them. The rules, here as well as in code:
--   * an endpoint's URL is http or https and its secret a Standard Webhooks secret (`whsec_`
--     and base64 of at least 24 bytes);
--   * an endpoint subscribes to at least one event type, kept as bits (1 booking.confirmed,
--     2 booking.cancelled, 4 hold.expired, 8 checkin.created, 16 concert.sold_out,
--     32 waitlist.offered);
--   * an endpoint is never deleted: `DELETE /webhooks/{id}` disables it with the reason
--     'deleted', a `410 Gone` answer with 'gone'; a disabled endpoint is never enabled again,
--     and nothing about it changes but a 'gone' one becoming 'deleted';
--   * a delivery is one event for one endpoint, queued in the transaction that caused the event
--     (outbox); its event id is the `webhook-id` of every attempt. What the event says is read
--     by reference (`subject_id`) when it is delivered. Workers of every instance claim due
--     deliveries with FOR UPDATE SKIP LOCKED and a lease (`leased_by`: the instance);
--   * a delivery is never deleted, and what it delivers (endpoint, event, subject, when) never
--     changes; a delivered one is never attempted again (it has no `next_attempt_at`).
CREATE TABLE webhook_endpoints (
    id              uuid PRIMARY KEY,
    url             text NOT NULL CHECK (length(url) BETWEEN 8 AND 2048
                                         AND (url LIKE 'http://%' OR url LIKE 'https://%')),
    events          integer NOT NULL CHECK (events BETWEEN 1 AND 63),
    secret          text NOT NULL CHECK (secret LIKE 'whsec\_%' AND length(secret) >= 38),
    created_at      timestamptz NOT NULL,
    disabled_at     timestamptz,
    disabled_reason text CHECK (disabled_reason IN ('deleted', 'gone')),
    CONSTRAINT disabled_with_a_reason CHECK ((disabled_at IS NULL) = (disabled_reason IS NULL))
);

CREATE FUNCTION webhook_endpoints_are_kept() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'webhook endpoints are never deleted';
    END IF;
    IF OLD.disabled_reason IS NOT DISTINCT FROM 'deleted'
       OR (OLD.disabled_at IS NOT NULL AND NEW.disabled_at IS NULL) OR NEW.url IS DISTINCT FROM OLD.url
       OR NEW.events IS DISTINCT FROM OLD.events OR NEW.secret IS DISTINCT FROM OLD.secret
       OR NEW.created_at IS DISTINCT FROM OLD.created_at THEN
        RAISE EXCEPTION 'a webhook endpoint only changes by being disabled';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER webhook_endpoints_are_kept
BEFORE UPDATE OR DELETE ON webhook_endpoints
FOR EACH ROW EXECUTE FUNCTION webhook_endpoints_are_kept();

CREATE TABLE webhook_deliveries (
    endpoint_id     uuid NOT NULL REFERENCES webhook_endpoints (id),
    event_id        uuid NOT NULL,
    event           text NOT NULL CHECK (event IN ('booking.confirmed', 'booking.cancelled',
                                                   'hold.expired', 'checkin.created',
                                                   'concert.sold_out', 'waitlist.offered')),
    subject_id      uuid NOT NULL,
    created_at      timestamptz NOT NULL,
    attempts        integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_status     integer CHECK (last_status BETWEEN 100 AND 599),
    last_error      text,
    delivered_at    timestamptz,
    next_attempt_at timestamptz,
    leased_by       uuid,
    PRIMARY KEY (endpoint_id, event_id),
    CONSTRAINT delivered_is_done CHECK (delivered_at IS NULL OR next_attempt_at IS NULL)
);

-- The workers' claim: the due ones, oldest first.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE next_attempt_at IS NOT NULL;

CREATE FUNCTION webhook_deliveries_are_kept() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'webhook deliveries are never deleted';
    END IF;
    IF NEW.endpoint_id IS DISTINCT FROM OLD.endpoint_id OR NEW.event_id IS DISTINCT FROM OLD.event_id
       OR NEW.event IS DISTINCT FROM OLD.event OR NEW.subject_id IS DISTINCT FROM OLD.subject_id
       OR NEW.created_at IS DISTINCT FROM OLD.created_at OR OLD.delivered_at IS NOT NULL THEN
        RAISE EXCEPTION 'a delivery keeps its event, and a delivered one is done';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER webhook_deliveries_are_kept
BEFORE UPDATE OR DELETE ON webhook_deliveries
FOR EACH ROW EXECUTE FUNCTION webhook_deliveries_are_kept();

-- A time-ordered (version 7) UUID, for events queued by the schema itself.
CREATE FUNCTION webhook_event_id() RETURNS uuid LANGUAGE sql VOLATILE AS $$
    SELECT encode(
        set_bit(set_bit(
            overlay(uuid_send(gen_random_uuid())
                    PLACING substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                    FROM 1 FOR 6),
            52, 1), 53, 1),
        'hex')::uuid
$$;

-- `concert.sold_out`: a seat type's `remaining` reaching 0 is the one event caused by a count,
-- not a row, and every way of taking seats (bookings, holds, capacity changes, waiting-list
-- offers, in any instance) moves `remaining` through this table; so the schema queues it, once
-- per change from a positive count to 0, for the endpoints that subscribe (bit 16). It fires only
-- at that change: free when nothing sells out.
CREATE FUNCTION webhook_concert_sold_out() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    event uuid := webhook_event_id();
BEGIN
    INSERT INTO webhook_deliveries (endpoint_id, event_id, event, subject_id, created_at,
                                    next_attempt_at)
    SELECT id, event, 'concert.sold_out', NEW.id, now(), now()
    FROM webhook_endpoints
    WHERE (events & 16) <> 0 AND disabled_at IS NULL;
    RETURN NULL;
END $$;

CREATE TRIGGER webhook_concert_sold_out
AFTER UPDATE OF remaining ON seat_types
FOR EACH ROW WHEN (OLD.remaining > 0 AND NEW.remaining = 0)
EXECUTE FUNCTION webhook_concert_sold_out();
