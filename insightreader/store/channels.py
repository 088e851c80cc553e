"""What several server processes on one database tell each other.

On PostgreSQL any number of processes share the database (docs/scale-out.md). What
one of them does that the others must act on travels as a notification, sent in the
write transaction that did it (``tx.notify``, so it goes out only at the commit) and
received by every process listening (``LISTEN``), the sender included:

- :data:`TASKS`: a task became pending (``"<sender> <task id> <priority> <user id>"``):
  every engine queues it, one claims it; and ``"claimed <owner> <task id>"`` once one did.
- :data:`EVENTS`: events were committed; every process reads the events table after
  the last id it delivered (:mod:`insightreader.relay`).
- :data:`PROGRESS`: a ``task_progress`` event itself (it is not stored), as JSON.
- :data:`CANCEL`: a running task's user cancelled it (the task id): its process stops it.
- :data:`WEBHOOKS`: a user's webhooks changed (the user id): every process reads them again.

A notification sent while a process was not listening (starting, or its listening
connection lost) is never received: after (re)connecting, each listener reads what it
may have missed from the tables (``on_reconnect``).

On SQLite one process serves the file: :class:`Alone` sends and receives nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

TASKS = "insightreader_tasks"
EVENTS = "insightreader_events"
PROGRESS = "insightreader_progress"
CANCEL = "insightreader_cancel"
WEBHOOKS = "insightreader_webhooks"
ALL = (TASKS, EVENTS, PROGRESS, CANCEL, WEBHOOKS)


class Channels(Protocol):
    #: True when other processes may share the database.
    shared: bool

    def listen(self, channel: str, callback: Callable[[str], None]) -> None:
        """Call ``callback(payload)`` (on the loop, in the order sent) for each
        notification on ``channel`` from now on."""
        ...

    def on_reconnect(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` each time listening resumes after a lost connection
        (notifications sent meanwhile were lost)."""
        ...

    async def start(self) -> None:
        """Listen on every channel (before the caller reads what it would otherwise miss)."""
        ...

    async def stop(self) -> None: ...


class Alone:
    """One process on its database: nothing to tell anyone."""

    shared = False

    def listen(self, channel: str, callback: Callable[[str], None]) -> None:
        pass

    def on_reconnect(self, callback: Callable[[], None]) -> None:
        pass

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass
