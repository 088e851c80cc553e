"""Submit latency and throughput against a real server (run by hand, not in CI).

    python bench/submit.py [--requests 2000] [--concurrency 1 8 64] [--synchronous FULL NORMAL]
                           [--upstream offline|fake|parked] [--client httpx|wrk] [--seconds 10]

Starts ``insightreader serve`` with a fresh database for each ``database.synchronous``
mode, its tasks answered by the offline model (CPU work on the same cores) or by the
fake OpenAI upstream of the tests in a process of its own (network waits, as with a
real provider), or by a fake upstream that never answers (``parked``: the first
``tasks.max_concurrency`` tasks wait on it and the rest stay pending, so only the
submits themselves use the CPU), then for each concurrency level sends button-generation
submits with distinct inputs (no dedup hits) from that many concurrent clients over
keep-alive connections, and reports the median and 99th-percentile latency of the
submit answer (202, the row committed) and the submits per second. ``--client wrk`` drives the load with Debian's ``wrk`` instead
(``apt-get install wrk``; C, so the load generator does not compete for the CPU as
much as an asyncio client does at high concurrency), for ``--seconds`` per level. Tasks run in the
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
from string import Template

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


WRK_SCRIPT = Template("""
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
function init(args)
  counter = 0
end
function request()
  counter = counter + 1
  local body = '{"selected_text": "wrk passage ' .. tid .. '-' .. counter .. ': trees cool streets."}'
  return wrk.format("POST", "/api/v1/insights/generate-buttons",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer $token"}, body)
end
""")


def _wrk_ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_level_wrk(url: str, seconds: int, concurrency: int, tag: str) -> tuple[float, float, float]:
    async def token() -> str:
        async with httpx.AsyncClient(base_url=url) as http:
            return (await login(http, f"{tag}w"))["Authorization"].removeprefix("Bearer ")

    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(WRK_SCRIPT.substitute(token=asyncio.run(token())))
        script.flush()
        out = subprocess.run(
            ["wrk", f"-t{min(2, concurrency)}", f"-c{concurrency}", f"-d{seconds}s", "--latency", "-s", script.name, url],
            capture_output=True, text=True, check=True,
        ).stdout
    if "Non-2xx" in out:
        raise RuntimeError("some submits were refused:\n" + out)
    median = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
    assert median and p99 and rate, out
    return _wrk_ms(median[1]), _wrk_ms(p99[1]), float(rate[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--synchronous", nargs="+", default=["FULL", "NORMAL"])
    parser.add_argument("--upstream", choices=["offline", "fake", "parked"], default="offline")
    parser.add_argument("--client", choices=["httpx", "wrk"], default="httpx")
    parser.add_argument("--seconds", type=int, default=10, help="per level, with --client wrk")
    args = parser.parse_args()
    llm: dict[str, str] = {}
    fake: subprocess.Popen[str] | None = None
    if args.upstream != "offline":
        fake = subprocess.Popen(
            [sys.executable, "-m", "tests.fake_upstream", *(["--hang"] if args.upstream == "parked" else [])],
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
            run_mode(mode, llm, args, args.concurrency)
    finally:
        if fake is not None:
            fake.terminate()
            fake.wait(10)


def run_mode(mode: str, llm: dict[str, str], args: argparse.Namespace, levels: list[int]) -> None:
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
                tag = f"{mode}{level}"
                if args.client == "wrk":
                    median, p99, rate = run_level_wrk(server.url, args.seconds, level, tag)
                else:
                    median, p99, rate = asyncio.run(run_level(server.url, args.requests, level, tag))
                print(f"{mode:<12}{level:>8}{median:>11.2f}{p99:>9.2f}{rate:>11.0f}")
        finally:
            server.terminate()


if __name__ == "__main__":
    main()
