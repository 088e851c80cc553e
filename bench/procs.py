"""The processes of one measurement: the fake upstream, the server under test, the load.

The server gets core 0 (``taskset -c 0``), everything else — this harness, the load
generators, the fake upstream — core 1, when the machine has two cores and ``taskset``
exists (otherwise nothing is pinned, and the JSON says so). With ``--processes N`` the
N InsightReader processes of a start all get core 0, so 1 and N share the same CPU.
"""

from __future__ import annotations

import compileall
import contextlib
import json
import os
import resource
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support.process import write_config

REPO = Path(__file__).resolve().parents[1]
BASELINE_VENV = REPO / "bench" / ".venv-baseline"
BASELINE_PYTHON = BASELINE_VENV / "bin" / "python"
BASELINE_REQUIREMENTS = REPO / "bench" / "requirements-baseline.txt"
START_TIMEOUT = 60.0
PASSWORD = "bench-password-1"

PINNED = shutil.which("taskset") is not None and len(os.sched_getaffinity(0)) >= 2 and {0, 1} <= os.sched_getaffinity(0)
SERVER_CORE = "0"
LOAD_CORE = "1"

TARGETS = ("insightreader", "original", "ceiling", "insightreader-uvloop", "insightreader-uvicorn", "ceiling-uvicorn")
#: The comparison targets (bench/other_servers.py): (server, loop, app).
OTHER_SERVERS = {
    "insightreader-uvloop": ("hypercorn", "uvloop", "insightreader"),
    "insightreader-uvicorn": ("uvicorn", "uvloop", "insightreader"),
    "ceiling-uvicorn": ("uvicorn", "uvloop", "ceiling"),
}
#: InsightReader's ``database.synchronous`` in the bench config (``--synchronous``).
OPTIONS = {"synchronous": "FULL", "database": "sqlite"}
#: ``--postgres ADMIN_URL``: each InsightReader server gets a new database on that
#: PostgreSQL server (never recorded: the URL may carry a password).
POSTGRES: dict[str, str] = {}
#: ``--processes N`` (with ``--postgres``): the InsightReader processes a start of a
#: scenario that spreads its load (:func:`start_servers`) runs on its one database.
PROCESSES = {"count": 1}
#: The targets that serve InsightReader's database, so can run as several processes.
INSIGHTREADER_TARGETS = ("insightreader", "insightreader-uvloop", "insightreader-uvicorn")


def prepare_harness() -> None:
    """Pin this process (and so every child not pinned elsewhere) to the load core,
    raise the open-file limit to the hard limit (10,000 streams need as many sockets),
    and compile the servers' modules.

    A deployed server loads its modules from bytecode written at install or at its first
    start. Where ``PYTHONDONTWRITEBYTECODE`` is set (these machines set it), a module
    changed since it was last compiled is compiled again at every start (all of
    ``insightreader`` uncompiled: 0.69–0.73 s of imports instead of 0.58 s)."""
    for package in ("insightreader", "bench"):
        compileall.compile_dir(REPO / package, quiet=1)
    if PINNED:
        os.sched_setaffinity(0, {int(LOAD_CORE)})
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def on_core(core: str, argv: list[str]) -> list[str]:
    return ["taskset", "-c", core, *argv] if PINNED else argv


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_baseline_venv() -> None:
    """``bench/.venv-baseline`` with the baseline's requirements from PyPI (once)."""
    if BASELINE_PYTHON.exists():
        return
    print(f"creating {BASELINE_VENV} (the original design's dependencies)", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(BASELINE_VENV)], check=True)
    subprocess.run([str(BASELINE_PYTHON), "-m", "pip", "install", "-q", "-r", str(BASELINE_REQUIREMENTS)], check=True)


class Proc:
    """A child process whose output goes to a log file; stopped with SIGTERM, then SIGKILL."""

    def __init__(self, argv: list[str], log: Path, *, cwd: Path | None = None, env: dict[str, str] | None = None,
                 stdout_pipe: bool = False) -> None:
        self.log = log
        self._out = open(log, "w")  # noqa: SIM115
        self.started = time.monotonic()
        self.popen = subprocess.Popen(
            argv, cwd=cwd or REPO, env=env or child_env(), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout_pipe else self._out, stderr=self._out, text=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self, timeout: float = 10.0) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        self._out.close()


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "INSIGHTREADER_"))}
    env["PYTHONPATH"] = str(REPO)
    return env


