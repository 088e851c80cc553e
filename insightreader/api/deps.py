"""What every route needs: the services, and the authenticated user of the request."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ValidationError
from quart import Response, current_app, g, request
from quart_schema import RequestSchemaValidationError

from ..accounts import Client, Session
from ..accounts.api_tokens import authorize, is_api_token
from ..errors import Unauthorized
from ..records import User
from ..services import Services

M = TypeVar("M", bound=BaseModel)

#: Endpoints under /api/v1 that need no access token.
PUBLIC_ENDPOINTS = {"auth.register", "auth.login", "auth.refresh"}
#: Endpoints that also take ``?ticket=`` / ``?token=``, for EventSource (no headers).
STREAM_ENDPOINTS = {"events.stream", "events.stream_alias"}
#: Endpoints an API token may not use, whatever its scope: they need a signed-in session.
ACCOUNT_ENDPOINTS = {
    "tokens.create",
    "tokens.list_tokens",
    "tokens.revoke",
    "auth.logout",
    "auth.change_password",
    "auth.sessions",
    "auth.end_session",
    "auth.ticket",
}


def services() -> Services:
    return current_app.extensions["insightreader"]  # type: ignore[no-any-return]


def current_session() -> Session:
    return g.session  # type: ignore[no-any-return]


def current_user() -> User:
    return current_session().user


def request_client() -> Client:
    """The request's client: its address (``X-Forwarded-For`` only from
    ``server.trusted_proxies``) and user agent."""
    forwarded = ",".join(request.headers.getlist("X-Forwarded-For")) or None
    return services().accounts.client(request.remote_addr, forwarded, request.headers.get("User-Agent"))


async def authenticate_request() -> None:
    """Runs before every /api/v1 request, before its body is read: a missing or
    bad token is a 401 whatever the body holds."""
    if not request.path.startswith("/api/v1/") or request.endpoint in PUBLIC_ENDPOINTS:
        return
    if request.routing_exception is not None:
        return  # no such route (404) or method (405): say so, whatever the token
    accounts = services().accounts
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        session = await _bearer(token.strip())
    elif request.endpoint in STREAM_ENDPOINTS and (ticket := request.args.get("ticket")):
        session = await accounts.redeem_ticket(ticket)
    elif request.endpoint in STREAM_ENDPOINTS and (query_token := request.args.get("token")):
        session = await _bearer(query_token)
    else:
        raise Unauthorized("an Authorization: Bearer <access_token> header is required")
    authorize(session, request.method, manages_account=request.endpoint in ACCOUNT_ENDPOINTS)
    g.session = session
    # A stream ends when the credentials it was opened with expire.
    g.session_expires = session.expires


async def _bearer(token: str) -> Session:
    """The session of an access token, or of an API token (``irt_…``)."""
    if is_api_token(token):
        return await services().api_tokens.authenticate(token)
    return await services().accounts.authenticate(token)


async def finish_request_body(response: Response) -> Response:
    """Receive the rest of a body no one read (a 401 given before it, a route that takes
    none). Hypercorn otherwise closes the keep-alive connection after the answer without a
    ``Connection: close`` header, and the client's next request on it fails. A body that
    cannot be received (over ``server.max_body_bytes``, too slow) closes it explicitly."""
    if request.content_length or "Transfer-Encoding" in request.headers:
        try:
            await request.get_data(as_text=False)
        except Exception:
            response.headers["Connection"] = "close"
    return response


async def optional_body(model: type[M]) -> M:
    """Validate a JSON body that may be left out (an empty body means the defaults)."""
    if not (await request.get_data(as_text=False)).strip():
        return model()
    try:
        return model.model_validate(await request.get_json(force=True))
    except ValidationError as exc:
        raise RequestSchemaValidationError(exc) from None
