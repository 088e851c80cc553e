"""/api/v1/auth and /api/v1/sse/ticket: thin wrappers over :class:`..accounts.Accounts`."""

from __future__ import annotations

from typing import Any

from quart import Blueprint
from quart_schema import validate_request, validate_response

from .deps import current_session, current_user, request_client, services
from .openapi import errors, raw_response
from .schemas import (
    Credentials,
    PasswordChange,
    RefreshRequest,
    SessionList,
    TicketOut,
    TokenOut,
    UserOut,
)

bp = Blueprint("auth", __name__, url_prefix="/api/v1")

_BUSY = (503, "Password checks are saturated; `Retry-After` says when to try again.", "busy")
_THROTTLED = (
    429,
    (
        "Too many failed attempts for this username or from this address (`auth.max_failed_logins` within"
        " `auth.lockout_window`); refused until `Retry-After` seconds have passed, the right password too."
    ),
    "too_many_attempts",
)


def _user(user: Any) -> dict[str, Any]:
    return {"user_id": user.id, "username": user.username, "created_at": user.created_at}


@bp.post("/auth/register")
@validate_request(Credentials)
@validate_response(UserOut, 201)
@errors(
    (403, "The server has users and `auth.open_registration` is off.", "registration_closed"),
    (409, "The username is taken.", "conflict"),
    (422, "The body does not match the schema, or the password is too weak.", "validation_error", "weak_password"),
    _BUSY,
)
async def register(data: Credentials) -> tuple[dict[str, Any], int]:
    """Create an account. The first account on a server becomes its administrator; after
    that, only while `auth.open_registration` is on.

    A password has at least 10 characters, is not the username and not one of the 10,000
    most common passwords (else `422 weak_password`)."""
    return _user(await services().accounts.register(data.username, data.password)), 201


@bp.post("/auth/login")
@validate_request(Credentials)
@validate_response(TokenOut)
@errors((401, "Wrong username or password.", "unauthorized"), _THROTTLED, _BUSY)
async def login(data: Credentials) -> dict[str, Any]:
    """Open a session: an access and a refresh token for a username and password."""
    return (await services().accounts.login(data.username, data.password, request_client())).public()


@bp.post("/auth/refresh")
@validate_request(RefreshRequest)
@validate_response(TokenOut)
@errors((401, "The refresh token is invalid or expired, its session has ended, or it was already used (which ends the session).", "unauthorized"))
async def refresh(data: RefreshRequest) -> dict[str, Any]:
    """Exchange a refresh token for a new pair. Each refresh token works once; presenting
    one that was already used ends its session (reuse detection)."""
    return (await services().accounts.refresh(data.refresh_token)).public()


@bp.post("/auth/logout")
@raw_response(204, None, "Signed out (no body): this session's tokens answer 401 from now on.")
async def logout() -> tuple[str, int]:
    """End the current session: its access and refresh tokens stop working."""
    await services().accounts.logout(current_session())
    return "", 204


@bp.post("/auth/password")
@validate_request(PasswordChange)
@raw_response(204, None, "Changed (no body); every other session has ended.")
@errors(
    (403, "The current password is wrong.", "wrong_password"),
    (422, "The body does not match the schema, or the new password is too weak.", "validation_error", "weak_password"),
    _THROTTLED,
    _BUSY,
)
async def change_password(data: PasswordChange) -> tuple[str, int]:
    """Change the password (same rules as registration) and end every other session."""
    await services().accounts.change_password(current_session(), data.current_password, data.new_password, request_client())
    return "", 204


@bp.get("/auth/sessions")
@validate_response(SessionList)
async def sessions() -> dict[str, Any]:
    """The user's open sessions, most recently used first; `current` marks this one."""
    return {"sessions": await services().accounts.sessions(current_session())}


@bp.delete("/auth/sessions/<session_id>")
@raw_response(204, None, "Ended (no body).")
@errors((404, "No such session of yours.", "not_found"))
async def end_session(session_id: str) -> tuple[str, int]:
    """End one of the user's sessions (signs that device out)."""
    await services().accounts.end_session(current_session(), session_id)
    return "", 204


@bp.get("/auth/me")
@validate_response(UserOut)
async def me() -> dict[str, Any]:
    """The caller's account."""
    return _user(current_user())


@bp.post("/sse/ticket")
@validate_response(TicketOut)
async def ticket() -> dict[str, Any]:
    """A single-use, short-lived ticket to open the event stream with.

    For `GET /api/v1/sse/analysis-notifications?ticket=…` (EventSource cannot send an
    Authorization header). The stream it opens lasts as long as the access token that
    asked for it."""
    accounts = services().accounts
    return {"ticket": accounts.issue_ticket(current_session()), "expires_in": accounts.settings.ticket_lifetime}
