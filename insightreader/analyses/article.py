"""``article_analysis``: summary, key points, topics, reading time and suggested tags
of a saved article.

The user's existing tag names (at most ``EXISTING_TAGS``, the most used, read when
the analysis is submitted) travel in the task's input, so they are part of its dedup
key, and in the prompt as a ``<tags>`` block. After the model answers, a suggestion
that is a near-duplicate of an existing tag becomes that tag
(:func:`insightreader.tagnames.prefer_existing`)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from pydantic import BaseModel, Field

from .. import tagnames, text
from ..engine import TaskContext
from ..records import utcnow
from ..store import Tx
from .common import JSON_RULES, analyse_article

NAME = "article_analysis"
PROMPT_VERSION = "2"
#: The most existing tag names the prompt carries.
EXISTING_TAGS = 100
#: Tags suggested: at least (asked of the model) and at most (kept).
MIN_SUGGESTED, MAX_SUGGESTED = 3, 5
#: ``max_tokens`` of the answer.
MAX_TOKENS = 1500

SYSTEM = f"""You are a careful reading assistant. Analyse the article for a reader who wants
to understand it quickly and decide what to read closely.
- summary: 2-3 sentences stating what the article argues or reports, concretely (who, what, why).
- key_points: 3-6 short, specific points in the article's order; keep names and numbers.
- topics: 3-6 short topic keywords.
- reading_time_minutes: your estimate for reading the full article.
- language: the article's language as an ISO 639-1 code.
- questions: 2-3 questions a thoughtful reader could ask about it.
- suggested_tags: {MIN_SUGGESTED}-{MAX_SUGGESTED} short tags to file the article under. The <tags> block
  lists the reader's existing tags (a JSON array): reuse one, spelled exactly as listed,
  whenever it fits, rather than a new tag that means nearly the same.
{JSON_RULES}"""


class ArticleAnalysis(BaseModel):
    summary: str = Field(min_length=1)
    key_points: list[str] = Field(min_length=1, max_length=10)
    topics: list[str] = Field(max_length=10)
    reading_time_minutes: int = Field(ge=0)
    language: str
    questions: list[str] = Field(default_factory=list, max_length=5)
    suggested_tags: list[str] = Field(default_factory=list, max_length=10)


def tags_block(names: list[str]) -> str:
    """The existing tags as a JSON array (no ``<`` in it: a name cannot open a block)."""
    return "<tags>\n" + json.dumps(names, ensure_ascii=False).replace("<", "\\u003c") + "\n</tags>"


async def run(ctx: TaskContext, *, context_tokens: int, max_chunks: int) -> dict[str, Any]:
    existing: list[str] = ctx.task.input.get("existing_tags", [])
    article, analysis = await analyse_article(
        ctx, NAME, SYSTEM, ArticleAnalysis, tags_block(existing),
        context_tokens=context_tokens, max_chunks=max_chunks, max_tokens=MAX_TOKENS,
    )
    analysis["suggested_tags"] = tagnames.prefer_existing(
        analysis["suggested_tags"], existing, MAX_SUGGESTED
    )
    # The model's guess is replaced by a count: it is exact for the full text.
    analysis["reading_time_minutes"] = await asyncio.to_thread(text.reading_time_minutes, article.content)

    def store(tx: Tx, result: dict[str, Any]) -> None:
        tx.set_article_analysis(article.id, "analysis", result["analysis"], utcnow())

    ctx.on_complete(store)
    return {"article_id": article.id, "analysis": analysis}
