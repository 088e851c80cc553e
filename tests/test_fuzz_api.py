"""Fuzzing over real HTTP: schemathesis walks every operation of the live
``/openapi.json`` as a logged-in user, and hypothesis throws the hostile strings of
``tests.support.hostile`` at the submit and auth routes.

What must hold, for every answer:

* no 5xx, except a 503 the operation documents;
* the answer is documented: its status code, its content type and its body schema
  (the event stream's events too, each against its event's data schema);
* every 4xx/5xx body is exactly ``{"error": {"code", "message"}}``;
* data the schema calls valid is accepted (2xx, or a 4xx the state explains: 404 for an
  id that does not exist, 409, 429…), and data it calls invalid is refused with a 4xx;
* the server logs no error while it is fuzzed, and ``/healthz`` answers afterwards.

Bounded and reproducible for CI: ``FUZZ_MAX_EXAMPLES`` cases per operation and mode
(default 25), derandomized (the same cases on every run). Raise it by hand to dig
deeper, e.g. ``FUZZ_MAX_EXAMPLES=500 pytest tests/test_fuzz_api.py`` (docs/design.md, "Fuzzing").

Schemathesis runs here through its Python API (``APIOperation.as_strategy`` under our
own ``@given``), not its pytest plugin: ``schemathesis.pytest.from_fixture`` — the only
way to fuzz a schema that exists only once a fixture has started the server — fails on
pytest 9.2 (it reads ``Item._nodeid``, which pytest 9.2 removed).
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.checks import CheckContext, load_all_checks
from schemathesis.core.failures import FailureGroup

from tests.conftest import base_config
from tests.support import hostile
from tests.support.process import ServerProcess, write_config

#: ``server.max_body_bytes`` of the fuzzed server: small, so text near it is cheap.
MAX_BODY = 64 * 1024
MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "25"))
#: Fuzz only the operations whose label (`POST /api/v1/...`) this regular expression finds.
ONLY = os.environ.get("FUZZ_ONLY", "")
USERNAME = "fuzzer"
#: Unlike every example in the schema, so a generated body never guesses it.
PASSWORD = "fuzz-9c1e-7b3a-long-and-unguessable"
#: Routes only the test server has (they drive test task types, one of which SIGKILLs it).
TEST_ONLY = "/api/v1/test/"
#: Requests that end the session they are sent with (or others of the same user):
#: each such case gets a session of its own, so the fuzzer's session stays valid.
SESSION_ENDING_AUTH = ("/api/v1/auth/",)
SESSION_KEEPING_AUTH = {"/api/v1/auth/register", "/api/v1/auth/login", "/api/v1/auth/refresh", "/api/v1/auth/me"}
#: Statuses that data the schema calls valid may still get: the state decides them
#: (no such id, a task in the wrong state, over a limit), not the shape of the request.
POSITIVE_STATUSES = {401, 403, 404, 409, 429, 503}
#: How data the schema calls invalid may be refused (schemathesis' list, with 413).
NEGATIVE_STATUSES = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"]
#: Where the webhooks the fuzzer creates point: loopback, the discard port, closed.
NOWHERE = "http://127.0.0.1:9/fuzz"


@dataclass
class Target:
    """The server under fuzzing, its user, and ids of things that user owns."""

    server: ServerProcess
    http: httpx.Client
    token: str
    ids: dict[str, str] = field(default_factory=dict)

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def error_lines(self) -> list[str]:
        return [line for line in list(self.server.logs) if "level=error" in line or "Traceback" in line]

    def login(self) -> str:
        response = self.http.post("/api/v1/auth/login", json={"username": USERNAME, "password": PASSWORD})
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    def wait_finished(self, task_id: str) -> None:
        deadline = time.monotonic() + 30
        while self.http.get(f"/api/v1/tasks/{task_id}", headers=self.auth).json()["status"] not in ("completed", "failed"):
            assert time.monotonic() < deadline, f"task {task_id} did not finish"
            time.sleep(0.02)

    def save_article(self, title: str) -> tuple[str, str]:
        body = {"title": title, "content": f"{title}. Street trees cool the air around them by shading the pavement."}
        response = self.http.post("/api/v1/articles/save-with-analysis", json=body, headers=self.auth)
        assert response.status_code in (200, 202), response.text
        return response.json()["article_id"], response.json()["task_id"]


def start_target(tmp: Path, **sections: dict[str, Any]) -> tuple[ServerProcess, Target]:
    """A server whose first account (the administrator, once registration closes after
    it) is the fuzzing user, with an article and a finished task of its own (and the
    name of a lens, for the paths that take one)."""
    config = base_config(tmp, auth={"access_token_lifetime": 3600}, **sections)
    server = ServerProcess(write_config(tmp / "config.toml", config)).start()
    http = httpx.Client(base_url=server.url, timeout=30)
    response = http.post("/api/v1/auth/register", json={"username": USERNAME, "password": PASSWORD})
    assert response.status_code == 201, response.text
    target = Target(server, http, "")
    target.token = target.login()
    article_id, task_id = target.save_article("Fuzzing")
    target.wait_finished(task_id)
    lenses = http.get("/api/v1/thinking-lenses", headers=target.auth).json()["lenses"]
    target.ids = {"article_id": article_id, "task_id": task_id, "lens_type": lenses[0]["type"]}
    return server, target


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    server, found = start_target(
        tmp_path_factory.mktemp("fuzz"), server={"max_body_bytes": MAX_BODY}, library={"fetch_allow_private": True}
    )
    try:
        yield found
    finally:
        found.http.close()
        server.stop()
        print("--- server errors ---\n" + "\n".join(found.error_lines()[-50:]))


# --- checks of our own ------------------------------------------------------------------


def error_shape(ctx: CheckContext, response: schemathesis.Response, case: Case) -> bool:
    """Every error is exactly ``{"error": {"code", "message"}}``, both non-empty strings."""
    if response.status_code < 400:
        return True
    assert "Traceback" not in response.text, "a traceback in an answer"
    try:
        body = response.json()
    except ValueError:
        raise AssertionError(f"a {response.status_code} that is not JSON: {response.text[:200]!r}") from None
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error, dict) and set(error) == {"code", "message"}, body
    assert all(isinstance(error[k], str) and error[k] for k in ("code", "message")), body
    return True


# --- schemathesis over every operation ----------------------------------------------------


def fuzz_config(target: Target) -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "base-url": target.server.url,
            # Every case carries the user's token (`call`); `ignored_auth` probes without it.
            "generation": {"with-security-parameters": False},
            # An event stream is read until its first event (`connected`) or this.
            "request-timeout": 10,
            "max-stream-events": 1,
            "checks": {
                "not_a_server_error": {"expected-statuses": ["2xx", "3xx", "4xx", "503"]},
                # Invalid data is refused with a 4xx: 413 too, for a generated body
                # over `server.max_body_bytes` (schemathesis' list leaves it out).
                "negative_data_rejection": {"expected-statuses": NEGATIVE_STATUSES},
            },
        }
    )


def accepted_when_valid(response: schemathesis.Response, case: Case) -> None:
    """A case the schema calls valid is accepted, or refused for a reason of state
    (``POSITIVE_STATUSES``); a list may also refuse a generated cursor (422), since a
    cursor is opaque: the schema says it is a string, not which strings the server
    gave out; a new password may be refused as ``weak_password`` (422), by rules
    (a common password, the username) that a schema cannot state; a highlight's
    quote as ``quote_not_found`` (422) when the article's text does not hold it; and
    an import's file as ``bad_import`` (400) when it is not a file of its format."""
    status = response.status_code
    if 200 <= status < 400 or status in POSITIVE_STATUSES:
        return
    if status == 422 and "cursor" in (case.query or {}) and "cursor" in response.json()["error"]["message"]:
        return
    if status == 422 and response.json()["error"]["code"] in ("weak_password", "quote_not_found"):
        return
    if status == 400 and response.json()["error"]["code"] == "bad_import":
        return
    raise AssertionError(
        f"a case the schema calls valid was refused: {status} {response.text[:300]}\n"
        f"Reproduce with: {case.as_curl_command()}"
    )


