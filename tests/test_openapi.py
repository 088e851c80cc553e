"""``/openapi.json`` and ``/docs`` over real HTTP: every route of the app is described
(request and response schemas, error answers, the event stream), and the docs page
works offline (everything it loads comes from the server itself)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from quart_schema.validation import QUART_SCHEMA_REQUEST_ATTRIBUTE, QUART_SCHEMA_RESPONSE_ATTRIBUTE

from insightreader import config
from insightreader.tasktypes import task_types
from insightreader.app import create_app
from insightreader.services import Services
from tests.conftest import base_config
from tests.support.process import ServerProcess, write_config
from tests.support.tasktypes import TEST_TASK_TYPES, configure

#: Routes left out of the spec on purpose: the spec and the docs page themselves, and
#: static files (Quart's, the reading page's versioned assets).
UNDOCUMENTED = {"static", "openapi", "docs.page", "docs.asset", "page.asset"}
#: Test-only routes (tests/support/tasktypes.py) are in the test server, not the product.
TEST_PREFIX = "/api/v1/test/"
#: Answers that are not JSON, on purpose: (method, path, status) → media type (None: no body).
NOT_JSON = {
    ("get", "/api/v1/sse/analysis-notifications", 200): "text/event-stream",
    ("get", "/api/v1/events", 200): "text/event-stream",
    ("get", "/metrics", 200): "text/plain; version=0.0.4; charset=utf-8",
    ("get", "/", 200): "text/html; charset=utf-8",
    ("get", "/", 304): None,
    ("get", "/manifest.webmanifest", 200): "application/manifest+json",
    ("get", "/manifest.webmanifest", 304): None,
    ("delete", "/api/v1/articles/{article_id}", 204): None,
    ("post", "/api/v1/auth/logout", 204): None,
    ("post", "/api/v1/auth/password", 204): None,
    ("delete", "/api/v1/auth/sessions/{session_id}", 204): None,
    ("delete", "/api/v1/highlights/{highlight_id}", 204): None,
    ("delete", "/api/v1/tokens/{token_id}", 204): None,
    ("delete", "/api/v1/webhooks/{webhook_id}", 204): None,
}
PUBLIC = {"/api/v1/auth/register", "/api/v1/auth/login", "/api/v1/auth/refresh"}
STREAM_EVENTS = {
    "connected", "task_queued", "task_started", "task_progress", "task_completed", "task_failed",
    "task_cancelled", "reset", "heartbeat", "closed", "article_saved", "import_progress", "import_finished",
    "batch_progress", "batch_finished",
}
_PARAM = re.compile(r"<(?:[^:<>]*:)?([^<>]+)>")


@pytest.fixture(scope="module")
def spec_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("openapi")
    server = ServerProcess(write_config(tmp / "config.toml", base_config(tmp))).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def spec(spec_server: ServerProcess) -> dict[str, Any]:
    response = httpx.get(spec_server.url + "/openapi.json", timeout=30)
    assert response.status_code == 200
    return response.json()  # type: ignore[no-any-return]


@pytest.fixture
async def app_routes(tmp_path: Path) -> list[tuple[str, str, set[str], Any]]:
    """(path in OpenAPI form, endpoint, methods, view function) of every route of the
    app the server runs, built here in-process from the same code (on its own database)."""
    settings = config.load(write_config(tmp_path / "config.toml", base_config(tmp_path)))
    services = await Services.open(settings, {**task_types(settings), **TEST_TASK_TYPES})
    try:
        app = create_app(services)
        configure(app)
        return [
            (
                _PARAM.sub(r"{\1}", rule.rule),
                rule.endpoint,
                set(rule.methods or ()) - {"HEAD", "OPTIONS"},
                app.view_functions[rule.endpoint],
            )
            for rule in app.url_map.iter_rules()
        ]
    finally:
        await services.close()


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
        if not path.startswith(TEST_PREFIX)
    ]


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    assert ref.startswith("#/components/schemas/"), ref
    return spec["components"]["schemas"][ref.rsplit("/", 1)[1]]  # type: ignore[no-any-return]


async def test_every_route_is_in_the_spec(spec: dict[str, Any], app_routes: list[tuple[str, str, set[str], Any]]) -> None:
    routes = {
        (path, method.lower())
        for path, endpoint, methods, _ in app_routes
        if endpoint not in UNDOCUMENTED and not path.startswith(TEST_PREFIX)
        for method in methods
    }
    documented = {(path, method) for path, method, _ in _operations(spec)}
    assert routes - documented == set(), "routes missing from /openapi.json"
    assert documented - routes == set(), "documented operations that are no route"
    assert ("/api/v1/sse/analysis-notifications", "get") in documented
    assert ("/metrics", "get") in documented


async def test_json_routes_have_request_and_response_schemas(
    spec: dict[str, Any], app_routes: list[tuple[str, str, set[str], Any]]
) -> None:
    operations = {(path, method): operation for path, method, operation in _operations(spec)}
    for path, endpoint, methods, view in app_routes:
        if endpoint in UNDOCUMENTED or path.startswith(TEST_PREFIX):
            continue
        for method in (m.lower() for m in methods):
            operation = operations[(path, method)]
            where = f"{method.upper()} {path}"
            assert operation.get("summary"), f"{where}: no summary"
            # A body the route validates is documented, required, with a schema and examples.
            if getattr(view, QUART_SCHEMA_REQUEST_ATTRIBUTE, None) is not None:
                body = operation.get("requestBody")
                assert body is not None, f"{where}: its body is not documented"
                schema = body["content"]["application/json"]["schema"]
                assert schema.get("properties"), f"{where}: body schema without properties"
                assert schema.get("examples"), f"{where}: body schema without examples"
                assert body["required"] is (endpoint != "articles.thinking_lens"), where
                for status in ("400", "413", "422"):
                    assert status in operation["responses"], f"{where}: no {status}"
            responses = operation["responses"]
            successes = {int(s) for s in responses if 200 <= int(s) < 400}
            assert successes, f"{where}: no success answer"
            for status in successes:
                answer = responses[str(status)]
                assert answer["description"], f"{where} {status}: no description"
                media = NOT_JSON.get((method, path, status), "application/json")
                if media is None:
                    assert "content" not in answer, f"{where} {status}"
                    continue
                schema = answer["content"][media]["schema"]
                if media == "application/json":
                    assert _resolve(spec, schema).get("properties"), f"{where} {status}: no JSON schema"
            if getattr(view, QUART_SCHEMA_RESPONSE_ATTRIBUTE, None) is None:
                assert all(NOT_JSON.get((method, path, s), "x") != "x" for s in successes), (
                    f"{where}: a JSON answer without a response model"
                )
            # Errors: every answer of 400 or above is an ErrorResponse with examples.
            errors = {int(s) for s in responses if int(s) >= 400}
            if path.startswith("/api/v1/"):
                assert 500 in errors, where
                if path not in PUBLIC:
                    assert 401 in errors and operation.get("security") == [{"bearer": []}], where
            for status in errors:
                content = responses[str(status)]["content"]["application/json"]
                error = _resolve(spec, content["schema"])
                assert _resolve(spec, error["properties"]["error"])["required"] == ["code", "message"], where
                assert content["examples"], f"{where} {status}: no example"
                for example in content["examples"].values():
                    assert set(example["value"]["error"]) == {"code", "message"}


async def test_specific_errors_are_documented(spec: dict[str, Any]) -> None:
    paths = spec["paths"]

    def codes(path: str, method: str, status: int) -> set[str]:
        content = paths[path][method]["responses"][str(status)]["content"]["application/json"]
        return {e["value"]["error"]["code"] for e in content["examples"].values()}

    assert codes("/api/v1/tasks/{task_id}", "get", 404) == {"not_found"}
    assert codes("/api/v1/tasks/{task_id}/cancel", "post", 409) == {"conflict"}
    assert codes("/api/v1/insights/generate", "post", 429) == {"too_many_pending", "quota_exceeded"}
    assert codes("/api/v1/insights/generate", "post", 503) >= {"shutting_down", "storage_busy"}
    assert codes("/api/v1/insights/generate", "post", 413) == {"payload_too_large"}
    assert codes("/api/v1/sse/analysis-notifications", "get", 429) == {"too_many_streams"}
    assert codes("/api/v1/sse/analysis-notifications", "get", 400) == {"invalid_last_event_id"}
    assert codes("/api/v1/auth/login", "post", 401) == {"unauthorized"}
    assert codes("/readyz", "get", 503) >= {"shutting_down"}
    # A submit answers 202 while pending, 200 with the result on a dedup hit.
    submit = paths["/api/v1/insights/generate"]["post"]["responses"]
    assert {"200", "202"} <= set(submit)


async def test_event_stream_is_described(spec: dict[str, Any]) -> None:
    for path in ("/api/v1/sse/analysis-notifications", "/api/v1/events"):
        operation = spec["paths"][path]["get"]
        stream = operation["responses"]["200"]["content"]["text/event-stream"]
        assert set(stream["x-events"]) == STREAM_EVENTS
        for name, ref in stream["x-events"].items():
            schema = _resolve(spec, ref)
            assert schema["type"] == "object", name
        assert "event: connected" in stream["example"]
        parameters = {(p["in"], p["name"]) for p in operation["parameters"]}
        assert {("query", "ticket"), ("query", "token"), ("query", "last_event_id"), ("header", "last-event-id")} <= parameters
    progress = _resolve(spec, {"$ref": "#/components/schemas/EventTaskProgress"})
    assert set(progress["required"]) == {"task_id", "task_type", "attempt", "index", "delta"}


_EXTERNAL = re.compile(r"(?i)(?:https?:)?//[a-z0-9.-]+")
_LINKS = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""")


