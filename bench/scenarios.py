"""The scenarios of issue 10: one measurement run each, on a fresh server and upstream.

Every run starts its own fake upstream and its own server (a fresh database for
InsightReader), measures, reads the server's event-loop lag over the measurement
window, and stops everything. A run returns flat metrics (numbers); ``runner``
takes the median, min and max over the runs.

The scenarios marked ``spread`` (submit and end to end) start ``--processes N``
InsightReader servers on one PostgreSQL database (:func:`procs.start_servers`) and
spread their load over them round-robin; their loop lag is that of all N.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
import httpx

from . import lagprobe, search, wrk
from .loadgen import percentile
from .procs import (
    POSTGRES,
    Server,
    Upstream,
    free_port,
    insightreader_config,
    login,
    run_loadgen,
    start_server,
    start_servers,
    start_upstream,
    stop_all,
)

Metrics = dict[str, float]
LAG_METRIC = "insightreader_event_loop_lag_seconds"
SUBMIT = "/api/v1/insights/generate-buttons"
ME = "/api/v1/auth/me"
#: InsightReader's tasks.max_concurrency in the bench config, and the original's Semaphore(10).
CONCURRENCY = 10


@dataclass(frozen=True)
class Scenario:
    name: str
    variant: str
    targets: tuple[str, ...]
    run: Callable[[str, bool, Path], Metrics]
    #: Metrics shown in the table, in order (the first is the one compared across targets).
    headline: tuple[str, ...]
    #: Runs ``--processes`` InsightReader servers per start (``start_servers``).
    spread: bool = False

    @property
    def label(self) -> str:
        return f"{self.name} {self.variant}".strip()


# -- event-loop lag ------------------------------------------------------------------------


def wait_flushed(server: Server, end: float) -> None:
    """Until the server's sampler has written past ``end`` (it flushes every second)."""
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        samples = lagprobe.read_samples(str(server.lag_files["loop"]), end, float("inf"))
        if samples or server.proc.popen.poll() is not None:
            return
        time.sleep(0.1)


def loop_lag(servers: list[Server], start: float, end: float) -> Metrics:
    """p50 / p99 / max of the lag sampled in [start, end], per loop of the server; of
    several processes, their samples pooled (each loop is sampled 100 times a second)."""
    for server in servers:
        wait_flushed(server, end)
    found: Metrics = {}
    for name in servers[0].lag_files:
        lags = [lag for s in servers for lag in lagprobe.read_samples(str(s.lag_files[name]), start, end)]
        if lags:
            prefix = "lag" if name == "loop" else f"{name}_lag"
            found[f"{prefix}_p50_ms"] = round((percentile(lags, 50) or 0) * 1000, 3)
            found[f"{prefix}_p99_ms"] = round((percentile(lags, 99) or 0) * 1000, 3)
            found[f"{prefix}_max_ms"] = round(max(lags) * 1000, 3)
    return found


def scrape_lag_metric(servers: list[Server]) -> dict[str, float]:
    """InsightReader's own loop-lag metric from /metrics, when the server has one;
    summed over several processes (the histogram's buckets and counts add up)."""
    values: dict[str, float] = {}
    for server in servers:
        if not server.target.startswith("insightreader"):
            continue
        try:
            text = httpx.get(f"{server.url}/metrics", timeout=10).text
        except httpx.HTTPError:
            continue
        for line in text.splitlines():
            if line.startswith(LAG_METRIC):
                name, _, value = line.rpartition(" ")
                values[name] = values.get(name, 0.0) + float(value)
    return values


def metric_lag(before: dict[str, float], after: dict[str, float]) -> Metrics:
    """The metric's p99 over the window (from histogram buckets), or its last values."""
    buckets = {}
    for name, value in after.items():
        if name.startswith(f"{LAG_METRIC}_bucket") and 'le="' in name:
            le = name.split('le="', 1)[1].split('"', 1)[0]
            buckets[float("inf") if le == "+Inf" else float(le)] = value - before.get(name, 0.0)
    if buckets:
        total = buckets.get(float("inf"), max(buckets.values()))
        if total > 0:
            bound = next(le for le in sorted(buckets) if buckets[le] >= 0.99 * total)
            return {"metric_lag_p99_le_ms": bound * 1000}
        return {}
    return {f"metric:{name}": value for name, value in after.items()}


