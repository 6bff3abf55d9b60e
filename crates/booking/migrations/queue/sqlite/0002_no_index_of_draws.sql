-- The pre-queue is no longer kept in the order of its secret keys. Each join wrote an entry of a
-- random key into that index, so a batch of joins dirtied about one index page per join, all
-- written to the log at its commit (a profile of 100 000 fans joining: the commits were over half
-- of the joins' store work). The shuffle, once per room at the opening, sorts the room's keys
-- instead of reading them in order.
DROP INDEX places_unranked;