async def test_docs_are_served_offline(spec_server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=spec_server.url, timeout=30) as http:
        page = await http.get("/docs")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert not _EXTERNAL.findall(page.text), _EXTERNAL.findall(page.text)
        links = _LINKS.findall(page.text)
        assert any(link.endswith(".js") for link in links) and any(link.endswith(".css") for link in links)
        for link in links:
            assert link.startswith("/"), link
            asset = await http.get(link)
            assert asset.status_code == 200, link
            if link.endswith(".js"):
                assert asset.headers["content-type"].startswith("text/javascript")
                assert not _EXTERNAL.findall(asset.text) or "swagger-ui-bundle" in link, link
            elif link.endswith(".css"):
                assert asset.headers["content-type"].startswith("text/css")
        # The route list for readers without JavaScript.
        assert "/api/v1/insights/generate" in page.text
        # quart-schema's own pages (which load from CDNs) are not served.
        for path in ("/redocs", "/scalar"):
            assert (await http.get(path)).status_code == 404
        assert (await http.get("/docs/assets/../config.toml")).status_code == 404


async def test_docs_render_in_a_browser_without_network(spec_server: ServerProcess) -> None:
    from tests.support.browser import chromium, open_page

    origin = urlsplit(spec_server.url).netloc
    outside: list[str] = []
    async with chromium() as browser:
        context, page, watch = await open_page(browser, "about:blank")
        try:

            async def only_local(route: Any) -> None:
                if urlsplit(route.request.url).netloc == origin:
                    await route.continue_()
                else:
                    outside.append(route.request.url)
                    await route.abort()

            await context.route("**/*", only_local)
            await page.goto(spec_server.url + "/docs")
            await page.wait_for_selector(".opblock", timeout=15_000)
            assert await page.locator(".opblock").count() >= 20
            assert await page.get_by_text("/api/v1/insights/generate", exact=True).count() >= 1
        finally:
            await context.close()
    assert outside == [], outside
    watch.assert_clean()
