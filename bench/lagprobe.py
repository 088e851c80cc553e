"""Event-loop lag, sampled from inside a server process without changing its code.

A sampler task sleeps ``INTERVAL`` seconds over and over; how much later than asked
it wakes up is the loop's lag at that moment (a callback that was ready had to wait
that long). Samples are written as ``<time.monotonic()> <lag seconds>`` lines to a
file (flushed every second); ``CLOCK_MONOTONIC`` is shared by every process on the
machine, so the harness cuts out the samples of its measurement window. The cost is
``1 / INTERVAL`` wake-ups a second (100), the same for every target.

As a launcher, for a program that starts its loop with ``asyncio.run`` (InsightReader,
the ceiling app)::

    python -m bench.lagprobe LAGFILE -m insightreader serve --config c.toml

installs an event-loop policy whose loops start a sampler, then runs the module as
``python -m`` would. The baseline, whose uvicorn builds its loop itself, calls
:func:`start_sampler` from its lifespan (``--lag-file``). Stdlib only: the baseline's
venv imports this too.
"""

from __future__ import annotations

import asyncio
import runpy
import sys
import time

INTERVAL = 0.01
FLUSH_EVERY = 1.0

_tasks: set[asyncio.Task[None]] = set()


async def _sample(path: str) -> None:
    loop = asyncio.get_running_loop()
    with open(path, "a", buffering=1 << 16) as out:
        flushed = time.monotonic()
        while True:
            asked = loop.time() + INTERVAL
            await asyncio.sleep(INTERVAL)
            now = time.monotonic()
            out.write(f"{now:.6f} {max(0.0, loop.time() - asked):.6f}\n")
            if now - flushed >= FLUSH_EVERY:
                out.flush()
                flushed = now


def start_sampler(path: str) -> None:
    """Start sampling the running loop's lag into ``path`` (call from inside the loop)."""
    task = asyncio.get_running_loop().create_task(_sample(path), name="bench-lag-sampler")
    _tasks.add(task)


def read_samples(path: str, start: float, end: float) -> list[float]:
    """The lags (seconds) sampled between ``start`` and ``end`` (``time.monotonic()``)."""
    lags = []
    try:
        with open(path) as lines:
            for line in lines:
                parts = line.split()
                if len(parts) == 2 and start <= float(parts[0]) <= end:
                    lags.append(float(parts[1]))
    except FileNotFoundError:
        pass
    return lags


class _Policy(asyncio.DefaultEventLoopPolicy):
    def __init__(self, path: str) -> None:
        super().__init__()
        self._path = path

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        loop = super().new_event_loop()
        loop.call_soon(start_sampler, self._path)
        return loop


def main() -> None:
    if len(sys.argv) < 4 or sys.argv[2] != "-m":
        sys.exit("usage: python -m bench.lagprobe LAGFILE -m MODULE [ARGS...]")
    path, module = sys.argv[1], sys.argv[3]
    asyncio.set_event_loop_policy(_Policy(path))
    sys.argv = [module, *sys.argv[4:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
