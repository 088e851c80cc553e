-- Webhooks (docs/api.md, "Webhooks"; insightreader/webhooks.py): a user's receivers of
-- events, and the deliveries to them. A delivery is created in the transaction that
-- stores its event, so none is lost to a crash, and keeps its id (the Standard
-- Webhooks message id) across retries.
CREATE TABLE webhooks (
    id              TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    url             TEXT NOT NULL,
    -- JSON array of the event types delivered.
    events          TEXT NOT NULL,
    -- whsec_ + base64: the signing key, needed to sign every delivery (shown once).
    secret          TEXT NOT NULL,
    enabled         INTEGER NOT NULL DEFAULT 1,
    disabled_reason TEXT,
    -- When the deliveries started failing (NULL while they succeed): 24 hours on, the
    -- webhook is disabled.
    failing_since   TEXT,
    created_at      TEXT NOT NULL
);
CREATE INDEX webhooks_user ON webhooks(user_id, created_at);

CREATE TABLE webhook_deliveries (
    id              TEXT PRIMARY KEY,
    webhook_id      TEXT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    event           TEXT NOT NULL,
    -- The body as sent, the same on every attempt.
    payload         TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT,
    last_status     INTEGER,
    last_error      TEXT,
    created_at      TEXT NOT NULL,
    finished_at     TEXT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_log ON webhook_deliveries(webhook_id, created_at);
CREATE INDEX webhook_deliveries_finished ON webhook_deliveries(finished_at) WHERE status != 'pending';
