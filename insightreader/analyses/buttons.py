"""``button_generation``: follow-up questions a reader can click after an insight."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from .. import text
from ..engine import TaskContext
from ..errors import TaskError
from .common import JSON_RULES, block, complete, messages

NAME = "button_generation"
PROMPT_VERSION = "1"

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


async def run(ctx: TaskContext) -> dict[str, Any]:
    data = ctx.task.input
    history = "\n".join(
        f"{turn['role']}: {turn['content']}" for turn in data.get("conversation_history") or []
    )
    msgs = messages(
        SYSTEM,
        NAME,
        block("selection", data["selected_text"]),
        block("insight", data["insight"]) if data.get("insight") else "",
        block("intent", data["intent"]) if data.get("intent") else "",
        block("history", history) if history else "",
    )
    try:
        buttons = await complete(ctx, NAME, msgs, Buttons)
    except TaskError as exc:
        # As the original design did: the reader still gets useful buttons, and
        # the result says why they are the defaults.
        return {"buttons": default_buttons(data["selected_text"]), "fallback": True, "error": exc.as_dict()}
    return {"buttons": [b.model_dump() for b in buttons.buttons]}
