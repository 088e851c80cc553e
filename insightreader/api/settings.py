"""/api/v1/settings: the reader's settings (:mod:`..user_settings`)."""

from __future__ import annotations

from typing import Any

from quart import Blueprint
from quart_schema import validate_request, validate_response

from .. import user_settings
from .deps import current_user, services
from .openapi import errors
from .schemas import SettingsChange, SettingsOut

bp = Blueprint("settings", __name__, url_prefix="/api/v1")


@bp.get("/settings")
@validate_response(SettingsOut)
async def get_settings() -> dict[str, Any]:
    """The reader's settings: the language results are written in, whether imports are
    analysed, their own instructions per task type, the page's language."""
    return (await user_settings.get(services().store, current_user().id)).public()


@bp.patch("/settings")
@validate_request(SettingsChange)
@validate_response(SettingsOut)
@errors((422, "An unknown task type, an instruction over 2,000 characters, or a language tag that is not BCP 47.", "validation_error"))
async def change_settings(data: SettingsChange) -> dict[str, Any]:
    """Change the settings given (the others stay); the settings after. Changed prompt
    settings apply to tasks submitted from now on; a re-analysis (`POST
    /articles/reanalyze`, scope `stale`) redoes the earlier results."""
    changes = data.model_dump(exclude_unset=True)
    return (await user_settings.update(services().store, current_user().id, changes)).public()
