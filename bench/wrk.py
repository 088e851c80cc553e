"""Closed-loop load from Debian's ``wrk`` (C): N connections, each sending its next
request as soon as the previous answer arrived, for a fixed time.

The Lua script gives every submit a fresh body (a per-thread counter and a per-run
nonce), so no submit is answered by dedup, and writes wrk's own summary — requests,
errors by kind, latency percentiles — as JSON to a file in ``done()``.
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
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
function init(args)
  counter = 0
  headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer $token"}
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


def run(url: str, token: str, method: str, path: str, *, connections: int, seconds: float) -> dict[str, Any]:
    """One wrk run; requests/s, latency (ms) and errors."""
    if not available():
        raise RuntimeError("wrk is not installed (Debian: apt-get install -y wrk)")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "summary.json"
        script = Path(tmp) / "load.lua"
        script.write_text(SCRIPT.substitute(token=token, method=method, path=path, out=out, nonce=uuid.uuid4().hex[:12]))
        argv = ["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{max(1, round(seconds))}s",
                "--timeout", "30s", "-s", str(script), url]
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
