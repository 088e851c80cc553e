"""``GET /metrics`` over real HTTP against the real server: counters, gauges and
histograms move as tasks run, streams open and overflow, and LLM calls are retried."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fake_upstream import FakeUpstream, Reply, rate_limited
from tests.support.client import Api, register
from tests.support.process import ServerProcess
from tests.support.sse import open_stream

Samples = list[tuple[str, dict[str, str], float]]
FAKE_USAGE = (120, 30)


async def scrape(http: httpx.AsyncClient) -> Samples:
    """Every sample of ``/metrics`` (no credentials sent)."""
    response = await http.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return [
        (sample.name, dict(sample.labels), float(sample.value))
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    ]


def value(samples: Samples, name: str, **labels: str) -> float:
    """The value of the one sample ``name`` whose labels include ``labels`` (0 when none)."""
    found = [v for n, l, v in samples if n == name and all(l.get(k) == w for k, w in labels.items())]
    assert len(found) <= 1, (name, labels, found)
    return found[0] if found else 0.0


def has(samples: Samples, name: str) -> bool:
    return any(n == name for n, _, _ in samples)


async def eventually(
    http: httpx.AsyncClient, check: Callable[[Samples], bool], what: str, timeout: float = 10.0
) -> Samples:
    """Scrape until ``check`` holds (the hooks run right after a commit, a moment after
    the change is visible through the API); AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        samples = await scrape(http)
        if check(samples):
            return samples
        if time.monotonic() > deadline:
            raise AssertionError(f"metrics never showed {what}")
        await asyncio.sleep(0.05)


async def test_task_stream_and_database_metrics(start_server: Callable[..., ServerProcess]) -> None:
    server = start_server(tasks={"max_concurrency": 1}, sse={"queue_size": 10})
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        first = await scrape(http)
        # Known task types are there from the start, at zero.
        assert has(first, "insightreader_tasks_submitted_total")
        assert value(first, "insightreader_tasks_submitted_total", task_type="echo") == 0
        assert value(first, "insightreader_llm_circuit_state", state="closed") == 1
        assert value(first, "insightreader_engine_accepting") == 1
        assert has(first, "process_resident_memory_bytes")
        openmetrics = await http.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
        assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
        assert openmetrics.text.rstrip().endswith("# EOF")

        api = await register(http)
        # An open stream counts; one that falls behind (15 deltas in one burst, a queue
        # of 10) is closed for overflow, and stops counting.
        async with open_stream(http, api.token) as stream:
            assert (await stream.events.next()).event == "connected"
            await eventually(http, lambda s: value(s, "insightreader_sse_connections") == 1, "one stream")
            gate = await api.submit_id("gate", {"gate": "m1", "deltas": [f"d{i} " for i in range(15)]})
            rest = await stream.events.to_end(timeout=10)
            assert rest[-1].event == "closed" and rest[-1].data == {"reason": "overflow"}
        await eventually(
            http,
            lambda s: value(s, "insightreader_sse_overflow_closes_total") == 1
            and value(s, "insightreader_sse_connections") == 0,
            "the overflow close",
        )

        # The gate task holds the only slot: two echo tasks wait, at their priorities.
        await api.wait_running(1)
        urgent = await api.submit_id("echo", {"n": 1}, priority=3)
        bulk = await api.submit_id("echo", {"n": 2})
        waiting = await eventually(
            http,
            lambda s: value(s, "insightreader_tasks_queued", priority="3") == 1
            and value(s, "insightreader_tasks_queued", priority="0") == 1,
            "two queued tasks",
        )
        assert value(waiting, "insightreader_tasks_running") == 1
        await api.open_gate("m1")
        for task_id in (gate, urgent, bulk):
            assert (await api.wait_status(task_id, "completed", "failed"))["status"] == "completed"

        again = await api.submit("echo", {"n": 1})  # a dedup hit
        assert again.status_code == 200 and again.json()["deduplicated"] is True
        failing = await api.submit_id("fail", {"code": "metrics_test"})
        await api.wait_status(failing, "failed")
        held = await api.submit_id("gate", {"gate": "never"})
        await api.wait_status(held, "running")
        assert (await api.post(f"/api/v1/tasks/{held}/cancel")).status_code == 200

        def settled(s: Samples) -> bool:
            return (
                value(s, "insightreader_tasks_finished_total", task_type="gate", status="cancelled") == 1
                and value(s, "insightreader_event_loop_lag_seconds_count") > 0
            )

        s = await eventually(http, settled, "the cancelled task and a loop lag measurement")

    assert value(s, "insightreader_tasks_submitted_total", task_type="echo") == 2
    assert value(s, "insightreader_tasks_submitted_total", task_type="gate") == 2
    assert value(s, "insightreader_tasks_submitted_total", task_type="fail") == 1
    assert value(s, "insightreader_tasks_deduplicated_total", task_type="echo") == 1
    assert value(s, "insightreader_tasks_started_total", task_type="echo") == 2
    assert value(s, "insightreader_tasks_finished_total", task_type="echo", status="completed") == 2
    assert value(s, "insightreader_tasks_finished_total", task_type="gate", status="completed") == 1
    assert value(s, "insightreader_tasks_finished_total", task_type="fail", status="failed") == 1
    assert value(s, "insightreader_task_failures_total", task_type="fail", code="metrics_test") == 1
    assert value(s, "insightreader_tasks_running") == 0
    assert value(s, "insightreader_tasks_queued", priority="3") == 0
    # Histograms: every run waited and ran; the echo tasks waited behind the gate task.
    assert value(s, "insightreader_task_queue_wait_seconds_count", task_type="echo") == 2
    assert value(s, "insightreader_task_queue_wait_seconds_sum", task_type="echo") > 0
    assert value(s, "insightreader_task_run_seconds_count", task_type="echo") == 2
    assert value(s, "insightreader_task_run_seconds_count", task_type="gate") == 2  # completed + cancelled
    assert value(s, "insightreader_task_run_seconds_bucket", task_type="gate", le="+Inf") == 2
    # Events, database, HTTP.
    assert value(s, "insightreader_events_published_total", event="task_progress") == 15
    assert value(s, "insightreader_events_published_total", event="task_completed") == 3
    assert value(s, "insightreader_events_published_total", event="task_cancelled") == 1
    commits = value(s, "insightreader_db_commit_seconds_count")
    assert commits > 0 and value(s, "insightreader_db_commit_batch_size_count") == commits
    assert value(s, "insightreader_db_commit_batch_size_sum") >= commits
    assert value(
        s, "insightreader_http_requests_total", method="POST", route="/api/v1/test/tasks/<task_type>", status="202"
    ) == 5
    assert value(s, "insightreader_http_request_duration_seconds_count", method="GET", route="/metrics") > 0
    assert value(s, "insightreader_event_loop_lag_last_seconds") >= 0


