"""Highlights and notes: /api/v1/articles/{id}/highlights and /api/v1/highlights/{id}
(``insightreader.highlights``)."""

from __future__ import annotations

from typing import Any

from quart import Blueprint
from quart_schema import validate_request, validate_response

from .. import highlights
from ..errors import NotFound
from .deps import current_user, services
from .openapi import errors, raw_response
from .schemas import HighlightChange, HighlightList, HighlightOut, NewHighlight

bp = Blueprint("highlights", __name__, url_prefix="/api/v1")


@bp.post("/articles/<article_id>/highlights")
@validate_request(NewHighlight)
@validate_response(HighlightOut, 201)
@errors(404, (422, "The quote does not occur in the article's text (`quote_not_found`), or a field is invalid.", "quote_not_found", "validation_error"))
async def add_highlight(article_id: str, data: NewHighlight) -> tuple[dict[str, Any], int]:
    """Highlight a passage of the article (its exact text, with a little of the text
    before and after to tell one occurrence from another) with an optional note."""
    found = await highlights.add(
        services().store, current_user(), article_id,
        quote=data.quote, prefix=data.prefix, suffix=data.suffix, note=data.note,
    )
    return found.public(), 201


@bp.get("/articles/<article_id>/highlights")
@validate_response(HighlightList)
@errors(404)
async def list_highlights(article_id: str) -> dict[str, Any]:
    """The article's highlights in the order of the text."""
    reader = services().store.read
    user = current_user()
    if await reader.article(article_id, user.id) is None:
        raise NotFound("no such article")
    found = (await reader.highlights_of(user.id, [article_id])).get(article_id, [])
    return {"items": [h.public() for h in found]}


@bp.patch("/highlights/<highlight_id>")
@validate_request(HighlightChange)
@validate_response(HighlightOut)
@errors(404)
async def change_highlight(highlight_id: str, data: HighlightChange) -> dict[str, Any]:
    """Change the highlight's note."""
    return (await highlights.set_note(services().store, current_user(), highlight_id, data.note)).public()


@bp.delete("/highlights/<highlight_id>")
@raw_response(204, None, "Deleted (no body).")
@errors(404)
async def delete_highlight(highlight_id: str) -> tuple[str, int]:
    """Delete the highlight and its note (insights asked about it stay)."""
    await highlights.remove(services().store, current_user(), highlight_id)
    return "", 204
