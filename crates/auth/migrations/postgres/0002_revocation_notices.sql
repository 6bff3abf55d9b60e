-- Every instance of a deployment keeps revoked sessions in memory and refuses their access tokens
-- at once. A revocation made by one instance is announced to the others on the channel
-- `session_revoked` (delivered when the revoking transaction commits), whatever code path
-- revoked it.
CREATE FUNCTION announce_revoked_session() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('session_revoked', NEW.id::text);
    RETURN NULL;
END $$;

CREATE TRIGGER sessions_announce_revocation
AFTER UPDATE OF revoked_at ON sessions
FOR EACH ROW WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL)
EXECUTE FUNCTION announce_revoked_session();
