"""Accounts and tokens over real HTTP: register, login, refresh, /auth/me; every kind of
bad token is a 401 JSON error, given before the body is looked at; users are isolated;
login timing does not tell which names exist; the generated secret survives restarts."""

from __future__ import annotations

import base64
import json
import stat
import statistics
import time
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from tests.conftest import base_config
from tests.support import db
from tests.support.cli import one_line_error, run_cli
from tests.support.client import register
from tests.support.process import ServerProcess, write_config

SECRET = base_config(Path("."))["auth"]["secret"]
PASSWORD = "correct horse battery"
MAX_BODY = 4096


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """A JSON ``{"error": {"code", "message"}}`` answer with this status."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]


def user_count(server: ServerProcess, username: str | None = None) -> int:
    path = Path(base_config(server.config_path.parent)["database"]["path"])
    with closing(db.connect(path)) as conn:
        if username is None:
            return int(conn.execute("SELECT count(*) FROM users").fetchone()[0])
        return int(
            conn.execute(
                "SELECT count(*) FROM users WHERE username = ? COLLATE NOCASE", (username,)
            ).fetchone()[0]
        )


def task_count(server: ServerProcess) -> int:
    path = Path(base_config(server.config_path.parent)["database"]["path"])
    with closing(db.connect(path)) as conn:
        return int(conn.execute("SELECT count(*) FROM tasks").fetchone()[0])


# One server for the tests that only read and register (each with its own user).
@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("auth")
    # the timing test below makes many wrong logins from one address: no lockout here
    # (tests/test_accounts.py covers throttling)
    config = base_config(tmp, server={"max_body_bytes": MAX_BODY}, auth={"max_failed_logins": 1000})
    server = ServerProcess(write_config(tmp / "config.toml", config)).start()
    yield server
    server.stop()


@pytest.fixture
async def client(shared: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=shared.url, timeout=30) as http:
        yield http


async def me(http: httpx.AsyncClient, headers: dict[str, str]) -> httpx.Response:
    return await http.get("/api/v1/auth/me", headers=headers)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- the happy path -----------------------------------------------------------------------


async def test_register_login_me_refresh(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/v1/auth/register", json={"username": "flow_user", "password": PASSWORD})
    assert r.status_code == 201, r.text
    registered = r.json()
    assert registered["username"] == "flow_user"
    assert isinstance(registered["user_id"], str) and registered["user_id"]
    assert "password" not in r.text and "hash" not in r.text

    r = await client.post("/api/v1/auth/login", json={"username": "flow_user", "password": PASSWORD})
    assert r.status_code == 200, r.text
    tokens = r.json()
    assert set(tokens) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert tokens["token_type"] == "bearer"
    assert tokens["expires_in"] == 900  # auth.access_token_lifetime default
    claims = jwt.decode(tokens["access_token"], SECRET, algorithms=["HS256"])
    assert claims["sub"] == registered["user_id"] and claims["typ"] == "access"
    assert claims["exp"] - claims["iat"] == 900

    r = await me(client, bearer(tokens["access_token"]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["user_id"] == registered["user_id"] and body["username"] == "flow_user"
    assert body["created_at"]
    # the scheme is case-insensitive (RFC 7235)
    r = await me(client, {"Authorization": f"bearer {tokens['access_token']}"})
    assert r.status_code == 200, r.text

    r = await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert r.status_code == 200, r.text
    refreshed = r.json()
    assert set(refreshed) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert refreshed["token_type"] == "bearer"
    assert (await me(client, bearer(refreshed["access_token"]))).json()["user_id"] == registered["user_id"]
    r = await client.post("/api/v1/auth/refresh", json={"refresh_token": refreshed["refresh_token"]})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    ("first", "second"),
    [("dupa_user", "dupa_user"), ("dupb_user", "DUPB_USER"), ("Dupc_User", "dupc_user")],
    ids=["same", "upper-case", "lower-case"],
)
async def test_duplicate_username_is_409_whatever_the_case(
    shared: ServerProcess, client: httpx.AsyncClient, first: str, second: str
) -> None:
    r = await client.post("/api/v1/auth/register", json={"username": first, "password": PASSWORD})
    assert r.status_code == 201, r.text
    r = await client.post("/api/v1/auth/register", json={"username": second, "password": "another password"})
    assert_error(r, 409, "conflict")
    assert user_count(shared, first) == 1
    # the original password still logs in: the duplicate changed nothing
    r = await client.post("/api/v1/auth/login", json={"username": first, "password": PASSWORD})
    assert r.status_code == 200, r.text


async def test_wrong_password_and_unknown_user_are_the_same_401(client: httpx.AsyncClient) -> None:
    await register(client, "known_user")
    wrong = await client.post("/api/v1/auth/login", json={"username": "known_user", "password": "not the password"})
    unknown = await client.post("/api/v1/auth/login", json={"username": "nobody_here", "password": "not the password"})
    assert assert_error(wrong, 401, "unauthorized") == assert_error(unknown, 401, "unauthorized")


# --- tokens that must not pass ----------------------------------------------------------------


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _sid(tokens: dict[str, str]) -> str:
    """The session id in a real token of the user."""
    return str(jwt.decode(tokens["access_token"], options={"verify_signature": False})["sid"])


def _claims(user_id: str, sid: str | None, **over: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {"sub": user_id, "typ": "access", "iat": now, "exp": now + 600}
    if sid is not None:
        claims["sid"] = sid
    for key, value in over.items():
        if value is None:
            claims.pop(key, None)
        else:
            claims[key] = value
    return claims


def _mint(user_id: str, sid: str | None, secret: str = SECRET, algorithm: str = "HS256", **over: Any) -> str:
    with warnings.catch_warnings():  # HS512 with the 52-byte test secret: "short key"
        warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
        return jwt.encode(_claims(user_id, sid, **over), secret, algorithm=algorithm)


def _tamper(token: str) -> str:
    """The same token with its payload changed (signature no longer matches)."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["exp"] += 3600
    return f"{header}.{_b64(claims)}.{signature}"


