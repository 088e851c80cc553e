"""Structured output: which ``response_format`` a provider accepts, and reading JSON answers.

OpenAI-compatible servers differ: some take ``json_schema``, some only
``json_object``, some neither (and answer 400). In ``auto`` mode the client tries
them in that order, falls back when a 400 is about ``response_format``, and
remembers per (base_url, model) what worked so later calls go straight there.
Whatever the mode, the answer is parsed and validated here; the prompt itself
always asks for JSON, so plain text mode still works with most models.
"""

from __future__ import annotations

import functools
import json
import re
from typing import TYPE_CHECKING, Any, Literal, TypeVar, get_args

from pydantic import BaseModel, ValidationError

if TYPE_CHECKING:
    from openai import BadRequestError

StructuredMode = Literal["json_schema", "json_object", "text"]
MODES: tuple[StructuredMode, ...] = get_args(StructuredMode)

M = TypeVar("M", bound=BaseModel)

_FENCE = re.compile(r"^```[A-Za-z0-9_-]*[ \t]*\n?(.*?)\n?```$", re.DOTALL)
_MAX_ERRORS_SHOWN = 8


class InvalidOutput(Exception):
    """The answer is not valid JSON for the expected model; ``detail`` says why, in
    words meant for the model's repair attempt."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def response_format(mode: StructuredMode, schema_name: str, result_model: type[BaseModel]) -> dict[str, Any] | None:
    """The ``response_format`` request parameter for ``mode`` (``None``: send none)."""
    if mode == "json_schema":
        return {
            "type": "json_schema",
            "json_schema": {"name": schema_name, "schema": _json_schema(result_model), "strict": False},
        }
    if mode == "json_object":
        return {"type": "json_object"}
    return None


@functools.cache
def _json_schema(result_model: type[BaseModel]) -> dict[str, Any]:
    """A model's JSON Schema, made once: pydantic builds it anew on every call (a few
    hundred microseconds of the loop's time for each request). Shared: read-only."""
    return result_model.model_json_schema()


def is_response_format_rejection(exc: BadRequestError) -> bool:
    """Whether a 400 complains about ``response_format`` (rather than, say, the prompt)."""
    if exc.param == "response_format":
        return True
    text = _error_text(exc).lower()
    return any(word in text for word in ("response_format", "json_schema", "json_object", "response format"))


def _error_text(exc: BadRequestError) -> str:
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    if isinstance(body, str):
        return body
    return exc.message


def extract_json(text: str) -> Any:
    """Parse a JSON answer, tolerating a Markdown code fence or prose around one object."""
    candidate = text.strip()
    fenced = _FENCE.match(candidate)
    if fenced:
        candidate = fenced.group(1).strip()
    try:
        return json.loads(candidate)
    except json.JSONDecodeError as exc:
        start, end = candidate.find("{"), candidate.rfind("}")
        if 0 <= start < end:
            try:
                return json.loads(candidate[start : end + 1])
            except json.JSONDecodeError:
                pass
        raise InvalidOutput(f"the answer is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None


def parse_output(text: str, result_model: type[M]) -> M:
    """Parse and validate an answer, or raise :class:`InvalidOutput`."""
    data = extract_json(text)
    try:
        return result_model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        lines = [
            f"- {'.'.join(str(part) for part in error['loc']) or '(root)'}: {error['msg']}"
            for error in errors[:_MAX_ERRORS_SHOWN]
        ]
        if len(errors) > _MAX_ERRORS_SHOWN:
            lines.append(f"- … and {len(errors) - _MAX_ERRORS_SHOWN} more")
        raise InvalidOutput("the JSON does not match the required schema:\n" + "\n".join(lines)) from None


def repair_messages(
    messages: list[dict[str, str]], bad_answer: str, problem: str, result_model: type[BaseModel]
) -> list[dict[str, str]]:
    """The conversation, the bad answer, and a request to fix it (the one repair attempt)."""
    schema = json.dumps(_json_schema(result_model), ensure_ascii=False)
    return [
        *messages,
        {"role": "assistant", "content": bad_answer},
        {
            "role": "user",
            "content": (
                f"Your previous answer could not be used: {problem}\n"
                f"Reply again with only one JSON object that matches this JSON Schema, "
                f"with no other text:\n{schema}"
            ),
        },
    ]


class ModeMemory:
    """Which structured mode to use per (base_url, model), in memory."""

    def __init__(self, configured: StructuredMode | Literal["auto"]) -> None:
        self.configured = configured
        self._negotiated: dict[tuple[str, str], StructuredMode] = {}

    @property
    def negotiating(self) -> bool:
        return self.configured == "auto"

    def candidates(self, base_url: str, model: str) -> tuple[StructuredMode, ...]:
        """Modes to try, in order: the configured one, or from the last one that worked."""
        if self.configured != "auto":
            return (self.configured,)
        known = self._negotiated.get((base_url, model), MODES[0])
        return MODES[MODES.index(known) :]

    def remember(self, base_url: str, model: str, mode: StructuredMode) -> None:
        self._negotiated[(base_url, model)] = mode

    def status(self) -> dict[str, object]:
        return {
            "configured": self.configured,
            "negotiated": [
                {"base_url": base_url, "model": model, "mode": mode}
                for (base_url, model), mode in sorted(self._negotiated.items())
            ],
        }
