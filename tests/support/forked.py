"""Test servers forked from a process that has imported the server already.

Starting ``python -m tests.support.server`` costs about a second of imports, and the
suite starts a server for most of its tests. ``multiprocessing``'s *forkserver* is a
process that imports those modules once (``set_forkserver_preload``); every server is
then a fresh ``fork()`` of it: a real process of its own (its own pid, loop, sockets
and database connections, killed by real signals), listening within milliseconds.

:class:`ForkedServer` offers what :class:`tests.support.process.ServerProcess` uses of
``subprocess.Popen``: ``pid``, ``stdout`` (the process's stdout and stderr, as text),
``poll``, ``wait``, ``send_signal`` and ``kill``, with the same exit codes (negative
for a signal).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from multiprocessing.connection import Connection
from typing import IO

#: Imported once by the fork server: the server and what it loads on first use.
PRELOAD = ["tests.support.server", "openai", "trafilatura"]

_context = multiprocessing.get_context("forkserver")
_context.set_forkserver_preload(PRELOAD)


def _serve(config_path: str, env: dict[str, str], cwd: str, output: Connection) -> None:
    """In the forked process: its stdout and stderr into ``output``, the test's
    environment and folder, then the server as ``python -m tests.support.server`` runs it."""
    os.dup2(output.fileno(), 1)
    os.dup2(output.fileno(), 2)
    output.close()
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    from tests.support import server

    sys.argv = ["tests.support.server", "--config", config_path]
    server.main()


class ForkedServer:
    """A forked test server, driven like a ``subprocess.Popen``."""

    def __init__(self, config_path: str, env: Mapping[str, str], cwd: str) -> None:
        reading, writing = _context.Pipe(duplex=False)
        self._process = _context.Process(
            target=_serve, args=(config_path, dict(env), cwd, writing), name="test-server"
        )
        self._process.start()
        writing.close()
        self.stdout: IO[str] = os.fdopen(os.dup(reading.fileno()), encoding="utf-8", errors="replace")
        reading.close()
        assert self._process.pid is not None
        self.pid: int = self._process.pid

    def poll(self) -> int | None:
        return self._process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        code = self._process.exitcode
        if code is None:
            raise subprocess.TimeoutExpired("test-server", timeout or 0)
        return code

    def send_signal(self, signum: int) -> None:
        if self._process.exitcode is None:
            os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)
