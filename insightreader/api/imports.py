"""/api/v1/imports: another reader's export file into the caller's library
(``insightreader.imports``)."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, request
from quart_schema import validate_querystring, validate_response

from .. import imports
from ..errors import BadImport, NotFound
from .deps import current_user, services
from .openapi import errors, raw_request
from .schemas import ImportList, ImportOut, ImportQuery, ImportStarted

bp = Blueprint("imports", __name__, url_prefix="/api/v1")
#: Imports `GET /imports` lists, newest first.
LISTED = 50


async def _file() -> bytes:
    """The body, or its multipart ``file`` part (a browser form)."""
    if request.mimetype == "multipart/form-data":
        upload = (await request.files).get("file")
        if upload is None:
            raise BadImport("the form has no `file` part")
        return upload.read()
    return await request.get_data(as_text=False)


@bp.post("/imports")
@validate_querystring(ImportQuery)
@validate_response(ImportStarted, 202)
@raw_request("The exported file, as the body or as the `file` part of a form.",
             "application/octet-stream", "multipart/form-data")
@errors((400, "The file cannot be read as the format given (`bad_import`); nothing was created.", "bad_import"), 422)
async def start_import(query_args: ImportQuery) -> tuple[dict[str, Any], int]:
    """Import an export file (the body, or a multipart `file` part): Netscape bookmarks,
    Pocket, Instapaper or Readwise CSV, an Omnivore zip, wallabag JSON, or this server's
    own JSON export. Answers at once; the items become articles in the background
    (`GET /imports/{id}`, `import_progress` and `import_finished` events). A file that
    cannot be read is `400 bad_import` and creates nothing."""
    svc = services()
    batch = await imports.start(svc.store, svc.batches, current_user().id, query_args.format, await _file())
    return {"import_id": batch.id, "status": batch.status, "total": batch.total, "duplicates": batch.duplicates}, 202


@bp.get("/imports")
@validate_response(ImportList)
async def list_imports() -> dict[str, Any]:
    """Your imports, newest first (the last 50)."""
    found = await services().store.read.batches(current_user().id, imports.KIND, LISTED)
    return {"items": [b.public() for b in found]}


@bp.get("/imports/<import_id>")
@validate_response(ImportOut)
@errors(404)
async def get_import(import_id: str) -> dict[str, Any]:
    """Where the import stands."""
    found = await services().store.read.batch(import_id, current_user().id)
    if found is None or found.kind != imports.KIND:
        raise NotFound("no such import")
    return found.public()