def measured(servers: list[Server], start: float, end: float, before: dict[str, float]) -> Metrics:
    return {**loop_lag(servers, start, end), **metric_lag(before, scrape_lag_metric(servers))}


def in_window(upstream: Upstream, start: float, end: float) -> int:
    return sum(1 for t in upstream.request_times() if start <= t <= end)


# -- submit, closed loop -----------------------------------------------------------------


#: Completed tasks already in the database in submit-closed's ``history`` variant: a
#: server that has run a while, its indexes far larger than SQLite's page cache.
HISTORY = 1_000_000


def submit_closed(target: str, quick: bool, workdir: Path) -> Metrics:
    upstream = start_upstream(workdir, 1.0)
    servers: list[Server] = []
    try:
        servers = start_servers(target, workdir, upstream)
        return closed_loop(servers, upstream, login(servers[0].url), quick)
    finally:
        stop_all(*servers, upstream)


def submit_closed_on_history(target: str, quick: bool, workdir: Path) -> Metrics:
    """The closed loop on a database that already holds ``HISTORY`` completed tasks of
    the user who submits (1,000 with ``quick``)."""
    upstream = start_upstream(workdir, 1.0)
    server = None
    try:
        config, token, _ = stopped_after_login(target, workdir, upstream)
        history = seed_history(workdir / "bench.db", 1_000 if quick else HISTORY)
        server = start_server(target, workdir, upstream, config=config)
        return {**closed_loop([server], upstream, token, quick), "history": history}
    finally:
        stop_all(server, upstream)


def closed_loop(servers: list[Server], upstream: Upstream, token: str, quick: bool) -> Metrics:
    """Closed-loop submits, then the same servers' ``GET /auth/me`` (tasks still running)."""
    connections, seconds, warmup = (8, 1, 0) if quick else (64, 10, 2)
    urls = [s.url for s in servers]
    if warmup:
        wrk.run(urls, token, "POST", SUBMIT, connections=connections, seconds=warmup)
    before = scrape_lag_metric(servers)
    start = time.monotonic()
    submit = wrk.run(urls, token, "POST", SUBMIT, connections=connections, seconds=seconds)
    end = time.monotonic()
    lag = measured(servers, start, end, before)
    # the same server, in the same run, tasks still running: its trivial authenticated endpoint
    me = wrk.run(urls, token, "GET", ME, connections=connections, seconds=seconds)
    return {
        "submit_rps": submit["rps"], "submit_p50_ms": submit["p50_ms"], "submit_p99_ms": submit["p99_ms"],
        "submit_non_2xx": submit["non_2xx"], "submit_socket_errors": submit["socket_errors"],
        "me_rps": me["rps"], "me_p99_ms": me["p99_ms"], "me_non_2xx": me["non_2xx"],
        "submit_over_me": round(submit["rps"] / me["rps"], 3) if me["rps"] else 0.0,
        "upstream_calls_per_s": round(in_window(upstream, start, end) / (end - start), 2),
        **lag,
    }


# -- submit, fixed rate ------------------------------------------------------------------


def submit_paced(target: str, quick: bool, workdir: Path) -> Metrics:
    rate, seconds, connections = (50, 1, 8) if quick else (200, 10, 256)
    upstream = start_upstream(workdir, 1.0)
    servers: list[Server] = []
    try:
        servers = start_servers(target, workdir, upstream)
        urls = [s.url for s in servers]
        token = login(urls[0])
        if not quick:
            run_loadgen("paced", urls, token, rate=rate, duration=1, connections=connections)
        before = scrape_lag_metric(servers)
        load = run_loadgen("paced", urls, token, rate=rate, duration=seconds, connections=connections)
        start, end = load["window"]
        return {
            "p50_ms": load["p50_ms"], "p99_ms": load["p99_ms"], "max_ms": load["max_ms"],
            "achieved_rate": load["achieved_rate"], "offered_rate": rate,
            "non_2xx": load["requests"] - load["ok"] - load["errors"], "socket_errors": load["errors"],
            "generator_send_lag_p99_ms": load["send_lag_p99_ms"], "pool_exhausted": load["pool_exhausted"],
            **measured(servers, start, end, before),
        }
    finally:
        stop_all(*servers, upstream)


# -- end to end --------------------------------------------------------------------------


