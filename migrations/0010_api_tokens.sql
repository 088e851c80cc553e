-- Personal API tokens for scripts (docs/api.md, "API tokens"). The secret is shown once
-- when the token is created; only its SHA-256 is kept (digest), which is what every
-- request with the token looks up. Deleting the row revokes the token at once.
CREATE TABLE api_tokens (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    scope        TEXT NOT NULL CHECK (scope IN ('read', 'write')),
    digest       TEXT NOT NULL UNIQUE,
    created_at   TEXT NOT NULL,
    -- Written from memory every auth.token_use_flush_interval seconds and at shutdown,
    -- not on every request.
    last_used_at TEXT,
    -- NULL: the token does not expire.
    expires_at   TEXT
);
CREATE INDEX api_tokens_user ON api_tokens(user_id, created_at);
