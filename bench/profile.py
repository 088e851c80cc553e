"""``python -m bench profile restart --out FILE.svg``: a flame graph of a start.

The other profiles are taken by attaching py-spy to a server while a scenario runs
(docs/benchmarks.md, "Profiling"). A start cannot be attached to in time, so here
py-spy starts the server itself, on the restart scenario's database (10,000 pending
tasks), and records its first seconds; the server is stopped afterwards (py-spy stops
recording, not the process it started).
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from .procs import LOAD_CORE, SERVER_CORE, Proc, on_core, start_upstream, stop_all
from .scenarios import first_request, seeded_for_restart

PENDING = 10_000
#: Seconds recorded: a start's first dispatch comes after about 1.1–1.3 s here.
DURATION = 2
RATE = 200


def py_spy() -> str:
    beside = Path(sys.executable).with_name("py-spy")
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if found is None:
        raise SystemExit("py-spy is not installed: pip install py-spy")
    return found


def restart(out: Path) -> float:
    """Record a start with ``PENDING`` tasks waiting into ``out`` (SVG); the seconds
    from py-spy's start to the first dispatch (py-spy's own start included)."""
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        workdir = Path(tmp)
        upstream = start_upstream(workdir, 1.0)
        spy: Proc | None = None
        try:
            config, _ = seeded_for_restart(workdir, upstream, PENDING)
            serve = on_core(SERVER_CORE, [sys.executable, "-m", "insightreader", "serve", "--config", str(config)])
            record = [py_spy(), "record", "--nonblocking", "--threads", "--rate", str(RATE),
                      "--duration", str(DURATION), "--format", "flamegraph", "--output", str(out.resolve()), "--"]
            spy = Proc(on_core(LOAD_CORE, record + serve), workdir / "py-spy.log", cwd=workdir)
            server = _child(spy.pid)
            try:
                first = first_request(upstream, spy.started)
                spy.popen.wait(DURATION + 30)
            finally:
                _stop(server)
            if first is None:
                raise RuntimeError(f"no task was dispatched within 60 s of the start; see {spy.log}")
            return first - spy.started
        finally:
            if spy is not None:
                spy.stop()
            stop_all(upstream)


def _child(pid: int, timeout: float = 10.0) -> int:
    """The process ``pid`` started (py-spy's server), once it has."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.005)
    raise RuntimeError(f"py-spy started no server within {timeout:g} s")


def _stop(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM a process that is not our child (py-spy's), then wait, bounded, until it
    is gone; SIGKILL if it is not."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    """Running, not a zombie its new parent has yet to reap."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"