#: name -> headers built from (user_id, that user's real tokens)
BAD_AUTH: dict[str, Callable[[str, dict[str, str]], dict[str, str]]] = {
    "missing-header": lambda uid, t: {},
    "empty-header": lambda uid, t: {"Authorization": ""},
    "bearer-without-token": lambda uid, t: {"Authorization": "Bearer"},
    "basic-scheme": lambda uid, t: {"Authorization": "Basic dXNlcjpwYXNz"},
    "token-without-scheme": lambda uid, t: {"Authorization": t["access_token"]},
    "not-a-jwt": lambda uid, t: bearer("not-a-jwt"),
    "three-garbage-parts": lambda uid, t: bearer("a.b.c"),
    "expired": lambda uid, t: bearer(_mint(uid, _sid(t), iat=int(time.time()) - 1000, exp=int(time.time()) - 60)),
    "forged-signature": lambda uid, t: bearer(_mint(uid, _sid(t), secret="another-secret-" + "y" * 40)),
    "tampered-payload": lambda uid, t: bearer(_tamper(t["access_token"])),
    "alg-none": lambda uid, t: bearer(f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims(uid, _sid(t)))}."),
    "alg-HS512-same-secret": lambda uid, t: bearer(_mint(uid, _sid(t), algorithm="HS512")),
    "no-exp": lambda uid, t: bearer(_mint(uid, _sid(t), exp=None)),
    "no-iat": lambda uid, t: bearer(_mint(uid, _sid(t), iat=None)),
    "no-typ": lambda uid, t: bearer(_mint(uid, _sid(t), typ=None)),
    "no-sub": lambda uid, t: bearer(_mint(uid, _sid(t), sub=None)),
    "wrong-typ": lambda uid, t: bearer(_mint(uid, _sid(t), typ="admin")),
    "minted-refresh-typ": lambda uid, t: bearer(_mint(uid, _sid(t), typ="refresh")),
    "refresh-token": lambda uid, t: bearer(t["refresh_token"]),
    "sse-ticket": lambda uid, t: bearer(t["ticket"]),
    "unknown-user": lambda uid, t: bearer(_mint("00000000-0000-0000-0000-000000000000", _sid(t))),
    "no-sid": lambda uid, t: bearer(_mint(uid, None)),
    "unknown-session": lambda uid, t: bearer(_mint(uid, "0" * 32)),
}


@pytest.fixture(scope="module")
def victim(shared: ServerProcess) -> tuple[str, dict[str, str]]:
    """A user with a real access token, refresh token and SSE ticket."""
    with httpx.Client(base_url=shared.url, timeout=30) as http:
        r = http.post("/api/v1/auth/register", json={"username": "victim", "password": PASSWORD})
        assert r.status_code == 201, r.text
        user_id = r.json()["user_id"]
        tokens = http.post("/api/v1/auth/login", json={"username": "victim", "password": PASSWORD}).json()
        r = http.post("/api/v1/sse/ticket", headers=bearer(tokens["access_token"]))
        assert r.status_code == 200, r.text
        assert set(r.json()) == {"ticket", "expires_in"}
        tokens["ticket"] = r.json()["ticket"]
    return user_id, tokens


