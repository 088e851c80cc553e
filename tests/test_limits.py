"""Limits that hold (issue 9): blank text, priorities, refused saves, storage quotas,
the token budget under concurrency, and lists that read no text."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fake_upstream import FakeUpstream, Hang, _estimate
from tests.support.client import Api, register
from tests.support.process import ServerProcess

StartServer = Callable[..., ServerProcess]
SAVE = "/api/v1/articles/save-with-analysis"
ADMIN = ("root", "a long admin passphrase 7")


@pytest.fixture
async def fake() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream() as upstream:
        yield upstream


def upstream(fake: FakeUpstream, **sections: dict[str, Any]) -> dict[str, dict[str, Any]]:
    llm = {"base_url": fake.base_url, "api_key": "sk-test-key-0123456789", "model": fake.model}
    return {**sections, "llm": {**llm, **sections.get("llm", {})}}


async def login(http: httpx.AsyncClient, username: str, password: str) -> Api:
    response = await http.post("/api/v1/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return Api(http, response.json()["access_token"], username)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def article_ids(api: Api) -> list[str]:
    page = (await api.get("/api/v1/articles", params={"limit": 100})).json()
    return [item["article_id"] for item in page["items"]]


BLANKS = [" ", "\n\t \r\n", "\u3000\u3000", "\u00a0\u00a0", "\u2028", "\u200b\u200b", "\ufeff \u2060", "\u00ad"]


async def test_text_of_only_white_space_is_refused(api: Api) -> None:
    for blank in BLANKS:
        for path, body in (
            (SAVE, {"title": "A title", "content": blank}),
            (SAVE, {"title": blank, "content": "Some text."}),
            ("/api/v1/insights/generate-buttons", {"selected_text": blank}),
            ("/api/v1/insights/generate", {"selected_text": blank}),
        ):
            response = await api.post(path, body)
            assert response.status_code == 422, (path, body, response.text)
            assert response.json()["error"]["code"] == "validation_error"
    assert await article_ids(api) == []
    assert await api.all_tasks() == []
    # Text with white space around it (or an invisible character inside) is text.
    saved = await api.post(SAVE, {"title": "\u3000Title", "content": "\u200b Trees cool streets.\n"})
    assert saved.status_code == 202, saved.text


async def test_users_may_only_lower_a_priority_administrators_may_raise_it(
    start_server: StartServer,
) -> None:
    admin_env = {"INSIGHTREADER_ADMIN_USERNAME": ADMIN[0], "INSIGHTREADER_ADMIN_PASSWORD": ADMIN[1]}
    server = start_server(env=admin_env)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        user = await register(http)
        admin = await login(http, *ADMIN)

        async def priority(api: Api, path: str, body: dict[str, Any]) -> int:
            response = await api.post(path, body)
            assert response.status_code == 202, response.text
            return int((await api.task(response.json()["task_id"]))["priority"])

        insight = "/api/v1/insights/generate"
        assert await priority(user, insight, {"selected_text": "One.", "priority": 10}) == 5
        assert await priority(user, insight, {"selected_text": "Two.", "priority": -3}) == -3
        assert await priority(user, SAVE, {"title": "T", "content": "Text one.", "priority": 10}) == 0
        assert await priority(user, "/api/v1/insights/generate-buttons", {"selected_text": "Three.", "priority": 9}) == 5
        assert await priority(admin, insight, {"selected_text": "One.", "priority": 10}) == 10
        assert await priority(admin, SAVE, {"title": "T", "content": "Text one.", "priority": 7}) == 7


async def test_a_refused_save_stores_nothing(start_server: StartServer, fake: FakeUpstream, tmp_path: Path) -> None:
    fake.default = Hang()
    server = start_server(**upstream(fake, tasks={"max_pending_per_user": 1, "daily_token_budget": 3000}))
    database = tmp_path / "data" / "test.db"
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
        api = await register(http)
        first = await api.post(SAVE, {"title": "Kept", "content": "The one article that is analysed."})
        assert first.status_code == 202
        # Too many pending: ten different saves refused, none of them kept.
        for n in range(10):
            refused = await api.post(SAVE, {"title": f"T{n}", "content": f"Article number {n}."})
            assert refused.status_code == 429 and refused.json()["error"]["code"] == "too_many_pending"
        assert await article_ids(api) == [first.json()["article_id"]]

        # Over the token budget: an analysis of ~1.9 MB cannot fit in 3,000 tokens, so
        # neither is its article kept; the database does not grow with refused text.
        await api.post(f"/api/v1/tasks/{first.json()['task_id']}/cancel")
        before = database.stat().st_size
        big = "Refused words in a long article. " * 60_000
        for n in range(10):
            refused = await api.post(SAVE, {"title": f"Big {n}", "content": f"{n} {big}"})
            assert refused.status_code == 429, refused.text
            assert refused.json()["error"]["code"] == "quota_exceeded"
        grown = database.stat().st_size - before
        print(f"10 refused saves of {len(big) / 1e6:.1f} MB: database grew by {grown} bytes")
        assert grown < 100_000
        assert await article_ids(api) == [first.json()["article_id"]]
        # Saving an article already stored still answers with it.
        again = await api.post(SAVE, {"title": "Other title", "content": "The one article that is analysed."})
        assert again.status_code == 202, again.text
        assert again.json()["article_id"] == first.json()["article_id"]


async def test_storage_quotas(start_server: StartServer) -> None:
    server = start_server(library={"max_articles_per_user": 3, "max_bytes_per_user": 5000})
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        api, other = await register(http), await register(http)
        ids = []
        for n in range(3):
            saved = await api.post(SAVE, {"title": f"T{n}", "content": f"Short article {n}."})
            assert saved.status_code == 202, saved.text
            ids.append(saved.json()["article_id"])
        full = await api.post(SAVE, {"title": "T3", "content": "Short article 3."})
        assert full.status_code == 429
        assert full.json()["error"]["code"] == "storage_quota_exceeded"
        assert "max_articles_per_user" in full.json()["error"]["message"]
        # The same content again is the same article, not a new one.
        same = await api.post(SAVE, {"title": "T0 again", "content": "Short article 0."})
        assert same.status_code in (200, 202) and same.json()["article_id"] == ids[0]
        # Deleting frees a place; bytes count too.
        assert (await api.delete(f"/api/v1/articles/{ids[0]}")).status_code == 204
        too_big = await api.post(SAVE, {"title": "Big", "content": "x" * 5000})
        assert too_big.status_code == 429
        assert "max_bytes_per_user" in too_big.json()["error"]["message"]
        assert (await api.post(SAVE, {"title": "T3", "content": "Short article 3."})).status_code == 202
        assert len(await article_ids(api)) == 3
        # Another user's library is their own.
        assert (await other.post(SAVE, {"title": "Mine", "content": "x" * 4000})).status_code == 202


def request_max_cost(body: dict[str, Any]) -> int:
    """What one request may cost by the fake's own count: its prompt and max_tokens."""
    prompt = sum(_estimate(str(m.get("content", ""))) for m in body["messages"])
    return prompt + int(body.get("max_tokens") or body["max_completion_tokens"])


