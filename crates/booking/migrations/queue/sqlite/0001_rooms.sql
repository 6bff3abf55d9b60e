-- The waiting rooms of on-sales (crate::queue): their own file, so joining a queue never waits
-- for the booking writer.

-- One row per concert whose room someone joined: how far it got. Locked (on PostgreSQL) by
-- every ranking join and every tick: the order of ranks and of admissions.
CREATE TABLE rooms (
    concert_id BLOB PRIMARY KEY CHECK (length(concert_id) = 16),
    -- Sales opened and the pre-queue was ranked.
    shuffled   INTEGER NOT NULL DEFAULT 0 CHECK (shuffled IN (0, 1)),
    -- How many places are ranked: ranks 1..ranked are given, each to one place.
    ranked     INTEGER NOT NULL DEFAULT 0 CHECK (ranked >= 0),
    -- Everyone ranked up to here is admitted; never more than are ranked.
    admitted   INTEGER NOT NULL DEFAULT 0 CHECK (admitted BETWEEN 0 AND ranked),
    -- Admissions earned and not yet given.
    credit     REAL NOT NULL DEFAULT 0 CHECK (credit >= 0),
    -- The last tick, in milliseconds since the epoch.
    ticked_at  INTEGER,
    CHECK (shuffled = 1 OR (ranked = 0 AND admitted = 0))
) WITHOUT ROWID;

-- One place per user and concert.
CREATE TABLE places (
    concert_id BLOB NOT NULL REFERENCES rooms (concert_id),
    user_id    BLOB NOT NULL CHECK (length(user_id) = 16),
    -- The secret key of a place taken before the opening: the order of the shuffle.
    draw       INTEGER NOT NULL,
    -- The place in the admission order; NULL until the shuffle.
    rank       INTEGER CHECK (rank >= 1),
    joined_at  INTEGER NOT NULL,
    PRIMARY KEY (concert_id, user_id)
) WITHOUT ROWID;

-- No two places of a room share a rank.
CREATE UNIQUE INDEX places_by_rank ON places (concert_id, rank) WHERE rank IS NOT NULL;
-- The shuffle reads the pre-queue in the order of its keys.
CREATE INDEX places_unranked ON places (concert_id, draw) WHERE rank IS NULL;

-- A rank, once given, is the place's for good; places are never removed.
CREATE TRIGGER places_rank_is_final BEFORE UPDATE OF rank ON places
WHEN OLD.rank IS NOT NULL
BEGIN
    SELECT RAISE(ABORT, 'a place keeps its rank');
END;

CREATE TRIGGER places_stay BEFORE DELETE ON places
BEGIN
    SELECT RAISE(ABORT, 'places are never removed');
END;

-- Every move of a room's admitted rank, with its instant: a place's admission time is the first
-- move that reached its rank.
CREATE TABLE admissions (
    concert_id  BLOB NOT NULL REFERENCES rooms (concert_id),
    upto_rank   INTEGER NOT NULL CHECK (upto_rank >= 1),
    admitted_at INTEGER NOT NULL,
    PRIMARY KEY (concert_id, upto_rank)
) WITHOUT ROWID;
