-- Tells a lease (a worker has claimed the message) apart from a retry scheduled after a failure:
-- both move available_at into the future, but only leases of a worker that died with its process
-- may be released at once when that process starts again.
ALTER TABLE outbox ADD COLUMN leased INTEGER NOT NULL DEFAULT 0 CHECK (leased IN (0, 1));
