"""/api/v1/articles/reanalyze and /api/v1/batches: re-analysing the library
(``insightreader.reanalysis``) and following or cancelling a batch."""

from __future__ import annotations

from typing import Any

from quart import Blueprint
from quart_schema import validate_request, validate_response

from .. import batches, reanalysis
from ..errors import NotFound
from ..records import Batch
from .deps import current_user, services
from .openapi import errors
from .schemas import BatchList, BatchOut, BatchStarted, ReanalyzeIn

bp = Blueprint("batches", __name__, url_prefix="/api/v1")
#: Re-analyses `GET /batches` lists, newest first.
LISTED = 20


async def _described(batch: Batch) -> dict[str, Any]:
    return {**batch.public(), "tasks": await services().store.read.batch_tasks(batch.id)}


@bp.post("/articles/reanalyze")
@validate_request(ReanalyzeIn)
@validate_response(BatchStarted, 202)
async def reanalyze(data: ReanalyzeIn) -> tuple[dict[str, Any], int]:
    """Run analyses of your library again, as bulk work below everything you wait for:
    `stale` (made with another model, prompt version or prompt settings), `failed`, or
    `all`. Answers at once; follow it at `GET /batches/{batch_id}` or through
    `batch_progress` / `batch_finished` events; `POST /batches/{batch_id}/cancel` stops it."""
    svc = services()
    kinds = list(dict.fromkeys(data.kinds))
    recipe = reanalysis.Recipe(svc.engine.task_types, svc.engine.model)
    batch = await reanalysis.start(svc.store, recipe, current_user().id, data.scope, kinds, wake=svc.batches.wake)
    return {"batch_id": batch.id, "status": batch.status, "total": batch.total}, 202


@bp.get("/batches")
@validate_response(BatchList)
async def list_batches() -> dict[str, Any]:
    """Your re-analyses, newest first (the last 20)."""
    found = await services().store.read.batches(current_user().id, reanalysis.KIND, LISTED)
    return {"items": [await _described(b) for b in found]}


async def _reanalysis(batch_id: str) -> Batch:
    found = await services().store.read.batch(batch_id, current_user().id)
    if found is None or found.kind != reanalysis.KIND:
        raise NotFound("no such batch")
    return found


@bp.get("/batches/<batch_id>")
@validate_response(BatchOut)
@errors(404)
async def get_batch(batch_id: str) -> dict[str, Any]:
    """Where the re-analysis stands, with its tasks counted by status."""
    return await _described(await _reanalysis(batch_id))


@bp.post("/batches/<batch_id>/cancel")
@validate_response(BatchOut)
@errors(404)
async def cancel_batch(batch_id: str) -> dict[str, Any]:
    """Cancel the re-analysis: what it has not queued yet is dropped, and its queued and
    running tasks are cancelled (their `task_cancelled` events follow). One that ended is
    answered as it is."""
    svc = services()
    await _reanalysis(batch_id)
    cancelled = await batches.cancel(svc.store, svc.bus, svc.engine, svc.batches.kinds, current_user().id, batch_id)
    return await _described(cancelled)
