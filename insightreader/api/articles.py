"""/api/v1/articles and the analyses that read a stored article."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response
from quart_schema import document_response, validate_querystring, validate_request, validate_response

from .. import library
from ..analyses import LENSES, lens, meta
from ..errors import NotFound
from ..records import Article
from ..store import Tx
from .deps import current_user, optional_body, services
from .openapi import errors, optional_request, raw_response
from .paging import clamp_limit, decode_cursor, page
from .schemas import (
    ArticleChange,
    ArticleList,
    ArticleOut,
    ArticleQuery,
    LensList,
    MetaAnalysisRequest,
    SaveArticle,
    Submit,
    SubmitOut,
    TagList,
    TagsIn,
    TagsOut,
)
from .tasks import idempotency_key, submit_answer

bp = Blueprint("articles", __name__, url_prefix="/api/v1")


async def _article(article_id: str) -> Article:
    return await library.article(services().store, current_user().id, article_id)


async def _submit_on(found: Article, task_type: str, priority: int | None, **extra: Any) -> tuple[Response, int]:
    outcome = await services().engine.submit(
        current_user().id,
        task_type,
        {"article_id": found.id, "content_hash": found.content_hash, **extra},
        preview=found.title,
        priority=priority,
        idempotency_key=idempotency_key(),
        article_id=found.id,
        privileged=current_user().is_admin,
    )
    return submit_answer(outcome, article_id=found.id)


@bp.post("/articles/save-with-analysis")
@validate_request(SaveArticle)
@document_response(SubmitOut, 202)
@document_response(SubmitOut, 200)
@errors((409, "The `Idempotency-Key` was used with a different request.", "conflict"), (429, None, "too_many_pending", "quota_exceeded", "storage_quota_exceeded"), 503)
async def save_with_analysis(data: SaveArticle) -> tuple[Response, int]:
    """Save an article (the same content twice gives the same article) and analyse it.
    With only a `url`, the answer comes at once with the `task_id` of a `page_fetch`
    task that fetches the page, fills the article and then queues its analysis; the
    same URL again (normalised) gives the same article. A refused task (any 4xx or 503)
    stores nothing."""
    svc = services()
    if data.content is None:
        assert data.url is not None
        outcome = await library.save_url(
            svc.engine,
            svc.settings.library,
            current_user(),
            url=data.url,
            title=data.title,
            priority=data.priority,
            idempotency_key=idempotency_key(),
        )
    else:
        outcome = await library.save_article(
            svc.engine,
            svc.settings.library,
            current_user(),
            title=data.title,
            content=data.content,
            url=data.url,
            priority=data.priority,
            idempotency_key=idempotency_key(),
        )
    return submit_answer(outcome)


@bp.get("/articles")
@validate_querystring(ArticleQuery)
@validate_response(ArticleList)
@errors((422, "A query parameter is invalid (e.g. a cursor this server did not give out, or a tag name that is not one).", "validation_error"))
async def list_articles(query_args: ArticleQuery) -> dict[str, Any]:
    """The caller's articles, newest first, each with an `excerpt` (at most 300
    characters) instead of its text; narrowed by `tag`, `archived` and `favorite`
    when given. `limit` is clamped to 1…100."""
    limit = clamp_limit(query_args.limit)
    rows = await library.list_articles(
        services().store,
        current_user().id,
        limit=limit + 1,
        before_seq=decode_cursor(query_args.cursor),
        tag=query_args.tag,
        archived=query_args.archived,
        favorite=query_args.favorite,
    )
    items, next_cursor = page(rows, limit)
    return {"items": [a.public() for a in items], "next_cursor": next_cursor}


@bp.patch("/articles/<article_id>")
@validate_request(ArticleChange)
@validate_response(ArticleOut)
@errors(404)
async def change_article(article_id: str, data: ArticleChange) -> dict[str, Any]:
    """Archive or unarchive, mark or unmark as favourite, or rename the article; the
    article after the change."""
    changed = await library.update_article(
        services().store,
        current_user().id,
        article_id,
        title=data.title,
        archived=data.archived,
        favorite=data.favorite,
    )
    return changed.public()


@bp.put("/articles/<article_id>/tags")
@validate_request(TagsIn)
@validate_response(TagsOut)
@errors(404, (422, "A tag name is empty, too long (over 64 characters) or holds control characters, or there are over 50.", "validation_error"))
async def put_tags(article_id: str, data: TagsIn) -> dict[str, Any]:
    """Replace the article's tags. Names are trimmed; two names differing only in case
    are one tag, spelled as the user first wrote it."""
    return {"tags": await library.set_tags(services().store, current_user().id, article_id, data.tags)}


@bp.get("/tags")
@validate_response(TagList)
async def list_tags() -> dict[str, Any]:
    """The caller's tags with how many articles carry each, sorted case-insensitively."""
    found = await library.tags(services().store, current_user().id)
    return {"items": [{"name": name, "count": count} for name, count in found]}


@bp.get("/articles/<article_id>")
@validate_response(ArticleOut)
@errors(404)
async def get_article(article_id: str) -> dict[str, Any]:
    """The article with its text, analysis, meta analysis and lens results."""
    return (await _article(article_id)).public()


@bp.delete("/articles/<article_id>")
@raw_response(204, None, "Deleted (no body).")
@errors(404)
async def delete_article(article_id: str) -> tuple[str, int]:
    """Delete the article and its analyses; its unfinished tasks are cancelled."""
    svc = services()
    user = current_user()
    found = await _article(article_id)
    await svc.engine.cancel_each(user.id, [t.id for t in await svc.store.read.unfinished_article_tasks(user.id, found.id)])

    def job(tx: Tx) -> bool:
        return tx.delete_article(found.id, user.id)

    if not await svc.store.write(job):
        raise NotFound("no such article")
    return "", 204


@bp.post("/meta-analysis/analyze")
@validate_request(MetaAnalysisRequest)
@document_response(SubmitOut, 202)
@document_response(SubmitOut, 200)
@errors(404, (409, "The `Idempotency-Key` was used with a different request.", "conflict"), (429, None, "too_many_pending", "quota_exceeded"), 503)
async def meta_analysis(data: MetaAnalysisRequest) -> tuple[Response, int]:
    """Analyse how a stored article argues: stance, assumptions, devices, blind spots."""
    return await _submit_on(await _article(data.article_id), meta.NAME, data.priority)


@bp.post("/articles/<article_id>/thinking-lens/<lens_type>")
@document_response(SubmitOut, 202)
@document_response(SubmitOut, 200)
@optional_request(Submit)
@errors((404, "No such article, or no such lens.", "not_found"), (409, "The `Idempotency-Key` was used with a different request.", "conflict"), (429, None, "too_many_pending", "quota_exceeded"), 503)
async def thinking_lens(article_id: str, lens_type: str) -> tuple[Response, int]:
    """Apply a thinking lens (see `GET /thinking-lenses`) to a stored article. The body
    is optional: `{"priority": n}`."""
    options = await optional_body(Submit)
    if lens_type not in LENSES:
        raise NotFound(f"no thinking lens {lens_type!r}; see GET /api/v1/thinking-lenses")
    return await _submit_on(await _article(article_id), lens.NAME, options.priority, lens_type=lens_type)


@bp.get("/thinking-lenses")
@validate_response(LensList)
async def thinking_lenses() -> dict[str, Any]:
    """The thinking lenses `POST /articles/{article_id}/thinking-lens/{lens_type}` takes."""
    return {"lenses": [lens_.public() for lens_ in LENSES.values()]}