def end_to_end(latency: float, tasks: tuple[int, int], rate: float | None) -> Callable[[str, bool, Path], Metrics]:
    """``tasks`` (full, quick) submits at ``rate`` a second (None: a burst), upstream
    answering after ``latency`` s; completions counted on the event streams (one per
    server). Each process runs ``CONCURRENCY`` tasks at once, so the limit is N times
    one server's; the offered load stays the same."""

    def run(target: str, quick: bool, workdir: Path) -> Metrics:
        count = tasks[1] if quick else tasks[0]
        upstream = start_upstream(workdir, latency)
        servers: list[Server] = []
        try:
            servers = start_servers(target, workdir, upstream)
            limit = CONCURRENCY * len(servers) / latency
            urls = [s.url for s in servers]
            token = login(urls[0])
            before = scrape_lag_metric(servers)
            load = run_loadgen("e2e", urls, token, tasks=count, rate=rate,
                               connections=4 if quick else (16 if rate is None else 32))
            start, end = load["window"]
            added = [max(0.0, latency_s - latency) for latency_s in load["latencies"]]
            achievable = min(limit, rate) if rate else limit
            calls = in_window(upstream, start - 1.0, end + 0.5)
            return {
                "ratio": round(load["completed_per_s"] / achievable, 3),
                "completed_per_s": load["completed_per_s"], "limit_per_s": achievable,
                "tasks": count, "completed": load["completed"], "failed": load["failed"],
                "lost": load["lost"], "duplicated": load["duplicated"],
                "refused": sum(load["refused"].values()),
                "upstream_calls_over_tasks": calls - load["submitted"],
                "added_p50_ms": round((percentile(added, 50) or 0) * 1000, 3),
                "added_p99_ms": round((percentile(added, 99) or 0) * 1000, 3),
                "submit_p99_ms": load["submit"]["p99_ms"],
                **measured(servers, start, end, before),
            }
        finally:
            stop_all(*servers, upstream)

    return run


# -- fan-out -----------------------------------------------------------------------------


def fanout(target: str, quick: bool, workdir: Path) -> Metrics:
    streams, events, spacing, latency = (20, 2, 0.3, 0.1) if quick else (1000, 5, 1.5, 1.0)
    upstream = start_upstream(workdir, latency)
    server = None
    try:
        server = start_server(target, workdir, upstream)
        token = login(server.url)
        before = scrape_lag_metric([server])
        start = time.monotonic()
        load = run_loadgen("fanout", [server.url], token, streams=streams, events=events, spacing=spacing)
        end = time.monotonic()
        rounds = load["rounds"]
        firsts = [r["submit_to_first_ms"] for r in rounds if r["submit_to_first_ms"] is not None]
        spreads = [r["first_to_last_ms"] for r in rounds if r["first_to_last_ms"] is not None]
        return {
            "submit_to_first_ms": statistics.median(firsts) if firsts else -1.0,
            "first_to_last_ms": statistics.median(spreads) if spreads else -1.0,
            "streams": streams,
            "received_min": min(r["received"] for r in rounds),
            "rounds_incomplete": sum(1 for r in rounds if not r["complete"]),
            **measured([server], start, end, before),
        }
    finally:
        stop_all(server, upstream)


# -- idle streams ------------------------------------------------------------------------


def idle_streams(streams: tuple[int, int]) -> Callable[[str, bool, Path], Metrics]:
    def run(target: str, quick: bool, workdir: Path) -> Metrics:
        count = streams[1] if quick else streams[0]
        heartbeat, hold = (1.0, 2.0) if quick else (5.0, 15.0)
        upstream = start_upstream(workdir, 1.0)
        server = None
        try:
            server = start_server(target, workdir, upstream, heartbeat=heartbeat)
            token = login(server.url)
            before = scrape_lag_metric([server])
            load = run_loadgen("idle", [server.url], token, streams=count, heartbeat=heartbeat, hold=hold,
                               pid=server.proc.pid)
            start, end = load["window"]
            return {
                "kb_per_stream": load["kb_per_stream"], "streams": count,
                "every_heartbeat_delivered": int(load["every_heartbeat_delivered"]),
                "max_gap_s": load["max_gap_s"], "heartbeats_min": load["heartbeats_min"],
                "heartbeats_expected": load["heartbeats_expected_per_stream"],
                "streams_closed": load["streams_closed"], "open_seconds": load["open_seconds"],
                "rss_after_kb": load["rss_after_kb"],
                **measured([server], start, end, before),
            }
        finally:
            stop_all(server, upstream)

    return run


