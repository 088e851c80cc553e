"""What every route needs: the services, and the authenticated user of the request."""

from __future__ import annotations

from quart import current_app, g, request

from ..errors import Unauthorized
from ..records import User
from ..services import Services

#: Endpoints under /api/v1 that need no access token.
PUBLIC_ENDPOINTS = {"auth.register", "auth.login", "auth.refresh"}
#: Endpoints that also take ``?ticket=`` / ``?token=``, for EventSource (no headers).
STREAM_ENDPOINTS = {"events.stream", "events.stream_alias"}


def services() -> Services:
    return current_app.extensions["insightreader"]  # type: ignore[no-any-return]


def current_user() -> User:
    return g.user  # type: ignore[no-any-return]


async def authenticate_request() -> None:
    """Runs before every /api/v1 request, before its body is read: a missing or
    bad token is a 401 whatever the body holds."""
    if not request.path.startswith("/api/v1/") or request.endpoint in PUBLIC_ENDPOINTS:
        return
    auth = services().auth
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        g.user = await auth.authenticate(token.strip())
        return
    if request.endpoint in STREAM_ENDPOINTS:
        if ticket := request.args.get("ticket"):
            claims = auth.redeem_ticket(ticket)
            user = await services().store.read.user(claims["sub"])
            if user is None:
                raise Unauthorized("the ticket's user no longer exists")
            g.user = user
            g.session_expires = claims["exp"]
            return
        if token := request.args.get("token"):
            g.user = await auth.authenticate(token)
            return
    raise Unauthorized("an Authorization: Bearer <access_token> header is required")
