-- no-transaction
-- Door staff: a third role, `staff`, and a third reason to end a session, `role_changed` (a
-- demotion ends every session of the user, so that no token keeps the rights they lost).
--
-- SQLite cannot change a CHECK constraint in place, so `users` and `sessions` are rebuilt with
-- the procedure SQLite documents for it: foreign keys off (outside any transaction, where the
-- pragma takes effect), one transaction that creates each new table, copies the rows, drops the
-- old one and renames the new one into its place, then foreign keys on again. Without the
-- first step, dropping `users` would delete every session through ON DELETE CASCADE.
PRAGMA foreign_keys = OFF;

BEGIN IMMEDIATE;

CREATE TABLE users_next (
    id            BLOB PRIMARY KEY NOT NULL CHECK (length(id) = 16),
    -- Normalized: trimmed and lower-cased, so uniqueness is case-insensitive.
    email         TEXT NOT NULL UNIQUE CHECK (email = lower(trim(email)) AND length(email) BETWEEN 3 AND 254),
    -- Normalized to '+' and digits.
    phone         TEXT UNIQUE CHECK (phone IS NULL OR phone GLOB '+[0-9]*'),
    full_name     TEXT NOT NULL CHECK (length(full_name) BETWEEN 1 AND 200),
    -- A PHC string ($argon2id$...). Never leaves this service.
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL DEFAULT 'customer' CHECK (role IN ('customer', 'staff', 'admin')),
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
) STRICT;
INSERT INTO users_next (id, email, phone, full_name, password_hash, role, created_at, updated_at)
    SELECT id, email, phone, full_name, password_hash, role, created_at, updated_at FROM users;
DROP TABLE users;
ALTER TABLE users_next RENAME TO users;

CREATE TABLE sessions_next (
    id            BLOB PRIMARY KEY NOT NULL CHECK (length(id) = 16),
    user_id       BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at    INTEGER NOT NULL,
    revoked_at    INTEGER,
    revoke_reason TEXT CHECK (revoke_reason IN ('logout', 'refresh_token_reuse', 'role_changed'))
) STRICT;
INSERT INTO sessions_next (id, user_id, created_at, revoked_at, revoke_reason)
    SELECT id, user_id, created_at, revoked_at, revoke_reason FROM sessions;
DROP TABLE sessions;
ALTER TABLE sessions_next RENAME TO sessions;
CREATE INDEX sessions_by_user ON sessions (user_id);
CREATE INDEX sessions_recently_revoked ON sessions (revoked_at) WHERE revoked_at IS NOT NULL;

COMMIT;

PRAGMA foreign_keys = ON;
