-- Which boxoffice instance's worker holds a message's lease. Several instances share the outbox,
-- so an instance starting again after a crash may release at once only the leases its own
-- previous run held; everyone else's run out on their own.
ALTER TABLE outbox ADD COLUMN leased_by uuid;
