"""``create_app(services)``: wires blueprints, schema docs and the error mapping."""

from __future__ import annotations

from quart import Quart
from quart_schema import QuartSchema

from .api import auth, deps, errors, health, tasks
from .services import Services


def create_app(services: Services) -> Quart:
    app = Quart(__name__)
    app.config["MAX_CONTENT_LENGTH"] = services.settings.server.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.extensions["insightreader"] = services
    QuartSchema(app, info={"title": "InsightReader", "version": "1"})
    errors.register(app)
    app.before_request(deps.authenticate_request)
    for blueprint in (health.bp, auth.bp, tasks.bp):
        app.register_blueprint(blueprint)
    return app
