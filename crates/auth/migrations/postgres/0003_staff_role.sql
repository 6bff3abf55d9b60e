-- Door staff: a third role, `staff`, and a third reason to end a session, `role_changed` (a
-- demotion ends every session of the user, so that no token keeps the rights they lost).
ALTER TABLE users DROP CONSTRAINT users_role_check,
    ADD CONSTRAINT users_role_check CHECK (role IN ('customer', 'staff', 'admin'));
ALTER TABLE sessions DROP CONSTRAINT sessions_revoke_reason_check,
    ADD CONSTRAINT sessions_revoke_reason_check
        CHECK (revoke_reason IN ('logout', 'refresh_token_reuse', 'role_changed'));
