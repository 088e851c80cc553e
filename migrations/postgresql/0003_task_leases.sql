-- Leases on running tasks, as SQLite's 0016: several processes share the queue, and a
-- running task whose lease ran out (its process died or stalled) is taken back to
-- pending by any process.
ALTER TABLE tasks ADD COLUMN lease_owner TEXT;
ALTER TABLE tasks ADD COLUMN lease_until TEXT;
CREATE INDEX tasks_leases ON tasks(lease_until) WHERE status = 'running';
