"""Bad input on every route, over real HTTP: each answer is a 4xx JSON
``{"error": {"code", "message"}}`` (never a 500, never HTML, never a traceback), nothing is
stored, and the server stays healthy.

The tables below name the routes of today one by one; ``test_every_documented_body_route``
also walks ``/openapi.json``, so a JSON route added later is covered without editing this
file."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import base_config
from tests.support import db
from tests.support.process import ServerProcess, write_config

MAX_BODY = 4096
PASSWORD = "correct horse battery"
#: tables whose rows a refused request must not change
STATE_TABLES = ("users", "tasks", "events", "articles", "article_lenses", "usage")


@dataclass
class Target:
    server: ServerProcess
    database: Path
    http: httpx.Client
    token: str
    refresh_token: str
    task_id: str  # the owner's completed `echo` task

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def state(self) -> dict[str, int]:
        """Row counts (and the largest rowid, so a row added and one deleted still
        shows) of every table a request could write to."""
        with closing(db.connect(self.database)) as conn:
            names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            out = {}
            for table in STATE_TABLES:
                if table in names:
                    out[table] = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                    out[f"{table}.max_rowid"] = conn.execute(f"SELECT max(rowid) FROM {table}").fetchone()[0]
            return out

    def error_lines(self) -> int:
        return sum("level=error" in line for line in list(self.server.logs))


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    tmp = tmp_path_factory.mktemp("bad_input")
    config = base_config(tmp, server={"max_body_bytes": MAX_BODY})
    server = ServerProcess(write_config(tmp / "config.toml", config)).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            r = http.post("/api/v1/auth/register", json={"username": "owner", "password": PASSWORD})
            assert r.status_code == 201, r.text
            tokens = http.post("/api/v1/auth/login", json={"username": "owner", "password": PASSWORD}).json()
            headers = {"Authorization": f"Bearer {tokens['access_token']}"}
            r = http.post("/api/v1/test/tasks/echo", json={"input": {"n": 1}}, headers=headers)
            assert r.status_code == 202, r.text
            task_id = r.json()["task_id"]
            deadline = time.monotonic() + 20
            while http.get(f"/api/v1/tasks/{task_id}", headers=headers).json()["status"] != "completed":
                assert time.monotonic() < deadline, "the echo task did not complete"
                time.sleep(0.02)
            yield Target(
                server,
                Path(config["database"]["path"]),
                http,
                tokens["access_token"],
                tokens["refresh_token"],
                task_id,
            )
    finally:
        server.stop()


def assert_error(response: httpx.Response, *statuses: int) -> dict[str, str]:
    """A 4xx JSON error of the shape every error has."""
    assert response.status_code in statuses, (response.status_code, response.text)
    assert 400 <= response.status_code < 500
    assert response.headers.get("content-type", "").startswith("application/json"), response.headers
    assert "Traceback" not in response.text and "<html" not in response.text.lower()
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert isinstance(body["error"]["code"], str) and body["error"]["code"]
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


@contextmanager
def nothing_changes(target: Target) -> Iterator[None]:
    """Nothing stored, no error logged, and the server healthy after."""
    before, errors = target.state(), target.error_lines()
    yield
    assert target.state() == before
    assert target.http.get("/healthz").status_code == 200
    assert target.error_lines() == errors, "\n".join(target.server.logs[-5:])


def send(target: Target, method: str, path: str, body: bytes | None, headers: dict[str, str] | None = None) -> httpx.Response:
    headers = {"Content-Type": "application/json", **(headers or {})}
    return target.http.request(method, path, content=body, headers=headers)


# --- bodies that are not a JSON object of the right shape --------------------------------------

#: name -> (raw body bytes, the statuses that may answer it)
MALFORMED = {
    "malformed-json": (b'{"username": "abc", ', (400,)),
    "trailing-garbage": (b"{} {}", (400,)),
    "empty-body": (b"", (400,)),
    "not-json": (b"username=abc&password=abc", (400,)),
    "single-quotes": (b"{'username': 'abc'}", (400,)),
    "invalid-utf8": (b'{"username": "\xff\xfe\xfd"}', (400,)),
    "utf8-encoded-surrogate": (b'{"username": "\xed\xa0\x80"}', (400,)),
    "deeply-nested": (b"[" * 3000, (400,)),
    "json-array": (b'[{"username": "abc"}]', (400, 422)),
    "empty-array": (b"[]", (400, 422)),
    "json-string": (b'"abc"', (400, 422)),
    "json-number": (b"42", (400, 422)),
    "json-null": (b"null", (400, 422)),
    "json-true": (b"true", (400, 422)),
    "empty-object": (b"{}", (400, 422)),
    "lone-surrogate-key": (b'{"\\ud800": "x"}', (400, 422)),
    "oversized": (b'{"username": "' + b"a" * (MAX_BODY + 1) + b'"}', (413,)),
}

#: The JSON routes of today, each with a body it would accept.
AUTH_ROUTES = {
    "/api/v1/auth/register": {"username": "fresh_user", "password": "a good password"},
    "/api/v1/auth/login": {"username": "owner", "password": PASSWORD},
    "/api/v1/auth/refresh": {"refresh_token": "<refresh>"},
}


def valid_body(target: Target, path: str) -> dict[str, Any]:
    body = dict(AUTH_ROUTES[path])
    if "refresh_token" in body:
        body["refresh_token"] = target.refresh_token
    return body


@pytest.mark.parametrize("path", list(AUTH_ROUTES))
@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_body(target: Target, path: str, case: str) -> None:
    body, statuses = MALFORMED[case]
    with nothing_changes(target):
        error = assert_error(send(target, "POST", path, body), *statuses)
    if statuses == (413,):
        assert error["code"] == "payload_too_large"
    elif statuses == (400,):
        assert error["code"] == "invalid_json"


def _raw(value: str) -> str:
    """A JSON string literal written with escapes, as a client would send it."""
    return json.dumps(value)


#: name -> the JSON text of a bad value for a string field
BAD_STRINGS = {
    "lone-high-surrogate": '"\\ud800"',
    "lone-low-surrogate": '"\\udfff"',
    "surrogate-inside-text": '"abc\\ud800defghij"',
    "reversed-surrogate-pair": '"\\udc00\\ud800abcdefgh"',
    "empty-string": '""',
    "integer": "12345678",
    "float": "1.5",
    "boolean": "true",
    "null": "null",
    "array": '["abcdefghij"]',
    "object": '{"value": "abcdefghij"}',
}


def _body_with(fields: dict[str, Any], field: str, raw_value: str | None) -> bytes:
    """The JSON text of ``fields`` with ``field`` set to ``raw_value`` (JSON text, so lone
    surrogates travel as escapes), or left out when ``raw_value`` is None."""
    parts = []
    for key, value in fields.items():
        if key == field:
            if raw_value is not None:
                parts.append(f"{_raw(key)}: {raw_value}")
        else:
            parts.append(f"{_raw(key)}: {_raw(value)}")
    return ("{" + ", ".join(parts) + "}").encode()


FIELD_CASES = [
    (path, field, case)
    for path, fields in AUTH_ROUTES.items()
    for field in fields
    for case in [*BAD_STRINGS, "missing"]
]


@pytest.mark.parametrize(("path", "field", "case"), FIELD_CASES, ids=[f"{p.rsplit('/', 1)[1]}-{f}-{c}" for p, f, c in FIELD_CASES])
def test_bad_field(target: Target, path: str, field: str, case: str) -> None:
    fields = valid_body(target, path)
    body = _body_with(fields, field, None if case == "missing" else BAD_STRINGS[case])
    with nothing_changes(target):
        error = assert_error(send(target, "POST", path, body), 422)
    assert error["code"] == "validation_error"
    assert field in error["message"], error


@pytest.mark.parametrize("path", list(AUTH_ROUTES))
@pytest.mark.parametrize("case", ["extra-field", "renamed-field", "text-plain", "form-urlencoded", "no-content-type"])
def test_wrong_shape_of_an_otherwise_good_body(target: Target, path: str, case: str) -> None:
    fields = valid_body(target, path)
    headers: dict[str, str] = {}
    if case == "extra-field":
        body = json.dumps({**fields, "is_admin": True}).encode()
    elif case == "renamed-field":
        first = next(iter(fields))
        body = json.dumps({first.upper(): fields[first], **{k: v for k, v in fields.items() if k != first}}).encode()
    else:
        body = json.dumps(fields).encode()
        headers["Content-Type"] = {
            "text-plain": "text/plain",
            "form-urlencoded": "application/x-www-form-urlencoded",
            "no-content-type": "",
        }[case]
    with nothing_changes(target):
        assert_error(send(target, "POST", path, body, headers), 400, 415, 422)


def test_the_good_bodies_are_accepted(target: Target) -> None:
    """The control for the tables above: the bodies they spoil are good ones."""
    expected = {"/api/v1/auth/register": 201, "/api/v1/auth/login": 200, "/api/v1/auth/refresh": 200}
    for path, status in expected.items():
        r = send(target, "POST", path, json.dumps(valid_body(target, path)).encode())
        assert r.status_code == status, (path, r.text)
    # a password with non-ASCII (but valid) text is fine, and stored as given
    body = {"username": "unicode_user", "password": "pässwörd ✓ 密码"}
    assert send(target, "POST", "/api/v1/auth/register", json.dumps(body).encode()).status_code == 201
    assert send(target, "POST", "/api/v1/auth/login", json.dumps(body, ensure_ascii=False).encode()).status_code == 200


# --- routes that take no body: a body is ignored, whatever it holds -------------------------------

BODILESS = [
    ("GET", "/api/v1/auth/me"),
    ("POST", "/api/v1/sse/ticket"),
    ("GET", "/api/v1/tasks"),
    ("GET", "/api/v1/tasks/{task}"),
    ("POST", "/api/v1/tasks/{task}/cancel"),
    ("POST", "/api/v1/tasks/{task}/retry"),
    ("GET", "/api/v1/tasks/no-such-task"),
    ("POST", "/api/v1/tasks/no-such-task/cancel"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
]
JUNK = ["malformed-json", "json-array", "invalid-utf8", "deeply-nested", "lone-surrogate-key", "oversized"]


@pytest.mark.parametrize("junk", JUNK)
@pytest.mark.parametrize(("method", "path"), BODILESS, ids=[f"{m}-{p}" for m, p in BODILESS])
def test_a_body_on_a_route_that_takes_none(target: Target, method: str, path: str, junk: str) -> None:
    path = path.format(task=target.task_id)
    plain = target.http.request(method, path, headers=target.auth)
    assert plain.status_code < 500, plain.text
    with nothing_changes(target):
        r = send(target, method, path, MALFORMED[junk][0], target.auth)
    assert r.status_code < 500 and r.headers["content-type"].startswith("application/json"), r.text
    if junk == "oversized":
        assert r.status_code in (plain.status_code, 413), r.text
    else:
        assert r.status_code == plain.status_code, r.text
    if r.status_code >= 400:
        assert_error(r, r.status_code)
    # the ticket route answers a new ticket each time; the rest answer the same
    if method == "GET" and path != "/readyz" and r.status_code == 200:
        assert r.json() == plain.json()


# --- query strings, path parameters, headers --------------------------------------------------

QUERIES = [
    ("limit=abc", 422),
    ("limit=1.5", 422),
    ("limit=", 422),
    ("limit=1e3", 422),
    ("status=bogus", 422),
    ("status=", 422),
    ("status=PENDING", 422),
    ("cursor=garbage!", 422),
    ("cursor=", 422),
    ("cursor=%ED%A0%80", 422),
    ("cursor=%FF%FE", 422),
    ("cursor=" + "A" * 3000, 422),
    # documented: limit is clamped to 1..100; unknown filters match nothing
    ("limit=-5", 200),
    ("limit=0", 200),
    ("limit=100000000000000000000000", 200),
    ("task_type=%ED%A0%80", 200),
    ("task_type=%00", 200),
    ("unknown=1", 200),
]


@pytest.mark.parametrize(("query", "status"), QUERIES, ids=[q[:40] for q, _ in QUERIES])
def test_task_list_query(target: Target, query: str, status: int) -> None:
    with nothing_changes(target):
        r = target.http.get(f"/api/v1/tasks?{query}", headers=target.auth)
    if status == 200:
        assert r.status_code == 200, r.text
        assert set(r.json()) == {"items", "next_cursor"}
    else:
        assert assert_error(r, status)["code"] == "validation_error"


TASK_IDS = ["%ED%A0%80", "%00", "%FF", "a" * 3000, "..%2F..%2Fetc%2Fpasswd", "%F0%9F%98%80", "1%20OR%201%3D1", "%27%3B--"]


@pytest.mark.parametrize("suffix", ["", "/cancel", "/retry"])
@pytest.mark.parametrize("task_id", TASK_IDS, ids=[t[:20] for t in TASK_IDS])
def test_odd_task_ids_are_404(target: Target, task_id: str, suffix: str) -> None:
    method = "GET" if suffix == "" else "POST"
    with nothing_changes(target):
        r = target.http.request(method, f"/api/v1/tasks/{task_id}{suffix}", headers=target.auth)
        assert assert_error(r, 404)["code"] == "not_found"


@pytest.mark.parametrize(
    "value",
    [b"Bearer \xff\xfe", b"Bearer \xed\xa0\x80", b"\xff", b"Bearer " + b"A" * 3000, b"Bearer a.b.c.d.e"],
    ids=["latin1-bytes", "utf8-surrogate", "no-scheme", "long", "five-parts"],
)
def test_odd_authorization_headers_are_401(target: Target, value: bytes) -> None:
    with nothing_changes(target):
        r = target.http.get("/api/v1/auth/me", headers={"Authorization": value})  # type: ignore[dict-item]
        assert assert_error(r, 401)["code"] == "unauthorized"


@pytest.mark.parametrize("key", ["", "x" * 256, "tab\there", "new\u0085line"], ids=["empty", "too-long", "tab", "nel"])
def test_bad_idempotency_key_is_refused(target: Target, key: str) -> None:
    headers = {**target.auth, "Idempotency-Key": key.encode("utf-8")}  # type: ignore[dict-item]
    with nothing_changes(target):
        r = send(target, "POST", "/api/v1/test/tasks/echo", b'{"input": {"n": 2}}', headers)  # type: ignore[arg-type]
        assert assert_error(r, 400, 422)


# --- unknown routes and methods ---------------------------------------------------------------

UNKNOWN = [
    ("GET", "/nope", 404),
    ("GET", "/api/v1/nope", 404),
    ("POST", "/api/v1/nope", 404),
    ("GET", "/api/v2/tasks", 404),
    ("GET", "/api/v1/tasks/x/y/z", 404),
    ("GET", "/api/v1/auth", 404),
    ("DELETE", "/api/v1/tasks", 405),
    ("PUT", "/api/v1/tasks/x", 405),
    ("GET", "/api/v1/auth/login", 405),
    ("GET", "/api/v1/auth/register", 405),
    ("PATCH", "/api/v1/auth/me", 405),
    ("GET", "/api/v1/tasks/x/cancel", 405),
    ("GET", "/api/v1/sse/ticket", 405),
    ("POST", "/healthz", 405),
    ("DELETE", "/readyz", 405),
]


@pytest.mark.parametrize("with_token", [True, False], ids=["token", "no-token"])
@pytest.mark.parametrize(("method", "path", "status"), UNKNOWN, ids=[f"{m}-{p}" for m, p, _ in UNKNOWN])
def test_unknown_route_or_method(target: Target, method: str, path: str, status: int, with_token: bool) -> None:
    with nothing_changes(target):
        r = target.http.request(method, path, headers=target.auth if with_token else {})
        error = assert_error(r, status)
    assert error["code"] == ("not_found" if status == 404 else "method_not_allowed")
    if status == 405:
        assert method not in r.headers["allow"] and r.headers["allow"], r.headers


# --- every documented JSON route (from /openapi.json) -------------------------------------------


def _sample(name: str, schema: dict[str, Any]) -> Any:
    """A plausible value for a property (only spoilt copies of it are ever sent)."""
    options = schema.get("anyOf", [schema])
    kinds = [o.get("type") for o in options]
    if name == "username":
        return "sample_user"
    if name == "url":
        return "https://example.com/a"
    if "string" in kinds:
        return "Some selected text for the sample body."
    if "integer" in kinds:
        return 0
    if "array" in kinds:
        return []
    if "boolean" in kinds:
        return False
    return None


def _body_routes(target: Target) -> list[tuple[str, dict[str, Any]]]:
    spec = target.http.get("/openapi.json").json()
    routes = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if method != "post" or "requestBody" not in operation or path.startswith("/api/v1/test/"):
                continue
            if not operation["requestBody"].get("required"):
                continue  # an optional body (e.g. a thinking lens's {"priority"}): empty is fine
            content = operation["requestBody"]["content"]
            if "application/json" not in content:
                continue  # a file (POST /imports): tests/test_imports_api.py sends it bad files
            schema = content["application/json"]["schema"]
            if "$ref" in schema:
                schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
            routes.append((path, schema))
    return routes


def test_every_documented_body_route_refuses_bad_bodies(target: Target) -> None:
    routes = _body_routes(target)
    assert {path for path, _ in routes} >= set(AUTH_ROUTES)
    failures: list[str] = []
    cases = 0
    for path, schema in routes:
        concrete = path.replace("{", "").replace("}", "")  # a path parameter named as itself
        properties = schema.get("properties", {})
        fields = {name: _sample(name, prop) for name, prop in properties.items()}
        bodies: list[tuple[str, bytes, tuple[int, ...]]] = [
            (case, body, statuses) for case, (body, statuses) in MALFORMED.items()
        ]
        bodies.append(("extra-field", json.dumps({**fields, "unexpected_field": 1}).encode(), (400, 422)))
        for name, prop in properties.items():
            kinds = [o.get("type") for o in prop.get("anyOf", [prop])]
            bad = ["lone-high-surrogate", "surrogate-inside-text", "array", "object"] if "string" in kinds else ["array", "object", "float"]
            if "string" not in kinds:
                bad.append("lone-high-surrogate")
            for case in bad:
                bodies.append((f"{name}={case}", _body_with(fields, name, BAD_STRINGS[case]), (400, 422)))
            if name in schema.get("required", []):
                bodies.append((f"{name}=missing", _body_with(fields, name, None), (400, 422)))
        for case, body, statuses in bodies:
            cases += 1
            try:
                with nothing_changes(target):
                    assert_error(send(target, "POST", concrete, body, target.auth), *statuses)
            except AssertionError as exc:
                failures.append(f"POST {path} [{case}]: {str(exc)[:300]}")
    print(f"\n{cases} bad bodies on {len(routes)} documented JSON routes")
    assert not failures, "\n".join(failures)