@dataclass
class Upstream:
    proc: Proc
    base_url: str
    model: str
    requests_log: Path

    def request_times(self) -> list[float]:
        try:
            return [float(line) for line in self.requests_log.read_text().split()]
        except FileNotFoundError:
            return []


def start_upstream(workdir: Path, latency: float, *, hang: bool = False) -> Upstream:
    log = workdir / f"upstream-{time.monotonic_ns()}.requests"
    argv = [sys.executable, "-m", "bench.upstream", "--latency", str(latency), "--log", str(log)]
    proc = Proc(on_core(LOAD_CORE, argv + (["--hang"] if hang else [])), workdir / "upstream.log", stdout_pipe=True)
    assert proc.popen.stdout is not None
    ready, _, _ = select.select([proc.popen.stdout], [], [], START_TIMEOUT)
    line = proc.popen.stdout.readline() if ready else ""
    if not line.startswith("fake upstream at "):
        proc.stop()
        raise RuntimeError(f"the fake upstream did not start: {line!r} (see {proc.log})")
    url, model = line.removeprefix("fake upstream at ").strip().removesuffix(")").split(" (model ")
    return Upstream(proc, url, model, log)


@dataclass
class Server:
    target: str
    proc: Proc
    url: str
    lag_files: dict[str, Path]
    listening_s: float = 0.0


def _fresh_postgres_database() -> str:
    """A new database on ``--postgres``'s server; its URL."""
    import psycopg

    admin = POSTGRES["admin_url"]
    name = f"bench_{time.time_ns()}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}".encode())
    return admin.rsplit("/", 1)[0] + "/" + name


def insightreader_config(workdir: Path, port: int, upstream: Upstream, *, heartbeat: float = 15.0,
                         database: Path | None = None, postgres_url: str | None = None) -> Path:
    """``workdir/config.toml``; on ``--postgres``, for ``postgres_url`` (default: a new database)."""
    store: dict[str, Any] = {"path": str(database or workdir / "bench.db"), "synchronous": OPTIONS["synchronous"]}
    if POSTGRES:
        store["url"] = postgres_url or _fresh_postgres_database()
    return write_config(workdir / "config.toml", {
        "server": {"bind": f"127.0.0.1:{port}", "graceful_timeout": 0.5},
        "database": store,
        "auth": {"access_token_lifetime": 86400},
        "llm": {"base_url": upstream.base_url, "model": upstream.model, "api_key": "sk-bench-0123456789"},
        "tasks": {"max_concurrency": 10, "max_pending_per_user": 100_000_000},
        "sse": {"heartbeat": heartbeat, "max_connections_per_user": 20_000},
        "log": {"level": "WARNING"},
    })


def start_server(target: str, workdir: Path, upstream: Upstream | None, *, heartbeat: float = 15.0,
                 config: Path | None = None, ready: bool = True) -> Server:
    """Start ``target`` and return once it listens; InsightReader also once ``/readyz``
    says its start-up is done, unless ``ready`` is False."""
    port = free_port()
    lag = workdir / f"{target}-{time.monotonic_ns()}.lag"
    py = sys.executable
    if target == "insightreader":
        assert upstream is not None
        config = config or insightreader_config(workdir, port, upstream, heartbeat=heartbeat)
        argv = [py, "-m", "bench.lagprobe", str(lag), "-m", "insightreader", "serve", "--config", str(config)]
        lag_files = {"loop": lag}
    elif target == "original":
        assert upstream is not None
        ensure_baseline_venv()
        argv = [str(BASELINE_PYTHON), str(REPO / "bench" / "baseline_original.py"), "--port", str(port),
                "--openai-base-url", upstream.base_url, "--model", upstream.model, "--heartbeat", str(heartbeat),
                "--lag-file", str(lag)]
        lag_files = {"loop": Path(f"{lag}.main"), "taskmanager_loop": Path(f"{lag}.taskmanager")}
    elif target == "ceiling":
        argv = [py, "-m", "bench.lagprobe", str(lag), "-m", "bench.ceiling", "--port", str(port)]
        lag_files = {"loop": lag}
    elif target in OTHER_SERVERS:
        http, loop, app = OTHER_SERVERS[target]
        argv = [py, "-m", "bench.other_servers", str(lag), "--server", http, "--loop", loop, app]
        if app == "insightreader":
            assert upstream is not None
            config = config or insightreader_config(workdir, port, upstream, heartbeat=heartbeat)
            argv += ["--config", str(config)]
        else:
            argv += ["--port", str(port)]
        lag_files = {"loop": lag}
    else:
        raise ValueError(target)
    proc = Proc(on_core(SERVER_CORE, argv), workdir / f"{target}.log", cwd=workdir)
    if config is not None:
        # a restart reads the same config: the port in it wins
        port = int(_bind_port(config))
    url = f"http://127.0.0.1:{port}"
    listening = wait_listening(proc, port)
    if config is not None and ready:
        wait_started(proc, url)
    return Server(target, proc, url, lag_files, listening - proc.started)


