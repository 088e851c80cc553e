"""The long-lived objects of one server process, opened and closed together."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from . import library, user_settings
from .accounts import Accounts, ApiTokens, Tokens, load_secret
from .config import Settings, admin_credentials
from .engine import Engine, TaskType
from .events import EventBus
from .batches import BatchRunner
from .imports import ImportItems
from .reanalysis import ReanalysisItems
from .llm import LLMClient
from .sse import EventPruner
from .store import Held, Store, hold
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
    #: Does the imports and re-analyses in the background.
    batches: BatchRunner
    webhooks: Webhooks
    #: Every background task of the process is started through it.
    supervisor: Supervisor
    _lock: Held

    @classmethod
    async def open(cls, settings: Settings, task_types: Mapping[str, TaskType]) -> Services:
        lock = hold(settings.database, shared=True)
        supervisor = Supervisor()
        store = Store(settings.database, supervisor=supervisor)
        llm = LLMClient.from_settings(settings.llm, supervisor=supervisor)
        pruner = EventPruner(store, settings.sse.retention, supervisor=supervisor)
        api_tokens = ApiTokens(store, flush_interval=settings.auth.token_use_flush_interval, supervisor=supervisor)
        runner: BatchRunner | None = None
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
            # The first administrator, from INSIGHTREADER_ADMIN_USERNAME/_PASSWORD (docs/deploy.md).
            await accounts.bootstrap_admin(*admin_credentials())
            api_tokens.start()
            await engine.start()
            runner = BatchRunner(
                store, bus, [ImportItems(engine, bus, settings.library), ReanalysisItems(engine)],
                max_pending_per_user=settings.tasks.max_pending_per_user, supervisor=supervisor,
            )
            engine.observe(runner.task_changed)
            runner.start()
            await webhooks.start()
            supervisor.start(library.index_search_backlog(store), name="search-backlog", until_stopped=False)
        except BaseException:
            supervisor.shutdown()
            if runner is not None:
                await runner.stop()
            if webhooks is not None:
                await webhooks.stop()
            await api_tokens.stop()
            await pruner.stop()
            await store.close()
            await llm.aclose()
            lock.close()
            raise
        assert runner is not None and webhooks is not None
        return cls(settings, store, bus, engine, accounts, api_tokens, llm, pruner, runner, webhooks, supervisor, lock)

    async def close(self) -> None:
        """Drain the engine (running tasks get ``server.graceful_timeout``), end the
        streams, flush the store."""
        self.supervisor.shutdown()
        await self.batches.stop()
        await self.engine.drain(self.settings.server.graceful_timeout)
        await self.webhooks.stop()
        await self.bus.stop()
        await self.api_tokens.stop()
        await self.pruner.stop()
        await self.store.close()
        await self.llm.aclose()
        self._lock.close()