# -- restart -----------------------------------------------------------------------------


def seed_pending(database: Path, count: int) -> None:
    """Copy the one task in ``database`` into ``count`` pending tasks with distinct
    inputs, by direct SQL while no server runs (the bench's only way in that is not
    the API: 10,000 submits would take the measurement's own time)."""
    db = sqlite3.connect(database)
    try:
        db.row_factory = sqlite3.Row
        template = db.execute("SELECT * FROM tasks ORDER BY seq LIMIT 1").fetchone()
        columns = [c for c in template.keys() if c != "seq"]
        reset = {"status": "pending", "attempts": 0, "attempts_excused": 0, "result": None, "error": None,
                 "model": None, "prompt_tokens": 0, "completion_tokens": 0, "started_at": None, "finished_at": None}
        rows = []
        for n in range(count):
            data = json.loads(template["input"])
            data["selected_text"] = f"seeded passage {n}: street trees cool the air."
            values = {**{c: template[c] for c in columns}, **{k: v for k, v in reset.items() if k in columns}}
            values.update(id=str(uuid.uuid4()), input=json.dumps(data),
                          input_hash=hashlib.sha256(f"seeded-{n}".encode()).hexdigest())
            rows.append([values[c] for c in columns])
        with db:
            db.execute("DELETE FROM tasks")
            db.executemany(f"INSERT INTO tasks ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})", rows)
    finally:
        db.close()


def seed_history(database: Path, count: int) -> int:
    """``count`` completed tasks of the database's one user, finished a day ago, with
    distinct inputs, by direct SQL while no server runs; the completed tasks the database
    then holds. Their ids are random (version 4), as a server's were before 2026-12-06:
    the history of an upgraded server."""
    db = sqlite3.connect(database)
    try:
        (user_id,) = db.execute("SELECT id FROM users").fetchone()
        day_ago = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() - 86_400))
        with db:
            db.executemany(
                "INSERT INTO tasks (id, user_id, task_type, status, priority, attempts, input, input_hash,"
                " metadata, result, created_at, started_at, finished_at)"
                " VALUES (?, ?, 'generate_buttons', 'completed', 5, 1, ?, ?, '{}', '{}', ?, ?, ?)",
                ((str(uuid.uuid4()), user_id, json.dumps({"selected_text": f"history {n}"}),
                  "sha256:" + hashlib.sha256(f"history-{n}".encode()).hexdigest(), day_ago, day_ago, day_ago)
                 for n in range(count)),
            )
        (completed,) = db.execute("SELECT count(*) FROM tasks WHERE status = 'completed'").fetchone()
        return int(completed)
    finally:
        db.close()


