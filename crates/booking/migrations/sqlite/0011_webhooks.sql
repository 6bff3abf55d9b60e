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
--     by reference (`subject_id`) when it is delivered.
--   * a delivery is never deleted, and what it delivers (endpoint, event, subject, when) never
--     changes; a delivered one is never attempted again (it has no `next_attempt_at`).
CREATE TABLE webhook_endpoints (
    id              BLOB PRIMARY KEY NOT NULL CHECK (length(id) = 16),
    url             TEXT NOT NULL CHECK (length(url) BETWEEN 8 AND 2048
                                         AND (url LIKE 'http://%' OR url LIKE 'https://%')),
    events          INTEGER NOT NULL CHECK (events BETWEEN 1 AND 63),
    secret          TEXT NOT NULL CHECK (secret LIKE 'whsec\_%' ESCAPE '\' AND length(secret) >= 38),
    created_at      INTEGER NOT NULL,
    disabled_at     INTEGER,
    disabled_reason TEXT CHECK (disabled_reason IN ('deleted', 'gone')),
    CONSTRAINT disabled_with_a_reason CHECK ((disabled_at IS NULL) = (disabled_reason IS NULL))
) STRICT;

CREATE TRIGGER webhook_endpoints_are_never_deleted
BEFORE DELETE ON webhook_endpoints
BEGIN
    SELECT RAISE(ABORT, 'webhook endpoints are never deleted');
END;

CREATE TRIGGER webhook_endpoints_stay_disabled
BEFORE UPDATE ON webhook_endpoints
WHEN OLD.disabled_reason IS 'deleted' OR (OLD.disabled_at IS NOT NULL AND NEW.disabled_at IS NULL)
  OR NEW.url IS NOT OLD.url OR NEW.events IS NOT OLD.events OR NEW.secret IS NOT OLD.secret
  OR NEW.created_at IS NOT OLD.created_at
BEGIN
    SELECT RAISE(ABORT, 'a webhook endpoint only changes by being disabled');
END;

CREATE TABLE webhook_deliveries (
    endpoint_id     BLOB NOT NULL REFERENCES webhook_endpoints (id),
    event_id        BLOB NOT NULL CHECK (length(event_id) = 16),
    event           TEXT NOT NULL CHECK (event IN ('booking.confirmed', 'booking.cancelled',
                                                   'hold.expired', 'checkin.created',
                                                   'concert.sold_out', 'waitlist.offered')),
    subject_id      BLOB NOT NULL CHECK (length(subject_id) = 16),
    created_at      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_status     INTEGER CHECK (last_status BETWEEN 100 AND 599),
    last_error      TEXT,
    delivered_at    INTEGER,
    next_attempt_at INTEGER,
    -- Claimed by this process's worker: released at start, since a worker dies with its process.
    leased          INTEGER NOT NULL DEFAULT 0 CHECK (leased IN (0, 1)),
    PRIMARY KEY (endpoint_id, event_id),
    CONSTRAINT delivered_is_done CHECK (delivered_at IS NULL OR next_attempt_at IS NULL)
) STRICT, WITHOUT ROWID;
-- WITHOUT ROWID: the rows live in their primary key's tree, one tree fewer to write for every
-- event queued in a booking's batch.

-- The worker's claim: the due ones, oldest first.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE next_attempt_at IS NOT NULL;

CREATE TRIGGER webhook_deliveries_are_never_deleted
BEFORE DELETE ON webhook_deliveries
BEGIN
    SELECT RAISE(ABORT, 'webhook deliveries are never deleted');
END;

CREATE TRIGGER webhook_deliveries_keep_their_event
BEFORE UPDATE ON webhook_deliveries
WHEN NEW.endpoint_id IS NOT OLD.endpoint_id OR NEW.event_id IS NOT OLD.event_id
  OR NEW.event IS NOT OLD.event OR NEW.subject_id IS NOT OLD.subject_id
  OR NEW.created_at IS NOT OLD.created_at OR OLD.delivered_at IS NOT NULL
BEGIN
    SELECT RAISE(ABORT, 'a delivery keeps its event, and a delivered one is done');
END;
