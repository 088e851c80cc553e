"""The long-lived objects of one server process, opened and closed together."""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO

from .admin import bootstrap_admin
from .auth import Auth, load_secret
from .config import Settings, admin_credentials
from .engine import Engine, TaskType
from .errors import AlreadyRunning
from .events import EventBus
from .llm import LLMClient
from .sse import EventPruner
from .store import PRIVATE_FILE, Store, private_dir
from .supervisor import Supervisor

log = logging.getLogger(__name__)


def _lock(settings: Settings) -> IO[str]:
    """Hold ``<database>.lock`` for the life of the process; the kernel releases it
    when the process dies, SIGKILL included."""
    path = settings.database.path.with_name(settings.database.path.name + ".lock")
    private_dir(path.parent)
    handle = os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE), "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise AlreadyRunning(
            f"another insightreader server is using {settings.database.path}"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


@dataclass
class Services:
    settings: Settings
    store: Store
    bus: EventBus
    engine: Engine
    auth: Auth
    llm: LLMClient
    pruner: EventPruner
    #: Every background task of the process is started through it.
    supervisor: Supervisor
    _lock: IO[str]

    @classmethod
    async def open(cls, settings: Settings, task_types: Mapping[str, TaskType]) -> Services:
        lock = _lock(settings)
        supervisor = Supervisor()
        store = Store(settings.database, supervisor=supervisor)
        llm = LLMClient.from_settings(settings.llm, supervisor=supervisor)
        pruner = EventPruner(store, settings.sse.retention, supervisor=supervisor)
        try:
            await store.open()
            await pruner.start()
            bus = EventBus(store, queue_size=settings.sse.queue_size, supervisor=supervisor)
            await bus.start()
            engine = Engine(
                store, bus, settings.tasks, task_types, llm=llm, model=llm.model, supervisor=supervisor
            )
            auth = Auth(settings.auth, load_secret(settings.auth, settings.database.path), store)
            await auth.start()
            # The first administrator, from INSIGHTREADER_ADMIN_USERNAME/_PASSWORD (docs/deploy.md).
            await bootstrap_admin(auth, store, *admin_credentials())
            await engine.start()
        except BaseException:
            supervisor.shutdown()
            await pruner.stop()
            await store.close()
            await llm.aclose()
            lock.close()
            raise
        return cls(settings, store, bus, engine, auth, llm, pruner, supervisor, lock)

    async def close(self) -> None:
        """Drain the engine (running tasks get ``server.graceful_timeout``), end the
        streams, flush the store."""
        self.supervisor.shutdown()
        await self.engine.drain(self.settings.server.graceful_timeout)
        await self.bus.stop()
        await self.pruner.stop()
        await self.store.close()
        await self.llm.aclose()
        self._lock.close()
