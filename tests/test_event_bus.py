"""The bus wakes the streams an event reached a batch per turn of the loop, so that
a user with a thousand open streams does not hold the loop for one long turn."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import time
import weakref
from pathlib import Path

from insightreader.config import DatabaseSettings
from insightreader.events import WAKE_BATCH, EventBus
from insightreader.sse import EventStream
from insightreader.store import Store


async def test_streams_are_woken_a_batch_per_turn_and_all_of_them_get_every_event(tmp_path: Path) -> None:
    store = Store(DatabaseSettings(path=tmp_path / "bus.db"))
    await store.open()
    bus = EventBus(store, queue_size=8)
    await bus.start()
    count = WAKE_BATCH * 2 + 5
    subs = [bus.subscribe("u") for _ in range(count)]
    loop = asyncio.get_running_loop()
    try:
        waits = [asyncio.create_task(sub.wait(loop.time() + 60)) for sub in subs]
        await asyncio.sleep(0)  # every stream waits now
        bus.publish("u", "note", {"n": 1})
        bus.publish("u", "note", {"n": 2})  # a second event queues no second wake
        woken_per_turn = []
        async with asyncio.timeout(10):
            while not all(w.done() for w in waits):
                before = sum(w.done() for w in waits)
                await asyncio.sleep(0)
                woken_per_turn.append(sum(w.done() for w in waits) - before)
        assert max(woken_per_turn) <= WAKE_BATCH
        assert sum(woken_per_turn) == count
        for sub in subs:
            assert [event.data for event in sub.take(1 << 20)] == [{"n": 1}, {"n": 2}]
            assert sub.take(1 << 20) == []

        # Waiting again after a wake, each stream is woken by the next event.
        waits = [asyncio.create_task(sub.wait(loop.time() + 60)) for sub in subs]
        await asyncio.sleep(0)
        bus.publish("u", "note", {"n": 3})
        async with asyncio.timeout(10):
            await asyncio.gather(*waits)
        assert all([event.data for event in sub.take(1 << 20)] == [{"n": 3}] for sub in subs)
    finally:
        await bus.stop()
        await store.close()


async def test_a_stream_takes_at_most_one_write_at_a_time(tmp_path: Path) -> None:
    """What a stream takes from its buffer is one write (``take``'s size, at least one
    event): the rest stays in the buffer and counts against its limit, so a client that
    stops reading is closed as soon as ever."""
    store = Store(DatabaseSettings(path=tmp_path / "bus.db"))
    await store.open()
    bus = EventBus(store, queue_size=8)
    await bus.start()
    sub = bus.subscribe("u")
    try:
        published = [bus.publish("u", "note", {"text": "x" * 1000}) for _ in range(5)]
        size = len(published[0].message)
        assert sub.take(2 * size + size // 2) == published[:2]
        assert sub.take(1) == published[2:3]  # one, however large
        assert sub.take(10 * size) == published[3:]
        assert sub.take(10 * size) == []
    finally:
        await bus.stop()
        await store.close()


async def test_a_heartbeat_comes_a_whole_interval_after_the_last_message(tmp_path: Path) -> None:
    """A stream's timer is kept across events rather than set again for each (it may
    wake the stream early once): the heartbeat still comes only after ``heartbeat``
    seconds without a message, not at the deadline set before the last event."""
    store = Store(DatabaseSettings(path=tmp_path / "bus.db"))
    await store.open()
    bus = EventBus(store, queue_size=8)
    await bus.start()
    stream = EventStream(bus, store, "u", last_event_id=None, heartbeat=0.5, max_streams=5)
    stream.open()
    batches = stream.batches()
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(10):
            assert [event.event for event in await anext(batches)] == ["connected"]
            loop.call_later(0.3, bus.publish, "u", "note", {})  # the timer is due at 0.5
            assert [event.event for event in await anext(batches)] == ["note"]
            sent = loop.time()
            assert [event.event for event in await anext(batches)] == ["heartbeat"]
            assert loop.time() - sent >= 0.49
            loop.call_later(0.1, bus.publish, "u", "note", {"n": 2})
            assert [event.data for event in await anext(batches)] == [{"n": 2}]
    finally:
        await batches.aclose()
        stream.close()
        await bus.stop()
        await store.close()


async def test_an_open_stream_keeps_nothing_of_the_request_that_opened_it(tmp_path: Path) -> None:
    """A stream is opened in its request's handler, whose context holds the request;
    the stream outlives the request by hours, and must not keep it (its session timer
    used to: a timer keeps the context it was made in)."""
    store = Store(DatabaseSettings(path=tmp_path / "bus.db"))
    await store.open()
    bus = EventBus(store, queue_size=8)
    await bus.start()
    request_var: contextvars.ContextVar[object] = contextvars.ContextVar("request")

    class Request:
        pass

    stream = EventStream(bus, store, "u", last_event_id=None, heartbeat=5.0, max_streams=5,
                         expires_at=time.time() + 900)

    def open_in_a_request() -> weakref.ref[Request]:
        request = Request()

        def handler() -> None:
            request_var.set(request)
            stream.open()

        contextvars.copy_context().run(handler)
        return weakref.ref(request)

    try:
        gone = open_in_a_request()
        gc.collect()
        assert gone() is None, gc.get_referrers(gone())
        assert bus.subscriber_count("u") == 1
    finally:
        stream.close()
        await bus.stop()
        await store.close()
