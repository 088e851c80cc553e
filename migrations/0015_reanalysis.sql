-- Re-analysis batches (POST /articles/reanalyze, insightreader/reanalysis.py) beside the
-- imports, and cancelling either (POST /batches/{id}/cancel). SQLite cannot change a
-- CHECK constraint in place, so batches and batch_items are rebuilt (renaming first keeps
-- the foreign key of batch_items pointing at the right table while rows are copied).
ALTER TABLE batch_items RENAME TO batch_items_0014;
ALTER TABLE batches RENAME TO batches_0014;

CREATE TABLE batches (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    kind        TEXT NOT NULL CHECK (kind IN ('import', 'reanalysis')),
    -- The import's file format.
    format      TEXT,
    -- JSON: what a re-analysis was asked for ({"scope": …, "kinds": […]}).
    options     TEXT,
    -- 'staging' while the request stores its items (a batch left staging by a crash is
    -- dropped at start: its request never answered), then 'running', then 'finished'
    -- or 'cancelled'.
    status      TEXT NOT NULL CHECK (status IN ('staging', 'running', 'finished', 'cancelled')),
    total       INTEGER NOT NULL,
    done        INTEGER NOT NULL DEFAULT 0,
    failed      INTEGER NOT NULL DEFAULT 0,
    duplicates  INTEGER NOT NULL DEFAULT 0,
    -- Why the last failed item failed.
    last_error  TEXT,
    created_at  TEXT NOT NULL,
    finished_at TEXT
);
INSERT INTO batches (id, user_id, kind, format, status, total, done, failed, duplicates, last_error, created_at, finished_at)
    SELECT id, user_id, kind, format, status, total, done, failed, duplicates, last_error, created_at, finished_at
    FROM batches_0014;

-- The items of a batch still to do, in order; each is deleted in the transaction that
-- does it, so a restart resumes exactly where the work stopped.
CREATE TABLE batch_items (
    batch_id TEXT NOT NULL REFERENCES batches(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    -- JSON: an import's item (insightreader.importers.ImportItem) or a re-analysis's
    -- {article_id, task_type, lens_type?}.
    item     TEXT NOT NULL,
    PRIMARY KEY (batch_id, position)
) WITHOUT ROWID;
INSERT INTO batch_items (batch_id, position, item) SELECT batch_id, position, item FROM batch_items_0014;

DROP TABLE batch_items_0014;
DROP TABLE batches_0014;
CREATE INDEX batches_user ON batches(user_id, created_at);
CREATE INDEX batches_open ON batches(status) WHERE status = 'running' OR status = 'staging';

-- The batch that submitted a task (an import's or a re-analysis's): its progress and its
-- cancel find the tasks by it.
ALTER TABLE tasks ADD COLUMN batch_id TEXT;
CREATE INDEX tasks_batch ON tasks(batch_id, status) WHERE batch_id IS NOT NULL;
