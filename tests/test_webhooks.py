"""Webhooks over real HTTP: deliveries reach a local receiver signed so that the
Standard Webhooks reference library accepts them, are retried until they succeed (once,
with the attempts recorded), survive a SIGKILL, disable the webhook on 410, and never
go to an address the fetch guard refuses."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook as Verifier

from insightreader import webhooks
from insightreader.config import DatabaseSettings, WebhookSettings
from insightreader.events import EventBus
from insightreader.records import Delivery, format_time, utcnow
from insightreader.store import Store
from insightreader.supervisor import Supervisor
from tests.support.client import POLL, Api, register
from tests.support.process import ServerProcess
from tests.support.receiver import Receiver, receiving

FAST = {"retry_initial": 0.05, "retry_for": 60, "timeout": 2}


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with receiving() as found:
        yield found


@pytest.fixture
def server(start_server: Callable[..., ServerProcess]) -> ServerProcess:
    return start_server(library={"fetch_allow_private": True}, webhooks=FAST)


@pytest.fixture
async def http(server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        yield client


async def create(api: Api, url: str, events: list[str], **extra: Any) -> dict[str, Any]:
    response = await api.post("/api/v1/webhooks", json={"url": url, "events": events, **extra})
    assert response.status_code == 201, response.text
    return response.json()


async def deliveries(api: Api, webhook_id: str) -> list[dict[str, Any]]:
    response = await api.get(f"/api/v1/webhooks/{webhook_id}/deliveries")
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def wait_delivery(
    api: Api, webhook_id: str, status: str, timeout: float = 20, *, attempts: int = 0
) -> dict[str, Any]:
    """The first delivery in ``status`` with at least ``attempts`` recorded attempts."""
    deadline = time.monotonic() + timeout
    while True:
        found = [d for d in await deliveries(api, webhook_id) if d["status"] == status and d["attempts"] >= attempts]
        if found:
            return found[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"no {status} delivery: {await deliveries(api, webhook_id)}")
        await asyncio.sleep(POLL)


async def test_events_arrive_signed_as_standard_webhooks(
    http: httpx.AsyncClient, receiver: Receiver, server: ServerProcess
) -> None:
    api = await register(http)
    hook = await create(api, receiver.url, ["task_completed", "article_saved"])
    assert hook["secret"].startswith("whsec_") and hook["enabled"]
    assert "secret" not in (await api.get("/api/v1/webhooks")).json()["items"][0]

    saved = await api.post("/api/v1/articles/save-with-analysis", json={"title": "Trees", "content": "Street trees cool cities."})
    task_id = await api.submit_id("echo", {"say": "hello"})
    await api.wait_status(task_id, "completed")
    await api.wait_status(saved.json()["task_id"], "completed")  # the article's analysis: one more
    await receiver.wait_for(3)
    completed = [json.loads(b) for _, b in receiver.events("task_completed")]
    assert any(e["data"]["task_id"] == task_id and e["data"]["result"]["echo"] == {"say": "hello"} for e in completed)
    articles = [json.loads(b) for _, b in receiver.events("article_saved")]
    assert [a["data"]["article_id"] for a in articles] == [saved.json()["article_id"]]

    verifier = Verifier(hook["secret"])
    for headers, body in receiver.requests:
        payload = verifier.verify(body, headers)  # raises unless the signature is right
        assert payload["id"] == headers["webhook-id"] and headers["webhook-id"].startswith("msg_")
        assert headers["content-type"] == "application/json"
    forged = dict(receiver.requests[0][0], **{"webhook-signature": "v1," + "A" * 44})
    with pytest.raises(Exception):  # noqa: B017 (the library raises its own WebhookVerificationError)
        verifier.verify(receiver.requests[0][1], forged)

    deadline = time.monotonic() + 10
    log = await deliveries(api, hook["webhook_id"])
    while any(d["status"] == "pending" for d in log):  # the last answer is being recorded
        assert time.monotonic() < deadline, log
        await asyncio.sleep(POLL)
        log = await deliveries(api, hook["webhook_id"])
    assert len(log) == 3 and all((d["status"], d["attempts"], d["last_status"]) == ("succeeded", 1, 200) for d in log)
    assert hook["secret"] not in server.log_text


async def test_a_receiver_failing_three_times_gets_it_once_after_four_attempts(
    http: httpx.AsyncClient, receiver: Receiver
) -> None:
    api = await register(http)
    receiver.answers = [500, 503, 500]
    hook = await create(api, receiver.url, ["task_completed"])
    task_id = await api.submit_id("echo", {"n": 1})
    await api.wait_status(task_id, "completed")
    done = await wait_delivery(api, hook["webhook_id"], "succeeded")
    assert (done["attempts"], done["last_status"], done["last_error"]) == (4, 200, None)
    assert len(receiver.requests) == 4
    assert {h["webhook-id"] for h, _ in receiver.requests} == {done["delivery_id"]}
    assert len({b for _, b in receiver.requests}) == 1  # the same body each time
    assert (await api.get("/api/v1/webhooks")).json()["items"][0]["failing_since"] is None


async def test_410_disables_the_webhook(http: httpx.AsyncClient, receiver: Receiver) -> None:
    api = await register(http)
    receiver.then = 410
    hook = await create(api, receiver.url, ["task_completed"])
    await api.wait_status(await api.submit_id("echo", {"n": 1}), "completed")
    failed = await wait_delivery(api, hook["webhook_id"], "failed")
    assert failed["last_status"] == 410
    listed = (await api.get("/api/v1/webhooks")).json()["items"][0]
    assert listed["enabled"] is False and "410" in listed["disabled_reason"]
    await api.wait_status(await api.submit_id("echo", {"n": 2}), "completed")
    assert len(await deliveries(api, hook["webhook_id"])) == 1  # nothing more is made for it
    assert len(receiver.requests) == 1


async def test_a_delivery_pending_across_a_sigkill_arrives_after_the_restart(
    start_server: Callable[..., ServerProcess], receiver: Receiver
) -> None:
    server = start_server(library={"fetch_allow_private": True}, webhooks={**FAST, "retry_initial": 2})
    receiver.answers = [500]
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        api = await register(http)
        hook = await create(api, receiver.url, ["task_completed"])
        await api.wait_status(await api.submit_id("echo", {"n": 1}), "completed")
        await receiver.wait_for(1)
        # Killed once the failed attempt is recorded (before that, the attempt is not one).
        pending = await wait_delivery(api, hook["webhook_id"], "pending", attempts=1)
    server.kill()
    server.start()
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        api = api.on(http)
        done = await wait_delivery(api, hook["webhook_id"], "succeeded")
    assert done["delivery_id"] == pending["delivery_id"] and done["attempts"] >= 2
    assert [h["webhook-id"] for h, _ in receiver.requests][-1] == done["delivery_id"]


async def test_the_guard_refuses_private_addresses(start_server: Callable[..., ServerProcess], receiver: Receiver) -> None:
    server = start_server(webhooks=FAST)  # library.fetch_allow_private off, as shipped
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        api = await register(http)
        for url in (receiver.url, f"http://localhost:{receiver.port}/", "http://[::1]/x", "http://169.254.169.254/latest"):
            response = await api.post("/api/v1/webhooks", json={"url": url, "events": ["task_completed"]})
            assert response.status_code == 422, (url, response.text)
            assert response.json()["error"]["code"] == "fetch_forbidden_address"
        assert (await api.get("/api/v1/webhooks")).json()["items"] == []
    assert receiver.requests == []


async def test_bad_input_other_users_and_tokens(http: httpx.AsyncClient, receiver: Receiver) -> None:
    api = await register(http)
    for body in (
        {"url": receiver.url, "events": []},
        {"url": receiver.url, "events": ["task_started"]},
        {"url": "ftp://example.org/x", "events": ["task_completed"]},
        {"url": receiver.url, "events": ["task_completed"], "secret": "whsec_short"},
        {"url": receiver.url, "events": ["task_completed"], "secret": "nope"},
    ):
        response = await api.post("/api/v1/webhooks", json=body)
        assert response.status_code == 422, (body, response.text)
    given = "whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB"
    hook = await create(api, receiver.url, ["task_failed"], secret=given)
    assert hook["secret"] == given

    other = await register(http)
    for method, path in (("GET", "/deliveries"), ("POST", "/test"), ("DELETE", "")):
        response = await other.http.request(method, f"/api/v1/webhooks/{hook['webhook_id']}{path}", headers=other.headers)
        assert response.status_code == 404, (method, path, response.text)

    read = await api.post("/api/v1/tokens", json={"name": "ro", "scope": "read"})
    bearer = {"Authorization": f"Bearer {read.json()['token']}"}
    refused = await http.post("/api/v1/webhooks", json={"url": receiver.url, "events": ["task_failed"]}, headers=bearer)
    assert refused.status_code == 403
    assert (await http.get("/api/v1/webhooks", headers=bearer)).status_code == 200

    test = await api.post(f"/api/v1/webhooks/{hook['webhook_id']}/test")
    assert test.status_code == 202, test.text
    done = await wait_delivery(api, hook["webhook_id"], "succeeded")
    assert done["delivery_id"] == test.json()["delivery_id"] and done["event"] == "webhook_test"
    assert (await api.delete(f"/api/v1/webhooks/{hook['webhook_id']}")).status_code == 204
    assert (await api.get("/api/v1/webhooks")).json()["items"] == []


def test_retries_back_off_exponentially_with_jitter() -> None:
    assert [webhooks.next_delay(n, 5.0, lambda: 0.0) for n in (1, 2, 3, 4)] == [2.5, 5.0, 10.0, 20.0]
    assert [webhooks.next_delay(n, 5.0, lambda: 1.0) for n in (1, 2, 3, 4)] == [5.0, 10.0, 20.0, 40.0]


def test_the_signature_is_the_reference_librarys() -> None:
    secret = webhooks.new_secret()
    stamp = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
    body = b'{"id":"msg_1","type":"task_completed","timestamp":"t","data":{}}'
    assert webhooks.signature(secret, "msg_1", int(stamp.timestamp()), body) == Verifier(secret).sign("msg_1", stamp, body)


async def test_a_webhook_failing_for_24_hours_is_disabled(tmp_path: Path) -> None:
    store = Store(DatabaseSettings(path=tmp_path / "w.db"))
    await store.open()
    bus = EventBus(store, queue_size=8)
    await bus.start()
    owner = webhooks.Webhooks(store, bus, WebhookSettings(), allow_private=True, supervisor=Supervisor())
    try:
        from insightreader.records import User

        user = User(id="u1", username="ada", password_hash="x", is_admin=False, created_at=utcnow())
        await store.write(lambda tx: tx.insert_user(user))
        hook = await owner.create("u1", "http://127.0.0.1:9/hook", ["task_completed"], None)
        day_ago = format_time(datetime.now(UTC) - timedelta(hours=25))
        await store.write(lambda tx: tx.set_webhook_failing(hook.id, day_ago))
        delivery = Delivery(id="msg_x", webhook_id=hook.id, event="task_completed", payload="{}", status="pending",
                            attempts=0, next_attempt_at=utcnow(), last_status=None, last_error=None,
                            created_at=utcnow(), finished_at=None)
        await store.write(lambda tx: tx.insert_delivery(delivery))
        failing = (await store.read.webhook(hook.id, "u1"))
        assert failing is not None and failing.failing_since == day_ago
        await store.write(lambda tx: owner.dispatcher._record(tx, delivery, failing, 500, "HTTP 500"))
        after = await store.read.webhook(hook.id, "u1")
        assert after is not None and after.enabled is False and "24 hours" in (after.disabled_reason or "")
        assert [d.status for d in await store.read.deliveries(hook.id, 10)] == ["failed"]
    finally:
        await bus.stop()
        await store.close()
