"""Load that Python can generate without being the bottleneck: raw asyncio sockets.

Run by the harness as a process of its own, pinned to the load core; prints one JSON
object. ``paced`` and ``e2e`` take several servers (``--url`` repeated, ``--processes``):
request *i* goes to server *i mod N* over that server's share of the connections, and
``e2e`` opens one event stream on each. Modes:

``paced``  open-loop submits at a fixed rate over a pool of keep-alive connections.
    Request *i* is due at ``t0 + i / rate``; its latency is measured from that due
    time, not from when a connection was free to send it (no coordinated omission:
    a server that stalls is charged for every request that should have been sent
    meanwhile). ``send_lag`` says how late the generator itself sent what it could.
``fanout`` many event streams of one user; one submit at a time; per stream, the
    arrival of the first event that names the submitted task.
``idle``   many event streams held open: the server's RSS before and after they
    open (``/proc/PID/status``), and every heartbeat's arrival per stream.
``e2e``    one event stream per server; submits in a burst or paced; every
    ``task_completed`` (or ``task_failed``) counted per task and stream.

Times are ``time.monotonic()`` taken when the bytes arrive (``data_received``).
Parsing costs a few microseconds per message in this process; at 1,000 streams that
is a few milliseconds added to "first → last", said in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

CONNECT_TIMEOUT = 30.0
OPEN_PARALLEL = 100
SUBMIT_PATH = "/api/v1/insights/generate-buttons"
STREAM_PATH = "/api/v1/sse/analysis-notifications"


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q / 100 * len(ordered) + 0.5)) - 1))]


def summary_ms(values: list[float]) -> dict[str, float | None]:
    def ms(v: float | None) -> float | None:
        return None if v is None else round(v * 1000, 3)

    return {"p50_ms": ms(percentile(values, 50)), "p90_ms": ms(percentile(values, 90)),
            "p99_ms": ms(percentile(values, 99)), "max_ms": ms(max(values) if values else None)}


# -- plain HTTP/1.1 requests -----------------------------------------------------------


class Conn:
    """One keep-alive connection; answers must carry a Content-Length (they do here)."""

    def __init__(self, host: str, port: int, token: str) -> None:
        self.host, self.port, self.token = host, port, token
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port), CONNECT_TIMEOUT
        )

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            await self.connect()
        assert self.reader is not None and self.writer is not None
        self.writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nAuthorization: Bearer {self.token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = 0
        close = False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
            elif name.strip().lower() == "connection" and value.strip().lower() == "close":
                close = True
        data = await self.reader.readexactly(length)
        if close:
            self.close()
        return status, data

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def submit_body(nonce: str, n: int) -> bytes:
    return json.dumps({"selected_text": f"bench {nonce} passage {n}: street trees cool the air by shading asphalt."}).encode()


async def paced(addresses: list[tuple[str, int]], token: str, rate: float | None, total: int, connections: int,
                on_answer: Callable[[int, float, float, int, bytes], None] | None = None) -> dict[str, Any]:
    """``total`` submits, ``rate`` a second (``None``: all due at once) from a pool of
    ``connections``, round-robin over ``addresses``: connection *c* and request *i* go
    to address *c mod N* and *i mod N*, so each server gets its share of the requests
    whatever its speed (a round-robin balancer), waiting for its own connections."""
    if connections < len(addresses):
        raise ValueError(f"{connections} connections cannot reach {len(addresses)} servers")
    nonce = uuid.uuid4().hex[:12]
    lanes = range(len(addresses))
    pool = [(c % len(addresses), Conn(*addresses[c % len(addresses)], token)) for c in range(connections)]
    await asyncio.gather(*(c.connect() for _, c in pool))
    due: list[asyncio.Queue[tuple[int, float, bool]]] = [asyncio.Queue() for _ in lanes]
    latencies: list[float] = []
    send_lags: list[float] = []
    statuses: dict[str, int] = {}
    errors = 0
    last_answer = 0.0
    idle = [sum(1 for lane, _ in pool if lane == n) for n in lanes]
    exhausted = 0

    async def worker(lane: int, conn: Conn) -> None:
        nonlocal errors, last_answer
        while True:
            n, intended, had_idle = await due[lane].get()
            if n < 0:
                return
            idle[lane] -= 1
            sent = time.monotonic()
            if had_idle:  # the generator's own lateness, not a wait for a busy pool
                send_lags.append(sent - intended)
            try:
                status, data = await conn.post(SUBMIT_PATH, submit_body(nonce, n))
            except (OSError, asyncio.IncompleteReadError, ValueError):
                errors += 1
                conn.close()
                idle[lane] += 1
                continue
            idle[lane] += 1
            answered = time.monotonic()
            last_answer = answered
            statuses[str(status)] = statuses.get(str(status), 0) + 1
            latencies.append(answered - intended)
            if on_answer is not None:
                on_answer(n, intended, answered, status, data)

    workers = [asyncio.create_task(worker(lane, c)) for lane, c in pool]
    start = time.monotonic() + 0.05
    for n in range(total):
        intended = start + (n / rate if rate else 0.0)
        delay = intended - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        lane = n % len(addresses)
        free = idle[lane] - due[lane].qsize() > 0  # a connection waits for this request
        exhausted += not free
        due[lane].put_nowait((n, intended, free))
    for lane, _ in pool:
        due[lane].put_nowait((-1, 0.0, False))
    await asyncio.gather(*workers)
    for _, c in pool:
        c.close()
    ok = sum(v for k, v in statuses.items() if k.startswith("2"))
    return {
        "requests": total, "ok": ok, "statuses": statuses, "errors": errors,
        "offered_rate": rate, "achieved_rate": round(ok / max(1e-9, last_answer - start), 2),
        **summary_ms(latencies), "send_lag_p99_ms": summary_ms(send_lags)["p99_ms"],
        "pool_exhausted": exhausted,
        "window": [start, last_answer],
    }


# -- event streams ----------------------------------------------------------------------


class Stream(asyncio.Protocol):
    """One ``text/event-stream`` response, de-chunked and split into messages."""

    def __init__(self, request: bytes, on_message: Callable[[Stream, float, str, str], None]) -> None:
        self.request = request
        self.on_message = on_message
        self.connected: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed = False
        self.transport: asyncio.Transport | None = None
        self._head = b""
        self._chunked: bool | None = None
        self._raw = b""
        self._text = ""
        self.status = 0
        # what the modes keep per stream
        self.heartbeats = 0
        self.last_message = 0.0
        self.max_gap = 0.0
        self.seen: list[tuple[float, str, str]] = []
        self.armed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.connected.done():
            self.connected.set_exception(ConnectionError(f"stream closed before connected (status {self.status})"))

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        if self._chunked is None:
            self._head += data
            if b"\r\n\r\n" not in self._head:
                return
            head, _, data = self._head.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            self.status = int(lines[0].split(" ", 2)[1])
            self._chunked = any(
                l.lower().startswith("transfer-encoding:") and "chunked" in l.lower() for l in lines[1:]
            )
            if self.status != 200 and not self.connected.done():
                self.connected.set_exception(ConnectionError(f"stream answered {self.status}"))
        if self._chunked:
            self._raw += data
            body = []
            while True:
                line_end = self._raw.find(b"\r\n")
                if line_end < 0:
                    break
                size = int(self._raw[:line_end].split(b";")[0] or b"0", 16)
                if size == 0:
                    self._raw = b""
                    break
                if len(self._raw) < line_end + 2 + size + 2:
                    break
                body.append(self._raw[line_end + 2 : line_end + 2 + size])
                self._raw = self._raw[line_end + 4 + size :]
            data = b"".join(body)
        self._text += data.decode("utf-8", "replace")
        while "\n\n" in self._text:
            message, _, self._text = self._text.partition("\n\n")
            event = ""
            payload = ""
            for line in message.split("\n"):
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    payload = line[5:].strip()
            if event:
                self.on_message(self, now, event, payload)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()


async def open_streams(host: str, port: int, token: str, count: int,
                       on_message: Callable[[Stream, float, str, str], None]) -> list[Stream]:
    request = (f"GET {STREAM_PATH}?token={token} HTTP/1.1\r\nHost: {host}:{port}\r\n"
               "Accept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n").encode()
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(OPEN_PARALLEL)

    async def one() -> Stream:
        async with gate:
            _, stream = await asyncio.wait_for(
                loop.create_connection(lambda: Stream(request, on_message), host, port), CONNECT_TIMEOUT
            )
            await asyncio.wait_for(stream.connected, CONNECT_TIMEOUT)
            return stream

    return list(await asyncio.gather(*(one() for _ in range(count))))


def _mark_connected(stream: Stream, now: float, event: str, data: str) -> None:
    if event == "connected" and not stream.connected.done():
        stream.connected.set_result(None)
    if event == "heartbeat":
        stream.heartbeats += 1
    if stream.last_message:
        stream.max_gap = max(stream.max_gap, now - stream.last_message)
    stream.last_message = now


async def wait_until(condition: Callable[[], bool], timeout: float, step: float = 0.005) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(step)
    return True


async def fanout(host: str, port: int, token: str, streams: int, events: int, spacing: float) -> dict[str, Any]:
    def on_message(stream: Stream, now: float, event: str, data: str) -> None:
        _mark_connected(stream, now, event, data)
        if stream.armed and event not in ("connected", "heartbeat"):
            stream.seen.append((now, event, data))

    opened = await open_streams(host, port, token, streams, on_message)
    conn = Conn(host, port, token)
    await conn.connect()
    nonce = uuid.uuid4().hex[:12]
    rounds = []
    for n in range(events):
        await asyncio.sleep(spacing)
        for s in opened:
            s.seen = []
            s.armed = True
        sent = time.monotonic()
        status, data = await conn.post(SUBMIT_PATH, submit_body(nonce, n))
        task_id = json.loads(data)["task_id"]

        def first(s: Stream) -> tuple[float, str] | None:
            return next(((t, e) for t, e, d in s.seen if task_id in d), None)

        complete = await wait_until(lambda: all(first(s) for s in opened), 30.0)
        arrivals = [a for a in (first(s) for s in opened) if a is not None]
        for s in opened:
            s.armed = False
        times = [t for t, _ in arrivals]
        rounds.append({
            "status": status, "received": len(times), "complete": complete,
            "event": arrivals[0][1] if arrivals else None,
            "submit_to_first_ms": round((min(times) - sent) * 1000, 3) if times else None,
            "first_to_last_ms": round((max(times) - min(times)) * 1000, 3) if times else None,
        })
    for s in opened:
        s.close()
    conn.close()
    return {"streams": streams, "rounds": rounds}


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def idle(host: str, port: int, token: str, streams: int, heartbeat: float, hold: float,
               pid: int) -> dict[str, Any]:
    before = _rss_kb(pid)
    open_start = time.monotonic()
    opened = await open_streams(host, port, token, streams, _mark_connected)
    open_done = time.monotonic()
    # Every stream has had time for its first heartbeat: its state is all allocated.
    await asyncio.sleep(heartbeat * 1.2)
    after = _rss_kb(pid)
    for s in opened:
        s.heartbeats = 0
        s.max_gap = 0.0
    hold_start = time.monotonic()
    await asyncio.sleep(hold)
    now = time.monotonic()
    expected = int(hold / heartbeat)
    # the gap since the last message counts too (a stream that went silent)
    gaps = [max(s.max_gap, now - s.last_message) for s in opened]
    late = sum(1 for g in gaps if g > heartbeat * 1.5)
    closed = sum(1 for s in opened if s.closed)
    short = sum(1 for s in opened if s.heartbeats < expected - 1)
    for s in opened:
        s.close()
    return {
        "streams": streams, "rss_before_kb": before, "rss_after_kb": after,
        "kb_per_stream": round((after - before) / streams, 2), "open_seconds": round(open_done - open_start, 2),
        "heartbeats_expected_per_stream": expected, "heartbeats_min": min(s.heartbeats for s in opened),
        "streams_short_of_heartbeats": short, "streams_with_gap_over_1_5x": late,
        "max_gap_s": round(max(gaps), 3), "streams_closed": closed,
        "every_heartbeat_delivered": late == 0 and closed == 0 and short == 0,
        "window": [hold_start, now],
    }


async def e2e(addresses: list[tuple[str, int]], token: str, tasks: int, rate: float | None,
              connections: int) -> dict[str, Any]:
    """``tasks`` submits (a burst, or ``rate`` a second), every completion counted on
    one event stream per address (each must get every task's outcome once). A task is
    finished when the last stream has its outcome: that time is its completion."""
    finished: dict[str, dict[Stream, list[tuple[float, str]]]] = {}

    def on_message(stream: Stream, now: float, event: str, data: str) -> None:
        _mark_connected(stream, now, event, data)
        if event in ("task_completed", "task_failed"):
            finished.setdefault(json.loads(data)["task_id"], {}).setdefault(stream, []).append((now, event))

    streams = [s for host, port in addresses for s in await open_streams(host, port, token, 1, on_message)]
    submitted: dict[str, float] = {}
    refused: dict[str, int] = {}

    def on_answer(n: int, intended: float, answered: float, status: int, data: bytes) -> None:
        if status in (200, 202):
            submitted[json.loads(data)["task_id"]] = intended
        else:
            refused[str(status)] = refused.get(str(status), 0) + 1

    def on_every_stream(task: str) -> bool:
        return len(finished.get(task, ())) == len(streams)

    load = await paced(addresses, token, rate, tasks, connections, on_answer)
    await wait_until(lambda: all(on_every_stream(t) for t in submitted), 60.0 + tasks, step=0.05)
    for stream in streams:
        stream.close()
    done = [t for t in submitted if on_every_stream(t)]
    outcome = {t: next(iter(finished[t].values()))[0][1] for t in done}
    completion = {t: max(seen[0][0] for seen in finished[t].values()) for t in done}
    first_submit = min(submitted.values()) if submitted else 0.0
    last = max(completion.values(), default=first_submit)
    return {
        "tasks": tasks, "submitted": len(submitted), "refused": refused,
        "completed": sum(1 for t in done if outcome[t] == "task_completed"),
        "failed": sum(1 for t in done if outcome[t] == "task_failed"),
        "lost": len(submitted) - len(done),
        "duplicated": sum(len(seen) - 1 for per_stream in finished.values() for seen in per_stream.values()),
        "unknown": sum(1 for t in finished if t not in submitted),
        "seconds": round(last - first_submit, 3),
        "completed_per_s": round(len(done) / max(1e-9, last - first_submit), 3),
        "latencies": [completion[t] - submitted[t] for t in done],
        "submit": {k: load[k] for k in ("p50_ms", "p99_ms", "achieved_rate", "send_lag_p99_ms")},
        "window": [first_submit, last],
    }


def address(url: str) -> tuple[str, int]:
    """``http://HOST:PORT`` as (host, port)."""
    host, _, port = url.removeprefix("http://").partition(":")
    return host, int(port.rstrip("/"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["paced", "fanout", "idle", "e2e"])
    parser.add_argument("--url", action="append", required=True, help="repeatable (paced, e2e): several servers")
    parser.add_argument("--token", required=True)
    parser.add_argument("--rate", type=float, default=None)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=128)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--events", type=int, default=5)
    parser.add_argument("--spacing", type=float, default=1.5)
    parser.add_argument("--heartbeat", type=float, default=5.0)
    parser.add_argument("--hold", type=float, default=15.0)
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--pid", type=int, default=0)
    args = parser.parse_args()
    addresses = [address(url) for url in args.url]
    if args.mode in ("fanout", "idle") and len(addresses) > 1:
        parser.error(f"{args.mode} measures one server: one --url")
    host, port = addresses[0]
    runs: dict[str, Callable[[], Awaitable[dict[str, Any]]]] = {
        "paced": lambda: paced(addresses, args.token, args.rate, max(1, round(args.rate * args.duration)),
                               args.connections),
        "fanout": lambda: fanout(host, port, args.token, args.streams, args.events, args.spacing),
        "idle": lambda: idle(host, port, args.token, args.streams, args.heartbeat, args.hold, args.pid),
        "e2e": lambda: e2e(addresses, args.token, args.tasks, args.rate, args.connections),
    }
    result = asyncio.run(runs[args.mode]())
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
