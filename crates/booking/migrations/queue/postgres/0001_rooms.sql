-- The waiting rooms of on-sales (crate::queue): their own schema, so joining a queue never waits
-- for the booking writer.

-- One row per concert whose room someone joined: how far it got. Locked by every ranking join
-- and every tick: the order of ranks and of admissions across instances.
CREATE TABLE rooms (
    concert_id uuid PRIMARY KEY,
    -- Sales opened and the pre-queue was ranked.
    shuffled   boolean NOT NULL DEFAULT false,
    -- How many places are ranked: ranks 1..ranked are given, each to one place.
    ranked     bigint NOT NULL DEFAULT 0 CHECK (ranked >= 0),
    -- Everyone ranked up to here is admitted; never more than are ranked.
    admitted   bigint NOT NULL DEFAULT 0 CHECK (admitted BETWEEN 0 AND ranked),
    -- Admissions earned and not yet given.
    credit     double precision NOT NULL DEFAULT 0 CHECK (credit >= 0),
    ticked_at  timestamptz,
    CHECK (shuffled OR (ranked = 0 AND admitted = 0))
);

-- One place per user and concert.
CREATE TABLE places (
    concert_id uuid NOT NULL REFERENCES rooms (concert_id),
    user_id    uuid NOT NULL,
    -- The secret key of a place taken before the opening: the order of the shuffle.
    draw       bigint NOT NULL,
    -- The place in the admission order; NULL until the shuffle.
    rank       bigint CHECK (rank >= 1),
    joined_at  timestamptz NOT NULL,
    PRIMARY KEY (concert_id, user_id)
);

-- No two places of a room share a rank.
CREATE UNIQUE INDEX places_by_rank ON places (concert_id, rank) WHERE rank IS NOT NULL;
-- The shuffle reads the pre-queue in the order of its keys.
CREATE INDEX places_unranked ON places (concert_id, draw) WHERE rank IS NULL;

-- A rank, once given, is the place's for good; places are never removed.
CREATE FUNCTION places_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'places are never removed';
    END IF;
    IF OLD.rank IS NOT NULL AND NEW.rank IS DISTINCT FROM OLD.rank THEN
        RAISE EXCEPTION 'a place keeps its rank';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER places_guard BEFORE UPDATE OR DELETE ON places
    FOR EACH ROW EXECUTE FUNCTION places_guard();

-- Every move of a room's admitted rank, with its instant: a place's admission time is the first
-- move that reached its rank.
CREATE TABLE admissions (
    concert_id  uuid NOT NULL REFERENCES rooms (concert_id),
    upto_rank   bigint NOT NULL CHECK (upto_rank >= 1),
    admitted_at timestamptz NOT NULL,
    PRIMARY KEY (concert_id, upto_rank)
);
