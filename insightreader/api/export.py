"""/api/v1/export: the caller's library as Markdown notes or one JSON document
(``insightreader.export``), streamed."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field
from quart import Blueprint, Response
from quart_schema import validate_querystring

from .. import export
from ..records import utcnow
from .deps import current_user, services
from .openapi import errors, raw_response
from .schemas import ExportDocument

bp = Blueprint("export", __name__, url_prefix="/api/v1")


class ExportQuery(BaseModel):
    format: Literal["markdown", "json"] = Field(
        "markdown", description="`markdown`: a zip of Markdown notes; `json`: one document."
    )


@bp.get("/export")
@validate_querystring(ExportQuery)
@raw_response(
    200,
    "application/zip",
    "`markdown`: a zip with one Markdown file per article (YAML front matter, then the "
    "analyses, highlights, insights and text), which opens as an Obsidian vault. `json` "
    "(`application/json`): everything the user owns, in the `insightreader` import format "
    "(docs/import-export.md).",
    schema={"type": "string", "format": "binary"},
)
@raw_response(200, "application/json", "`json`: the document (docs/import-export.md).",
              schema={"$ref": f"#/components/schemas/{ExportDocument.__name__}"})
@errors(422)
async def export_library(query_args: ExportQuery) -> Response:
    """Your whole library, streamed as it is read (a download: `Content-Disposition`)."""
    fmt = query_args.format
    user = current_user()
    reader = services().store.read
    body = (
        export.markdown_export(reader, user.id)
        if fmt == "markdown"
        else export.json_export(reader, user.id, user.username)
    )
    name = export.file_name(fmt, utcnow()[:10])
    response = Response(body, content_type=export.media_type(fmt), headers={
        "Content-Disposition": f'attachment; filename="{name}"',
    })
    response.timeout = None  # a large library takes longer than Quart's response timeout
    return response