def session_ending(method: str, path: str) -> bool:
    return path.startswith(SESSION_ENDING_AUTH) and path not in SESSION_KEEPING_AUTH and method.upper() != "GET"


def has_inputs(operation: schemathesis.APIOperation) -> bool:
    """Whether a case can be made invalid: a body, a query or a header parameter (the
    bearer token aside, which every case carries; a path parameter that takes any
    string cannot be)."""
    headers = [p for p in operation.headers if p.name.lower() != "authorization"]
    return bool(len(operation.body)) or bool(list(operation.query)) or bool(headers)


class Sessions:
    """Fresh sessions of the fuzzing user for requests that may end theirs (logout,
    password change, ending a session): one is used until an answer succeeds, then
    replaced. Opened before fuzzing starts, while logins are not yet throttled."""

    def __init__(self, target: Target, count: int) -> None:
        self.target = target
        self.spare = [target.login() for _ in range(count)]
        self.current: str | None = None

    def headers(self) -> dict[str, str]:
        if self.current is None:
            self.current = self.spare.pop() if self.spare else self.target.login()
        return {"Authorization": f"Bearer {self.current}"}

    def answered(self, status: int) -> None:
        if 200 <= status < 300:
            self.current = None


@dataclass
class Outcome:
    statuses: Counter[int] = field(default_factory=Counter)
    seconds: float = 0.0
    failure: str | None = None


