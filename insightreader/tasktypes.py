"""The task types this server runs (the LLM tasks register here)."""

from __future__ import annotations

from .engine import TaskType


def task_types() -> dict[str, TaskType]:
    return {}
