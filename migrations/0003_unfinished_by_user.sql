-- Every submit counts the user's unfinished tasks (tasks.max_pending_per_user). With
-- only the index on status, SQLite chose the (user_id, seq) index and walked the
-- user's whole history; this one holds only unfinished tasks, keyed by user, so the
-- count costs what the user has pending. (tasks_unfinished stays: recovery at start
-- reads every unfinished task through it.)
CREATE INDEX tasks_unfinished_by_user ON tasks(user_id) WHERE status IN ('pending', 'running');
