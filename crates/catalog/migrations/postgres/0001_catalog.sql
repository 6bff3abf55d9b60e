-- The Catalog service's store on PostgreSQL: the tables and rules of the SQLite store
-- (migrations/sqlite/0001_catalog.sql) in PostgreSQL's own types. It runs in the catalog's
-- schema, which every connection's search_path names, so nothing here names it.
-- Booking owns the seats themselves (capacity as sold against, remaining, the sale window); the
-- catalog never stores `remaining`. Instants are bound at whole milliseconds, as SQLite keeps
-- them, so that both engines return the same values and listing cursors.

CREATE TABLE concerts (
    id             uuid PRIMARY KEY,
    -- Insertion order: the reconciler pushes the oldest changes first, as on SQLite.
    seq            bigint GENERATED ALWAYS AS IDENTITY,
    name           text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    artist         text NOT NULL CHECK (char_length(artist) BETWEEN 1 AND 200),
    venue          text NOT NULL CHECK (char_length(venue) BETWEEN 1 AND 200),
    description    text NOT NULL DEFAULT '' CHECK (char_length(description) <= 5000),
    category       text NOT NULL CHECK (char_length(category) BETWEEN 1 AND 50),
    starts_at      timestamptz NOT NULL,
    cancelled_at   timestamptz,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    -- Bumped by every change. Booking has seen every change up to `synced_version`; a concert
    -- with `synced_version < version` is re-pushed by the reconciler, and one that was never
    -- synced (`synced_version = 0`) is hidden from public reads.
    version        bigint NOT NULL DEFAULT 1 CHECK (version >= 1),
    synced_version bigint NOT NULL DEFAULT 0 CHECK (synced_version BETWEEN 0 AND version)
);

-- Listing order and keyset pagination: (starts_at, id) > ($1, $2). uuid compares bytewise, as
-- SQLite compares the 16-byte blobs, so both engines list in the same order.
CREATE INDEX concerts_by_start ON concerts (starts_at, id);
CREATE INDEX concerts_by_category ON concerts (lower(category), starts_at, id);
-- What the reconciler has to push; small in steady state.
CREATE INDEX concerts_unsynced ON concerts (seq) WHERE synced_version < version;

CREATE TABLE seat_types (
    id          uuid PRIMARY KEY,
    concert_id  uuid NOT NULL REFERENCES concerts (id) ON DELETE CASCADE,
    -- Display order: the order the seat types were declared in.
    position    bigint NOT NULL CHECK (position >= 0),
    name        text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    price_cents bigint NOT NULL CHECK (price_cents >= 0),
    currency    text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    -- The capacity provisioned to Booking; Booking's own figure is authoritative once provisioned.
    capacity    bigint NOT NULL CHECK (capacity BETWEEN 1 AND 1000000),
    created_at  timestamptz NOT NULL,
    UNIQUE (concert_id, position)
);

-- Names are unique within a concert regardless of case. The store recognizes a violation by
-- this index's name.
CREATE UNIQUE INDEX seat_types_name_per_concert ON seat_types (concert_id, lower(name));

-- Text search is a case-insensitive substring match, `ILIKE`, over name, artist and venue. Where
-- the pg_trgm extension can be had, a trigram index answers it without scanning; where it cannot
-- (not installed on the server, or this role may not create extensions) the same queries scan,
-- with the same results, and the migration still succeeds. An extension lives once per database,
-- possibly in another service's schema, so its operator class is named by the schema it is in.
DO $$
DECLARE
    trgm_schema name;
BEGIN
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
    SELECT n.nspname INTO STRICT trgm_schema
    FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
    WHERE e.extname = 'pg_trgm';
    EXECUTE format(
        'CREATE INDEX concerts_text_trgm ON concerts USING gin '
        '(name %1$I.gin_trgm_ops, artist %1$I.gin_trgm_ops, venue %1$I.gin_trgm_ops)',
        trgm_schema
    );
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'no trigram index for concert search (%); searches will scan', SQLERRM;
END
$$;
