-- The Catalog service's store: concert metadata and seat-type definitions.
-- Booking owns the seats themselves (capacity as sold against, remaining, the sale window); the
-- catalog never stores `remaining`. Instants are INTEGER milliseconds since the Unix epoch (UTC).

CREATE TABLE concerts (
    -- A stable integer key for the full-text index (an external-content FTS5 table needs one;
    -- an implicit rowid could change on VACUUM).
    seq            INTEGER PRIMARY KEY,
    id             BLOB NOT NULL UNIQUE CHECK (length(id) = 16),
    name           TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    artist         TEXT NOT NULL CHECK (length(artist) BETWEEN 1 AND 200),
    venue          TEXT NOT NULL CHECK (length(venue) BETWEEN 1 AND 200),
    description    TEXT NOT NULL DEFAULT '' CHECK (length(description) <= 5000),
    category       TEXT NOT NULL CHECK (length(category) BETWEEN 1 AND 50),
    starts_at      INTEGER NOT NULL,
    cancelled_at   INTEGER,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    -- Bumped by every change. Booking has seen every change up to `synced_version`; a concert
    -- with `synced_version < version` is re-pushed by the reconciler, and one that was never
    -- synced (`synced_version = 0`) is hidden from public reads.
    version        INTEGER NOT NULL DEFAULT 1 CHECK (version >= 1),
    synced_version INTEGER NOT NULL DEFAULT 0 CHECK (synced_version BETWEEN 0 AND version)
) STRICT;

-- Listing order and keyset pagination: (starts_at, id) > (?, ?).
CREATE INDEX concerts_by_start ON concerts (starts_at, id);
CREATE INDEX concerts_by_category ON concerts (category COLLATE NOCASE, starts_at, id);
-- What the reconciler has to push; small in steady state.
CREATE INDEX concerts_unsynced ON concerts (id) WHERE synced_version < version;

CREATE TABLE seat_types (
    id          BLOB PRIMARY KEY NOT NULL CHECK (length(id) = 16),
    concert_id  BLOB NOT NULL REFERENCES concerts (id) ON DELETE CASCADE,
    -- Display order: the order the seat types were declared in.
    position    INTEGER NOT NULL CHECK (position >= 0),
    name        TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    price_cents INTEGER NOT NULL CHECK (price_cents >= 0),
    currency    TEXT NOT NULL CHECK (length(currency) = 3 AND currency GLOB '[A-Z][A-Z][A-Z]'),
    -- The capacity provisioned to Booking; Booking's own figure is authoritative once provisioned.
    capacity    INTEGER NOT NULL CHECK (capacity BETWEEN 1 AND 1000000),
    created_at  INTEGER NOT NULL,
    UNIQUE (concert_id, position)
) STRICT;

-- Names are unique within a concert regardless of (ASCII) case; the service also folds Unicode.
CREATE UNIQUE INDEX seat_types_name_per_concert ON seat_types (concert_id, lower(name));

-- Case-insensitive substring search over name, artist and venue. The trigram tokenizer indexes
-- every three-character window, so `MATCH '"abc"'` is a substring match that uses the index.
CREATE VIRTUAL TABLE concerts_fts USING fts5 (
    name, artist, venue,
    content = 'concerts', content_rowid = 'seq',
    tokenize = 'trigram'
);

CREATE TRIGGER concerts_fts_after_insert AFTER INSERT ON concerts BEGIN
    INSERT INTO concerts_fts (rowid, name, artist, venue)
    VALUES (new.seq, new.name, new.artist, new.venue);
END;

CREATE TRIGGER concerts_fts_after_delete AFTER DELETE ON concerts BEGIN
    INSERT INTO concerts_fts (concerts_fts, rowid, name, artist, venue)
    VALUES ('delete', old.seq, old.name, old.artist, old.venue);
END;

CREATE TRIGGER concerts_fts_after_update AFTER UPDATE OF name, artist, venue ON concerts BEGIN
    INSERT INTO concerts_fts (concerts_fts, rowid, name, artist, venue)
    VALUES ('delete', old.seq, old.name, old.artist, old.venue);
    INSERT INTO concerts_fts (rowid, name, artist, venue)
    VALUES (new.seq, new.name, new.artist, new.venue);
END;
