"""Accounts that resist abuse, over real HTTP against a real server: the first account
is the administrator and registration then closes; password rules; login throttling
per username and per address (X-Forwarded-For from trusted proxies only), growing
lockouts; the bounded hashing queue (503 busy at once); sessions with refresh-token
rotation and reuse detection, sign-out, password change, the sessions list."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import argon2
import httpx
import pytest

from insightreader.accounts.open_sessions import OpenSessions
from insightreader.accounts.passwords import Hasher
from insightreader.accounts.tokens import ACCESS, TICKET, Tokens
from insightreader.config import AuthSettings
from insightreader.errors import Unauthorized
from insightreader.records import User
from tests.conftest import base_config
from tests.support import db
from tests.support.cli import one_line_error, run_cli
from tests.support.process import ServerProcess, write_config

PASSWORD = "correct horse battery"
NEW_PASSWORD = "a new and longer passphrase"
LOGIN = "/api/v1/auth/login"


def users(server: ServerProcess) -> list[tuple[str, int]]:
    path = Path(base_config(server.config_path.parent)["database"]["path"])
    with closing(db.connect(path)) as conn:
        return [(r[0], r[1]) for r in conn.execute("SELECT username, is_admin FROM users ORDER BY created_at")]


def error_code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def login(http: httpx.AsyncClient, username: str, password: str = PASSWORD, **kw: Any) -> httpx.Response:
    return await http.post(LOGIN, json={"username": username, "password": password}, **kw)


async def tokens(http: httpx.AsyncClient, username: str, password: str = PASSWORD, **kw: Any) -> dict[str, Any]:
    r = await login(http, username, password, **kw)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def register(http: httpx.AsyncClient, username: str, password: str = PASSWORD) -> httpx.Response:
    return await http.post("/api/v1/auth/register", json={"username": username, "password": password})


# -- registration --------------------------------------------------------------------------


async def test_the_first_account_is_the_administrator_then_registration_is_closed(
    start_server: Callable[..., ServerProcess],
) -> None:
    server = start_server(auth={"open_registration": False})  # the shipped default
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        # two first registrations at once: one wins (the administrator), one is refused
        first, second = await asyncio.gather(register(http, "owner_a"), register(http, "owner_b"))
        assert sorted([first.status_code, second.status_code]) == [201, 403], (first.text, second.text)
        refused = first if first.status_code == 403 else second
        assert error_code(refused) == "registration_closed"
        r = await register(http, "latecomer")
        assert r.status_code == 403 and error_code(r) == "registration_closed", r.text
    assert len(users(server)) == 1 and users(server)[0][1] == 1


def test_the_default_configuration_closes_registration() -> None:
    from insightreader.config import Settings

    assert Settings().auth.open_registration is False


async def test_open_registration_lets_others_in_as_plain_users(start_server: Callable[..., ServerProcess]) -> None:
    server = start_server(auth={"open_registration": True})
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        assert (await register(http, "first_one")).status_code == 201
        assert (await register(http, "second_one")).status_code == 201
    assert users(server) == [("first_one", 1), ("second_one", 0)]


def test_user_create_makes_the_first_account_an_administrator(tmp_path: Path) -> None:
    config = write_config(tmp_path / "cli.toml", base_config(tmp_path, auth={"open_registration": False}))
    first = run_cli("user", "create", "cli_owner", "--config", str(config), cwd=tmp_path, stdin=PASSWORD + "\n")
    assert first.returncode == 0 and "administrator" in first.stdout, first.stderr
    second = run_cli("user", "create", "cli_guest", "--config", str(config), cwd=tmp_path, stdin=PASSWORD + "\n")
    assert second.returncode == 0 and "created user" in second.stdout, second.stderr
    path = Path(base_config(tmp_path)["database"]["path"])
    with closing(db.connect(path)) as conn:
        rows = dict(conn.execute("SELECT username, is_admin FROM users").fetchall())
    assert rows == {"cli_owner": 1, "cli_guest": 0}


# -- password rules ----------------------------------------------------------------------------

WEAK = {
    "short": ("weak_user1", "abc12345!"),
    "the-username": ("Weak_User2", "weak_user2"),
    "common": ("weak_user3", "1234567890"),
    "common-other-case": ("weak_user4", "BasketBall"),
}


@pytest.mark.parametrize("case", list(WEAK))
async def test_weak_passwords_are_refused_by_the_api(http: httpx.AsyncClient, case: str) -> None:
    username, password = WEAK[case]
    r = await register(http, username, password)
    assert r.status_code == 422, r.text
    assert error_code(r) == "weak_password"
    assert password not in r.text
    assert (await register(http, username, "x" + PASSWORD)).status_code == 201  # the control


@pytest.mark.parametrize("case", list(WEAK))
def test_weak_passwords_are_refused_by_user_create(tmp_path: Path, case: str) -> None:
    username, password = WEAK[case]
    config = write_config(tmp_path / "cli.toml", base_config(tmp_path))
    result = run_cli("user", "create", username, "--config", str(config), cwd=tmp_path, stdin=password + "\n")
    message = one_line_error(result)
    assert "weak password" in message, message
    assert password not in result.stdout + result.stderr


def test_a_weak_administrator_password_from_the_environment_stops_the_server(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.toml", base_config(tmp_path))
    env = {"INSIGHTREADER_ADMIN_USERNAME": "root_admin", "INSIGHTREADER_ADMIN_PASSWORD": "1234567890"}
    result = run_cli("serve", "--config", str(config), cwd=tmp_path, env=env, timeout=20)
    message = one_line_error(result)
    assert "INSIGHTREADER_ADMIN_PASSWORD" in message and "common" in message, message
    assert "1234567890" not in result.stdout + result.stderr


# -- login throttling --------------------------------------------------------------------------


async def wait_unlocked(http: httpx.AsyncClient, username: str, password: str, timeout: float = 30, **kw: Any) -> httpx.Response:
    """Attempt until the answer is not 429 (bounded); that answer."""
    deadline = time.monotonic() + timeout
    while True:
        r = await login(http, username, password, **kw)
        if r.status_code != 429:
            return r
        assert time.monotonic() < deadline, "still locked out"
        await asyncio.sleep(0.2)


async def test_failed_logins_lock_a_username_even_for_the_right_password_and_lockouts_grow(
    start_server: Callable[..., ServerProcess],
) -> None:
    server = start_server(auth={"max_failed_logins": 3, "lockout_window": 3})
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        assert (await register(http, "locked_user")).status_code == 201
        wrong = await asyncio.gather(*(login(http, "locked_user", f"wrong guess {i}") for i in range(3)))
        assert [r.status_code for r in wrong] == [401] * 3
        r = await login(http, "Locked_User", PASSWORD)  # the right password, another case
        assert r.status_code == 429 and error_code(r) == "too_many_attempts", r.text
        first_wait = int(r.headers["Retry-After"])
        assert 1 <= first_wait <= 3
        assert (await login(http, "another_name", "wrong guess")).status_code == 401  # others are not locked

        # when it passes, guesses count again; the next lockout lasts longer
        assert (await wait_unlocked(http, "locked_user", "wrong guess again")).status_code == 401
        for i in range(2):
            assert (await login(http, "locked_user", f"wrong guess {i}")).status_code == 401
        r = await login(http, "locked_user", PASSWORD)
        assert r.status_code == 429, r.text
        assert int(r.headers["Retry-After"]) > first_wait
        assert (await wait_unlocked(http, "locked_user", PASSWORD)).status_code == 200


async def test_failed_logins_lock_an_address_across_usernames(start_server: Callable[..., ServerProcess]) -> None:
    server = start_server(auth={"max_failed_logins": 2, "lockout_window": 60})  # 8 from one address
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        assert (await register(http, "addr_user")).status_code == 201
        for i in range(8):
            assert (await login(http, f"sprayed_{i}", "wrong guess")).status_code == 401
        r = await login(http, "addr_user", PASSWORD)
        assert r.status_code == 429 and error_code(r) == "too_many_attempts", r.text
        assert int(r.headers["Retry-After"]) >= 1
        # X-Forwarded-For from an untrusted peer changes nothing
        r = await login(http, "addr_user", PASSWORD, headers={"X-Forwarded-For": "198.51.100.9"})
        assert r.status_code == 429, r.text


async def test_x_forwarded_for_names_the_client_only_behind_a_trusted_proxy(
    start_server: Callable[..., ServerProcess],
) -> None:
    server = start_server(
        auth={"max_failed_logins": 2, "lockout_window": 60}, server={"trusted_proxies": ["127.0.0.0/8"]}
    )
    attacker = {"X-Forwarded-For": "198.51.100.1"}
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        assert (await register(http, "proxied_user")).status_code == 201
        for i in range(8):
            assert (await login(http, f"sprayed_{i}", "wrong guess", headers=attacker)).status_code == 401
        assert (await login(http, "proxied_user", PASSWORD, headers=attacker)).status_code == 429
        # a hop the attacker wrote to the left does not change who they are
        spoofed = {"X-Forwarded-For": "203.0.113.50, 198.51.100.1"}
        assert (await login(http, "proxied_user", PASSWORD, headers=spoofed)).status_code == 429
        # another client behind the same proxy is not locked out
        r = await login(http, "proxied_user", PASSWORD, headers={"X-Forwarded-For": "198.51.100.2"})
        assert r.status_code == 200, r.text
        # the sessions list shows the client's address, not the proxy's
        listed = await http.get("/api/v1/auth/sessions", headers=bearer(r.json()["access_token"]))
        assert [s["address"] for s in listed.json()["sessions"]] == ["198.51.100.2"]


# -- the hashing queue ---------------------------------------------------------------------


async def test_a_flood_of_logins_gets_503_busy_at_once_and_a_real_login_is_not_stuck_behind_it(
    start_server: Callable[..., ServerProcess],
) -> None:
    server = start_server(auth={"max_failed_logins": 10_000})  # throttling out of the way
    limits = httpx.Limits(max_connections=100)
    async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=limits) as http:
        assert (await register(http, "busy_user")).status_code == 201

        async def timed(username: str, password: str) -> tuple[httpx.Response, float]:
            started = time.perf_counter()
            r = await login(http, username, password)
            return r, time.perf_counter() - started

        alone = statistics.median([(await timed("busy_user", PASSWORD))[1] for _ in range(3)])
        flood = [asyncio.create_task(timed(f"bogus_{i}", "wrong guess")) for i in range(40)]
        await asyncio.sleep(0)  # the flood is on its way first
        real, real_time = await timed("busy_user", PASSWORD)
        answers = await asyncio.gather(*flood)

    busy = [(r, t) for r, t in answers if r.status_code == 503]
    print(f"\nlogin alone {alone * 1000:.0f} ms; behind 40 bogus logins: {real.status_code} in {real_time * 1000:.0f} ms;"
          f" {len(busy)} of 40 got 503 busy, the slowest in {max((t for _, t in busy), default=0) * 1000:.0f} ms")
    assert {r.status_code for r, _ in answers} <= {401, 503}
    assert busy, "the flood never hit the queue's bound"
    for r, _ in busy:
        assert error_code(r) == "busy" and int(r.headers["Retry-After"]) >= 1
    bound = 6 * alone + 1.0  # at most a few hashes' wait, not 40 of them
    assert real.status_code in (200, 503), real.text
    if real.status_code == 503:
        assert int(real.headers["Retry-After"]) >= 1
    assert real_time < bound, (real_time, alone)
    assert max(t for _, t in busy) < bound


# -- sessions --------------------------------------------------------------------------------


async def refresh(http: httpx.AsyncClient, token: str) -> httpx.Response:
    return await http.post("/api/v1/auth/refresh", json={"refresh_token": token})


async def me(http: httpx.AsyncClient, access: str) -> int:
    return (await http.get("/api/v1/auth/me", headers=bearer(access))).status_code


async def test_a_refresh_token_works_once_and_its_reuse_ends_the_session(http: httpx.AsyncClient) -> None:
    assert (await register(http, "rotating_user")).status_code == 201
    first = await tokens(http, "rotating_user")
    r = await refresh(http, first["refresh_token"])
    assert r.status_code == 200, r.text
    second = r.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert await me(http, second["access_token"]) == 200

    r = await refresh(http, first["refresh_token"])  # replayed: a thief, or a copy
    assert r.status_code == 401 and error_code(r) == "unauthorized", r.text
    # the whole session is over: the newest refresh token and every access token too
    assert (await refresh(http, second["refresh_token"])).status_code == 401
    assert await me(http, second["access_token"]) == 401
    assert await me(http, first["access_token"]) == 401
    assert (await tokens(http, "rotating_user"))["access_token"]  # signing in again works


async def test_logout_ends_the_session_its_tokens_and_tickets(http: httpx.AsyncClient) -> None:
    assert (await register(http, "leaving_user")).status_code == 201
    mine = await tokens(http, "leaving_user")
    other = await tokens(http, "leaving_user")  # another device
    ticket = (await http.post("/api/v1/sse/ticket", headers=bearer(mine["access_token"]))).json()["ticket"]
    r = await http.post("/api/v1/auth/logout", headers=bearer(mine["access_token"]))
    assert r.status_code == 204, r.text
    assert await me(http, mine["access_token"]) == 401
    assert (await refresh(http, mine["refresh_token"])).status_code == 401
    r = await http.get("/api/v1/sse/analysis-notifications", params={"ticket": ticket})
    assert r.status_code == 401, r.text
    assert (await http.post("/api/v1/auth/logout", headers=bearer(mine["access_token"]))).status_code == 401
    assert await me(http, other["access_token"]) == 200  # the other device stays signed in


async def test_a_password_change_ends_every_other_session(server: ServerProcess, http: httpx.AsyncClient) -> None:
    assert (await register(http, "changing_user")).status_code == 201
    here = await tokens(http, "changing_user")
    there = await tokens(http, "changing_user")
    change = "/api/v1/auth/password"
    headers = bearer(here["access_token"])

    r = await http.post(change, json={"current_password": "not it at all", "new_password": NEW_PASSWORD}, headers=headers)
    assert r.status_code == 403 and error_code(r) == "wrong_password", r.text
    r = await http.post(change, json={"current_password": PASSWORD, "new_password": "changing_user"}, headers=headers)
    assert r.status_code == 422 and error_code(r) == "weak_password", r.text
    assert await me(http, there["access_token"]) == 200  # nothing changed yet

    r = await http.post(change, json={"current_password": PASSWORD, "new_password": NEW_PASSWORD}, headers=headers)
    assert r.status_code == 204, r.text
    assert await me(http, here["access_token"]) == 200
    assert (await refresh(http, here["refresh_token"])).status_code == 200
    assert await me(http, there["access_token"]) == 401
    assert (await refresh(http, there["refresh_token"])).status_code == 401
    assert (await login(http, "changing_user", PASSWORD)).status_code == 401
    assert (await login(http, "changing_user", NEW_PASSWORD)).status_code == 200

    # no token or password reaches the log
    for secret in (PASSWORD, NEW_PASSWORD, here["access_token"], here["refresh_token"], there["refresh_token"]):
        assert secret not in server.log_text


async def test_the_sessions_list_and_ending_one(http: httpx.AsyncClient) -> None:
    assert (await register(http, "listing_user")).status_code == 201
    assert (await register(http, "someone_else")).status_code == 201
    laptop = await tokens(http, "listing_user", headers={"User-Agent": "Laptop Browser/1.0"})
    phone = await tokens(http, "listing_user", headers={"User-Agent": "Phone Browser/2.0"})
    stranger = await tokens(http, "someone_else")

    r = await http.get("/api/v1/auth/sessions", headers=bearer(laptop["access_token"]))
    assert r.status_code == 200, r.text
    listed = r.json()["sessions"]
    assert {s["user_agent"] for s in listed} == {"Laptop Browser/1.0", "Phone Browser/2.0"}
    assert [s["user_agent"] for s in listed if s["current"]] == ["Laptop Browser/1.0"]
    for s in listed:
        assert s["address"] == "127.0.0.1" and s["created_at"] and s["last_used_at"]
    phone_id = next(s["session_id"] for s in listed if not s["current"])

    stranger_list = (await http.get("/api/v1/auth/sessions", headers=bearer(stranger["access_token"]))).json()["sessions"]
    r = await http.delete(f"/api/v1/auth/sessions/{stranger_list[0]['session_id']}", headers=bearer(laptop["access_token"]))
    assert r.status_code == 404 and error_code(r) == "not_found", r.text
    assert await me(http, stranger["access_token"]) == 200

    r = await http.delete(f"/api/v1/auth/sessions/{phone_id}", headers=bearer(laptop["access_token"]))
    assert r.status_code == 204, r.text
    assert await me(http, phone["access_token"]) == 401
    assert (await refresh(http, phone["refresh_token"])).status_code == 401
    assert (await http.delete(f"/api/v1/auth/sessions/{phone_id}", headers=bearer(laptop["access_token"]))).status_code == 404
    left = (await http.get("/api/v1/auth/sessions", headers=bearer(laptop["access_token"]))).json()["sessions"]
    assert [s["current"] for s in left] == [True]


def test_open_sessions_forget_on_change_and_never_keep_a_read_that_raced_one() -> None:
    user = User("u1", "reader", "hash", False, "2026-12-01T00:00:00.000Z")
    cache = OpenSessions()
    now, later = "2026-12-03T00:00:00.000Z", "2026-12-17T00:00:00.000Z"
    cache.remember("s1", user, later, cache.generation)
    assert cache.user("s1", "u1", now) is user
    assert cache.user("s1", "someone-else", now) is None  # a token naming another user
    assert cache.user("s1", "u1", later) is None  # expired
    cache.invalidate()  # a session ended somewhere
    assert cache.user("s1", "u1", now) is None
    # A read that began before the change and answers after it is not kept.
    before = cache.generation
    cache.invalidate()
    cache.remember("s1", user, later, before)
    assert cache.user("s1", "u1", now) is None
    small = OpenSessions(max_entries=2)
    for n in range(3):
        small.remember(f"s{n}", user, later, small.generation)
    assert small.user("s2", "u1", now) is user and small.user("s0", "u1", now) is None


def test_a_remembered_access_token_still_expires_and_other_kinds_are_checked_each_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tokens = Tokens(AuthSettings(access_token_lifetime=60), "s" * 48)
    access = tokens.issue_pair("u1", "s1").access_token
    claims = tokens.decode(access, ACCESS)
    assert tokens.decode(access, ACCESS) is claims  # remembered: not verified again
    with pytest.raises(Unauthorized):
        tokens.decode(access, TICKET)  # a remembered access token is still no ticket
    with pytest.raises(Unauthorized):
        tokens.decode(access[:-2] + "xx", ACCESS)  # a forged signature is verified
    monkeypatch.setattr("insightreader.accounts.tokens.time.time", lambda: claims["exp"] + 1.0)
    with pytest.raises(Unauthorized, match="expired"):
        tokens.decode(access, ACCESS)


def test_the_hash_an_unknown_user_is_checked_against_costs_a_real_check_and_matches_nothing() -> None:
    hasher = Hasher()
    dummy, other = hasher.unmatchable(), hasher.unmatchable()
    real = argon2.PasswordHasher().hash(PASSWORD)
    assert argon2.extract_parameters(dummy) == argon2.extract_parameters(real)
    assert dummy != other  # random salt and digest each time
    for password in ("", PASSWORD, dummy):
        # a mismatch, found by computing the hash: a malformed one fails at once instead
        with pytest.raises(argon2.exceptions.VerifyMismatchError):
            argon2.PasswordHasher().verify(dummy, password)
