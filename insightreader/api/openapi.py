"""What ``/openapi.json`` says beyond quart-schema's defaults, and ``/docs`` served offline.

quart-schema builds the spec from the routes' ``validate_*`` / ``document_*``
decorators. :class:`Provider` (its ``openapi_provider_class``) then completes each
operation:

* error answers, all ``{"error": {"code", "message"}}`` (``ErrorResponse``) with an
  example per status: the ones a route declares with :func:`errors`, plus those every
  route of its kind can give — 401 on each authenticated ``/api/v1`` route, 400/413/422
  where a JSON body is read, 500 on every ``/api/v1`` route;
* answers that are not JSON (:func:`raw_response`): the event stream as
  ``text/event-stream``, the schema of one message (:func:`event_message_schema`) and
  the data schema of each event (``x-events``), ``/metrics``
  as Prometheus text, the reading page as HTML, 204s;
* ``requestBody.required`` (true for validated bodies; false for :func:`optional_request`),
  ``required`` on the query parameters a model requires,
  the bearer security requirement, and a description for every answer.

``/docs`` is Swagger UI from the ``swagger-ui-py`` package's bundled files, served
by this process (no CDN); quart-schema's own pages (which load scripts from CDNs)
are switched off. Without that package, ``/docs`` is a plain list of the routes.
"""

from __future__ import annotations

import copy
import html
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from http import HTTPStatus
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel
from quart import Blueprint, Quart, Response, current_app, url_for
from quart_schema import OpenAPIProvider, document_request, document_response, hide
from quart_schema.validation import QUART_SCHEMA_REQUEST_ATTRIBUTE
from werkzeug.routing.rules import Rule

from ..errors import NotFound
from . import schemas
from .schemas import ErrorResponse

T = TypeVar("T", bound=Callable[..., Any])

_ATTRIBUTE = "_insightreader_openapi"
SECURITY_SCHEME = "bearer"
#: Endpoints under /api/v1 that need no credentials (mirrors ``deps.PUBLIC_ENDPOINTS``).
PUBLIC_ENDPOINTS = {"auth.register", "auth.login", "auth.refresh"}
#: Blueprint → tag (the groups of /docs), in the order shown.
TAGS = {
    "auth": ("auth", "Accounts, tokens and stream tickets."),
    "insights": ("insights", "Insights and follow-up buttons on a selection; usage."),
    "articles": ("articles", "Saved articles and their analyses."),
    "search": ("articles", "Saved articles and their analyses."),
    "export": ("articles", "Saved articles and their analyses."),
    "highlights": ("articles", "Saved articles and their analyses."),
    "imports": ("articles", "Saved articles and their analyses."),
    "webhooks": ("auth", "Accounts, tokens and stream tickets."),
    "tasks": ("tasks", "The tasks every submit creates: read, list, cancel, retry."),
    "events": ("events", "The Server-Sent Events stream of task events."),
    "health": ("operations", "Health, readiness and metrics."),
    "metrics": ("operations", "Health, readiness and metrics."),
    "page": ("page", "The reading page."),
}

#: status → (what it means, example error codes)
ERRORS: dict[int, tuple[str, tuple[str, ...]]] = {
    400: ("The request is malformed: a body that is not JSON, or a bad parameter.", ("invalid_json", "bad_request")),
    401: ("Missing, expired or invalid credentials (`Authorization: Bearer <access_token>`).", ("unauthorized",)),
    403: ("Not allowed.", ("forbidden",)),
    404: ("No such resource (or it belongs to another user).", ("not_found",)),
    409: ("The request conflicts with the resource's state.", ("conflict",)),
    413: ("The body is larger than `server.max_body_bytes`.", ("payload_too_large",)),
    422: ("The body or query does not match the schema.", ("validation_error",)),
    429: ("Over a limit: unfinished tasks, the daily token budget.", ("too_many_pending", "quota_exceeded")),
    500: ("An unexpected error (logged with the request id).", ("internal_error",)),
    503: (
        "The server is draining, or the database cannot take a write now; try again shortly.",
        ("shutting_down", "storage_busy", "storage_full"),
    ),
}
_MESSAGES = {
    "invalid_json": "the request body is not valid JSON",
    "bad_request": "the request is malformed",
    "unauthorized": "an Authorization: Bearer <access_token> header is required",
    "forbidden": "not allowed",
    "registration_closed": "registration is closed on this server",
    "wrong_password": "the current password is wrong",
    "weak_password": "the password is one of the 10,000 most common passwords: choose another",
    "too_many_attempts": "too many failed attempts; try again later",
    "busy": "the server is busy checking passwords; try again shortly",
    "not_found": "no such task",
    "conflict": "a completed task cannot be cancelled",
    "payload_too_large": "the request body is too large",
    "validation_error": "selected_text: Field required",
    "too_many_pending": "you already have 100 unfinished tasks",
    "quota_exceeded": "today's token budget of 100000 is spent",
    "too_many_streams": "you already have 10 open event streams; close one first",
    "invalid_last_event_id": "Last-Event-ID must be a non-negative integer (an event id)",
    "internal_error": "an unexpected error occurred",
    "shutting_down": "the server is shutting down; submit again shortly",
    "storage_busy": "the database is busy; try again shortly",
    "storage_full": "the disk is full",
}

