"""/api/v1/tokens: thin wrappers over :class:`..accounts.ApiTokens`."""

from __future__ import annotations

from typing import Any

from quart import Blueprint
from quart_schema import validate_request, validate_response

from ..accounts.api_tokens import MAX_TOKENS_PER_USER, public
from .deps import current_user, services
from .openapi import errors, raw_response
from .schemas import ApiTokenCreated, ApiTokenList, TokenCreate

bp = Blueprint("tokens", __name__, url_prefix="/api/v1")

_SESSION_ONLY = (403, "Sent with an API token: tokens are managed from a signed-in session only.", "session_required")


@bp.post("/tokens")
@validate_request(TokenCreate)
@validate_response(ApiTokenCreated, 201)
@errors(
    _SESSION_ONLY,
    (409, f"The user has {MAX_TOKENS_PER_USER} API tokens already: revoke one first.", "too_many_tokens"),
)
async def create(data: TokenCreate) -> tuple[dict[str, Any], int]:
    """Create a personal API token for scripts. `token` (`irt_…`) is shown in this answer
    only; send it as `Authorization: Bearer irt_…`. Scope `read` allows GET and HEAD only;
    `write` everything but managing tokens, sessions and the password."""
    created = await services().api_tokens.create(current_user().id, data.name, data.scope, data.expires_in_days)
    return created.public(), 201


@bp.get("/tokens")
@validate_response(ApiTokenList)
@errors(_SESSION_ONLY)
async def list_tokens() -> dict[str, Any]:
    """The user's API tokens, newest first (expired ones too): never the secret."""
    return {"tokens": [public(token) for token in await services().api_tokens.of_user(current_user().id)]}


@bp.delete("/tokens/<token_id>")
@raw_response(204, None, "Revoked (no body): the next request with the token answers 401.")
@errors(_SESSION_ONLY, (404, "No such API token of yours.", "not_found"))
async def revoke(token_id: str) -> tuple[str, int]:
    """Revoke an API token at once."""
    await services().api_tokens.revoke(current_user().id, token_id)
    return "", 204
