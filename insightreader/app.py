"""``create_app(services)``: wires blueprints, schema docs and the error mapping."""

from __future__ import annotations

from typing import Any

from quart import Quart
from quart_schema import QuartSchema

from .api import articles, auth, deps, errors, events, health, insights, page, tasks
from .services import Services


def _bounded_json(app: Quart) -> None:
    """Make a request body nested deeper than Python's recursion limit invalid JSON (a
    400), not a RecursionError (a 500). Wraps the provider QuartSchema installed."""
    base = type(app.json)

    class JSONProvider(base):  # type: ignore[valid-type,misc]
        def loads(self, s: str | bytes, **kwargs: Any) -> Any:
            try:
                return super().loads(s, **kwargs)
            except RecursionError:
                raise ValueError("JSON nested too deeply") from None

    app.json = JSONProvider(app)


def create_app(services: Services) -> Quart:
    app = Quart(__name__)
    app.config["MAX_CONTENT_LENGTH"] = services.settings.server.max_body_bytes
    app.extensions["insightreader"] = services
    QuartSchema(app, info={"title": "InsightReader", "version": "1"})
    _bounded_json(app)
    errors.register(app)
    app.before_request(deps.authenticate_request)
    app.after_request(deps.finish_request_body)
    for blueprint in (health.bp, auth.bp, tasks.bp, articles.bp, insights.bp, events.bp, page.bp):
        app.register_blueprint(blueprint)
    return app
