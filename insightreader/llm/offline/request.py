"""Reading a chat.completions request: which task it asks for, and its tagged data
blocks (the convention is in the package's docstring)."""

from __future__ import annotations

import re
from typing import Any

OFFLINE_MODEL = "insightreader-offline-1"

TASKS = (
    "article_analysis",
    "chunk_notes",
    "meta_analysis",
    "thinking_lens",
    "button_generation",
    "insight",
)
_TASK_ALIASES = {"insight_generation": "insight", "insights": "insight"}

LENS_TYPES = ("argument_map", "first_principles", "systems_thinking", "counterfactual", "socratic", "steelman")
INTENTS = ("explain", "challenge", "example", "connect", "deeper")

#: Tags of the data blocks, in the order they are read and cut out.
TAGS = ("article", "history", "insight", "selection", "question", "title", "intent", "lens", "tags")

SYSTEM_ROLES = ("system", "developer")


class OfflineRequestError(ValueError):
    """A request the offline model cannot answer (answered as HTTP 400)."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


def parse_blocks(text: str) -> dict[str, str]:
    """The tagged data blocks of ``text``, stripped, keyed by tag name.

    Each block runs from the first ``<tag>`` to the last ``</tag>`` (or to
    the end when unclosed) and is cut out before the next tag is looked for,
    in :data:`TAGS` order."""
    remaining = text
    blocks: dict[str, str] = {}
    for tag in TAGS:
        opening, closing = f"<{tag}>", f"</{tag}>"
        start = remaining.find(opening)
        if start < 0:
            continue
        body_start = start + len(opening)
        end = remaining.rfind(closing)
        if end < body_start:
            content, resume = remaining[body_start:], len(remaining)
        else:
            content, resume = remaining[body_start:end], end + len(closing)
        blocks[tag] = content.strip()
        remaining = remaining[:start] + "\n" + remaining[resume:]
    return blocks


def content_text(content: Any) -> str:
    """A message's text, whether a string or a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif isinstance(part, str):
                parts.append(part)
        return "\n".join(parts)
    return ""


def snake(name: str) -> str:
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name.strip())
    return re.sub(r"[\s\-]+", "_", name).lower()


def task_of(body: dict[str, Any], system_text: str) -> str | None:
    """The task name the request asks for, normalised; ``None`` for an insight."""
    response_format = body.get("response_format")
    schema_name = None
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        schema = response_format.get("json_schema")
        if isinstance(schema, dict) and isinstance(schema.get("name"), str):
            schema_name = snake(schema["name"])
    line = re.search(r"^[ \t#*>-]*Task:[ \t]*([A-Za-z][\w\-]*)", system_text, re.MULTILINE)
    named = snake(line.group(1)) if line else None
    for candidate in (schema_name, named):
        if candidate is not None:
            candidate = _TASK_ALIASES.get(candidate, candidate)
            if candidate in TASKS:
                return candidate
    name = schema_name or named
    if name is not None:
        raise OfflineRequestError(
            f"the offline model has no task {name!r}; known tasks: {', '.join(TASKS)}", "unknown_task"
        )
    return None


_REQUESTED_LANGUAGE = re.compile(
    r"Write every text of the answer in [^()\n]*\(([A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,8})*)\)"
)


def requested_language(system_text: str) -> str | None:
    """The BCP 47 tag of the language the system prompt asks answers in (None: the
    text's own; :func:`insightreader.analyses.common.language_rule` writes it)."""
    found = _REQUESTED_LANGUAGE.search(system_text)
    return found.group(1) if found else None


def data_blocks(messages: list[Any]) -> dict[str, str]:
    user_texts = [content_text(m.get("content")) for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    for text in reversed(user_texts):
        if any(f"<{tag}>" in text for tag in TAGS):
            return parse_blocks(text)
    return {"": user_texts[-1].strip()} if user_texts else {}
