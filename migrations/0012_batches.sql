-- Batches of bulk work a user started: imports (POST /imports, insightreader/imports.py)
-- now; re-analysis later. Progress counters change in the same transaction as the
-- items they count.
CREATE TABLE batches (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    kind        TEXT NOT NULL CHECK (kind IN ('import')),
    -- The import's file format.
    format      TEXT,
    -- 'staging' while the request stores its items (a batch left staging by a crash is
    -- dropped at start: its request never answered), then 'running', 'finished'.
    status      TEXT NOT NULL CHECK (status IN ('staging', 'running', 'finished')),
    total       INTEGER NOT NULL,
    done        INTEGER NOT NULL DEFAULT 0,
    failed      INTEGER NOT NULL DEFAULT 0,
    duplicates  INTEGER NOT NULL DEFAULT 0,
    -- Why the last failed item failed.
    last_error  TEXT,
    created_at  TEXT NOT NULL,
    finished_at TEXT
);
CREATE INDEX batches_user ON batches(user_id, created_at);
CREATE INDEX batches_open ON batches(status) WHERE status != 'finished';

-- The items of a batch still to be done, in file order; each is deleted in the
-- transaction that does it, so a restart resumes exactly where the work stopped.
CREATE TABLE batch_items (
    batch_id TEXT NOT NULL REFERENCES batches(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    -- JSON: the item as the import read it (insightreader.importers.ImportItem).
    item     TEXT NOT NULL,
    PRIMARY KEY (batch_id, position)
) WITHOUT ROWID;