async def used_today(api: Api) -> int:
    return int((await api.get("/api/v1/usage")).json()["budget"]["used_today"])


@pytest.mark.parametrize("size", [20_000, 2_000])
async def test_the_token_budget_holds_under_concurrent_saves(
    start_server: StartServer, fake: FakeUpstream, size: int
) -> None:
    """The measured scenario: budget 5,000, 20 concurrent saves (on main: 78,036 used)."""
    budget = 5000
    server = start_server(**upstream(fake, tasks={"daily_token_budget": budget, "max_concurrency": 4}))
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
        api = await register(http)
        sentence = "Street trees cool the air around them by shading the pavement. "
        bodies = [
            {"title": f"Article {n}", "content": f"{n}. " + sentence * (size // len(sentence))}
            for n in range(20)
        ]
        answers = await asyncio.gather(*(api.post(SAVE, body) for body in bodies))
        codes = [a.status_code for a in answers]
        assert set(codes) <= {202, 429}, codes
        assert all(a.json()["error"]["code"] == "quota_exceeded" for a in answers if a.status_code == 429)
        for answer in answers:
            if answer.status_code == 202:
                await api.wait_status(answer.json()["task_id"], "completed", "failed", timeout=60)
        used = await used_today(api)
        chats = fake.chat_requests()
        largest = max((request_max_cost(r.body) for r in chats), default=0)
        print(f"{size} B articles: {codes.count(202)} of 20 saves accepted, {len(chats)} requests,"
              f" {used} tokens used of a {budget} budget (largest request {largest})")
        assert used <= budget + largest
        assert all(("max_tokens" in r.body) for r in chats)
        assert len(await article_ids(api)) == codes.count(202)
        if size == 2_000:
            assert 0 < codes.count(202) < 20


async def test_a_long_article_stops_between_chunks_when_the_budget_runs_out(
    start_server: StartServer, fake: FakeUpstream
) -> None:
    # Each request is billed 4,000 tokens, far more than reserved: the run notices
    # before its second batch of chunk requests, not after spending on all of them.
    fake.usage = (4000, 0)
    server = start_server(**upstream(fake, tasks={"daily_token_budget": 16_000}, llm={"context_tokens": 1000}))
    paragraph = "Trees shade streets and cool cities in summer. " * 40
    content = "\n\n".join(f"Part {n}. {paragraph}" for n in range(5))
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        api = await register(http)
        saved = await api.post(SAVE, {"title": "Long", "content": content})
        assert saved.status_code == 202, saved.text
        task = await api.wait_status(saved.json()["task_id"], "completed", "failed")
        assert task["status"] == "failed", task
        assert task["error"]["code"] == "quota_exceeded" and task["error"]["retryable"] is True
        chats = fake.chat_requests()
        assert len(chats) == 2  # one batch of two chunk requests, then the check
        assert all(r.body["max_tokens"] == 800 for r in chats)
        assert await used_today(api) == 8000


async def test_lists_read_no_text(start_server: StartServer, fake: FakeUpstream) -> None:
    """Concurrent lists over many 2 MiB articles and 1 MB task inputs keep the
    server's memory flat (on main, 4 lists over 31 such articles: +61 MB)."""
    fake.default = Hang()
    server = start_server(**upstream(fake, tasks={"max_concurrency": 1}))
    assert server.proc is not None
    paragraph = "Street trees cool the air around them by shading the pavement. " * 3 + "\n\n"
    text = paragraph * (2_000_000 // len(paragraph))
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
        api = await register(http)
        for n in range(24):
            saved = await api.post(SAVE, {"title": f"Big {n}", "content": f"{n} {text}"})
            assert saved.status_code == 202, saved.text
        history = [{"role": "user", "content": "h" * 20_000}] * 50
        for n in range(4):
            body = {"selected_text": f"Passage {n}.", "conversation_history": history}
            assert (await api.post("/api/v1/insights/generate-buttons", body)).status_code == 202

        async def lists() -> int:
            articles = await api.get("/api/v1/articles", params={"limit": 100})
            tasks = await api.get("/api/v1/tasks", params={"limit": 100})
            assert articles.status_code == tasks.status_code == 200
            items = articles.json()["items"]
            assert len(items) == 24 and len(tasks.json()["items"]) == 28
            assert all("content" not in a or a["content"] is None for a in items)
            assert all(0 < len(a["excerpt"]) <= 300 for a in items)
            assert items[-1]["excerpt"].startswith("0 Street trees cool the air")
            return len(articles.content) + len(tasks.content)

        await lists()
        before = rss_kib(server.proc.pid)
        sizes = []
        for _ in range(3):
            sizes += await asyncio.gather(*(lists() for _ in range(4)))
        grown = (rss_kib(server.proc.pid) - before) / 1024
        print(f"12 lists (4 at a time) over 24 x 2 MB articles and 4 x 1 MB inputs:"
              f" RSS grew by {grown:.1f} MB; answers of {max(sizes) // 1024} KiB")
        assert grown < 20
        assert max(sizes) < 200_000
        newest = (await article_ids(api))[0]
        detail = (await api.get(f"/api/v1/articles/{newest}")).json()
        assert len(detail["content"]) > 1_000_000 and detail["excerpt"].startswith("23 Street")
