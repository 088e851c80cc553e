-- Users, articles, tasks, lifecycle events, usage ledger and server metadata.
-- Timestamps are ISO-8601 UTC text with milliseconds ("2026-11-27T18:00:00.000Z"),
-- so they sort and compare as strings. JSON columns hold UTF-8 JSON text.

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE COLLATE NOCASE,
    password_hash TEXT NOT NULL,
    is_admin      INTEGER NOT NULL DEFAULT 0,
    created_at    TEXT NOT NULL
);

CREATE TABLE articles (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT NOT NULL UNIQUE,
    user_id      TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    title        TEXT NOT NULL,
    content      TEXT NOT NULL,
    url          TEXT,
    content_hash TEXT NOT NULL,
    analysis     TEXT,
    meta_analysis TEXT,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);
-- Saving the same content twice gives the same article.
CREATE UNIQUE INDEX articles_user_content ON articles(user_id, content_hash);
CREATE INDEX articles_user_seq ON articles(user_id, seq);

CREATE TABLE article_lenses (
    article_id TEXT NOT NULL REFERENCES articles(id) ON DELETE CASCADE,
    lens_type  TEXT NOT NULL,
    result     TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (article_id, lens_type)
);

CREATE TABLE tasks (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT NOT NULL UNIQUE,
    user_id          TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    task_type        TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
    priority         INTEGER NOT NULL,
    -- Runs started; raised before each run so a crash loop ends at tasks.max_attempts.
    attempts         INTEGER NOT NULL DEFAULT 0,
    -- Runs not counted against max_attempts (ended by a graceful shutdown, a
    -- deferral, or before a manual retry).
    attempts_excused INTEGER NOT NULL DEFAULT 0,
    input            TEXT NOT NULL,
    input_hash       TEXT NOT NULL,
    idempotency_key  TEXT,
    article_id       TEXT,
    metadata         TEXT NOT NULL,
    result           TEXT,
    error            TEXT,
    model            TEXT,
    prompt_tokens    INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    created_at       TEXT NOT NULL,
    started_at       TEXT,
    finished_at      TEXT
);
-- One unfinished task per (user, content hash): a duplicate submit joins it.
CREATE UNIQUE INDEX tasks_active_hash ON tasks(user_id, input_hash)
    WHERE status IN ('pending', 'running');
CREATE UNIQUE INDEX tasks_idempotency ON tasks(user_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX tasks_completed_hash ON tasks(user_id, input_hash, finished_at)
    WHERE status = 'completed';
CREATE INDEX tasks_user_seq ON tasks(user_id, seq);
CREATE INDEX tasks_unfinished ON tasks(status) WHERE status IN ('pending', 'running');
CREATE INDEX tasks_article ON tasks(article_id) WHERE article_id IS NOT NULL;

-- Lifecycle events kept for Last-Event-ID resumption (pruned after sse.retention).
-- AUTOINCREMENT: an id is never reused, even after pruning.
CREATE TABLE events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    TEXT NOT NULL,
    event      TEXT NOT NULL,
    data       TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX events_user_id ON events(user_id, id);
CREATE INDEX events_created ON events(created_at);

-- Tokens spent, per user, UTC day and model; kept when tasks or articles are deleted.
CREATE TABLE usage (
    user_id           TEXT NOT NULL,
    day               TEXT NOT NULL,
    model             TEXT NOT NULL,
    prompt_tokens     INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    tasks             INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, day, model)
);

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