async def test_the_victims_own_token_works(client: httpx.AsyncClient, victim: tuple[str, dict[str, str]]) -> None:
    """The control for the table below: the same user, the same route, a good token."""
    user_id, tokens = victim
    assert (await me(client, bearer(tokens["access_token"]))).json()["user_id"] == user_id
    assert (await me(client, bearer(_mint(user_id, _sid(tokens))))).status_code == 200  # the test secret is the server's


@pytest.mark.parametrize("case", list(BAD_AUTH))
async def test_bad_credentials_are_a_401_json_error(
    client: httpx.AsyncClient, victim: tuple[str, dict[str, str]], case: str
) -> None:
    user_id, tokens = victim
    headers = BAD_AUTH[case](user_id, tokens)
    assert_error(await me(client, headers), 401, "unauthorized")
    assert_error(await client.get("/api/v1/tasks", headers=headers), 401, "unauthorized")
    assert_error(await client.post("/api/v1/sse/ticket", headers=headers), 401, "unauthorized")


@pytest.mark.parametrize(
    "case", ["access-token", "sse-ticket", "expired-refresh", "forged-refresh", "refresh-without-exp", "garbage"]
)
async def test_refresh_accepts_only_refresh_tokens(
    client: httpx.AsyncClient, victim: tuple[str, dict[str, str]], case: str
) -> None:
    user_id, tokens = victim
    now = int(time.time())
    token = {
        "access-token": tokens["access_token"],
        "sse-ticket": tokens["ticket"],
        "expired-refresh": _mint(user_id, _sid(tokens), typ="refresh", iat=now - 1000, exp=now - 60),
        "forged-refresh": _mint(user_id, _sid(tokens), typ="refresh", secret="another-secret-" + "y" * 40),
        "refresh-without-exp": _mint(user_id, _sid(tokens), typ="refresh", exp=None),
        "garbage": "garbage",
    }[case]
    r = await client.post("/api/v1/auth/refresh", json={"refresh_token": token})
    assert_error(r, 401, "unauthorized")
    # the control: a fresh refresh token of this user is accepted
    fresh = await client.post("/api/v1/auth/login", json={"username": "victim", "password": PASSWORD})
    good = await client.post("/api/v1/auth/refresh", json={"refresh_token": fresh.json()["refresh_token"]})
    assert good.status_code == 200, good.text


# --- 401 comes before the body -------------------------------------------------------------------

BODIES = {
    "invalid-json": b'{"input": ',
    "json-array": b"[1, 2]",
    "oversized": b'{"input": {"x": "' + b"a" * (MAX_BODY * 2) + b'"}}',
    "valid": b'{"input": {"x": 1}}',
}


@pytest.mark.parametrize("body", list(BODIES))
@pytest.mark.parametrize("auth", ["missing-header", "expired", "refresh-token"])
async def test_401_comes_before_the_body_is_looked_at(
    shared: ServerProcess,
    client: httpx.AsyncClient,
    victim: tuple[str, dict[str, str]],
    auth: str,
    body: str,
) -> None:
    user_id, tokens = victim
    headers = {**BAD_AUTH[auth](user_id, tokens), "Content-Type": "application/json"}
    before = task_count(shared)
    for path in ("/api/v1/test/tasks/echo", "/api/v1/sse/ticket", "/api/v1/tasks/some-id/retry"):
        r = await client.post(path, content=BODIES[body], headers=headers)
        assert_error(r, 401, "unauthorized")
    assert task_count(shared) == before


async def test_the_body_is_checked_once_authenticated(
    client: httpx.AsyncClient, victim: tuple[str, dict[str, str]]
) -> None:
    """The control for the test above: with a good token the same bodies are refused for
    what they are."""
    headers = {**bearer(victim[1]["access_token"]), "Content-Type": "application/json"}
    r = await client.post("/api/v1/test/tasks/echo", content=BODIES["invalid-json"], headers=headers)
    assert_error(r, 400)
    r = await client.post("/api/v1/test/tasks/echo", content=BODIES["oversized"], headers=headers)
    assert_error(r, 413, "payload_too_large")


# --- isolation ---------------------------------------------------------------------------------


async def test_another_users_task_is_404(client: httpx.AsyncClient) -> None:
    alice = await register(client, "iso_alice")
    bob = await register(client, "iso_bob")
    r = await alice.submit("echo", {"secret": "alice's"})
    assert r.status_code == 202, r.text
    task_id = r.json()["task_id"]
    await alice.wait_status(task_id, "completed")

    assert_error(await bob.get(f"/api/v1/tasks/{task_id}"), 404, "not_found")
    assert_error(await bob.post(f"/api/v1/tasks/{task_id}/cancel"), 404, "not_found")
    # alice would get a 409 (a completed task cannot be retried); bob must not learn that
    assert_error(await bob.post(f"/api/v1/tasks/{task_id}/retry"), 404, "not_found")
    assert await bob.all_tasks() == []
    assert_error(await alice.post(f"/api/v1/tasks/{task_id}/retry"), 409, "conflict")

    task = await alice.task(task_id)
    assert task["status"] == "completed" and task["attempts"] == 1
    assert [t["task_id"] for t in await alice.all_tasks()] == [task_id]


