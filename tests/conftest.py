from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.client import Api, register
from tests.support.process import ServerProcess, write_config


def base_config(tmp_path: Path, **sections: dict[str, Any]) -> dict[str, dict[str, Any]]:
    config: dict[str, dict[str, Any]] = {
        "server": {"bind": "127.0.0.1:0", "graceful_timeout": 5.0},
        "database": {"path": str(tmp_path / "data" / "test.db")},
        # Most tests register several users: open registration (tests/test_accounts.py
        # covers the closed default).
        "auth": {"secret": "test-secret-" + "x" * 40, "open_registration": True},
        "llm": {"api_key": ""},
    }
    for name, values in sections.items():
        config.setdefault(name, {}).update(values)
    return config


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start ``tests.support.server`` with ``base_config`` plus the given sections."""
    started: list[ServerProcess] = []

    def start(config_name: str = "config.toml", env: dict[str, str] | None = None, **sections: dict[str, Any]) -> ServerProcess:
        path = write_config(tmp_path / config_name, base_config(tmp_path, **sections))
        server = ServerProcess(path, env=env).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
        # Shown by pytest only when the test failed.
        print(f"--- server log ({server.url}) ---\n" + "\n".join(server.logs[-80:]))


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
    from tests.support.postgres import cluster

    with cluster() as url:
        yield url


@pytest.fixture
def postgres_url(postgres_cluster: str) -> str:
    """The URL of an empty database of this test's own."""
    from tests.support.postgres import fresh_database

    return fresh_database(postgres_cluster)
