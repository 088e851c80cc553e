"""``create_app(services)``: wires blueprints, schema docs, metrics, request ids and the
error mapping; it holds no logic of its own."""

from __future__ import annotations

from quart import Quart

from .api import articles, auth, deps, errors, events, health, insights, middleware, openapi, page, tasks
from .api import metrics as metrics_api
from .metrics import Metrics
from .services import Services


def create_app(services: Services, *, metrics: Metrics | None = None) -> Quart:
    app = Quart(__name__)
    app.config["MAX_CONTENT_LENGTH"] = services.settings.server.max_body_bytes
    app.extensions["insightreader"] = services
    app.before_request(middleware.assign_request_id)
    app.after_request(middleware.echo_request_id)
    openapi.install(app, title="InsightReader", version="1")
    middleware.bounded_json(app)
    errors.register(app)
    collected = metrics or Metrics()
    collected.bind(services)
    metrics_api.install(app, collected)
    app.before_request(deps.authenticate_request)
    app.after_request(deps.finish_request_body)
    for blueprint in (health.bp, auth.bp, tasks.bp, articles.bp, insights.bp, events.bp, page.bp):
        app.register_blueprint(blueprint)
    return app
