"""Every task type the server runs: the LLM analyses and ``page_fetch``."""

from __future__ import annotations

from functools import partial

from . import analyses, page_fetch
from .config import Settings
from .engine import TaskType


def task_types(settings: Settings) -> dict[str, TaskType]:
    return {
        **analyses.task_types(settings.llm),
        # A reader saving a link waits for its text, as for an insight.
        page_fetch.NAME: TaskType(
            page_fetch.NAME,
            partial(page_fetch.run, settings=settings.library),
            analyses.INTERACTIVE,
            page_fetch.PROMPT_VERSION,
            on_unfinished=page_fetch.unfinished,
        ),
    }
