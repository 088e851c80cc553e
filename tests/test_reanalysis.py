"""Re-analysis over real HTTP (``POST /articles/reanalyze``, ``GET /batches/{id}``,
``POST /batches/{id}/cancel``) and the operator's ``admin reanalyze --stale``: after a
model or a settings change exactly the stale results run again, once each, at bulk
priority, behind other users' work, and a batch can be cancelled."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import base_config
from tests.fake_upstream import FakeUpstream, Reply
from tests.support.cli import run_cli
from tests.support.client import POLL, Api, register
from tests.support.process import ServerProcess, write_config
from tests.test_analyses import upstream_config

ALL_KINDS = ["article_analysis", "meta_analysis", "thinking_lens"]
ENDED = ("completed", "failed", "cancelled")


@pytest.fixture
async def fake() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream() as upstream:
        yield upstream


def text(n: int) -> str:
    return f"Street trees, part {n}. Trees cool the pavement by {n + 2} degrees.\n\nThey cost little next to drains."


async def save(api: Api, n: int) -> str:
    """Save article ``n`` and wait for its analysis; its id."""
    response = await api.post("/api/v1/articles/save-with-analysis", {"title": f"Trees {n}", "content": text(n)})
    assert response.status_code in (200, 202), response.text
    await api.wait_status(response.json()["task_id"], "completed")
    return str(response.json()["article_id"])


async def run(api: Api, path: str, body: Any = None) -> dict[str, Any]:
    response = await api.post(path, body)
    assert response.status_code == 202, response.text
    return await api.wait_status(response.json()["task_id"], "completed")


async def reanalyze(api: Api, scope: str, kinds: list[str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"scope": scope} | ({"kinds": kinds} if kinds else {})
    response = await api.post("/api/v1/articles/reanalyze", body)
    assert response.status_code == 202, response.text
    return dict(response.json())


async def batch_done(api: Api, batch_id: str, timeout: float = 60) -> dict[str, Any]:
    """The batch once it queued every item and its tasks all ended."""
    deadline = time.monotonic() + timeout
    while True:
        response = await api.get(f"/api/v1/batches/{batch_id}")
        assert response.status_code == 200, response.text
        state = response.json()
        if state["status"] != "running" and not (set(state["tasks"]) - set(ENDED)):
            return dict(state)
        assert time.monotonic() < deadline, state
        await asyncio.sleep(POLL)


async def batch_tasks(api: Api, batch: dict[str, Any]) -> list[dict[str, Any]]:
    """The tasks of the batch: those created after it, at bulk priority."""
    return [t for t in await api.all_tasks() if t["created_at"] >= batch["created_at"] and t["priority"] == -5]


async def test_after_a_model_change_exactly_the_stale_results_run_once(
    start_server: Callable[..., ServerProcess], fake: FakeUpstream
) -> None:
    first = start_server(**upstream_config(fake))
    async with httpx.AsyncClient(base_url=first.url, timeout=30) as http:
        api = await register(http, "reader")
        other = await register(http, "other")
        articles = [await save(api, n) for n in range(3)]
        await run(api, "/api/v1/meta-analysis/analyze", {"article_id": articles[0]})
        await run(api, f"/api/v1/articles/{articles[1]}/thinking-lens/argument_map")
        await save(other, 9)
        # Nothing is stale under the model that made everything.
        nothing = await reanalyze(api, "stale", ALL_KINDS)
        assert (nothing["total"], nothing["status"]) == (0, "finished")
    first.stop()

    second = start_server("second.toml", llm=upstream_config(fake)["llm"] | {"model": "fake-model-2"})
    async with httpx.AsyncClient(base_url=second.url, timeout=30) as http:
        login = await http.post("/api/v1/auth/login", json={"username": "reader", "password": "correct horse battery"})
        api = Api(http, login.json()["access_token"], "reader")
        fresh = await save(api, 3)  # made under the new model: current
        before = len(fake.chat_requests())
        started = await reanalyze(api, "stale", ALL_KINDS)
        assert started["total"] == 5, started  # 3 analyses, 1 meta analysis, 1 lens
        state = await batch_done(api, started["batch_id"])
        assert (state["done"], state["failed"], state["tasks"]) == (5, 0, {"completed": 5}), state
        assert (state["scope"], state["kinds"]) == ("stale", ALL_KINDS)
        ran = await batch_tasks(api, state)
        assert sorted((t["task_type"], t["article_id"]) for t in ran) == sorted(
            [("article_analysis", a) for a in articles]
            + [("meta_analysis", articles[0]), ("thinking_lens", articles[1])]
        )
        assert all(t["model"] == "fake-model-2" for t in ran)
        assert fresh not in {t["article_id"] for t in ran}
        assert len(fake.chat_requests()) - before == 5
        # The articles now carry the new results; nothing is stale any more, so a
        # second stale re-analysis runs nothing again.
        article = (await api.get(f"/api/v1/articles/{articles[0]}")).json()
        assert article["analysis"] == next(
            t for t in ran if t["article_id"] == articles[0] and t["task_type"] == "article_analysis"
        )["result"]["analysis"]
        again = await reanalyze(api, "stale", ALL_KINDS)
        assert (again["total"], again["status"]) == (0, "finished")
        # The other user's result is stale for them alone.
        other_api = Api(http, (await http.post("/api/v1/auth/login", json={
            "username": "other", "password": "correct horse battery"})).json()["access_token"], "other")
        assert (await reanalyze(other_api, "stale", ALL_KINDS))["total"] == 1
        assert (await other_api.get(f"/api/v1/batches/{started['batch_id']}")).status_code == 404


async def test_a_settings_change_makes_results_stale_and_the_scopes_pick_what_they_say(http: httpx.AsyncClient) -> None:
    api = await register(http)
    articles = [await save(api, n) for n in range(2)]
    await run(api, "/api/v1/meta-analysis/analyze", {"article_id": articles[0]})
    assert (await reanalyze(api, "stale", ALL_KINDS))["total"] == 0
    # Another task type's instructions do not make an article analysis stale.
    assert (await api.patch("/api/v1/settings", {"instructions": {"meta_analysis": "Be blunt."}})).status_code == 200
    assert (await reanalyze(api, "stale"))["total"] == 0
    only_meta = await reanalyze(api, "stale", ALL_KINDS)
    assert only_meta["total"] == 1
    await batch_done(api, only_meta["batch_id"])
    assert (await api.patch("/api/v1/settings", {"output_language": "zh-CN"})).status_code == 200
    language = await reanalyze(api, "stale", ALL_KINDS)
    assert language["total"] == 3
    state = await batch_done(api, language["batch_id"])
    ran = await batch_tasks(api, state)
    assert len(ran) == 3 and all(t["status"] == "completed" for t in ran)
    # The offline model cannot translate and says so in the new results.
    summaries = [(await api.get(f"/api/v1/articles/{a}")).json()["analysis"]["summary"] for a in articles]
    assert all("离线模型" in summary for summary in summaries), summaries
    assert (await reanalyze(api, "stale", ALL_KINDS))["total"] == 0
    # `all` redoes every article (and the meta analysis asked for), even when current.
    everything = await reanalyze(api, "all", ["article_analysis", "meta_analysis"])
    assert everything["total"] == 4
    assert (await batch_done(api, everything["batch_id"]))["tasks"] == {"completed": 4}
    assert (await reanalyze(api, "failed", ALL_KINDS))["total"] == 0
    for bad in ({"scope": "some"}, {"scope": "all", "kinds": ["page_fetch"]}, {"scope": "all", "kinds": []}, {}):
        response = await api.post("/api/v1/articles/reanalyze", bad)
        assert response.status_code in (400, 422), (bad, response.text)


async def test_failed_results_run_again_at_bulk_priority_behind_another_users_insight_and_cancel(
    start_server: Callable[..., ServerProcess], fake: FakeUpstream
) -> None:
    # Room for 10 of the batch's tasks at once (20 less the headroom left to the reader).
    server = start_server(**upstream_config(fake, max_concurrency=1, max_attempts=1, max_pending_per_user=20))
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        api = await register(http)
        reader = await register(http)
        fake.default = Reply(content="not json at all")  # every analysis fails
        failed = []
        for n in range(30):
            response = await api.post("/api/v1/articles/save-with-analysis", {"title": f"T{n}", "content": text(n)})
            failed.append(response.json()["task_id"])
        for task_id in failed:
            assert (await api.wait_status(task_id, *ENDED, timeout=60))["status"] == "failed"
        fake.default = Reply(delay=0.2)
        started = await reanalyze(api, "failed")
        assert started["total"] == 30
        deadline = time.monotonic() + 30
        while len(await api.all_tasks(status="pending")) < 8:
            assert time.monotonic() < deadline, "the re-analysis never queued its tasks"
            await asyncio.sleep(POLL)
        queued_before = {t["task_id"] for t in await api.all_tasks(status="pending")}
        response = await reader.post("/api/v1/insights/generate", {"selected_text": "Why do street trees cool a city?"})
        insight = await reader.wait_status(response.json()["task_id"], "completed", timeout=60)
        overtaken = [
            t for t in await api.all_tasks()
            if t["task_id"] in queued_before and (t["started_at"] is None or t["started_at"] > insight["started_at"])
        ]
        assert overtaken, "the insight waited for every task of the re-analysis queued before it"
        assert {t["priority"] for t in await api.all_tasks(status="pending")} == {-5}

        cancelled = await api.post(f"/api/v1/batches/{started['batch_id']}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        state = cancelled.json()
        assert state["status"] == "cancelled"
        assert state["done"] < 30, state  # the items not queued yet were dropped
        assert not {"pending", "running"} & set(state["tasks"]), state
        assert state["tasks"].get("cancelled", 0) >= 1
        assert not await api.all_tasks(status="pending")
        # Cancelling again answers the batch as it is; it queues nothing more.
        again = await api.post(f"/api/v1/batches/{started['batch_id']}/cancel")
        assert again.json()["status"] == "cancelled" and again.json()["done"] == state["done"]
        listed = (await api.get("/api/v1/batches")).json()["items"]
        assert [b["batch_id"] for b in listed] == [started["batch_id"]]
        assert (await reader.post(f"/api/v1/batches/{started['batch_id']}/cancel")).status_code == 404


async def test_admin_reanalyze_stale_stages_every_users_stale_results_for_the_next_start(
    tmp_path: Path, start_server: Callable[..., ServerProcess], fake: FakeUpstream
) -> None:
    first = start_server(**upstream_config(fake))
    async with httpx.AsyncClient(base_url=first.url, timeout=30) as http:
        ada, bob = await register(http, "ada"), await register(http, "bob")
        await save(ada, 1)
        await save(ada, 2)
        await save(bob, 3)
        new_model = base_config(tmp_path, llm=upstream_config(fake)["llm"] | {"model": "fake-model-2"})
        config = write_config(tmp_path / "cli.toml", new_model)
        refused = run_cli("admin", "reanalyze", "--stale", "--config", str(config), cwd=tmp_path)
        assert refused.returncode != 0 and "reanalyze" in refused.stderr, refused.stderr
    first.stop()
    done = run_cli("admin", "reanalyze", "--stale", "--json", "--config", str(config), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert '"ada": 2' in done.stdout and '"bob": 1' in done.stdout, done.stdout
    before = len(fake.chat_requests())
    second = start_server("second.toml", llm=upstream_config(fake)["llm"] | {"model": "fake-model-2"})
    async with httpx.AsyncClient(base_url=second.url, timeout=30) as http:
        login = await http.post("/api/v1/auth/login", json={"username": "ada", "password": "correct horse battery"})
        ada = Api(http, login.json()["access_token"], "ada")
        batches = (await ada.get("/api/v1/batches")).json()["items"]
        assert len(batches) == 1 and batches[0]["total"] == 2
        state = await batch_done(ada, batches[0]["batch_id"])
        assert state["tasks"] == {"completed": 2}
    await fake.wait_for_requests(before + 3, timeout=30)
    assert {r.body["model"] for r in fake.chat_requests()[before:]} == {"fake-model-2"}


async def test_a_batch_that_queued_everything_is_cancelled_with_its_tasks(
    start_server: Callable[..., ServerProcess], fake: FakeUpstream
) -> None:
    server = start_server(**upstream_config(fake, max_concurrency=1))
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        api = await register(http)
        for n in range(6):
            await save(api, n)
        fake.default = Reply(delay=0.5)  # the re-run tasks wait their turn behind one another
        started = await reanalyze(api, "all")
        deadline = time.monotonic() + 30
        while (state := (await api.get(f"/api/v1/batches/{started['batch_id']}")).json())["status"] == "running":
            assert time.monotonic() < deadline, state
            await asyncio.sleep(POLL)
        assert state["status"] == "finished" and state["done"] == 6  # every item queued…
        assert state["tasks"].get("pending", 0) >= 1, state  # …and some not run yet
        cancelled = (await api.post(f"/api/v1/batches/{started['batch_id']}/cancel")).json()
        assert cancelled["status"] == "cancelled" and cancelled["done"] == 6
        assert not {"pending", "running"} & set(cancelled["tasks"]) and cancelled["tasks"]["cancelled"] >= 1
        assert not await api.all_tasks(status="pending")