#: Codes whose answers carry a ``Retry-After`` header (``ApiError.retry_after``).
_RETRY_CODES = {"too_many_attempts", "busy"}


@dataclass
class _Doc:
    """What a route adds to its operation (kept on the view function)."""

    errors: dict[int, tuple[str | None, tuple[str, ...]]] = field(default_factory=dict)
    raw: dict[int, dict[str, Any]] = field(default_factory=dict)
    optional_body: bool = False
    #: A body that is not a JSON model (:func:`raw_request`).
    raw_body: dict[str, Any] | None = None


def _doc(func: Callable[..., Any]) -> _Doc:
    found = getattr(func, _ATTRIBUTE, None)
    if found is None:
        found = _Doc()
        setattr(func, _ATTRIBUTE, found)
    return found  # type: ignore[no-any-return]


def errors(*statuses: int | tuple[Any, ...]) -> Callable[[T], T]:
    """Document error answers (``ErrorResponse``): ``404``, or ``(429, "description",
    "code", …)`` to say which codes this route gives."""

    def decorator(func: T) -> T:
        doc = _doc(func)
        for item in statuses:
            status, description, *codes = item if isinstance(item, tuple) else (item, None)
            doc.errors[int(status)] = (description, tuple(codes))
            func = document_response(ErrorResponse, int(status))(func)
        return func

    return decorator


def raw_response(
    status: int,
    media_type: str | None,
    description: str,
    *,
    example: Any = None,
    schema: dict[str, Any] | None = None,
    extensions: dict[str, Any] | None = None,
) -> Callable[[T], T]:
    """Document an answer that is not a validated JSON model (a stream, text, HTML, a 204).
    Given twice for one status, the answer has both media types."""

    def decorator(func: T) -> T:
        answer: dict[str, Any] = {"description": description}
        if media_type is not None:
            content: dict[str, Any] = {"schema": schema or {"type": "string"}}
            if example is not None:
                content["example"] = example
            content.update(extensions or {})
            answer["content"] = {media_type: content}
        raw = _doc(func).raw
        if status in raw and "content" in raw[status] and "content" in answer:
            answer["content"] = {**raw[status]["content"], **answer["content"]}
        raw[status] = answer
        return func

    return decorator


