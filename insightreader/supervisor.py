"""Supervision: every background task of the server is started here.

A background part — the store's writer, the engine (its dispatcher and the task
runs are children of its task group), the event pruner, the loop lag monitor, the
LLM circuit probe, the event-id reservation — is an asyncio task that no request
awaits. If one died unseen, writes would wait forever or tasks would queue and
never run, while ``/readyz`` stayed green. So each is started through
:meth:`Supervisor.start`, which watches how it ends:

- **cancelled**: its owner stopped it — never a death;
- **an exception**: a death, whenever it happens;
- **returned**, for a part that runs ``until_stopped``, before :meth:`shutdown`
  was called: a death (it ended when it must not).

A death is logged with its traceback, marks the supervisor failed (``/readyz``
answers 503) and calls the :meth:`on_failure` callbacks: ``serve`` then drains and
exits non-zero, so systemd or Docker starts a fresh process, whose restart
recovery picks up what was unfinished. Parts still guard what must not kill them
(a failed prune is tried again, a failing after-commit callback is logged): the
supervisor is for what nobody foresaw.

Every part starts in a fresh :class:`contextvars.Context`, so no request or task
id of whoever happened to start it leaks into its log lines.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class Supervisor:
    """Starts the background parts of one process and turns any death into a failure."""

    def __init__(self) -> None:
        self._parts: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self._callbacks: list[Callable[[], None]] = []
        #: What died, in order (``"store-writer raised RuntimeError"``); empty while healthy.
        self.failures: list[str] = []

    @property
    def failed(self) -> bool:
        return bool(self.failures)

    @property
    def running(self) -> list[str]:
        """The names of the parts alive now."""
        return sorted(task.get_name() for task in self._parts)

    def start(
        self, coro: Coroutine[Any, Any, T], *, name: str, until_stopped: bool = True
    ) -> asyncio.Task[T]:
        """Run ``coro`` as a supervised part. ``until_stopped``: it runs until its owner
        cancels it or the server shuts down, so returning earlier is a death; a part
        that ends by design (a probe, one reservation) passes False."""
        task = asyncio.get_running_loop().create_task(coro, name=name, context=contextvars.Context())
        self._parts.add(task)
        task.add_done_callback(lambda done: self._ended(done, until_stopped))
        return task

    @staticmethod
    async def stop(task: asyncio.Task[Any] | None) -> None:
        """Cancel a part its owner stops, and wait until it has ended."""
        if task is not None:
            task.cancel()
            await asyncio.wait([task])

    def shutdown(self) -> None:
        """The server is stopping: from now on a part that returns has done its job."""
        self._stopping = True

    def on_failure(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` at the first death (at once if one happened already)."""
        self._callbacks.append(callback)
        if self.failed:
            callback()

    def _ended(self, task: asyncio.Task[Any], until_stopped: bool) -> None:
        self._parts.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        name = task.get_name()
        if error is not None:
            log.error(
                "background part %s died; the server drains and exits so that it is restarted",
                name,
                exc_info=error,
                extra={"part": name},
            )
            self._failed(f"{name} raised {type(error).__name__}")
        elif until_stopped and not self._stopping:
            log.error(
                "background part %s ended while the server runs; the server drains and exits"
                " so that it is restarted",
                name,
                extra={"part": name},
            )
            self._failed(f"{name} ended")

    def _failed(self, what: str) -> None:
        first = not self.failures
        self.failures.append(what)
        if not first:
            return
        for callback in self._callbacks:
            try:
                callback()
            except Exception:
                log.exception("a supervisor failure callback failed")