async def test_a_pending_task_cannot_be_cancelled_by_another_user(client: httpx.AsyncClient) -> None:
    alice = await register(client, "iso_carol")
    bob = await register(client, "iso_dave")
    r = await alice.submit("gate", {"gate": "iso-carol-gate"})
    assert r.status_code == 202, r.text
    task_id = r.json()["task_id"]
    await alice.wait_status(task_id, "running")
    assert_error(await bob.post(f"/api/v1/tasks/{task_id}/cancel"), 404, "not_found")
    assert (await alice.task(task_id))["status"] == "running"
    await alice.open_gate("iso-carol-gate")
    assert (await alice.wait_status(task_id, "completed"))["result"]["gate"] == "iso-carol-gate"


# --- login timing --------------------------------------------------------------------------------

TRIES = 7


async def test_wrong_password_takes_as_long_as_an_unknown_user(client: httpx.AsyncClient) -> None:
    await register(client, "timing_user")

    async def timed(body: dict[str, str], status: int) -> float:
        started = time.perf_counter()
        r = await client.post("/api/v1/auth/login", json=body)
        elapsed = time.perf_counter() - started
        assert r.status_code == status, r.text
        return elapsed

    # warm up both paths once (first requests pay for imports, connection set-up)
    await timed({"username": "timing_user", "password": "wrong password"}, 401)
    await timed({"username": "no_such_user", "password": "wrong password"}, 401)
    wrong, unknown, fast = [], [], []
    for i in range(TRIES):  # interleaved, so drift in machine load hits both alike
        wrong.append(await timed({"username": "timing_user", "password": f"wrong password {i}"}, 401))
        unknown.append(await timed({"username": f"nobody_{i}", "password": f"wrong password {i}"}, 401))
        # the fast path: refused by validation, no hash computed
        fast.append(await timed({"username": "timing_user", "password": ""}, 422))
    m_wrong, m_unknown, m_fast = (statistics.median(x) for x in (wrong, unknown, fast))
    print(
        f"\nlogin medians over {TRIES} tries: wrong password {m_wrong * 1000:.1f} ms,"
        f" unknown user {m_unknown * 1000:.1f} ms, validation fast path {m_fast * 1000:.1f} ms"
    )
    assert 0.5 <= m_wrong / m_unknown <= 2.0, (m_wrong, m_unknown)
    # both pay for a password hash: well above a request that computes none
    assert min(m_wrong, m_unknown) > 4 * m_fast, (m_wrong, m_unknown, m_fast)


# --- configuration of auth ------------------------------------------------------------------------


async def test_generated_secret_is_kept_beside_the_database(
    start_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = start_server(auth={"secret": ""})
    secret_file = tmp_path / "data" / "test.db.secret"
    assert secret_file.is_file()
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    secret = secret_file.read_text().strip()
    assert len(secret.encode()) >= 32
    assert secret not in server.log_text

    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        api = await register(http, "restart_user")
        r = await http.post("/api/v1/auth/login", json={"username": "restart_user", "password": PASSWORD})
        refresh_token = r.json()["refresh_token"]
    # signed with the generated secret, not the test one
    assert jwt.decode(api.token, secret, algorithms=["HS256"])["typ"] == "access"
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(api.token, SECRET, algorithms=["HS256"])

    assert server.terminate() == 0
    server.start()
    assert secret_file.read_text().strip() == secret
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        r = await api.on(http).get("/api/v1/auth/me")
        assert r.status_code == 200, r.text
        assert r.json()["username"] == "restart_user"
        r = await http.post("/api/v1/auth/refresh", json={"refresh_token": refresh_token})
        assert r.status_code == 200, r.text


@pytest.mark.parametrize("content", ["", "short\n"], ids=["empty", "too-short"])
def test_a_damaged_secret_file_stops_the_server(tmp_path: Path, content: str) -> None:
    """An empty or truncated secret file (e.g. a crash while it was written) must not
    become a guessable signing key."""
    config = write_config(tmp_path / "config.toml", base_config(tmp_path, auth={"secret": ""}))
    secret_file = tmp_path / "data" / "test.db.secret"
    secret_file.parent.mkdir(parents=True)
    secret_file.write_text(content)
    result = run_cli("serve", "--config", str(config), cwd=tmp_path, timeout=15)
    assert "test.db.secret" in one_line_error(result)
    assert secret_file.read_text() == content
