"""Full-text search (GET /api/v1/search): ranking, English and Chinese, privacy, and an
index that follows every write."""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import aiosqlite
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from insightreader import migrate, search
from tests.fake_upstream import FakeUpstream, Reply
from tests.support.client import Api, register
from tests.support.process import ServerProcess


async def save(api: Api, title: str, content: str) -> str:
    saved = await api.post("/api/v1/articles/save-with-analysis", {"title": title, "content": content})
    assert saved.status_code == 202, saved.text
    await api.wait_status(saved.json()["task_id"], "completed")
    return str(saved.json()["article_id"])


#: Every server test here runs on SQLite and on PostgreSQL (tests/conftest.py).
BOTH_DATABASES = True


async def found(api: Api, q: str, **params: Any) -> list[str]:
    response = await api.get("/api/v1/search", params={"q": q, **params})
    assert response.status_code == 200, response.text
    return [item["article_id"] for item in response.json()["items"]]


@pytest.fixture
async def offline(start_server: Callable[..., ServerProcess]) -> AsyncIterator[tuple[Api, Api]]:
    server = start_server()
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        yield await register(http), await register(http)


async def test_a_title_match_ranks_above_a_passing_mention_and_words_match_by_prefix_or_stem(
    offline: tuple[Api, Api],
) -> None:
    api, _ = offline
    mention = await save(api, "Notes from a walk", "We walked past the harbour. Someone mentioned street trees once. " * 3)
    titled = await save(api, "Street trees cool the city", "Shade lowers the temperature of the pavement by several degrees.")
    other = await save(api, "Running an analysis", "Cities keep records of their analyses of heat.")
    assert (await found(api, "trees"))[:2] == [titled, mention]
    response = (await api.get("/api/v1/search", params={"q": "trees"})).json()
    first = response["items"][0]
    assert first["title"] == "Street trees cool the city" and "trees" in first["snippet"].lower()
    assert first["score"] > response["items"][1]["score"] > 0
    for typed in ("analy", "analys", "runn", "Recor", "record", "analysis", "run"):  # as typed, or by stem
        assert await found(api, typed) == [other], typed
    assert set(await found(api, "cities")) == {titled, other}  # "city" by its stem
    assert await found(api, '"street trees"') == [titled, mention]
    assert await found(api, '"trees street"') == []
    assert await found(api, "trees harbour") == [mention]  # every part must match


async def test_chinese_words_of_one_two_and_four_characters(offline: tuple[Api, Api]) -> None:
    api, _ = offline
    planning = await save(api, "城市规划", "城市规划决定了街道的宽度和树木的位置。")
    living = await save(api, "生活", "我住在城市里，每天骑自行车上班。")
    assert set(await found(api, "城市")) == {planning, living}
    assert await found(api, "城市规划") == [planning]
    assert await found(api, "骑") == [living]
    assert await found(api, "自行车") == [living]
    assert await found(api, "市城") == []  # the characters in another order are another word
    snippet = (await api.get("/api/v1/search", params={"q": "自行车"})).json()["items"][0]["snippet"]
    assert "骑自行车上班" in snippet  # shown as written, without the index's separators


async def test_never_another_users_articles_and_edits_and_deletes_show_at_once(offline: tuple[Api, Api]) -> None:
    api, stranger = offline
    mine = await save(api, "Private diary", "The orchard behind the house has seven apple trees.")
    assert await found(stranger, "orchard") == []
    theirs = await save(stranger, "Their orchard", "An orchard of pears.")
    assert await found(api, "orchard") == [mine] and await found(stranger, "orchard") == [theirs]
    assert (await api.delete(f"/api/v1/articles/{mine}")).status_code == 204
    assert await found(api, "orchard") == []
    assert await found(stranger, "orchard") == [theirs]