def first_request(upstream: Upstream, since: float, timeout: float = 60.0) -> float | None:
    """When the first chat request at or after ``since`` reached the upstream (its log,
    polled every 5 ms); None if none did within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        first = min((t for t in upstream.request_times() if t >= since), default=None)
        if first is not None:
            return first
        time.sleep(0.005)
    return None


def stopped_after_login(target: str, workdir: Path, upstream: Upstream,
                        then: Callable[[Server, str], None] | None = None) -> tuple[Path, str, float]:
    """Start ``target`` on a new SQLite file in ``workdir`` (to be seeded directly
    afterwards), register the bench user, call ``then(server, token)``, and stop it: its
    configuration, the user's token (the signing secret lives beside the database, so
    the token stays valid for the next start) and how long that start took to listen."""
    if POSTGRES:
        raise RuntimeError("this scenario seeds the SQLite file directly: not measured on PostgreSQL")
    config = insightreader_config(workdir, free_port(), upstream)
    server = start_server(target, workdir, upstream, config=config)
    try:
        token = login(server.url)
        if then is not None:
            then(server, token)
    finally:
        server.proc.stop()
    return config, token, server.listening_s


def seeded_for_restart(workdir: Path, upstream: Upstream, pending: int) -> tuple[Path, float]:
    """A stopped server's configuration (returned) and SQLite file in ``workdir``, with
    ``pending`` pending tasks; and how long that server took to listen on its empty
    database."""

    def template(server: Server, token: str) -> None:
        answer = httpx.post(f"{server.url}{SUBMIT}", json={"selected_text": "the template task"},
                            headers={"Authorization": f"Bearer {token}"}, timeout=30)
        answer.raise_for_status()

    config, _, listening = stopped_after_login("insightreader", workdir, upstream, template)
    seed_pending(workdir / "bench.db", pending)
    return config, listening


def restart(target: str, quick: bool, workdir: Path) -> Metrics:
    pending = 200 if quick else 10_000
    upstream = start_upstream(workdir, 1.0)
    server = None
    try:
        config, empty_listening = seeded_for_restart(workdir, upstream, pending)
        # Only until it listens: the first dispatch shows in the upstream's log, and
        # polling /readyz every 5 ms while the SDK loads took the server's core from it.
        server = start_server(target, workdir, upstream, config=config, ready=False)
        started = server.proc.started
        first = first_request(upstream, started)
        if first is None:
            raise RuntimeError(f"no task was dispatched within 60 s of the restart; see {server.proc.log}")
        time.sleep(1.0)
        return {
            "first_dispatch_s": round(first - started, 3), "listening_s": round(server.listening_s, 3),
            "dispatch_after_listening_s": round(first - started - server.listening_s, 3),
            "empty_db_listening_s": round(empty_listening, 3), "pending": pending,
            **loop_lag([server], started, first + 1.0),
        }
    finally:
        stop_all(server, upstream)


BOTH = ("insightreader", "original")
ALL = ("insightreader", "original", "ceiling")
#: The same apps on uvloop and on uvicorn (bench/other_servers.py): how much is the server's.
OTHERS = ("insightreader-uvloop", "insightreader-uvicorn", "ceiling-uvicorn")

SCENARIOS: dict[str, list[Scenario]] = {
    "submit-closed": [
        Scenario("submit-closed", "", ALL + OTHERS, submit_closed,
                 ("submit_rps", "submit_p99_ms", "me_rps", "submit_over_me", "lag_p99_ms"), spread=True),
        Scenario("submit-closed", "history", ("insightreader",), submit_closed_on_history,
                 ("submit_rps", "submit_p99_ms", "me_rps", "submit_over_me", "history")),
    ],
    "submit-paced": [Scenario("submit-paced", "", ALL, submit_paced,
                              ("p99_ms", "p50_ms", "achieved_rate", "generator_send_lag_p99_ms", "lag_p99_ms"),
                              spread=True)],
    "end-to-end": [
        Scenario("end-to-end", "burst-200ms", BOTH, end_to_end(0.2, (500, 20), None),
                 ("ratio", "lost", "duplicated", "added_p99_ms", "lag_p99_ms"), spread=True),
        Scenario("end-to-end", "paced-80%", BOTH, end_to_end(0.2, (400, 40), 0.8 * CONCURRENCY / 0.2),
                 ("ratio", "lost", "duplicated", "added_p99_ms", "lag_p99_ms"), spread=True),
        Scenario("end-to-end", "burst-1s", BOTH, end_to_end(1.0, (100, 10), None),
                 ("ratio", "lost", "duplicated", "added_p99_ms", "lag_p99_ms"), spread=True),
    ],
    "fanout": [Scenario("fanout", "", (*BOTH, "insightreader-uvicorn"), fanout,
                        ("submit_to_first_ms", "first_to_last_ms", "received_min", "lag_p99_ms"))],
    "idle-streams": [
        Scenario("idle-streams", "2000", (*BOTH, "insightreader-uvicorn"), idle_streams((2000, 50)),
                 ("kb_per_stream", "every_heartbeat_delivered", "max_gap_s", "lag_p99_ms")),
        Scenario("idle-streams", "10000", (*BOTH, "insightreader-uvicorn"), idle_streams((10_000, 200)),
                 ("kb_per_stream", "every_heartbeat_delivered", "max_gap_s", "lag_p99_ms")),
    ],
    "restart": [Scenario("restart", "", ("insightreader",), restart,
                         ("first_dispatch_s", "listening_s", "empty_db_listening_s", "lag_p99_ms"))],
    "search": [Scenario("search", "", ("insightreader",), search.search,
                        ("search_p50_ms", "search_p99_ms", "save_slowdown", "backlog_index_s"))],
}
