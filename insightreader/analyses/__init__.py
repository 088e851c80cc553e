"""The five LLM task types: prompts, prompt versions, result models and runners."""

from __future__ import annotations

from functools import partial

from ..config import LLMSettings
from ..engine import TaskType
from . import article, buttons, insight, lens, meta
from .lens import LENSES

__all__ = ["LENSES", "task_types"]

#: Interactive work (a reader is waiting on the page) runs ahead of bulk work.
INTERACTIVE, ON_DEMAND, BULK = 5, 3, 0


def task_types(llm: LLMSettings) -> dict[str, TaskType]:
    context = llm.context_tokens
    return {
        t.name: t
        for t in (
            TaskType(article.NAME, partial(article.run, context_tokens=context), BULK, article.PROMPT_VERSION),
            TaskType(meta.NAME, partial(meta.run, context_tokens=context), ON_DEMAND, meta.PROMPT_VERSION),
            TaskType(lens.NAME, partial(lens.run, context_tokens=context), ON_DEMAND, lens.PROMPT_VERSION),
            TaskType(buttons.NAME, buttons.run, INTERACTIVE, buttons.PROMPT_VERSION),
            TaskType(insight.NAME, insight.run, INTERACTIVE, insight.PROMPT_VERSION),
        )
    }