async def test_paging_and_bad_queries(offline: tuple[Api, Api]) -> None:
    api, _ = offline
    ids = {await save(api, f"Lantern {n}", f"A paper lantern, number {n}.") for n in range(5)}
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        page = (await api.get("/api/v1/search", params={"q": "lantern", "limit": 2, **({"cursor": cursor} if cursor else {})})).json()
        seen += [item["article_id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == 5
    for q in ("   ", "!!! --", '"'):  # no word: nothing found
        assert await found(api, q) == []
    for params in ({"q": ""}, {"q": "x" * 501}, {}, {"q": "a", "cursor": "nope"}):
        response = await api.get("/api/v1/search", params=params)
        assert response.status_code == 422, (params, response.text)
        assert response.json()["error"]["code"] == "validation_error"
    # FTS5 syntax typed by a reader is just text.
    for q in ("NEAR(a b)", "title:lantern", "lantern*", "-lantern", "lantern OR", 'lantern"', "a AND", "^lantern"):
        assert (await api.get("/api/v1/search", params={"q": q})).status_code == 200, q


async def test_the_analysis_is_searched_once_it_is_written(start_server: Callable[..., ServerProcess]) -> None:
    analysis = {"summary": "Zeppelins return as freight carriers.", "key_points": ["Helium is scarce."],
                "topics": ["aviation"], "reading_time_minutes": 1, "language": "en"}
    async with FakeUpstream() as fake:
        fake.default = Reply(json.dumps(analysis))
        server = start_server(llm={"base_url": fake.base_url, "api_key": "sk-test-key-0123456789", "model": fake.model})
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            api = await register(http)
            article = await save(api, "Airships", "Large rigid airships carried passengers across the Atlantic.")
            task = (await api.all_tasks())[0]
            assert task["status"] == "completed", task
            assert await found(api, "zeppelins") == [article]
            assert await found(api, "aviation") == [article]


def test_queries_never_reach_fts5_as_syntax(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "q.db")
    conn.executescript(
        "CREATE VIRTUAL TABLE search USING fts5(user_id UNINDEXED, title, body, analysis, tags, notes);"
        "CREATE VIRTUAL TABLE search_stems USING fts5(text, content='', detail=none, tokenize='porter unicode61');"
        "CREATE TABLE articles (seq INTEGER PRIMARY KEY, id TEXT, user_id TEXT, title TEXT, content TEXT);"
    )

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.text(max_size=60))
    def check(typed: str) -> None:
        query = search.parse_query(typed)
        if query is None:
            return
        sql, params = search.page_sql(query, "u", 10, 0)
        conn.execute(sql, params).fetchall()
        conn.execute(*search.shown_sql(query, [1, 2])).fetchall()

    check()
    conn.close()


@pytest.mark.sqlite_only
async def test_articles_saved_before_the_index_existed_are_indexed_at_start(
    tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    older = tmp_path / "older"
    older.mkdir()
    for path in sorted(migrate.migrations_dir().glob("000[1-6]_*.sql")):
        shutil.copy(path, older)
    database = tmp_path / "upgrade.db"
    async with aiosqlite.connect(database, isolation_level=None) as conn:
        await migrate.apply(conn, older)
    with closing(sqlite3.connect(database)) as conn:
        conn.execute("INSERT INTO users (id, username, password_hash, created_at) VALUES ('u', 'u', 'x', '2026')")
        for n in range(250):  # more than one batch
            conn.execute(
                "INSERT INTO articles (id, user_id, title, content, content_hash, created_at, updated_at)"
                " VALUES (?, 'u', ?, ?, ?, '2026-12-01T00:00:00.000Z', '2026-12-01T00:00:00.000Z')",
                (f"a{n}", f"Old article {n}", f"Written long ago about kites, number {n}. 风筝", f"sha256:{n}"),
            )
        conn.commit()
    server = start_server(database={"path": str(database)})
    await asyncio.to_thread(server.wait_for_log, "the search index holds every saved article")
    with closing(sqlite3.connect(database)) as conn:
        assert conn.execute("SELECT count(*) FROM search_backlog").fetchone()[0] == 0
        query = search.parse_query("kites 风筝")
        assert query is not None
        sql, params = search.page_sql(query, "u", 1000, 0)
        assert len(conn.execute(sql, params).fetchall()) == 250
    assert server.alive


async def test_tags_and_highlight_notes_are_searched(offline: tuple[Api, Api]) -> None:
    api, _ = offline
    article = await save(api, "Weekend reading", "Nothing about the subject in the text.")
    assert (await api.http.put(f"/api/v1/articles/{article}/tags", json={"tags": ["Ornithology"]}, headers=api.headers)).status_code == 200
    assert await found(api, "ornitho") == [article]
    assert (await api.http.put(f"/api/v1/articles/{article}/tags", json={"tags": []}, headers=api.headers)).status_code == 200
    assert await found(api, "ornithology") == []
