from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.client import Api, register
from tests.support.postgres import cluster, fresh_database
from tests.support.process import ServerProcess, write_config


def base_config(tmp_path: Path, **sections: dict[str, Any]) -> dict[str, dict[str, Any]]:
    config: dict[str, dict[str, Any]] = {
        "server": {"bind": "127.0.0.1:0", "graceful_timeout": 5.0},
        "database": {"path": str(tmp_path / "data" / "test.db")},
        # Most tests register several users: open registration (tests/test_accounts.py
        # covers the closed default).
        "auth": {"secret": "test-secret-" + "x" * 40, "open_registration": True},
        "llm": {"api_key": ""},
        # On PostgreSQL a killed server's running tasks run again once their lease
        # ran out (on SQLite, at the restart): a short one keeps those tests short.
        "tasks": {"lease": 2.0},
    }
    for name, values in sections.items():
        config.setdefault(name, {}).update(values)
    return config


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A module with ``BOTH_DATABASES = True`` runs each of its server tests on SQLite
    and on PostgreSQL (but those marked ``sqlite_only``: about SQLite's own file)."""
    if (
        getattr(metafunc.module, "BOTH_DATABASES", False)
        and "database" in metafunc.fixturenames
        and metafunc.definition.get_closest_marker("sqlite_only") is None
    ):
        metafunc.parametrize("database", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture
def database(request: pytest.FixtureRequest) -> str:
    """Which database the test's servers use: its parameter, else
    ``TEST_DATABASE`` (to run any test on PostgreSQL by hand), else SQLite."""
    return str(getattr(request, "param", os.environ.get("TEST_DATABASE", "sqlite")))


@pytest.fixture
def start_server(
    tmp_path: Path, database: str, request: pytest.FixtureRequest
) -> Iterator[Callable[..., ServerProcess]]:
    """Start ``tests.support.server`` with ``base_config`` plus the given sections (on
    a database of the test's own on the session's PostgreSQL when ``database`` says so)."""
    started: list[ServerProcess] = []
    #: On PostgreSQL, a database of its own for each SQLite path the test's servers name.
    urls: dict[str, str] = {}

    def start(config_name: str = "config.toml", env: dict[str, str] | None = None, **sections: dict[str, Any]) -> ServerProcess:
        config = base_config(tmp_path, **sections)
        if database == "postgresql" and "url" not in config["database"]:
            path = str(config["database"]["path"])
            if path not in urls:
                urls[path] = str(request.getfixturevalue("postgres_url")) if not urls else fresh_database(
                    request.getfixturevalue("postgres_cluster")
                )
            config["database"]["url"] = urls[path]
        path = write_config(tmp_path / config_name, config)
        server = ServerProcess(path, env=env).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
        # Shown by pytest only when the test failed.
        print(f"--- server log ({server.url}) ---\n" + "\n".join(server.logs[-80:]))


@pytest.fixture
def database_at(tmp_path: Path, database: str, request: pytest.FixtureRequest) -> Path | str:
    """Where the test's servers keep their data (tests/support/db.py reads either): the
    SQLite file ``base_config`` names, or the PostgreSQL URL."""
    if database == "postgresql":
        return str(request.getfixturevalue("postgres_url"))
    return tmp_path / "data" / "test.db"


@pytest.fixture
def server(start_server: Callable[..., ServerProcess]) -> ServerProcess:
    return start_server()


@pytest.fixture
async def http(server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        yield client


@pytest.fixture
async def connect() -> AsyncIterator[Callable[[ServerProcess], httpx.AsyncClient]]:
    """``connect(server)``: a client to the server's current address (it changes when
    the server restarts), closed at teardown."""
    clients: list[httpx.AsyncClient] = []

    def make(server: ServerProcess) -> httpx.AsyncClient:
        client = httpx.AsyncClient(base_url=server.url, timeout=30)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
async def api(http: httpx.AsyncClient) -> Api:
    return await register(http)


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """Chromium for the page tests (tests/support/browser.py); imported only when one runs."""
    from tests.support.browser import chromium

    async with chromium() as launched:
        yield launched


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[str]:
    """A PostgreSQL cluster for the whole session (tests/support/postgres.py): the URL
    of its maintenance database."""
    with cluster() as url:
        yield url


@pytest.fixture
def postgres_url(postgres_cluster: str) -> str:
    """The URL of an empty database of this test's own."""
    return fresh_database(postgres_cluster)
