-- Idempotency keys get a table of their own: a key whose first use was answered by
-- another task (a dedup hit, or a join) must still be remembered, with the request it
-- came with, so that its reuse with another body is a 409. Keys recorded on tasks so
-- far are carried over; the column on tasks goes.

CREATE TABLE idempotency_keys (
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    key        TEXT NOT NULL,
    input_hash TEXT NOT NULL,
    task_id    TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (user_id, key)
);

INSERT INTO idempotency_keys (user_id, key, input_hash, task_id, created_at)
    SELECT user_id, idempotency_key, input_hash, id, created_at FROM tasks
    WHERE idempotency_key IS NOT NULL;

DROP INDEX tasks_idempotency;
ALTER TABLE tasks DROP COLUMN idempotency_key;
