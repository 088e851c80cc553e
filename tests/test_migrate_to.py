"""``insightreader migrate-to postgresql://…``: a library used on SQLite, copied, then
served from PostgreSQL as it was."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.support import db
from tests.support.cli import one_line_error, run_cli
from tests.support.client import Api, register
from tests.support.postgres import needs_postgres
from tests.support.process import ServerProcess

pytestmark = needs_postgres

TEXT = (
    "Street trees cool the air around them. Their shade lowers the temperature of the pavement"
    " by several degrees on a summer afternoon. 城市里的行道树让街道更凉快。"
)


async def use_the_library(api: Api) -> dict[str, Any]:
    """Save, analyse, tag, highlight, mint a token: what a reader leaves in a database."""
    saved = await api.post("/api/v1/articles/save-with-analysis", {"title": "Street trees", "content": TEXT})
    assert saved.status_code == 202, saved.text
    article = saved.json()["article_id"]
    await api.wait_status(saved.json()["task_id"], "completed")
    assert (await api.put(f"/api/v1/articles/{article}/tags", {"tags": ["Cities", "Trees"]})).status_code == 200
    highlight = await api.post(f"/api/v1/articles/{article}/highlights", {"quote": "shade lowers the temperature", "note": "measured in Phoenix"})
    assert highlight.status_code == 201, highlight.text
    token = await api.post("/api/v1/tokens", {"name": "script", "scope": "read"})
    assert token.status_code == 201, token.text
    return {"article": article, "token": token.json()["token"]}


async def snapshot(api: Api) -> dict[str, Any]:
    """What the reader sees: articles, one article in full, tasks, tags, search hits."""
    articles = await api.every("/api/v1/articles")
    article = (await api.get(f"/api/v1/articles/{articles[0]['article_id']}")).json()
    tasks = await api.all_tasks()
    tags = (await api.get("/api/v1/tags")).json()
    hits = {q: [h["article_id"] for h in (await api.get("/api/v1/search", params={"q": q})).json()["items"]]
            for q in ("trees", "行道树", "phoenix", "cities")}
    return {"articles": articles, "article": article, "tasks": tasks, "tags": tags, "hits": hits}


async def test_a_sqlite_library_moves_to_postgresql_whole(
    tmp_path: Path, start_server: Callable[..., ServerProcess], postgres_url: str
) -> None:
    server = start_server()
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        api = await register(http, "mover", "a long enough password")
        made = await use_the_library(api)
        before = await snapshot(api)
        assert all(before["hits"].values()), before["hits"]

        # Not while a server uses the SQLite file.
        config = tmp_path / "config.toml"
        busy = run_cli("migrate-to", postgres_url, "--config", str(config), cwd=tmp_path)
        assert "another insightreader server" in one_line_error(busy)
    assert server.terminate() == 0
    events_before = db.rows(tmp_path / "data" / "test.db", "SELECT max(id) AS id FROM events")[0]["id"]

    moved = run_cli("migrate-to", postgres_url, "--config", str(config), cwd=tmp_path)
    assert moved.returncode == 0, moved.stderr
    assert "  articles: 1" in moved.stdout and "  users: 1" in moved.stdout

    again = run_cli("migrate-to", postgres_url, "--config", str(config), cwd=tmp_path)
    assert "already holds InsightReader data" in one_line_error(again)

    on_postgres = start_server(database={"url": postgres_url})
    async with httpx.AsyncClient(base_url=on_postgres.url, timeout=30) as http:
        login = await http.post("/api/v1/auth/login", json={"username": "mover", "password": "a long enough password"})
        assert login.status_code == 200, login.text
        moved_api = Api(http, login.json()["access_token"], "mover")
        after = await snapshot(moved_api)
        assert after == before
        listed = await http.get("/api/v1/tasks", headers={"Authorization": f"Bearer {made['token']}"})
        assert listed.status_code == 200  # the API token still works

        # New rows continue after the copied ones.
        newer = await moved_api.post("/api/v1/articles/save-with-analysis", {"title": "Later", "content": "A later text about parks."})
        await moved_api.wait_status(newer.json()["task_id"], "completed")
        articles = await moved_api.every("/api/v1/articles")
        assert [a["article_id"] for a in articles][1:] == [a["article_id"] for a in before["articles"]]
    assert db.rows(postgres_url, "SELECT max(id) AS id FROM events")[0]["id"] > events_before
