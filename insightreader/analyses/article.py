"""``article_analysis``: summary, key points, topics and reading time of a saved article."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel, Field

from .. import text
from ..engine import TaskContext
from ..records import utcnow
from ..store import Tx
from .common import JSON_RULES, analyse_article

NAME = "article_analysis"
PROMPT_VERSION = "1"
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
{JSON_RULES}"""


class ArticleAnalysis(BaseModel):
    summary: str = Field(min_length=1)
    key_points: list[str] = Field(min_length=1, max_length=10)
    topics: list[str] = Field(max_length=10)
    reading_time_minutes: int = Field(ge=0)
    language: str
    questions: list[str] = Field(default_factory=list, max_length=5)


async def run(ctx: TaskContext, *, context_tokens: int, max_chunks: int) -> dict[str, Any]:
    article, analysis = await analyse_article(
        ctx, NAME, SYSTEM, ArticleAnalysis,
        context_tokens=context_tokens, max_chunks=max_chunks, max_tokens=MAX_TOKENS,
    )
    # The model's guess is replaced by a count: it is exact for the full text.
    analysis["reading_time_minutes"] = await asyncio.to_thread(text.reading_time_minutes, article.content)

    def store(tx: Tx, result: dict[str, Any]) -> None:
        tx.set_article_analysis(article.id, "analysis", result["analysis"], utcnow())

    ctx.on_complete(store)
    return {"article_id": article.id, "analysis": analysis}
