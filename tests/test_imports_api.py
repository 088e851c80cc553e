"""POST /api/v1/imports over real HTTP: every format's file becomes the articles its
parser reads (links fetched from a local site), the JSON export of one server imports
into an identical library on a fresh one, duplicates and bad files create nothing, an import
survives a SIGKILL, and a large import never holds up another user's insight."""

from __future__ import annotations

import asyncio
import io
import re
import time
import zipfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from insightreader import importers, library, tagnames, urls
from tests.support.client import POLL, Api, register
from tests.support.pages import Site, serve_site
from tests.support.process import ServerProcess
from tests.support.sse import open_stream

#: Every server test here runs on SQLite and on PostgreSQL (tests/conftest.py).
BOTH_DATABASES = True

DATA = Path(__file__).parent / "data" / "imports"
FILES = {
    "netscape": "bookmarks.html",
    "pocket_csv": "pocket.csv",
    "instapaper_csv": "instapaper.csv",
    "readwise_csv": "readwise.csv",
    "wallabag": "wallabag.json",
    "insightreader": "insightreader.json",
    "omnivore": "omnivore",
}
_LINK = re.compile(rb"https?://")


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    async with serve_site() as served:
        yield served


@pytest.fixture
def server(start_server: Callable[..., ServerProcess]) -> ServerProcess:
    # The links of the files point at the local site (fetching them is allowed there).
    return start_server(library={"fetch_allow_private": True, "fetch_timeout": 5})


