"""The ``openai`` package, imported off the event loop and only when needed.

``import openai`` takes about 0.35 s (its ``__init__`` imports every ``openai.types``
module): a third of the server's start-up, and every process start of the test suite.
So no module imports it at the top: :func:`load` imports it on a worker thread, the
server starts that as soon as it listens, and the LLM client awaits it before its
first request. Until then :data:`openai` refuses to be used, so a path that forgot to
await :func:`load` fails loudly instead of importing on the loop.
"""

from __future__ import annotations

import asyncio
import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Any


class _Deferred:
    """Stands for the ``openai`` module once :func:`load` returned."""

    module: ModuleType | None = None

    def __getattr__(self, name: str) -> Any:
        if self.module is None:
            raise RuntimeError("openai used before insightreader.llm.sdk.load() returned")
        return getattr(self.module, name)


_deferred = _Deferred()

if TYPE_CHECKING:
    import openai
else:
    openai = _deferred


async def load() -> None:
    """Import ``openai`` on a worker thread (at once if it is imported already).

    Concurrent callers are safe: Python's import lock lets one thread import and the
    others wait for it.
    """
    if _deferred.module is None:
        _deferred.module = await asyncio.to_thread(importlib.import_module, "openai")
