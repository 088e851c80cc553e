-- Leases on running tasks (insightreader/engine.py, "Leases"): the process running a
-- task (``lease_owner``, an id drawn at each start) renews ``lease_until`` while it
-- runs; a running task whose lease ran out is taken back to pending by any process.
-- On SQLite one process serves the file, and a start takes back every running task.
ALTER TABLE tasks ADD COLUMN lease_owner TEXT;
ALTER TABLE tasks ADD COLUMN lease_until TEXT;
CREATE INDEX tasks_leases ON tasks(lease_until) WHERE status = 'running';
