"""The five LLM task types: prompts, prompt versions, result models and runners."""

from __future__ import annotations

from functools import partial
from types import ModuleType

from ..config import LLMSettings
from ..engine import TaskType
from . import article, buttons, insight, lens, meta
from .common import article_estimate
from .lens import LENSES

__all__ = ["LENSES", "task_types"]

#: Interactive work (a reader is waiting on the page) runs ahead of bulk work.
INTERACTIVE, ON_DEMAND, BULK = 5, 3, 0


def task_types(llm: LLMSettings) -> dict[str, TaskType]:
    sizes = {"context_tokens": llm.context_tokens, "max_chunks": llm.max_chunks_per_article}

    def on_article(module: ModuleType, priority: int) -> TaskType:
        return TaskType(
            module.NAME,
            partial(module.run, **sizes),
            priority,
            module.PROMPT_VERSION,
            estimate=article_estimate(**sizes, max_tokens=module.MAX_TOKENS),
        )

    return {
        t.name: t
        for t in (
            on_article(article, BULK),
            on_article(meta, ON_DEMAND),
            on_article(lens, ON_DEMAND),
            TaskType(buttons.NAME, buttons.run, INTERACTIVE, buttons.PROMPT_VERSION, buttons.estimate),
            TaskType(insight.NAME, insight.run, INTERACTIVE, insight.PROMPT_VERSION, insight.estimate),
        )
    }
