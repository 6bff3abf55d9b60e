-- Events a payment provider sent about a hold's payment (Stripe's webhooks), kept by the
-- provider's event id: each event is applied at most once, in the transaction that applies it,
-- however often the provider delivers it. Instants are INTEGER milliseconds since the Unix epoch.
CREATE TABLE payment_events (
    id          TEXT PRIMARY KEY NOT NULL,
    provider    TEXT NOT NULL CHECK (provider IN ('simulated', 'stripe')),
    kind        TEXT NOT NULL CHECK (kind IN ('succeeded', 'failed')),
    hold_id     BLOB NOT NULL REFERENCES holds (id),
    received_at INTEGER NOT NULL
) STRICT;
