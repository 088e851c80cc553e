"""A reader's settings (``GET/PATCH /settings``): the language results are written in,
whether imported articles are analysed, their own instructions per task type, and
the page's language.

The settings that shape a prompt (:func:`prompt_of`) travel in a task's input under
``"prompt"``, added while the submit's transaction reads them (:func:`shape`): they
are part of its dedup key, so a changed setting never answers from an old result and
an unchanged one still does; and the task records what shaped its result, which is
how a re-analysis finds the stale ones. Defaults add nothing, so a reader who never
changed a setting keeps the dedup keys tasks had before settings existed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from .analyses import article, buttons, insight, lens, meta
from .languages import AUTO, canonical
from .errors import ValidationFailed
from .records import utcnow
from .store import Store, Tx

#: The task types whose prompt a reader's settings shape.
PROMPTED = (article.NAME, meta.NAME, lens.NAME, buttons.NAME, insight.NAME)
#: Characters of one task type's instructions.
INSTRUCTION_CHARS = 2000
UI_LANGUAGES = ("en", "zh-CN")


@dataclass(frozen=True)
class UserSettings:
    output_language: str = AUTO
    auto_analyze: bool = True
    #: Task type → the reader's instructions (only non-empty ones are kept).
    instructions: Mapping[str, str] = field(default_factory=dict)
    #: The page's language once the reader chose one (None: the browser's).
    ui_language: str | None = None

    def public(self) -> dict[str, Any]:
        return {
            "output_language": self.output_language,
            "auto_analyze": self.auto_analyze,
            "instructions": {name: self.instructions.get(name, "") for name in PROMPTED},
            "ui_language": self.ui_language,
        }

    def prompt_of(self, task_type: str) -> dict[str, str]:
        """What shapes the prompt of a task of ``task_type`` (empty: the defaults)."""
        shaping: dict[str, str] = {}
        if task_type not in PROMPTED:
            return shaping
        if self.output_language != AUTO:
            shaping["language"] = self.output_language
        if self.instructions.get(task_type):
            shaping["instructions"] = self.instructions[task_type]
        return shaping

    def shaped(self, task_type: str, payload: dict[str, Any]) -> dict[str, Any]:
        """``payload`` with these settings' prompt shaping under ``"prompt"`` (any it
        carried replaced; none at the defaults, and then ``payload`` itself when it
        carried none): a submit's input, or an earlier task's input as it would be
        submitted now."""
        shaping = self.prompt_of(task_type)
        if not shaping and "prompt" not in payload:
            return payload
        unshaped = {k: v for k, v in payload.items() if k != "prompt"}
        return {**unshaped, "prompt": shaping} if shaping else unshaped


def _decode(raw: str | None) -> UserSettings:
    return UserSettings() if raw is None else UserSettings(**json.loads(raw))


def _encode(settings: UserSettings) -> str:
    return json.dumps(asdict(settings), ensure_ascii=False, sort_keys=True)


def read_in(tx: Tx, user_id: str) -> UserSettings:
    return _decode(tx.user_settings(user_id))


def shape(tx: Tx, user_id: str, task_type: str, payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` with the reader's prompt settings under ``"prompt"`` (the engine's
    ``shape`` hook, called in the submit's transaction; the settings are read only for
    the task types they shape)."""
    if task_type not in PROMPTED:
        return payload
    return read_in(tx, user_id).shaped(task_type, payload)


async def get(store: Store, user_id: str) -> UserSettings:
    return _decode(await store.read.user_settings(user_id))


def _changed(current: UserSettings, changes: Mapping[str, Any]) -> UserSettings:
    updated = current
    if "output_language" in changes:
        updated = replace(updated, output_language=canonical(changes["output_language"]))
    if "auto_analyze" in changes:
        updated = replace(updated, auto_analyze=bool(changes["auto_analyze"]))
    if "ui_language" in changes:
        ui = changes["ui_language"]
        if ui is not None and ui not in UI_LANGUAGES:
            raise ValidationFailed(f"ui_language must be one of {', '.join(UI_LANGUAGES)} or null")
        updated = replace(updated, ui_language=ui)
    if "instructions" in changes:
        merged = dict(updated.instructions)
        for task_type, given in changes["instructions"].items():
            if task_type not in PROMPTED:
                raise ValidationFailed(f"instructions: no task type {task_type[:40]!r}; known: {', '.join(PROMPTED)}")
            written = given.strip()
            if len(written) > INSTRUCTION_CHARS:
                raise ValidationFailed(
                    f"instructions for {task_type} are {len(written)} characters; at most {INSTRUCTION_CHARS}"
                )
            if written:
                merged[task_type] = written
            else:
                merged.pop(task_type, None)
        updated = replace(updated, instructions=merged)
    return updated


async def update(store: Store, user_id: str, changes: Mapping[str, Any]) -> UserSettings:
    """Apply the keys of ``changes`` (the others stay); the settings after. An empty
    instruction removes that task type's."""

    def job(tx: Tx) -> UserSettings:
        updated = _changed(read_in(tx, user_id), changes)
        tx.set_user_settings(user_id, _encode(updated), utcnow())
        return updated

    return await store.write(job)