class Fuzzer:
    """Sends schemathesis' cases as the fuzzing user and checks every answer."""

    def __init__(self, target: Target, spec: dict[str, Any]) -> None:
        load_all_checks()
        from schemathesis import checks

        self.target = target
        self.schema = schemathesis.openapi.from_dict(spec, config=fuzz_config(target))
        ending = [(m, p) for p, ops in spec["paths"].items() for m in ops if session_ending(m, p)]
        self.sessions = Sessions(target, count=3 * len(ending))
        self.http = requests.Session()
        self.checks = [
            checks.not_a_server_error,
            checks.status_code_conformance,
            checks.content_type_conformance,
            checks.response_schema_conformance,
            checks.response_headers_conformance,
            checks.negative_data_rejection,
            error_shape,
        ]
        #: Checks that send requests of their own (without credentials, with other
        #: methods): once per operation, on its first successful answer.
        self.probes = [
            checks.ignored_auth,
            checks.unsupported_method,
            checks.allow_header_conformance,
            checks.missing_required_header,
        ]
        self.probed: set[str] = set()

    def operations(self) -> Iterator[schemathesis.APIOperation]:
        for result in self.schema.get_all_operations():
            operation = result.ok()
            if not operation.path.startswith(TEST_ONLY) and re.search(ONLY, operation.label):
                yield operation

    def send(self, case: Case, mode: GenerationMode) -> schemathesis.Response:
        operation = case.operation
        if operation.path == "/api/v1/webhooks" and isinstance(case.body, dict) and isinstance(case.body.get("url"), str):
            # Deliveries follow the fuzzing user's tasks: they go to a closed port here,
            # never to the generated host (no packet leaves the machine).
            case.body["url"] = NOWHERE
        own_session = session_ending(operation.method, operation.path)
        headers = self.sessions.headers() if own_session else self.target.auth
        response = case.call(session=self.http, headers=headers)
        if own_session:
            self.sessions.answered(response.status_code)
        checks = list(self.checks)
        if operation.label not in self.probed and 200 <= response.status_code < 300:
            self.probed.add(operation.label)
            checks += self.probes
        case.validate_response(response, checks=checks, headers=headers)
        if mode is GenerationMode.POSITIVE:
            accepted_when_valid(response, case)
        return response

    def run(self, operation: schemathesis.APIOperation, mode: GenerationMode, examples: int, **fixed: Any) -> Outcome:
        """Up to ``examples`` cases of one operation in one mode (positive ones include
        the schema's own examples); the first failure, shrunk to its smallest case, is
        the outcome's."""
        outcome = Outcome()
        strategy = operation.as_strategy(mode, **fixed)
        if mode is GenerationMode.POSITIVE and not fixed:
            for from_examples in operation.get_strategies_from_examples():
                strategy |= from_examples

        @settings(
            max_examples=examples,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
            print_blob=False,
        )
        @given(case=strategy)
        def fuzz(case: Case) -> None:
            outcome.statuses[self.send(case, mode).status_code] += 1

        started = time.monotonic()
        try:
            fuzz()
        except Unsatisfiable:
            pass  # every generated case was filtered out: nothing to send
        except (FailureGroup, AssertionError) as exc:
            outcome.failure = str(exc)
        outcome.seconds = time.monotonic() - started
        return outcome


