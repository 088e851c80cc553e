"""Closed-loop load from Debian's ``wrk`` (C): N connections, each sending its next
request as soon as the previous answer arrived, for a fixed time.

The Lua script gives every submit a fresh body (a per-thread counter and a per-run
nonce), so no submit is answered by dedup, and writes wrk's own summary — requests,
errors by kind, latency percentiles — as JSON to a file in ``done()``.

Several servers (``--processes``) get one wrk, not one each: its threads take the
servers' ports in turn (``setup()`` sets each thread's address and Host) and wrk gives
every thread the same number of connections, so the connections are spread round-robin
and requests/s, errors and latency percentiles come from wrk's one histogram over all
of them, exact rather than merged or the worst of several.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from string import Template
from typing import Any

from .procs import LOAD_CORE, on_core

SCRIPT = Template(r"""
local threads = 0
local ports = {$ports}
function setup(thread)
  threads = threads + 1
  local port = ports[(threads - 1) % #ports + 1]
  thread.addr = wrk.lookup("127.0.0.1", port)[1]
  thread:set("tid", threads)
  thread:set("host", "127.0.0.1:" .. port)
end
function init(args)
  counter = 0
  headers = {["Host"] = host, ["Content-Type"] = "application/json", ["Authorization"] = "Bearer $token"}
  fixed = wrk.format("GET", "$path", headers)
end
function request()
  if "$method" == "GET" then
    return fixed
  end
  counter = counter + 1
  local body = '{"selected_text": "wrk $nonce passage ' .. tid .. '-' .. counter .. ': street trees cool the air."}'
  return wrk.format("POST", "$path", headers, body)
end
function done(summary, latency, requests)
  local e = summary.errors
  local f = io.open("$out", "w")
  f:write(string.format('{"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"non_2xx": %d, "timeout": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
  f:close()
end
""")


def available() -> bool:
    return shutil.which("wrk") is not None


def version() -> str | None:
    if not available():
        return None
    done = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    return (done.stdout + done.stderr).split("\n")[0].strip() or None


def run(urls: list[str], token: str, method: str, path: str, *, connections: int, seconds: float) -> dict[str, Any]:
    """One wrk run on the servers at ``urls`` (``http://127.0.0.1:PORT``); requests/s,
    latency (ms) and errors. ``connections`` are split evenly over wrk's threads (wrk
    drops the remainder), and the threads over the servers, so with several servers
    ``connections`` should be a multiple of their number."""
    if not available():
        raise RuntimeError("wrk is not installed (Debian: apt-get install -y wrk)")
    ports = [url.rsplit(":", 1)[1].strip("/") for url in urls]
    threads = max(min(2, connections), len(urls))  # a multiple of len(urls)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "summary.json"
        script = Path(tmp) / "load.lua"
        script.write_text(SCRIPT.substitute(token=token, method=method, path=path, out=out, nonce=uuid.uuid4().hex[:12],
                                            ports=", ".join(f'"{port}"' for port in ports)))
        argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s",
                "--timeout", "30s", "-s", str(script), urls[0]]
        done = subprocess.run(on_core(LOAD_CORE, argv), capture_output=True, text=True, timeout=seconds + 120)
        if done.returncode != 0 or not out.exists():
            raise RuntimeError(f"wrk failed:\n{done.stdout}\n{done.stderr}")
        raw = json.loads(out.read_text())
    seconds_run = raw["duration_us"] / 1e6
    return {
        "rps": round(raw["requests"] / seconds_run, 1),
        "requests": raw["requests"],
        "p50_ms": raw["p50_us"] / 1000, "p90_ms": raw["p90_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000, "max_ms": raw["max_us"] / 1000,
        "non_2xx": raw["non_2xx"], "socket_errors": raw["connect"] + raw["read"] + raw["write"] + raw["timeout"],
    }
