"""A real server process on a loopback port, for tests: start, SIGKILL, SIGTERM, restart."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.support.forked import ForkedServer

REPO = Path(__file__).resolve().parents[2]
_LISTENING = re.compile(r"Running on (http://[\d.]+:\d+)")
START_TIMEOUT = 30.0


def write_config(path: Path, sections: Mapping[str, Mapping[str, Any]]) -> Path:
    """Write a TOML config file from ``{"section": {"key": value}}``."""
    def render(value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (int, float)):
            return repr(value)
        if isinstance(value, (list, tuple)):
            return "[" + ", ".join(render(v) for v in value) + "]"
        return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            lines.append(f"{key} = {render(value)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """``python -m tests.support.server`` (or any argv) with its log captured."""

    def __init__(
        self,
        config_path: Path,
        *,
        argv: list[str] | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.config_path = config_path
        #: None: the test server, forked from a process that imported it already
        #: (tests/support/forked.py); else the command to run.
        self.argv = argv
        self.env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
        if "OPENAI_API_KEY" not in (env or {}):
            self.env.pop("OPENAI_API_KEY", None)
        self.cwd = cwd or config_path.parent
        self.url = ""
        self.logs: list[str] = []
        self.proc: subprocess.Popen[str] | ForkedServer | None = None
        #: Set once the process listens or its output ends (it exited).
        self._settled = threading.Event()
        #: Notified at every new log line.
        self._logged = threading.Condition()
        self._reader: threading.Thread | None = None

    def start(self) -> ServerProcess:
        """Start the process (again, after a kill or exit: same config, same database)
        and wait until it listens; RuntimeError if it exits first."""
        if not self.try_start():
            raise RuntimeError("server did not start:\n" + "\n".join(self.logs[-40:]))
        return self

    def try_start(self) -> bool:
        """Start the process; True once it listens, False if it exited before that
        (e.g. a task killed it during start-up)."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("the server is already running")
        self.url = ""
        self._settled.clear()
        if self.logs:
            self.logs.append("--- restart ---")
        if self.argv is None:
            self.proc = ForkedServer(str(self.config_path), self.env, str(self.cwd))
        else:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        self._reader = threading.Thread(target=self._read, args=(self.proc,), daemon=True)
        self._reader.start()
        if not self._settled.wait(START_TIMEOUT):
            self.stop()
            raise RuntimeError("server did not start in time:\n" + "\n".join(self.logs[-40:]))
        if self.url and self.proc.poll() is None:
            return True
        self.wait(10)  # its output ended: it is exiting
        return False

    def _read(self, proc: subprocess.Popen[str] | ForkedServer) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            with self._logged:
                self.logs.append(line.rstrip("\n"))
                self._logged.notify_all()
            match = _LISTENING.search(line)
            if match:
                self.url = match[1]
                self._settled.set()
        self._settled.set()  # end of output: the process exited

    def wait_for_log(self, text: str, timeout: float = 30) -> str:
        """The first log line holding ``text``, waiting for it up to ``timeout`` seconds."""
        with self._logged:
            if not self._logged.wait_for(lambda: any(text in line for line in self.logs), timeout):
                raise TimeoutError(f"no log line with {text!r} within {timeout}s:\n" + "\n".join(self.logs[-20:]))
            return next(line for line in self.logs if text in line)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        code = self.proc.wait(timeout)
        if self._reader is not None:
            self._reader.join(5)
        return code

    def kill(self) -> None:
        """SIGKILL: no cleanup, no drain, as in a crash."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.wait(10)

    def terminate(self, timeout: float = 30) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def send(self, signum: int) -> None:
        """Send ``signum`` without waiting (e.g. SIGTERM, to watch the drain)."""
        assert self.proc is not None
        self.proc.send_signal(signum)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.wait(10)

    @property
    def log_text(self) -> str:
        return "\n".join(self.logs)
