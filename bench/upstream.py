"""The tests' fake OpenAI-compatible upstream as a process of its own, for benchmarks.

    python -m bench.upstream --latency 1.0 --log requests.log

Every chat request is answered after ``--latency`` seconds (a JSON answer that fits
the request's schema, see ``tests/fake_upstream.py``); ``--hang`` never answers. Each
chat request's arrival is appended to ``--log`` as one ``time.monotonic()`` line
(flushed at once), so the harness can count runs and time the first dispatch.
Prints ``fake upstream at URL (model M)`` when it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fake_upstream import CHAT_PATH, FakeUpstream, Hang, RecordedRequest, Reply  # noqa: E402


#: The last seconds of a wait spent yielding to the loop rather than on a timer.
PRECISE_FOR = 0.002


class LoggedUpstream(FakeUpstream):
    def __init__(self, log_path: str | None) -> None:
        super().__init__()
        self._log = open(log_path, "a", buffering=1) if log_path else None  # noqa: SIM115

    async def _record(self, request: RecordedRequest) -> None:
        # The parent keeps every request (and notifies waiters): a benchmark would
        # grow that list without bound, so only the arrival time is kept, on disk.
        if self._log is not None and request.path == CHAT_PATH:
            self._log.write(f"{time.monotonic():.6f}\n")

    async def _delay(self, request: RecordedRequest, seconds: float) -> None:
        """Answer at the request's arrival + ``seconds``, not later. asyncio wakes a
        timer up to a millisecond late (epoll waits whole milliseconds, rounded up):
        about 0.7 ms at 200 ms on the benchmark machine, which the end-to-end limits
        (concurrency ÷ latency) would count against the server. So sleep until 2 ms
        before, then yield to the loop until the moment (2 µs late, timed alone)."""
        deadline = request.time + seconds
        await asyncio.sleep(max(0.0, deadline - PRECISE_FOR - time.monotonic()))
        while time.monotonic() < deadline:
            await asyncio.sleep(0)


async def serve(latency: float, hang: bool, log_path: str | None) -> None:
    async with LoggedUpstream(log_path) as fake:
        fake.default = Hang() if hang else Reply(delay=latency)
        print(f"fake upstream at {fake.base_url} (model {fake.model})", flush=True)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=1.0, help="seconds before each chat answer")
    parser.add_argument("--hang", action="store_true", help="never answer a chat request")
    parser.add_argument("--log", default=None, help="append each chat request's arrival time here")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.latency, args.hang, args.log))


if __name__ == "__main__":
    main()
