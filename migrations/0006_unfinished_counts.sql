-- Every submit compares the user's unfinished tasks with tasks.max_pending_per_user.
-- Counting them through tasks_unfinished_by_user costs what the user has pending: with
-- a large limit (an operator's choice) and a long queue, every submit walked thousands
-- of index entries on the writer's thread. This counter, kept by triggers in the same
-- transaction as the task's row, makes the check one row read.

CREATE TABLE unfinished_counts (
    user_id TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    tasks   INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

-- Existing databases start from their unfinished tasks as they are.
INSERT INTO unfinished_counts (user_id, tasks)
    SELECT user_id, count(*) FROM tasks WHERE status IN ('pending', 'running') GROUP BY user_id;

CREATE TRIGGER unfinished_counts_insert AFTER INSERT ON tasks
    WHEN NEW.status IN ('pending', 'running')
BEGIN
    INSERT INTO unfinished_counts (user_id, tasks) VALUES (NEW.user_id, 1)
        ON CONFLICT (user_id) DO UPDATE SET tasks = tasks + 1;
END;

-- Only a change between unfinished (pending, running) and finished moves the count:
-- pending -> running and a retry's finished -> pending are the common ones.
CREATE TRIGGER unfinished_counts_update AFTER UPDATE OF status ON tasks
    WHEN (OLD.status IN ('pending', 'running')) != (NEW.status IN ('pending', 'running'))
BEGIN
    INSERT INTO unfinished_counts (user_id, tasks)
        VALUES (NEW.user_id, CASE WHEN NEW.status IN ('pending', 'running') THEN 1 ELSE -1 END)
        ON CONFLICT (user_id) DO UPDATE SET tasks = tasks + excluded.tasks;
END;

CREATE TRIGGER unfinished_counts_delete AFTER DELETE ON tasks
    WHEN OLD.status IN ('pending', 'running')
BEGIN
    UPDATE unfinished_counts SET tasks = tasks - 1 WHERE user_id = OLD.user_id;
END;
