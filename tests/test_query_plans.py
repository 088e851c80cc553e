"""The statements on the submit path use indexes that stay small as history grows."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from insightreader.config import DatabaseSettings
from insightreader.store import Store, Tx


async def test_submit_path_queries_do_not_walk_a_users_history(tmp_path: Path) -> None:
    store = Store(DatabaseSettings(path=tmp_path / "plans.db"))
    await store.open()
    statements: list[str] = []

    def submit_path_reads(tx: Tx) -> None:
        tx._conn.set_trace_callback(statements.append)
        try:
            tx.count_unfinished("u")
            tx.active_task("u", "sha256:x")
            tx.completed_task("u", "sha256:x", "2026-01-01")
            tx.idempotency_key("u", "key")
            tx.unfinished_reservations("u")
            tx.library_usage("u")
        finally:
            tx._conn.set_trace_callback(None)

    try:
        await store.write(submit_path_reads)
    finally:
        await store.close()
    assert len(statements) == 6
    conn = sqlite3.connect(tmp_path / "plans.db")
    plans = {}
    for sql in statements:
        rows = conn.execute("EXPLAIN QUERY PLAN " + sql).fetchall()
        plans[sql] = " | ".join(row[3] for row in rows)
    conn.close()
    for sql, plan in plans.items():
        assert "SCAN tasks" not in plan, (sql, plan)
        assert "tasks_user_seq" not in plan, (sql, plan)  # the user's whole history
    # The pending-task limit reads one counter row, never the user's tasks.
    count = next(plan for sql, plan in plans.items() if "unfinished_counts" in sql)
    assert "tasks" not in count.replace("unfinished_counts", "")
    # The token budget sums reservations over the user's unfinished tasks only.
    reserved = next(plan for sql, plan in plans.items() if "reserved_tokens" in sql)
    assert "tasks_unfinished_by_user" in reserved
    # The storage quota reads one counter row, never the user's articles.
    quota = next(plan for sql, plan in plans.items() if "library_usage" in sql)
    assert "articles" not in quota.replace("library_usage", "")
