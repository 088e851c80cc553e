"""``insight_generation``: a short insight on a selected passage, streamed as it is written."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from .. import text
from ..engine import TaskContext
from ..store import Tx
from .common import PROMPT_ALLOWANCE, block, load_article, messages, request_cost

NAME = "insight_generation"
PROMPT_VERSION = "1"
#: Deltas are sent in batches: at most every this many seconds…
COALESCE_SECONDS = 0.05
#: …or once this many tokens are waiting, whichever comes first.
COALESCE_TOKENS = 20
#: Characters of article text around the selection given as context.
CONTEXT_CHARS = 1500
#: ``max_tokens`` of the insight (3-6 sentences).
MAX_TOKENS = 800

SYSTEM = """You are a thoughtful reading companion. The reader selected a passage and wants
insight into it. In 3-6 sentences of plain prose (no headings, no lists, no JSON): say what
the passage means in context, why it matters to the article's argument, and one question or
connection worth thinking about. Follow the reader's intent or question when one is given."""


class Coalescer:
    """Batches stream deltas into ``task_progress`` events so a fast stream doesn't flood."""

    def __init__(self, ctx: TaskContext) -> None:
        self._ctx = ctx
        self._pending: list[str] = []
        self._tokens = 0
        self._last = time.monotonic()

    async def add(self, delta: str) -> None:
        self._pending.append(delta)
        self._tokens += max(1, text.estimate_tokens(delta))
        if self._tokens >= COALESCE_TOKENS or time.monotonic() - self._last >= COALESCE_SECONDS:
            await self.flush()

    async def flush(self) -> None:
        if self._pending:
            joined = "".join(self._pending)
            self._pending, self._tokens, self._last = [], 0, time.monotonic()
            await self._ctx.progress(joined)


def _context(content: str, selection: str) -> str:
    at = content.find(selection)
    if at < 0:
        return content[:CONTEXT_CHARS]
    start = max(0, at - CONTEXT_CHARS // 2)
    return content[start : at + len(selection) + CONTEXT_CHARS // 2]


def _blocks(data: Mapping[str, Any]) -> list[str]:
    blocks = [block("selection", data["selected_text"])]
    if data.get("intent"):
        blocks.append(block("intent", data["intent"]))
    if data.get("question"):
        blocks.append(block("question", data["question"]))
    return blocks


def estimate(tx: Tx, payload: Mapping[str, Any]) -> int:
    """The request's cost; with an article, its title and at most ``CONTEXT_CHARS``
    characters of context (a token is at least a character)."""
    cost = request_cost(messages(SYSTEM, NAME, *_blocks(payload), prompt=payload.get("prompt")), MAX_TOKENS)
    return cost + (PROMPT_ALLOWANCE + CONTEXT_CHARS if payload.get("article_id") else 0)


async def run(ctx: TaskContext) -> dict[str, Any]:
    assert ctx.llm is not None, "LLM task types need the LLM client"
    data = ctx.task.input
    blocks = _blocks(data)
    if data.get("article_id"):
        article = await load_article(ctx)
        blocks.insert(0, block("title", article.title))
        blocks.insert(1, block("article", _context(article.content, data["selected_text"])))
    coalescer = Coalescer(ctx)
    completion = await ctx.llm.stream_text(
        messages(SYSTEM, NAME, *blocks, prompt=data.get("prompt")), coalescer.add, max_tokens=MAX_TOKENS
    )
    await coalescer.flush()
    ctx.record_usage(completion.model, completion.usage.prompt_tokens, completion.usage.completion_tokens)
    return {"insight": completion.value, "article_id": data.get("article_id")}
