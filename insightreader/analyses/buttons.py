"""``button_generation``: follow-up questions a reader can click after an insight."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field

from .. import text
from ..engine import TaskContext
from ..errors import TaskError
from ..store import Tx
from .common import JSON_RULES, block, complete, messages, request_cost

NAME = "button_generation"
PROMPT_VERSION = "1"
#: ``max_tokens`` of the answer (three short buttons).
MAX_TOKENS = 500

Intent = Literal["explain", "challenge", "example", "connect", "deeper"]

SYSTEM = f"""You suggest follow-up questions for a reader who selected a passage (and may
have read an insight about it). Offer 3 buttons, each a different intent (explain, challenge,
example, connect, deeper): label (at most 40 characters, phrased as the reader's question),
prompt (the full question to ask next, specific to the passage), intent.
{JSON_RULES}"""


class Button(BaseModel):
    label: str = Field(min_length=1, max_length=60)
    prompt: str = Field(min_length=1)
    intent: Intent


class Buttons(BaseModel):
    buttons: list[Button] = Field(min_length=1, max_length=6)


_DEFAULTS = {
    "en": [
        ("Explain this simply", "Explain the selected passage in simple terms.", "explain"),
        ("Give me an example", "Give a concrete example of what the selected passage describes.", "example"),
        ("What is the counterargument?", "What is the strongest counterargument to the selected passage?", "challenge"),
    ],
    "zh": [
        ("用更简单的话解释", "请用简单的话解释所选段落。", "explain"),
        ("举一个例子", "请为所选段落描述的内容举一个具体的例子。", "example"),
        ("有什么反驳观点？", "对所选段落最有力的反驳观点是什么？", "challenge"),
    ],
}


def default_buttons(selected_text: str) -> list[dict[str, str]]:
    language = "zh" if text.detect_language(selected_text) == "zh" else "en"
    return [{"label": l, "prompt": p, "intent": i} for l, p, i in _DEFAULTS[language]]


def _messages(data: Mapping[str, Any]) -> list[dict[str, str]]:
    history = "\n".join(
        f"{turn['role']}: {turn['content']}" for turn in data.get("conversation_history") or []
    )
    return messages(
        SYSTEM,
        NAME,
        block("selection", data["selected_text"]),
        block("insight", data["insight"]) if data.get("insight") else "",
        block("intent", data["intent"]) if data.get("intent") else "",
        block("history", history) if history else "",
        prompt=data.get("prompt"),
    )


def estimate(tx: Tx, payload: Mapping[str, Any]) -> int:
    return request_cost(_messages(payload), MAX_TOKENS)


async def run(ctx: TaskContext) -> dict[str, Any]:
    data = ctx.task.input
    msgs = _messages(data)
    try:
        buttons = await complete(ctx, NAME, msgs, Buttons, max_tokens=MAX_TOKENS)
    except TaskError as exc:
        # The task fails like any other (counted, retryable, never a dedup hit), and
        # the reader still gets useful buttons: the defaults travel as error.fallback.
        raise exc.with_fallback({"buttons": default_buttons(data["selected_text"])}) from None
    return {"buttons": [b.model_dump() for b in buttons.buttons]}
