"""Submit latency and throughput against a real server (run by hand, not in CI).

    python bench/submit.py [--requests 2000] [--concurrency 1 8 64] [--synchronous FULL NORMAL]
                           [--upstream offline|fake]

Starts ``insightreader serve`` with a fresh database for each ``database.synchronous``
mode, its tasks answered by the offline model (CPU work on the same cores) or by the
fake OpenAI upstream of the tests in a process of its own (network waits, as with a
real provider), then for each concurrency level sends button-generation
submits with distinct inputs (no dedup hits) from that many concurrent clients over
keep-alive connections, and reports the median and 99th-percentile latency of the
submit answer (202, the row committed) and the submits per second. Tasks run in the
background meanwhile, as they would in production.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.process import ServerProcess, write_config  # noqa: E402


async def login(http: httpx.AsyncClient, name: str) -> dict[str, str]:
    creds = {"username": name, "password": "bench-password-1"}
    await http.post("/api/v1/auth/register", json=creds)
    token = (await http.post("/api/v1/auth/login", json=creds)).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


async def run_level(url: str, requests: int, concurrency: int, tag: str) -> tuple[float, float, float]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
        users = [await login(http, f"{tag}u{n}") for n in range(min(concurrency, 16))]
        latencies: list[float] = []
        counter = iter(range(requests))

        async def worker(w: int) -> None:
            headers = users[w % len(users)]
            for n in counter:
                body = {"selected_text": f"{tag} passage {n}: trees cool streets by shading asphalt."}
                started = time.perf_counter()
                response = await http.post("/api/v1/insights/generate-buttons", json=body, headers=headers)
                latencies.append(time.perf_counter() - started)
                assert response.status_code == 202, response.text

        started = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return statistics.median(latencies) * 1000, p99 * 1000, requests / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--synchronous", nargs="+", default=["FULL", "NORMAL"])
    parser.add_argument("--upstream", choices=["offline", "fake"], default="offline")
    args = parser.parse_args()
    llm: dict[str, str] = {}
    fake: subprocess.Popen[str] | None = None
    if args.upstream == "fake":
        fake = subprocess.Popen(
            [sys.executable, "-m", "tests.fake_upstream"],
            cwd=Path(__file__).resolve().parents[1],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert fake.stdout is not None
        found = re.search(r"at (\S+) \(model (\S+)\)", fake.stdout.readline())
        assert found, "the fake upstream did not start"
        llm = {"base_url": found[1], "model": found[2], "api_key": "sk-bench-0123456789"}
    print(f"{'synchronous':<12}{'clients':>8}{'median ms':>11}{'p99 ms':>9}{'submits/s':>11}")
    try:
        for mode in args.synchronous:
            run_mode(mode, llm, args.requests, args.concurrency)
    finally:
        if fake is not None:
            fake.terminate()
            fake.wait(10)


def run_mode(mode: str, llm: dict[str, str], requests: int, levels: list[int]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = write_config(
            Path(tmp) / "config.toml",
            {
                "server": {"bind": "127.0.0.1:0"},
                "database": {"path": f"{tmp}/bench.db", "synchronous": mode},
                "tasks": {"max_pending_per_user": 1_000_000},
                "llm": llm,
                "log": {"level": "WARNING"},
            },
        )
        server = ServerProcess(
            config, argv=[sys.executable, "-m", "insightreader", "serve", "--config", str(config)]
        )
        server.env["INSIGHTREADER_LOG__LEVEL"] = "INFO"  # the "Running on" line is needed
        server.start()
        try:
            for level in levels:
                median, p99, rate = asyncio.run(run_level(server.url, requests, level, f"{mode}{level}"))
                print(f"{mode:<12}{level:>8}{median:>11.2f}{p99:>9.2f}{rate:>11.0f}")
        finally:
            server.terminate()


if __name__ == "__main__":
    main()
