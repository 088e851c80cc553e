"""What the numbers were measured on, for every JSON line."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from functools import cache
from typing import Any

from . import wrk
from .procs import BASELINE_PYTHON, PINNED, REPO

PACKAGES = ("insightreader", "quart", "hypercorn", "aiosqlite", "openai", "httpx", "pydantic")
BASELINE_PACKAGES = ("fastapi", "starlette", "uvicorn", "uvloop", "httptools", "openai", "httpx", "pydantic")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _versions(names: tuple[str, ...]) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def _baseline() -> dict[str, Any] | None:
    if not BASELINE_PYTHON.exists():
        return None
    code = (
        "import importlib.metadata as m, json, platform\n"
        f"names = {BASELINE_PACKAGES!r}\n"
        "v = {}\n"
        "for n in names:\n"
        "    try: v[n] = m.version(n)\n"
        "    except m.PackageNotFoundError: v[n] = None\n"
        "print(json.dumps({'python': platform.python_version(), 'packages': v}))\n"
    )
    done = subprocess.run([str(BASELINE_PYTHON), "-c", code], capture_output=True, text=True)
    return json.loads(done.stdout) if done.returncode == 0 else None


def _git() -> str | None:
    done = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True, text=True)
    return done.stdout.strip() or None


@cache
def info() -> dict[str, Any]:
    with open("/proc/loadavg") as load:
        loadavg = load.read().split()[:3]
    return {
        "nproc": os.cpu_count(),
        "cpu": _cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "executable": sys.executable,
        "packages": _versions(PACKAGES),
        "baseline": _baseline(),
        "wrk": wrk.version(),
        "pinned": PINNED,
        "loadavg_at_start": loadavg,
        "commit": _git(),
    }