def raw_request(description: str, *media_types: str) -> Callable[[T], T]:
    """Document a required body that is not JSON (a file), in any of ``media_types``."""

    def decorator(func: T) -> T:
        content = {
            media: (
                {"schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}}
                if media == "multipart/form-data"
                else {"schema": {"type": "string", "format": "binary"}}
            )
            for media in media_types
        }
        _doc(func).raw_body = {"description": description, "required": True, "content": content}
        return func

    return decorator


def optional_request(model: type[BaseModel]) -> Callable[[T], T]:
    """Document a JSON body that may be left out (the route validates it itself)."""

    def decorator(func: T) -> T:
        _doc(func).optional_body = True
        return document_request(model)(func)

    return decorator


def _error_answer(status: int, description: str | None, codes: tuple[str, ...], schema: dict[str, Any]) -> dict[str, Any]:
    meaning, default_codes = ERRORS.get(status, (HTTPStatus(status).phrase, ("error",)))
    codes = codes or default_codes
    examples = {
        code: {"summary": f"`{code}`", "value": {"error": {"code": code, "message": _MESSAGES.get(code, meaning)}}}
        for code in codes
    }
    listed = ", ".join(f"`{code}`" for code in codes)
    answer: dict[str, Any] = {
        "description": f"{description or meaning} Codes: {listed}.",
        "content": {"application/json": {"schema": schema, "examples": examples}},
    }
    if _RETRY_CODES.intersection(codes):
        answer["headers"] = {
            "Retry-After": {"description": "Seconds to wait before trying again.", "schema": {"type": "integer", "minimum": 1}}
        }
    return answer


class Provider(OpenAPIProvider):
    """quart-schema's provider, completing each operation (see the module docstring)."""

    def schema(self) -> dict[str, Any]:
        spec = super().schema()
        components = spec.setdefault("components", {}).setdefault("schemas", {})
        for model in (*schemas.EVENT_MODELS.values(), *schemas.DOCUMENT_MODELS):
            components.update(_component(model))
        spec["tags"] = [
            {"name": name, "description": description}
            for name, description in dict(TAGS.values()).items()
        ]
        return spec

    def build_paths(self, rule: Rule) -> tuple[dict[str, Any], dict[str, Any]]:
        paths, components = super().build_paths(rule)
        func = self._app.view_functions[rule.endpoint]
        doc: _Doc = getattr(func, _ATTRIBUTE, None) or _Doc()
        error_schema, error_components = self._error_schema()
        components.update(error_components)
        validated = getattr(func, QUART_SCHEMA_REQUEST_ATTRIBUTE, None) is not None
        tag = TAGS.get(rule.endpoint.partition(".")[0])
        for path, operations in paths.items():
            for method, operation in list(operations.items()):
                operation = self._complete(copy.deepcopy(operation), path, rule.endpoint, doc, validated, error_schema)
                if tag is not None and "tags" not in operation:
                    operation["tags"] = [tag[0]]
                operations[method] = operation
        return paths, components

    def build_querystring_parameters(self, model: type[BaseModel]) -> tuple[list[dict[str, Any]], dict[str, Any]]:  # type: ignore[override]
        """quart-schema's parameters, marking the required ones (it looks for
        ``required`` on each property, where pydantic never puts it)."""
        parameters, definitions = super().build_querystring_parameters(model)
        required = {name for name, info in model.model_fields.items() if info.is_required()}
        for parameter in parameters:
            if parameter["name"] in required:
                parameter["required"] = True
        return parameters, definitions

    @cache  # noqa: B019 (one provider per app, built once)
    def _error_schema(self) -> tuple[dict[str, Any], dict[str, Any]]:
        answer, definitions = self.build_response_object(ErrorResponse, None)
        return answer["content"]["application/json"]["schema"], definitions

    def _complete(
        self,
        operation: dict[str, Any],
        path: str,
        endpoint: str,
        doc: _Doc,
        validated: bool,
        error_schema: dict[str, Any],
    ) -> dict[str, Any]:
        api = path.startswith("/api/v1/")
        wanted: dict[int, tuple[str | None, tuple[str, ...]]] = {}
        if api and endpoint not in PUBLIC_ENDPOINTS:
            operation["security"] = [{SECURITY_SCHEME: []}]
            wanted[401] = (None, ())
        if doc.raw_body is not None:
            operation["requestBody"] = copy.deepcopy(doc.raw_body)
            wanted[413] = (None, ())
        body = operation.get("requestBody")
        if body is not None and doc.raw_body is None:
            body["required"] = validated and not doc.optional_body
            wanted.update({400: (None, ("invalid_json",)), 413: (None, ()), 422: (None, ())})
        if api:
            wanted[500] = (None, ())
        wanted.update(doc.errors)
        responses: dict[int, Any] = {int(k): v for k, v in operation.get("responses", {}).items()}
        for status, (description, codes) in sorted(wanted.items()):
            responses[status] = _error_answer(status, description, codes, error_schema)
        for status, answer in doc.raw.items():
            responses[status] = copy.deepcopy(answer)
        for status, answer in responses.items():
            if not answer.get("description"):
                answer["description"] = HTTPStatus(status).phrase
        operation["responses"] = dict(sorted(responses.items()))
        for key in ("parameters", "description"):
            if not operation.get(key):
                operation.pop(key, None)
        return operation


def _component(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}", mode="serialization")
    found = dict(schema.pop("$defs", {}))
    found[model.__name__] = schema
    return found


def event_stream_docs() -> dict[str, Any]:
    """``x-events`` for the stream's media type: each event's data schema."""
    return {
        "x-events": {name: {"$ref": f"#/components/schemas/{model.__name__}"} for name, model in schemas.EVENT_MODELS.items()}
    }


def event_message_schema() -> dict[str, Any]:
    """The schema of one message of the event stream, as tools read a
    ``text/event-stream`` (Open API 3.2's ``itemSchema``; before 3.2, ``schema`` there):
    an object of its fields, ``event``, ``data`` (one line of JSON, whose schema is the
    event's model), ``id`` on stored and progress events, ``retry``. A block with no
    ``data:`` line (the stream's first ``retry:``) is not a message."""
    variants = [
        {
            "properties": {
                "event": {"const": name},
                "data": {
                    "contentMediaType": "application/json",
                    "contentSchema": {"$ref": f"#/components/schemas/{model.__name__}"},
                },
            }
        }
        for name, model in schemas.EVENT_MODELS.items()
    ]
    return {
        "type": "object",
        "required": ["event", "data"],
        "properties": {
            "event": {"type": "string", "enum": list(schemas.EVENT_MODELS)},
            "data": {"type": "string"},
            "id": {"type": "string", "pattern": "^[0-9]+$"},
            "retry": {"type": "integer", "minimum": 0},
        },
        "oneOf": variants,
    }


# -- /docs ------------------------------------------------------------------------------

bp = Blueprint("docs", __name__)

#: The files of Swagger UI that /docs uses, from the swagger-ui-py package.
SWAGGER_FILES = {
    "swagger-ui.css": "text/css; charset=utf-8",
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
INIT_JS = """\
"use strict";
window.addEventListener("load", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.spec,
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
"""
DOCS_CSP = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
ASSET_CACHE = "public, max-age=86400"


@cache
def swagger_dir() -> Path | None:
    """Swagger UI's static files, when the swagger-ui-py package is installed."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        return None
    static = Path(next(iter(spec.submodule_search_locations))) / "static"
    return static if all((static / name).is_file() for name in SWAGGER_FILES) else None


@cache
def _asset(name: str) -> tuple[bytes, str] | None:
    if name == "init.js":
        return INIT_JS.encode(), "text/javascript; charset=utf-8"
    folder = swagger_dir()
    if folder is None or name not in SWAGGER_FILES:
        return None
    return (folder / name).read_bytes(), SWAGGER_FILES[name]


def _route_list(spec: dict[str, Any]) -> str:
    """The routes as HTML (for readers without JavaScript, or without Swagger UI)."""
    rows = []
    for path, operations in spec.get("paths", {}).items():
        for method, operation in operations.items():
            summary = operation.get("summary") or ""
            statuses = ", ".join(str(s) for s in operation.get("responses", {}))
            rows.append(
                f"<tr><td><code>{html.escape(method.upper())}</code></td><td><code>{html.escape(path)}</code></td>"
                f"<td>{html.escape(summary)}</td><td>{html.escape(statuses)}</td></tr>"
            )
    return (
        "<table><thead><tr><th>method</th><th>path</th><th>summary</th><th>answers</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _page(title: str, spec_url: str, spec: dict[str, Any], swagger: bool) -> str:
    routes = _route_list(spec)
    if not swagger:
        return (
            f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title></head>"
            f"<body><h1>{html.escape(title)}</h1><p>The full specification: "
            f"<a href=\"{html.escape(spec_url)}\">{html.escape(spec_url)}</a></p>{routes}</body></html>"
        )
    assets = url_for("docs.asset", name="")
    return (
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title>"
        f"<link rel=\"stylesheet\" href=\"{assets}swagger-ui.css\">"
        f"<link rel=\"icon\" type=\"image/png\" href=\"{assets}favicon-32x32.png\">"
        "</head><body>"
        f"<div id=\"swagger-ui\" data-spec=\"{html.escape(spec_url)}\"></div>"
        f"<noscript><p>The full specification: <a href=\"{html.escape(spec_url)}\">{html.escape(spec_url)}</a></p>"
        f"{routes}</noscript>"
        f"<script src=\"{assets}swagger-ui-bundle.js\"></script>"
        f"<script src=\"{assets}init.js\"></script>"
        "</body></html>"
    )


@bp.get("/docs")
@hide
async def page() -> Response:
    """Interactive API documentation (Swagger UI, served locally)."""
    extension = current_app.extensions["QUART_SCHEMA"]
    spec = extension.openapi_provider.schema()
    body = _page(extension.info.title, url_for("openapi"), spec, swagger_dir() is not None)
    return Response(
        body,
        status=200,
        content_type="text/html; charset=utf-8",
        headers={"Content-Security-Policy": DOCS_CSP, "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"},
    )


@bp.get("/docs/assets/<name>")
@hide
async def asset(name: str) -> Response:
    found = _asset(name)
    if found is None:
        raise NotFound("no such file")
    body, content_type = found
    return Response(
        body, status=200, content_type=content_type, headers={"Cache-Control": ASSET_CACHE, "X-Content-Type-Options": "nosniff"}
    )


def install(app: Quart, *, title: str, version: str) -> None:
    """quart-schema with :class:`Provider`, ``/openapi.json``, and the local ``/docs``."""
    from quart_schema import QuartSchema

    QuartSchema(
        app,
        info={
            "title": title,
            "version": version,
            "description": (
                "Slow LLM jobs as tasks: a submit answers with a `task_id` at once, results arrive "
                "as Server-Sent Events on `GET /api/v1/sse/analysis-notifications`. Every error is "
                '`{"error": {"code", "message"}}`. Every answer carries an `X-Request-ID` header '
                "(yours, when you send a sane one), which the server's log lines of that request name."
            ),
        },
        swagger_ui_path=None,
        redoc_ui_path=None,
        scalar_ui_path=None,
        openapi_provider_class=Provider,
        security_schemes={SECURITY_SCHEME: {"type": "http", "scheme": "bearer", "bearer_format": "JWT"}},
    )
    app.register_blueprint(bp)
