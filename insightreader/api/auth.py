"""/api/v1/auth and /api/v1/sse/ticket."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, g
from quart_schema import validate_request, validate_response

from ..errors import Forbidden
from .deps import current_user, services
from .openapi import errors
from .schemas import Credentials, RefreshRequest, TicketOut, TokenOut, UserOut

bp = Blueprint("auth", __name__, url_prefix="/api/v1")


@bp.post("/auth/register")
@validate_request(Credentials)
@validate_response(UserOut, 201)
@errors((403, "Registration is closed (`auth.open_registration = false`).", "forbidden"), (409, "The username is taken.", "conflict"))
async def register(data: Credentials) -> tuple[dict[str, Any], int]:
    """Create an account (when `auth.open_registration` is on)."""
    if not services().settings.auth.open_registration:
        raise Forbidden("registration is closed on this server")
    user = await services().auth.register(data.username, data.password)
    return {"user_id": user.id, "username": user.username, "created_at": user.created_at}, 201


@bp.post("/auth/login")
@validate_request(Credentials)
@validate_response(TokenOut)
@errors((401, "Wrong username or password.", "unauthorized"))
async def login(data: Credentials) -> dict[str, Any]:
    """Exchange a username and password for an access and a refresh token."""
    return (await services().auth.login(data.username, data.password)).public()


@bp.post("/auth/refresh")
@validate_request(RefreshRequest)
@validate_response(TokenOut)
@errors((401, "The refresh token is invalid or expired.", "unauthorized"))
async def refresh(data: RefreshRequest) -> dict[str, Any]:
    """Exchange a refresh token for a new pair."""
    return (await services().auth.refresh(data.refresh_token)).public()


@bp.get("/auth/me")
@validate_response(UserOut)
async def me() -> dict[str, Any]:
    """The caller's account."""
    user = current_user()
    return {"user_id": user.id, "username": user.username, "created_at": user.created_at}


@bp.post("/sse/ticket")
@validate_response(TicketOut)
async def ticket() -> dict[str, Any]:
    """A single-use, short-lived ticket to open the event stream with.

    For `GET /api/v1/sse/analysis-notifications?ticket=…` (EventSource cannot send an
    Authorization header). The stream it opens lasts as long as the access token that
    asked for it."""
    auth = services().auth
    return {
        "ticket": auth.issue_ticket(current_user().id, g.session_expires),
        "expires_in": auth.settings.ticket_lifetime,
    }
