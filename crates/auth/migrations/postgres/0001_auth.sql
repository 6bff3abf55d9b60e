-- The Auth service's store: accounts, sessions and their refresh tokens.
-- The PostgreSQL twin of migrations/sqlite/0001_auth.sql: the same tables and constraints. It runs
-- in the service's own schema (the connection's search_path), so it never names one.
-- Instants are timestamptz; the store binds them truncated to whole milliseconds, so that both
-- engines hand back the same values.

CREATE TABLE users (
    id            uuid PRIMARY KEY,
    -- Normalized: trimmed and lower-cased, so uniqueness is case-insensitive.
    email         text NOT NULL CHECK (email = lower(btrim(email)) AND length(email) BETWEEN 3 AND 254),
    -- Normalized to '+' and digits.
    phone         text CHECK (phone ~ '^\+[0-9]+$'),
    full_name     text NOT NULL CHECK (length(full_name) BETWEEN 1 AND 200),
    -- A PHC string ($argon2id$...). Never leaves this service.
    password_hash text NOT NULL,
    role          text NOT NULL DEFAULT 'customer' CHECK (role IN ('customer', 'admin')),
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    -- The store maps violations of these two to `email_taken` / `phone_taken` by their names.
    CONSTRAINT users_email_key UNIQUE (email),
    CONSTRAINT users_phone_key UNIQUE (phone)
);

-- One row per login. Revoking it ends the session: its access tokens are refused at once and its
-- refresh tokens stop working.
CREATE TABLE sessions (
    id            uuid PRIMARY KEY,
    user_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at    timestamptz NOT NULL,
    revoked_at    timestamptz,
    revoke_reason text CHECK (revoke_reason IN ('logout', 'refresh_token_reuse'))
);

CREATE INDEX sessions_by_user ON sessions (user_id);
CREATE INDEX sessions_recently_revoked ON sessions (revoked_at) WHERE revoked_at IS NOT NULL;

-- Every refresh token ever issued, by the SHA-256 of its value (the value itself is never stored).
-- A token is spent when it is exchanged; presenting a spent token again is reuse, which revokes
-- the whole session (rotation with reuse detection).
CREATE TABLE refresh_tokens (
    token_hash bytea PRIMARY KEY CHECK (octet_length(token_hash) = 32),
    session_id uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    issued_at  timestamptz NOT NULL,
    expires_at timestamptz NOT NULL CHECK (expires_at > issued_at),
    spent_at   timestamptz
);

CREATE INDEX refresh_tokens_by_session ON refresh_tokens (session_id);
