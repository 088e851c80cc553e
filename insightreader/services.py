"""The long-lived objects of one server process, opened and closed together."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO

from . import library, user_settings
from .accounts import Accounts, ApiTokens, Tokens, load_secret
from .config import Settings, admin_credentials
from .engine import Engine, TaskType
from .events import EventBus
from .imports import Importer
from .llm import LLMClient
from .sse import EventPruner
from .store import Store, lock_database
from .supervisor import Supervisor
from .webhooks import Webhooks

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    store: Store
    bus: EventBus
    engine: Engine
    accounts: Accounts
    api_tokens: ApiTokens
    llm: LLMClient
    pruner: EventPruner
    importer: Importer
    webhooks: Webhooks
    #: Every background task of the process is started through it.
    supervisor: Supervisor
    _lock: IO[str]

    @classmethod
    async def open(cls, settings: Settings, task_types: Mapping[str, TaskType]) -> Services:
        lock = lock_database(settings.database.path)
        supervisor = Supervisor()
        store = Store(settings.database, supervisor=supervisor)
        llm = LLMClient.from_settings(settings.llm, supervisor=supervisor)
        pruner = EventPruner(store, settings.sse.retention, supervisor=supervisor)
        api_tokens = ApiTokens(store, flush_interval=settings.auth.token_use_flush_interval, supervisor=supervisor)
        importer: Importer | None = None
        webhooks: Webhooks | None = None
        try:
            await store.open()
            await pruner.start()
            bus = EventBus(store, queue_size=settings.sse.queue_size, supervisor=supervisor)
            await bus.start()
            webhooks = Webhooks(
                store, bus, settings.webhooks, allow_private=settings.library.fetch_allow_private, supervisor=supervisor
            )
            engine = Engine(
                store, bus, settings.tasks, task_types, llm=llm, model=llm.model, supervisor=supervisor,
                shape=user_settings.shape,
            )
            tokens = Tokens(settings.auth, load_secret(settings.auth, settings.database.path))
            accounts = Accounts(settings.auth, tokens, store, trusted_proxies=settings.server.trusted_proxies)
            await accounts.start()
            # The first administrator, from INSIGHTREADER_ADMIN_USERNAME/_PASSWORD (docs/deploy.md).
            await accounts.bootstrap_admin(*admin_credentials())
            api_tokens.start()
            await engine.start()
            importer = Importer(store, bus, engine, settings.library, settings.tasks, supervisor=supervisor)
            importer.start()
            await webhooks.start()
            supervisor.start(library.index_search_backlog(store), name="search-backlog", until_stopped=False)
        except BaseException:
            supervisor.shutdown()
            if importer is not None:
                await importer.stop()
            if webhooks is not None:
                await webhooks.stop()
            await api_tokens.stop()
            await pruner.stop()
            await store.close()
            await llm.aclose()
            lock.close()
            raise
        assert importer is not None and webhooks is not None
        return cls(settings, store, bus, engine, accounts, api_tokens, llm, pruner, importer, webhooks, supervisor, lock)

    async def close(self) -> None:
        """Drain the engine (running tasks get ``server.graceful_timeout``), end the
        streams, flush the store."""
        self.supervisor.shutdown()
        await self.importer.stop()
        await self.engine.drain(self.settings.server.graceful_timeout)
        await self.webhooks.stop()
        await self.bus.stop()
        await self.api_tokens.stop()
        await self.pruner.stop()
        await self.store.close()
        await self.llm.aclose()
        self._lock.close()
