-- The Auth service's store: accounts, sessions and their refresh tokens.
-- Instants are INTEGER milliseconds since the Unix epoch (UTC) so that SQL compares them exactly.

CREATE TABLE users (
    id            BLOB PRIMARY KEY NOT NULL CHECK (length(id) = 16),
    -- Normalized: trimmed and lower-cased, so uniqueness is case-insensitive.
    email         TEXT NOT NULL UNIQUE CHECK (email = lower(trim(email)) AND length(email) BETWEEN 3 AND 254),
    -- Normalized to '+' and digits.
    phone         TEXT UNIQUE CHECK (phone IS NULL OR phone GLOB '+[0-9]*'),
    full_name     TEXT NOT NULL CHECK (length(full_name) BETWEEN 1 AND 200),
    -- A PHC string ($argon2id$...). Never leaves this service.
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL DEFAULT 'customer' CHECK (role IN ('customer', 'admin')),
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
) STRICT;

-- One row per login. Revoking it ends the session: its access tokens are refused at once and its
-- refresh tokens stop working.
CREATE TABLE sessions (
    id            BLOB PRIMARY KEY NOT NULL CHECK (length(id) = 16),
    user_id       BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at    INTEGER NOT NULL,
    revoked_at    INTEGER,
    revoke_reason TEXT CHECK (revoke_reason IN ('logout', 'refresh_token_reuse'))
) STRICT;

CREATE INDEX sessions_by_user ON sessions (user_id);
CREATE INDEX sessions_recently_revoked ON sessions (revoked_at) WHERE revoked_at IS NOT NULL;

-- Every refresh token ever issued, by the SHA-256 of its value (the value itself is never stored).
-- A token is spent when it is exchanged; presenting a spent token again is reuse, which revokes
-- the whole session (rotation with reuse detection).
CREATE TABLE refresh_tokens (
    token_hash BLOB PRIMARY KEY NOT NULL CHECK (length(token_hash) = 32),
    session_id BLOB NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    issued_at  INTEGER NOT NULL,
    expires_at INTEGER NOT NULL CHECK (expires_at > issued_at),
    spent_at   INTEGER
) STRICT;

CREATE INDEX refresh_tokens_by_session ON refresh_tokens (session_id);