def server_count(target: str) -> int:
    """How many processes :func:`start_servers` runs for ``target``: ``--processes`` for
    InsightReader, one for the others (each keeps its state in its own memory)."""
    return PROCESSES["count"] if target in INSIGHTREADER_TARGETS else 1


def start_servers(target: str, workdir: Path, upstream: Upstream) -> list[Server]:
    """``server_count(target)`` servers of ``target`` on one new database, each on a port
    of its own, started one after the other, each ready (``wait_started``) before the
    next starts; with one, exactly :func:`start_server`."""
    count = server_count(target)
    if count == 1:
        return [start_server(target, workdir, upstream)]
    postgres_url = _fresh_postgres_database()
    servers: list[Server] = []
    try:
        for n in range(count):
            home = workdir / f"process-{n + 1}"
            home.mkdir()
            # one database.path for all: the generated signing secret lives beside it,
            # so a token from one process is valid on every other
            config = insightreader_config(home, free_port(), upstream, database=workdir / "bench.db",
                                          postgres_url=postgres_url)
            servers.append(start_server(target, home, upstream, config=config))
    except BaseException:
        stop_all(*servers)
        raise
    return servers


def wait_started(proc: Proc, url: str) -> None:
    """Until InsightReader's ``/readyz`` says its start-up is done (the LLM SDK, which
    loads after the server listens, included): load measured from then on is the
    steady state, as with the other targets, which load everything before listening."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"the server exited ({proc.popen.returncode}); see {proc.log}")
        with contextlib.suppress(httpx.HTTPError, ValueError):
            ready = httpx.get(f"{url}/readyz", timeout=1)
            if ready.status_code == 200 and ready.json()["llm"].get("sdk", "loaded") == "loaded":
                return
        time.sleep(0.005)
    proc.stop()
    raise RuntimeError(f"the server was not ready within {START_TIMEOUT}s; see {proc.log}")


def _bind_port(config: Path) -> str:
    for line in config.read_text().splitlines():
        if line.startswith("bind = "):
            return line.split(":")[-1].strip().strip('"')
    raise ValueError("no bind in config")


def wait_listening(proc: Proc, port: int) -> float:
    """When the port first accepted a connection (``time.monotonic()``)."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"the server exited ({proc.popen.returncode}); see {proc.log}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return time.monotonic()
        time.sleep(0.005)
    proc.stop()
    raise RuntimeError(f"the server did not listen within {START_TIMEOUT}s; see {proc.log}")


def login(url: str, name: str = "bench") -> str:
    """Register ``name`` (if need be) and return an access token."""
    creds = {"username": name, "password": PASSWORD}
    with httpx.Client(base_url=url, timeout=30) as http:
        http.post("/api/v1/auth/register", json=creds)
        answer = http.post("/api/v1/auth/login", json=creds)
        answer.raise_for_status()
        return str(answer.json()["access_token"])


def run_loadgen(mode: str, urls: list[str], token: str, **options: Any) -> dict[str, Any]:
    """``python -m bench.loadgen MODE`` on the load core, on the servers at ``urls``; its JSON."""
    argv = [sys.executable, "-m", "bench.loadgen", mode, "--token", token]
    for url in urls:
        argv += ["--url", url]
    for key, value in options.items():
        if value is not None:
            argv += [f"--{key}", str(value)]
    done = subprocess.run(on_core(LOAD_CORE, argv), cwd=REPO, env=child_env(), capture_output=True, text=True,
                          timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"loadgen {mode} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def stop_all(*things: Server | Upstream | None) -> None:
    for thing in things:
        if thing is not None:
            thing.proc.stop()
