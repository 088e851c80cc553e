"""The statements on the submit path use indexes that stay small as history grows."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from insightreader.config import DatabaseSettings
from insightreader.records import Article, User
from insightreader.store import ArticleFilter, Store, Tx


async def test_submit_path_queries_do_not_walk_a_users_history(tmp_path: Path) -> None:
    store = Store(DatabaseSettings(path=tmp_path / "plans.db"))
    await store.open()
    statements: list[str] = []

    def submit_path_reads(tx: Tx) -> None:
        tx._conn.connection.set_trace_callback(statements.append)
        try:
            tx.count_unfinished("u")
            tx.active_task("u", "sha256:x")
            tx.completed_task("u", "sha256:x", "2026-01-01")
            tx.idempotency_key("u", "key")
            tx.unfinished_reservations("u")
            tx.library_usage("u")
        finally:
            tx._conn.connection.set_trace_callback(None)

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


async def test_library_lists_page_through_indexes(tmp_path: Path) -> None:
    """Each filter of GET /articles pages newest first through an index (no scan of
    the articles, no sort), and GET /tags reads the user's tags only."""
    store = Store(DatabaseSettings(path=tmp_path / "library.db"))
    await store.open()
    now = "2026-12-05T00:00:00.000Z"

    def fill(tx: Tx) -> None:
        tx.insert_user(User(id="u", username="u", password_hash="x", is_admin=False, created_at=now))
        for n in range(30):
            tx.insert_article(Article(
                id=f"a{n}", seq=0, user_id="u", title=f"t{n}", content=f"text {n}", url=None,
                content_hash=f"sha256:{n}", analysis=None, meta_analysis=None, lenses={},
                created_at=now, updated_at=now,
            ))
            tx.set_article_tags(f"a{n}", "u", [("even" if n % 2 else "odd", "x")], now)
        tx._conn.execute("ANALYZE")

    statements: list[str] = []
    try:
        await store.write(fill)
        await store._reader.connection.set_trace_callback(statements.append)  # type: ignore[union-attr]
        filters = [
            ArticleFilter(), ArticleFilter(archived=False), ArticleFilter(favorite=True),
            ArticleFilter(tag_key="even"), ArticleFilter(tag_key="even", archived=True, favorite=False),
        ]
        for only in filters:
            await store.read.list_articles("u", limit=5, before_seq=20, only=only)
        await store.read.tags("u")
    finally:
        await store.close()
    conn = sqlite3.connect(tmp_path / "library.db")
    plans = {
        sql: " | ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql).fetchall())
        for sql in statements
        if sql.lstrip().upper().startswith("SELECT")
    }
    conn.close()
    lists = [plan for sql, plan in plans.items() if "LIMIT" in sql]
    assert len(lists) == len(filters)
    for plan in lists:
        assert "SCAN a" not in plan.replace("SCAN at", ""), plan
        assert "TEMP B-TREE" not in plan, plan
    tags = next(plan for sql, plan in plans.items() if "FROM tags WHERE user_id" in sql)
    assert "tags_user_key" in tags and "TEMP B-TREE" not in tags, tags
