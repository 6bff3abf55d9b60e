-- Events a payment provider sent about a hold's payment (Stripe's webhooks), kept by the
-- provider's event id: each event is applied at most once, in the transaction that applies it,
-- however often and however concurrently the provider delivers it.
CREATE TABLE payment_events (
    id          text PRIMARY KEY,
    provider    text NOT NULL CHECK (provider IN ('simulated', 'stripe')),
    kind        text NOT NULL CHECK (kind IN ('succeeded', 'failed')),
    hold_id     uuid NOT NULL REFERENCES holds (id),
    received_at timestamptz NOT NULL
);
