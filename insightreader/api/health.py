"""/healthz (the process answers) and /readyz (it can take work)."""

from __future__ import annotations

from typing import Any

from quart import Blueprint
from quart_schema import validate_response

from ..errors import ShuttingDown
from .deps import services
from .openapi import errors
from .schemas import Health, Ready

bp = Blueprint("health", __name__)


@bp.get("/healthz")
@validate_response(Health)
async def healthz() -> dict[str, Any]:
    """The process answers (liveness)."""
    return {"status": "ok"}


@bp.get("/readyz")
@validate_response(Ready)
@errors(
    (
        503,
        "The server is shutting down (also when a background part died and it is about to"
        " restart), or the database does not answer.",
        "shutting_down",
        "storage_busy",
    )
)
async def readyz() -> dict[str, Any]:
    """Ready when every background part is alive, the engine takes submits and the
    database answers."""
    svc = services()
    if svc.supervisor.failed:
        raise ShuttingDown(f"the server is restarting: {svc.supervisor.failures[0]}")
    if not svc.engine.accepting:
        raise ShuttingDown("the server is shutting down")
    await svc.store.read.last_event_id()
    return {"status": "ready", "engine": svc.engine.status(), "llm": svc.llm.status()}