@pytest.fixture
async def http(server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        yield client


def on_site(data: bytes, site: Site) -> bytes:
    """``data`` with every link pointing at the local site (/articles/<the link>)."""
    return _LINK.sub(site.url("/articles/").encode(), data)


def file_of(fmt: str, site: Site) -> bytes:
    path = DATA / FILES[fmt]
    if not path.is_dir():
        return on_site(path.read_bytes(), site)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for member in sorted(path.rglob("*")):
            if member.is_file():
                archive.writestr(member.relative_to(path).as_posix(), on_site(member.read_bytes(), site))
    return buffer.getvalue()


async def start_import(api: Api, fmt: str, data: bytes) -> dict[str, Any]:
    response = await api.post(f"/api/v1/imports?format={fmt}", content=data)
    assert response.status_code == 202, response.text
    return response.json()


async def wait_finished(api: Api, import_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = await api.get(f"/api/v1/imports/{import_id}")
        assert response.status_code == 200, response.text
        state = response.json()
        if state["status"] == "finished":
            return state
        if time.monotonic() > deadline:
            raise AssertionError(f"import still running: {state}")
        await asyncio.sleep(POLL)


async def articles(api: Api) -> list[dict[str, Any]]:
    return await api.every("/api/v1/articles")


def identity(url: str | None, content: str | None) -> str:
    return urls.normalise(url) if url else library.content_hash(content or "")


@pytest.mark.parametrize("fmt", sorted(FILES))
async def test_each_format_becomes_the_articles_its_file_holds(http: httpx.AsyncClient, site: Site, fmt: str) -> None:
    api = await register(http)
    data = file_of(fmt, site)
    expected: dict[str, importers.ImportItem] = {}
    for item in importers.parse(fmt, data).items:
        expected.setdefault(identity(item.url, item.content), item)
    started = await start_import(api, fmt, data)
    assert started["status"] == "running"
    state = await wait_finished(api, started["import_id"])
    assert (state["done"], state["failed"]) == (len(expected), 0), state
    assert state["duplicates"] == state["total"] - len(expected)

    saved = await articles(api)
    assert len(saved) == len(expected)
    for article in saved:
        full = (await api.get(f"/api/v1/articles/{article['article_id']}")).json()
        item = expected[identity(article["url"], None if article["url"] else full["content"])]
        assert sorted(map(str.casefold, article["tags"])) == sorted(map(str.casefold, tagnames.clean_set(item.tags)))
        assert (article["archived"], article["favorite"]) == (item.archived, item.favorite), (fmt, item)
        if item.saved_at:
            assert article["created_at"] == item.saved_at
        if item.content is not None:
            assert full["content"] == item.content
            assert article["title"] == (item.title or "").strip() or not item.title
            marks = (await api.get(f"/api/v1/articles/{article['article_id']}/highlights")).json()["items"]
            placeable = [h for h in item.highlights if h.quote in item.content]
            assert [(h["quote"], h["note"]) for h in marks] == [(h.quote, h.note or "") for h in placeable]
        else:
            assert article["fetch_status"] in ("fetching", "fetched")


async def test_the_json_export_imports_into_the_same_library(
    http: httpx.AsyncClient, start_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    first = await register(http)
    texts = {
        "Street trees": "Street trees cool the pavement by several degrees.\n\nThey cost little next to drains.",
        "城市": "城市的树木让街道更凉快。\n\n它们比排水管便宜。",
        "Plain": "A short note about nothing in particular.",
    }
    ids = {}
    for title, content in texts.items():
        response = await first.post("/api/v1/articles/save-with-analysis", json={"title": title, "content": content})
        assert response.status_code in (200, 202), response.text
        ids[title] = response.json()["article_id"]
    assert (await first.put(f"/api/v1/articles/{ids['Street trees']}/tags", json={"tags": ["Cities", "heat"]})).status_code == 200
    assert (await first.patch(f"/api/v1/articles/{ids['城市']}", json={"archived": True, "favorite": True})).status_code == 200
    mark = await first.post(f"/api/v1/articles/{ids['Street trees']}/highlights",
                            json={"quote": "cost little", "note": "the budget argument"})
    assert mark.status_code == 201, mark.text
    exported = await first.get("/api/v1/export", params={"format": "json"})
    assert exported.status_code == 200

    # A fresh server of its own: the file is all that moves.
    fresh = start_server("fresh.toml", database={"path": str(tmp_path / "fresh" / "fresh.db")})
    other = httpx.AsyncClient(base_url=fresh.url, timeout=30)
    second = await register(other)
    started = await start_import(second, "insightreader", exported.content)
    state = await wait_finished(second, started["import_id"])
    assert (state["total"], state["done"], state["failed"], state["duplicates"]) == (3, 3, 0, 0)

    async def library_of(api: Api) -> list[tuple[Any, ...]]:
        rows = []
        for article in await articles(api):
            full = (await api.get(f"/api/v1/articles/{article['article_id']}")).json()
            marks = (await api.get(f"/api/v1/articles/{article['article_id']}/highlights")).json()["items"]
            rows.append((
                article["title"], full["content"], article["url"], sorted(article["tags"]), article["archived"],
                article["favorite"], article["created_at"], [(h["quote"], h["note"], h["position"]) for h in marks],
            ))
        return sorted(rows)

    try:
        assert await library_of(second) == await library_of(first)
    finally:
        await other.aclose()


async def test_duplicates_in_the_file_and_in_the_library_create_nothing(http: httpx.AsyncClient, site: Site) -> None:
    api = await register(http)
    link = site.url("/articles/one")
    saved = await api.post("/api/v1/articles/save-with-analysis", json={"url": link})
    assert saved.status_code == 202, saved.text
    rows = "title,url,time_added,tags,status\n" + "".join(
        f"T{i},{url},1700000000,,unread\n" for i, url in enumerate(
            [link + "?utm_source=x", site.url("/articles/two"), site.url("/articles/two#top"), site.url("/articles/three")]
        )
    )
    started = await start_import(api, "pocket_csv", rows.encode())
    assert (started["total"], started["duplicates"]) == (4, 1)  # /two twice in the file
    state = await wait_finished(api, started["import_id"])
    assert (state["done"], state["failed"], state["duplicates"]) == (2, 0, 2)  # /one was in the library
    assert len(await articles(api)) == 3

    again = await start_import(api, "pocket_csv", rows.encode())
    state = await wait_finished(api, again["import_id"])
    assert (state["done"], state["duplicates"]) == (0, 4)
    assert len(await articles(api)) == 3


async def test_a_bad_file_is_400_and_creates_nothing(http: httpx.AsyncClient) -> None:
    api = await register(http)
    bad = (("wallabag", b"{not json"), ("omnivore", b"PK\x03\x04 not a zip"), ("pocket_csv", b"title,url\n\xff\xfe,https://e.com\n"))
    for fmt, data in bad:
        response = await api.post(f"/api/v1/imports?format={fmt}", content=data)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "bad_import"
    unknown = await api.post("/api/v1/imports?format=evernote", content=b"x")
    assert unknown.status_code == 422
    assert (await api.get("/api/v1/imports")).json()["items"] == []
    assert await articles(api) == []
    other = await register(http)
    started = await start_import(other, "pocket_csv", b"title,url,time_added,tags,status\nT,https://127.0.0.1/x,1,,unread\n")
    assert (await api.get(f"/api/v1/imports/{started['import_id']}")).status_code == 404


async def test_a_multipart_upload_and_the_events(http: httpx.AsyncClient, site: Site) -> None:
    api = await register(http)
    data = file_of("pocket_csv", site)
    async with open_stream(http, api.token) as stream:
        assert (await stream.events.next()).event == "connected"
        response = await http.post(
            "/api/v1/imports", params={"format": "pocket_csv"}, headers=api.headers,
            files={"file": ("pocket.csv", data, "text/csv")},
        )
        assert response.status_code == 202, response.text
        import_id = response.json()["import_id"]
        got = await stream.events.until(lambda m: m.event == "import_finished" and m.data["import_id"] == import_id)
    finished = got[-1].data
    assert finished["status"] == "finished"
    assert finished["done"] + finished["failed"] + finished["duplicates"] == finished["total"]
    assert all(m.data["import_id"] == import_id for m in got if m.event.startswith("import_"))


async def test_an_import_survives_a_sigkill_and_imports_nothing_twice(
    start_server: Callable[..., ServerProcess], site: Site
) -> None:
    # One unfinished task at a time for the user: the import waits for room after each
    # few items, so it is surely still running when the server is killed.
    server = start_server(library={"fetch_allow_private": True}, tasks={"max_pending_per_user": 12, "max_concurrency": 1})
    rows = "title,url,time_added,tags,status\n" + "".join(
        f"T{i},{site.url(f'/articles/{i}')},1700000000,t{i % 3},unread\n" for i in range(60)
    )
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        api = await register(http)
        started = await start_import(api, "pocket_csv", rows.encode())
        state = (await api.get(f"/api/v1/imports/{started['import_id']}")).json()
        assert state["status"] == "running"
    server.kill()
    server.start()
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        api = api.on(http)
        state = await wait_finished(api, started["import_id"], timeout=120)
        assert (state["done"], state["failed"], state["duplicates"]) == (60, 0, 0)
        saved = await articles(api)
        assert sorted(a["url"] for a in saved) == sorted(site.url(f"/articles/{i}") for i in range(60))


async def test_a_large_import_never_holds_up_another_users_insight(
    start_server: Callable[..., ServerProcess], site: Site
) -> None:
    # One task at a time: the import's work queues up behind the running one however
    # fast the local site answers.
    server = start_server(library={"fetch_allow_private": True}, tasks={"max_pending_per_user": 200, "max_concurrency": 1})
    rows = "title,url,time_added,tags,status\n" + "".join(
        f"T{i},{site.url(f'/articles/{i}')},1700000000,,unread\n" for i in range(1000)
    )
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        importer = await register(http)
        reader = await register(http)
        started = await start_import(importer, "pocket_csv", rows.encode())
        # Wait until the import's work fills the queue, then ask for an insight.
        deadline = time.monotonic() + 30
        while len(await importer.all_tasks(status="pending")) < 50:
            assert time.monotonic() < deadline, "the import never queued its fetches"
            await asyncio.sleep(POLL)
        queued_before = {t["task_id"] for t in await importer.all_tasks(status="pending")}
        response = await reader.post("/api/v1/insights/generate", json={"selected_text": "Why do street trees cool a city?"})
        assert response.status_code == 202, response.text
        insight = await reader.wait_status(response.json()["task_id"], "completed", timeout=60)
        state = (await importer.get(f"/api/v1/imports/{started['import_id']}")).json()
        assert state["status"] == "running", state
        # The insight went ahead of the import's work queued before it.
        overtaken = [
            t for t in await importer.all_tasks()
            if t["task_id"] in queued_before and (t["started_at"] is None or t["started_at"] > insight["started_at"])
        ]
        assert overtaken, "the insight waited for every fetch queued before it"


async def test_an_item_whose_task_is_refused_fails_with_the_reason_and_leaves_nothing(
    start_server: Callable[..., ServerProcess], site: Site
) -> None:
    server = start_server(tasks={"daily_token_budget": 1})  # no analysis fits today
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        api = await register(http)
        started = await start_import(api, "insightreader", file_of("insightreader", site))
        state = await wait_finished(api, started["import_id"])
        with_text = [i for i in importers.parse("insightreader", file_of("insightreader", site)).items if i.content]
        assert state["failed"] >= len(with_text) > 0, state
        assert "budget" in state["last_error"], state
        saved = await articles(api)
        assert all(a["fetch_status"] is not None for a in saved)  # only the links were saved
        assert len(saved) == state["done"]


async def test_auto_analyze_off_imports_without_analysing(http: httpx.AsyncClient, site: Site) -> None:
    quiet, default = await register(http), await register(http)
    changed = await quiet.patch("/api/v1/settings", json={"auto_analyze": False})
    assert changed.status_code == 200 and changed.json()["auto_analyze"] is False
    for api in (quiet, default):
        for fmt in ("netscape", "insightreader"):
            await wait_finished(api, (await start_import(api, fmt, file_of(fmt, site)))["import_id"])

    async def settled(api: Api) -> list[dict[str, Any]]:
        """Every task of ``api``'s once none is unfinished (a fetch's follow-up is
        submitted in the transaction that completes the fetch)."""
        deadline = time.monotonic() + 60
        while True:
            tasks = await api.all_tasks()
            if all(t["status"] in ("completed", "failed", "cancelled") for t in tasks):
                return tasks
            assert time.monotonic() < deadline, [t["status"] for t in tasks]
            await asyncio.sleep(POLL)

    quiet_tasks, default_tasks = await settled(quiet), await settled(default)
    saved = await articles(quiet)
    fetched = [a for a in saved if a["fetch_status"] == "fetched"]
    assert len(saved) == len(await articles(default)) and fetched
    assert sum(t["task_type"] == "page_fetch" for t in quiet_tasks) == sum(a["fetch_status"] is not None for a in saved)
    assert not [t for t in quiet_tasks if t["task_type"] == "article_analysis"]
    analysed = {t["article_id"] for t in default_tasks if t["task_type"] == "article_analysis"}
    expected = [a for a in await articles(default) if a["fetch_status"] in (None, "fetched")]
    assert analysed == {a["article_id"] for a in expected}
