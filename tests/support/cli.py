"""Running the real ``insightreader`` command line in a subprocess, as an operator would."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from .process import REPO

#: Every CLI run is bounded; a command that hangs fails the test instead of the suite.
CLI_TIMEOUT = 30.0


def insightreader_argv() -> list[str]:
    """The installed ``insightreader`` console script beside this Python, else ``-m``."""
    script = Path(sys.executable).with_name("insightreader")
    if script.is_file():
        return [str(script)]
    found = shutil.which("insightreader")
    return [found] if found else [sys.executable, "-m", "insightreader"]


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment without any configuration variable of ours (so the developer's
    shell cannot change what a test sees), plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith(("INSIGHTREADER_", "OPENAI_"))
    }
    env["PYTHONPATH"] = str(REPO)
    env.update(extra or {})
    return env


def run_cli(
    *args: str,
    cwd: Path,
    stdin: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = CLI_TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    """``insightreader ARGS`` in ``cwd``; its exit code, stdout and stderr."""
    return subprocess.run(
        [*insightreader_argv(), *args],
        cwd=cwd,
        env=clean_env(env),
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The error a failed command printed: one ``Error: …`` line, the last on stderr (log
    lines may come before it), and no traceback anywhere."""
    assert result.returncode != 0, f"expected a failure, got 0:\n{result.stdout}\n{result.stderr}"
    text = result.stderr.strip()
    assert "Traceback" not in text and "Traceback" not in result.stdout, text
    last = text.splitlines()[-1] if text else ""
    assert last.startswith("Error: "), f"expected a last line 'Error: ...', got:\n{text}"
    return last