@pytest.mark.timeout(900)
def test_every_operation_as_a_logged_in_user(target: Target) -> None:
    """Schemathesis, positive and negative cases, over every operation of the live schema
    (the test-only routes aside): random ids, then the ids of the user's own article and
    task, so the paths past the 404 are fuzzed too."""
    fuzzer = Fuzzer(target, target.http.get("/openapi.json").json())
    errors_before = len(target.error_lines())
    outcomes: dict[str, Outcome] = {}
    for operation in fuzzer.operations():
        label = operation.label
        outcomes[f"positive {label}"] = fuzzer.run(operation, GenerationMode.POSITIVE, MAX_EXAMPLES)
        if has_inputs(operation):
            outcomes[f"negative {label}"] = fuzzer.run(operation, GenerationMode.NEGATIVE, MAX_EXAMPLES)
        names = {parameter.name for parameter in operation.path_parameters}
        own = {name: target.ids[name] for name in names if name in target.ids}
        if own:
            if operation.method.upper() == "DELETE" and "article_id" in own:
                own["article_id"] = target.save_article(f"To delete {len(outcomes)}")[0]
            outcomes[f"own ids {label}"] = fuzzer.run(
                operation, GenerationMode.POSITIVE, max(5, MAX_EXAMPLES // 2), path_parameters=own
            )

    print("\n".join(f"{o.seconds:6.1f}s {key}: {dict(sorted(o.statuses.items()))}" for key, o in outcomes.items()))
    failed = {key: outcome.failure for key, outcome in outcomes.items() if outcome.failure}
    assert not failed, "\n\n".join(f"=== {key}\n{failure}" for key, failure in failed.items())
    assert target.http.get("/healthz").status_code == 200
    assert target.error_lines()[errors_before:] == []


# --- hostile input, by hand-picked strategy ------------------------------------------------

#: A body each JSON route accepts (``<article>`` is the user's own article id).
SUBMIT_ROUTES: dict[str, dict[str, Any]] = {
    "/api/v1/articles/save-with-analysis": {"title": "Trees", "content": "Street trees cool the air."},
    "/api/v1/insights/generate": {"selected_text": "Street trees cool the air."},
    "/api/v1/insights/generate-buttons": {"selected_text": "Street trees cool the air.", "intent": "understand"},
    "/api/v1/meta-analysis/analyze": {"article_id": "<article>"},
    "/api/v1/articles/<article>/thinking-lens/socratic": {"priority": 0},
}
AUTH_ROUTES: dict[str, dict[str, Any]] = {
    "/api/v1/auth/register": {"username": "someone_new", "password": "a long enough password"},
    "/api/v1/auth/login": {"username": "nobody_here", "password": "a long enough password"},
    "/api/v1/auth/refresh": {"refresh_token": "eyJhbGciOiJIUzI1NiIs"},
}
HOSTILE_SETTINGS = settings(
    max_examples=MAX_EXAMPLES * 2,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def resolve(target: Target, text: str) -> str:
    return text.replace("<article>", target.ids["article_id"])


def assert_answer(response: httpx.Response) -> None:
    """Accepted, or refused with a 4xx error of the one shape; never a 5xx (a 503 the
    server says is temporary aside)."""
    assert response.status_code < 500 or response.status_code == 503, (response.status_code, response.text[:300])
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body


@pytest.fixture
def healthy(target: Target) -> Iterator[None]:
    """The server answers /healthz and logged no error once the test is over."""
    before = len(target.error_lines())
    yield
    assert target.http.get("/healthz").status_code == 200
    assert target.error_lines()[before:] == []


@pytest.mark.timeout(600)
@HOSTILE_SETTINGS
@given(data=st.data())
def test_hostile_raw_bodies(target: Target, healthy: None, data: st.DataObject) -> None:
    """Lone surrogates, invalid UTF-8, BOMs, duplicate keys, huge numbers, deep nesting
    and NUL bytes in raw bodies, on every submit and auth route."""
    path, fields = data.draw(st.sampled_from(sorted({**SUBMIT_ROUTES, **AUTH_ROUTES}.items())))
    fields = {k: resolve(target, v) if isinstance(v, str) else v for k, v in fields.items()}
    body = data.draw(hostile.hostile_bodies(fields))
    response = target.http.post(
        resolve(target, path), content=body, headers={**target.auth, "Content-Type": "application/json"}
    )
    assert_answer(response)


@pytest.mark.timeout(600)
@HOSTILE_SETTINGS
@given(data=st.data())
def test_hostile_strings_in_fields(target: Target, healthy: None, data: st.DataObject) -> None:
    """RTL, zero-width and combining characters, white space only, numbers as strings,
    ``__proto__`` keys, huge numbers and text near the body limit in each field."""
    path, fields = data.draw(st.sampled_from(sorted({**SUBMIT_ROUTES, **AUTH_ROUTES}.items())))
    fields = {k: resolve(target, v) if isinstance(v, str) else v for k, v in fields.items()}
    body = data.draw(
        st.one_of(
            hostile.hostile_object(fields),
            st.sampled_from(sorted(fields)).flatmap(
                lambda name: hostile.long_text(MAX_BODY - 64).map(lambda text: {**fields, name: text})
            ),
        )
    )
    response = target.http.post(resolve(target, path), json=body, headers=target.auth)
    assert_answer(response)


def raw_request(url: str, head: bytes, body: bytes = b"") -> int:
    """Send ``head`` (request line and headers, as given: CR/LF and all) and ``body``
    over a socket of its own; the status code of the answer."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head + b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        answer = b""
        while b"\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    status_line = answer.split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1.1 "), answer[:200]
    return int(status_line.split()[1])


@pytest.mark.timeout(600)
@HOSTILE_SETTINGS
@given(
    header=st.sampled_from([b"Idempotency-Key", b"X-Request-ID", b"Last-Event-ID"]),
    value=hostile.header_values(),
)
def test_hostile_header_values(target: Target, healthy: None, header: bytes, value: bytes) -> None:
    """CR/LF (header injection), NUL, non-ASCII and very long values of the headers the
    server reads, sent byte for byte: a submit, and the event stream."""
    token = target.token.encode()
    body = json.dumps({"selected_text": "Street trees cool the air."}).encode()
    submit = (
        b"POST /api/v1/insights/generate HTTP/1.1\r\nHost: fuzz\r\nAuthorization: Bearer " + token
        + b"\r\nContent-Type: application/json\r\n" + header + b": " + value + b"\r\n"
    )
    assert raw_request(target.server.url, submit, body) < 500
    # HEAD: the stream's headers are checked without a stream being opened.
    stream = b"HEAD /api/v1/events HTTP/1.1\r\nHost: fuzz\r\nAuthorization: Bearer " + token + b"\r\n" + header + b": " + value + b"\r\n"
    assert raw_request(target.server.url, stream) < 500
