"""/api/v1/search: the caller's library by what it says (``insightreader.search``)."""

from __future__ import annotations

from typing import Any

from quart import Blueprint
from quart_schema import validate_querystring, validate_response

from .. import library
from .deps import current_user, services
from .openapi import errors
from .paging import clamp_limit, decode_cursor, encode_cursor
from .schemas import SearchQuery, SearchResults

bp = Blueprint("search", __name__, url_prefix="/api/v1")


@bp.get("/search")
@validate_querystring(SearchQuery)
@validate_response(SearchResults)
@errors((422, "`q` holds no word, or a parameter is invalid (e.g. a cursor this server did not give out).", "validation_error"))
async def search(query_args: SearchQuery) -> dict[str, Any]:
    """The caller's articles matching `q` in their title, text, analysis, tags,
    highlights or notes, best first (BM25, a title match weighing most), each with a
    snippet around the match. Every part of `q` must match: a word also as the start of
    a longer one, `"a phrase"` as a phrase, Chinese as its characters side by side.
    `limit` is clamped to 1…100; `next_cursor` pages on."""
    limit = clamp_limit(query_args.limit)
    offset = decode_cursor(query_args.cursor) or 0
    hits = await library.search_library(
        services().store, current_user().id, query_args.q, limit=limit + 1, offset=offset
    )
    return {
        "items": [h.public() for h in hits[:limit]],
        "next_cursor": encode_cursor(offset + limit) if len(hits) > limit else None,
    }
