-- Each concert's sales on one owner (split deployment on PostgreSQL): the Booking instances that
-- are alive, and which one sells each concert. Both are leases on the database's clock, renewed
-- every second by their instance; a row past its time is free to be taken over. They spread the
-- writes, they are not what keeps the sale right: every booking rule is checked in the writers'
-- transactions whoever owns the concert, so two instances that both think they own one (for the
-- moment a lease changes hands) still cannot oversell it.
CREATE TABLE booking_instances (
    id uuid PRIMARY KEY,
    -- Where the other instances reach this one: its root URL.
    url text NOT NULL CONSTRAINT booking_instance_url_present CHECK (url <> ''),
    alive_until timestamptz NOT NULL
);

CREATE TABLE concert_owners (
    concert_id uuid PRIMARY KEY,
    instance_id uuid NOT NULL,
    url text NOT NULL CONSTRAINT concert_owner_url_present CHECK (url <> ''),
    owned_until timestamptz NOT NULL
);

CREATE INDEX concert_owners_by_instance ON concert_owners (instance_id);
