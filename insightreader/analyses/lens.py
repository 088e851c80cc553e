"""``thinking_lens``: the article seen through one named way of thinking."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from ..engine import TaskContext
from ..records import utcnow
from ..store import Tx
from .common import JSON_RULES, analyse_article, block

NAME = "thinking_lens"
PROMPT_VERSION = "1"
#: ``max_tokens`` of the answer.
MAX_TOKENS = 1500


@dataclass(frozen=True)
class Lens:
    type: str
    name: str
    description: str
    instructions: str

    def public(self) -> dict[str, str]:
        return {"type": self.type, "name": self.name, "description": self.description}


LENSES: dict[str, Lens] = {
    lens.type: lens
    for lens in (
        Lens(
            "argument_map",
            "Argument map",
            "The main claim, the reasons and evidence offered for it, and how they connect.",
            "Map the argument: the main claim, each supporting reason with its evidence, "
            "objections the article answers, and the conclusion. Note weak links.",
        ),
        Lens(
            "first_principles",
            "First principles",
            "What is established fact, what is assumption, and what follows from the basics.",
            "Separate the basic facts the article rests on from its assumptions and inferences; "
            "rebuild the key conclusion from the facts alone and note where it needs more.",
        ),
        Lens(
            "systems_thinking",
            "Systems thinking",
            "The actors, incentives and feedback loops behind what the article describes.",
            "Identify the actors, their incentives, the flows between them and the feedback loops "
            "(reinforcing or balancing); point out delays and unintended consequences.",
        ),
        Lens(
            "counterfactual",
            "Counterfactuals",
            "What would change if a key fact or decision had been different.",
            "Pick the facts or decisions the article depends on most and explore what would follow "
            "if each did not hold; say which conclusions survive.",
        ),
        Lens(
            "socratic",
            "Socratic questions",
            "Questions that probe definitions, evidence, implications and alternatives.",
            "Ask probing questions in the Socratic manner: clarify terms, question evidence and "
            "assumptions, examine implications and alternative views; add why each matters.",
        ),
        Lens(
            "steelman",
            "Steelman",
            "The strongest version of the article's position, and of the best opposing one.",
            "State the article's position in its strongest, most charitable form, then the "
            "strongest opposing position, and what evidence would decide between them.",
        ),
    )
}


class LensPoint(BaseModel):
    heading: str
    detail: str


class LensResult(BaseModel):
    title: str
    summary: str = Field(min_length=1)
    points: list[LensPoint] = Field(min_length=1, max_length=8)
    questions: list[str] = Field(default_factory=list, max_length=5)


SYSTEM = f"""You are a thinking coach applying one lens to an article. The lens is named in
the <lens> block. Fill in: title (the lens applied to this article, a few words), summary
(2-3 sentences), points (3-5 items, each a short heading and a specific detail drawn from the
article), questions (2-3 questions for the reader).
{JSON_RULES}"""


async def run(ctx: TaskContext, *, context_tokens: int, max_chunks: int) -> dict[str, Any]:
    lens = LENSES[ctx.task.input["lens_type"]]
    system = SYSTEM + f"\nLens instructions: {lens.instructions}"
    article, answer = await analyse_article(
        ctx, NAME, system, LensResult, block("lens", lens.type),
        context_tokens=context_tokens, max_chunks=max_chunks, max_tokens=MAX_TOKENS,
    )
    result = {"lens_type": lens.type, "lens_name": lens.name, **answer}

    def store(tx: Tx, final: dict[str, Any]) -> None:
        tx.set_article_lens(article.id, lens.type, final, utcnow())

    ctx.on_complete(store)
    return {"article_id": article.id, **result}
