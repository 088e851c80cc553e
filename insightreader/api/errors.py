"""The one mapping from errors to HTTP answers: ``{"error": {"code", "message"}}``."""

from __future__ import annotations

import logging

from pydantic import ValidationError
from quart import Quart, Response, jsonify, request
from quart_schema import RequestSchemaValidationError
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from ..errors import ApiError

log = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
    503: "unavailable",
}


def error_response(status: int, code: str, message: str, *, retry_after: int | None = None) -> Response:
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    if retry_after is not None:
        response.headers["Retry-After"] = str(max(1, retry_after))
    return response


def _describe(exc: ValidationError | Exception) -> str:
    if not isinstance(exc, ValidationError):
        return "the request body must be a JSON object matching the schema"
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def register(app: Quart) -> None:
    @app.errorhandler(ApiError)
    async def api_error(exc: ApiError) -> Response:
        return error_response(exc.status, exc.code, exc.message, retry_after=exc.retry_after)

    @app.errorhandler(RequestSchemaValidationError)
    async def schema_error(exc: RequestSchemaValidationError) -> Response:
        return error_response(422, "validation_error", _describe(exc.validation_error))

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        if status == 400:
            return error_response(400, "invalid_json", "the request body is not valid JSON")
        message = exc.description or exc.name
        response = error_response(status, _HTTP_CODES.get(status, "http_error"), message)
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
            response.headers["Allow"] = ", ".join(sorted(exc.valid_methods))  # RFC 9110: a 405 must say
        return response

    @app.errorhandler(UnicodeDecodeError)
    async def undecodable(exc: UnicodeDecodeError) -> Response:
        # Quart decodes a JSON body with ``bytes.decode()`` before parsing it, so
        # bytes that are not UTF-8 surface here rather than as a 400.
        try:
            (await request.get_data(as_text=False)).decode("utf-8")
        except UnicodeDecodeError:
            return error_response(400, "invalid_json", "the request body is not valid UTF-8 JSON")
        log.error("unhandled error", exc_info=exc)
        return error_response(500, "internal_error", "an unexpected error occurred")

    @app.errorhandler(Exception)
    async def unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(500, "internal_error", "an unexpected error occurred")
