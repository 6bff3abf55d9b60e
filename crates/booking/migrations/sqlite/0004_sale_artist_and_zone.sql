-- What emails say about a concert: its artist, and the venue's time zone in which they give the
-- start. Catalog pushes both with the concert; until it has, a sale has no artist and is in UTC.
ALTER TABLE sales ADD COLUMN artist TEXT NOT NULL DEFAULT '';
ALTER TABLE sales ADD COLUMN time_zone TEXT NOT NULL DEFAULT 'UTC';
