"""``meta_analysis``: how an article argues — stance, assumptions, devices, blind spots."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from ..engine import TaskContext
from ..records import utcnow
from ..store import Tx
from .common import JSON_RULES, analyse_article

NAME = "meta_analysis"
PROMPT_VERSION = "1"
#: ``max_tokens`` of the answer.
MAX_TOKENS = 1500

SYSTEM = f"""You are a critical-thinking coach. Read the article as an argument and describe
how it persuades, so the reader can judge it rather than simply absorb it.
- author_stance: one or two sentences on the position the author takes.
- tone: a few words (e.g. "measured, data-driven", "urgent, polemical").
- assumptions: 2-4 things the argument takes for granted without showing them.
- rhetorical_devices: 1-4 devices actually used, each with where or how it is used.
- missing_perspectives: 2-4 viewpoints, stakeholders or evidence the article leaves out.
- questions_to_ask: 2-3 questions that would test the argument.
Be specific to this article; quote or paraphrase it; no generic advice.
{JSON_RULES}"""


class MetaAnalysis(BaseModel):
    author_stance: str = Field(min_length=1)
    tone: str
    assumptions: list[str] = Field(max_length=8)
    rhetorical_devices: list[str] = Field(max_length=8)
    missing_perspectives: list[str] = Field(max_length=8)
    questions_to_ask: list[str] = Field(default_factory=list, max_length=5)


async def run(ctx: TaskContext, *, context_tokens: int, max_chunks: int) -> dict[str, Any]:
    article, meta = await analyse_article(
        ctx, NAME, SYSTEM, MetaAnalysis,
        context_tokens=context_tokens, max_chunks=max_chunks, max_tokens=MAX_TOKENS,
    )

    def store(tx: Tx, result: dict[str, Any]) -> None:
        tx.set_article_analysis(article.id, "meta_analysis", result["meta_analysis"], utcnow())

    ctx.on_complete(store)
    return {"article_id": article.id, "meta_analysis": meta}
