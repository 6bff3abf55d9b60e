-- On-sale time: sales open at `sales_open_at`, which comes before the start; NULL: on sale as
-- soon as the concert is created.
ALTER TABLE concerts ADD COLUMN sales_open_at timestamptz,
    ADD CONSTRAINT sales_open_before_start CHECK (sales_open_at IS NULL OR sales_open_at < starts_at);
