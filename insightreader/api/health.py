"""/healthz (the process answers) and /readyz (it can take work)."""

from __future__ import annotations

from typing import Any

from quart import Blueprint

from ..errors import ShuttingDown
from .deps import services

bp = Blueprint("health", __name__)


@bp.get("/healthz")
async def healthz() -> dict[str, Any]:
    return {"status": "ok"}


@bp.get("/readyz")
async def readyz() -> dict[str, Any]:
    """Ready when the engine takes submits and the database answers."""
    svc = services()
    if not svc.engine.accepting:
        raise ShuttingDown("the server is shutting down")
    await svc.store.read.last_event_id()
    return {"status": "ready", "engine": svc.engine.status(), "llm": svc.llm.status()}