@pytest.fixture
async def fake() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream() as upstream:
        upstream.usage = FAKE_USAGE
        yield upstream


async def test_llm_metrics(start_server: Callable[..., ServerProcess], fake: FakeUpstream) -> None:
    fake.script(rate_limited(retry_after=None), Reply())  # a 429, then the answer
    server = start_server(llm={"base_url": fake.base_url, "api_key": "sk-metrics-test-0123456789", "model": fake.model})
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        api: Api = await register(http)
        buttons = await api.post("/api/v1/insights/generate-buttons", {"selected_text": "Trees cool streets."})
        assert buttons.status_code == 202, buttons.text
        assert (await api.wait_status(buttons.json()["task_id"], "completed"))["status"] == "completed"
        insight = await api.post("/api/v1/insights/generate", {"selected_text": "Trees cool streets."})
        assert (await api.wait_status(insight.json()["task_id"], "completed"))["status"] == "completed"
        s = await eventually(
            http,
            lambda s: value(s, "insightreader_tasks_finished_total", task_type="insight_generation", status="completed")
            == 1,
            "the insight",
        )
    assert value(s, "insightreader_llm_requests_total", kind="complete", status="429") == 1
    assert value(s, "insightreader_llm_requests_total", kind="complete", status="200") == 1
    assert value(s, "insightreader_llm_requests_total", kind="stream", status="200") == 1
    assert value(s, "insightreader_llm_retries_total", reason="429") == 1
    assert value(s, "insightreader_llm_request_duration_seconds_count", kind="complete") == 2
    assert value(s, "insightreader_llm_request_duration_seconds_count", kind="stream") == 1
    assert value(s, "insightreader_llm_tokens_total", model=fake.model, type="prompt") == 2 * FAKE_USAGE[0]
    assert value(s, "insightreader_llm_tokens_total", model=fake.model, type="completion") == 2 * FAKE_USAGE[1]
    assert value(s, "insightreader_llm_circuit_state", state="closed") == 1
    assert value(s, "insightreader_llm_circuit_state", state="open") == 0
    assert value(s, "insightreader_task_run_seconds_count", task_type="button_generation") == 1
