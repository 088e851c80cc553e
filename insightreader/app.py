"""``create_app(services)``: wires blueprints, schema docs, metrics, request ids, the
error mapping and the ASGI middleware (``api/asgi.py``); it holds no logic of its own."""

from __future__ import annotations

from quart import Quart

from . import sse
from .api import articles, asgi, batches, auth, deps, errors, events, export, health, highlights, imports, insights, middleware, openapi, page, search, settings, tasks, tokens, webhooks
from .api import metrics as metrics_api
from .metrics import Metrics
from .services import Services


def create_app(services: Services, *, metrics: Metrics | None = None) -> Quart:
    app = Quart(__name__)
    app.config["MAX_CONTENT_LENGTH"] = services.settings.server.max_body_bytes
    # A body's deadline is asgi.ConnectionGuard's (server.read_timeout: a 408, then a
    # disconnect, on which Quart cancels the handler). Quart's own would only repeat it,
    # and on Python 3.11 its asyncio.wait_for wraps every body read in a task of its
    # own with a timer: 18 µs and three turns of the loop where one does, twice per
    # submit (docs/benchmarks.md, "night").
    app.config["BODY_TIMEOUT"] = None
    app.extensions["insightreader"] = services
    app.before_request(middleware.no_redirects)
    app.before_request(middleware.assign_request_id)
    app.after_request(middleware.echo_request_id)
    openapi.install(app, title="InsightReader", version="1")
    middleware.bounded_json(app)
    errors.register(app)
    collected = metrics or Metrics()
    collected.bind(services)
    metrics_api.install(app, collected, token=services.settings.server.metrics_token)
    app.before_request(deps.authenticate_request)
    app.after_request(deps.finish_request_body)
    for blueprint in (health.bp, auth.bp, tasks.bp, batches.bp, articles.bp, highlights.bp, search.bp, export.bp, imports.bp, insights.bp, events.bp, settings.bp, tokens.bp, webhooks.bp, page.bp):
        app.register_blueprint(blueprint)
    app.asgi_app = asgi.ConnectionGuard(  # type: ignore[method-assign]
        asgi.StreamHandoff(asgi.ExposureHeaders(app.asgi_app)),
        read_timeout=services.settings.server.read_timeout,
        end_grace=sse.CLOSE_GRACE,
    )
    return app
