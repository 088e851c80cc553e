-- Sign-in sessions (docs/deploy.md, "Accounts and sessions"). A login opens one; its
-- access and refresh tokens carry its id, and every authenticated request checks it
-- is still here, so deleting the row (sign out, a password change, refresh-token
-- reuse) ends the session at once. Only the SHA-256 of the jti of the one refresh
-- token that still works is kept (rotation: each refresh replaces it).
CREATE TABLE sessions (
    id             TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at     TEXT NOT NULL,
    -- Sign-in or the last token refresh (not every request: that would be a write each).
    last_used_at   TEXT NOT NULL,
    user_agent     TEXT NOT NULL,
    address        TEXT NOT NULL,
    refresh_digest TEXT NOT NULL,
    -- When the current refresh token expires; the session is over then.
    expires_at     TEXT NOT NULL
);
CREATE INDEX sessions_user ON sessions(user_id, last_used_at);
