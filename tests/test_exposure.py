"""What the server lets out: headers on every answer, no redirect built from the
``Host`` header, ``/metrics`` behind its token, private files, no secret in errors."""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.conftest import base_config
from tests.support.cli import one_line_error, run_cli
from tests.support.client import register
from tests.support.process import ServerProcess, write_config

HOSTILE_HOST = "evil.example"
METRICS_TOKEN = "metrics-token-" + "m" * 20


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    directory = tmp_path_factory.mktemp("exposure")
    config = base_config(directory, server={"metrics_token": METRICS_TOKEN})
    process = ServerProcess(write_config(directory / "config.toml", config)).start()
    yield process
    process.stop()
    print("--- server log ---\n" + "\n".join(process.logs[-60:]))


@pytest.fixture
async def http(server: ServerProcess) -> Iterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        yield client


async def test_every_answer_is_nosniff_and_every_api_answer_no_store(http: httpx.AsyncClient) -> None:
    api = await register(http)
    answers = {
        "api ok": await api.get("/api/v1/auth/me"),
        "api 401": await http.get("/api/v1/tasks"),
        "api 404": await http.get("/api/v1/no-such-thing"),
        "api 405": await http.delete("/api/v1/auth/login"),
        "api 422": await http.post("/api/v1/auth/login", json={"username": 1}),
        "api 400": await http.post("/api/v1/auth/login", content=b"{", headers={"Content-Type": "application/json"}),
        "page": await http.get("/"),
        "404": await http.get("/no-such-page"),
        "metrics 401": await http.get("/metrics"),
        "openapi": await http.get("/openapi.json"),
        "docs": await http.get("/docs"),
        "healthz": await http.get("/healthz"),
    }
    for name, response in answers.items():
        assert response.headers.get("x-content-type-options") == "nosniff", name
        if name.startswith("api"):
            assert response.headers.get("cache-control") == "no-store", name
    assert answers["api ok"].status_code == 200 and answers["api 404"].status_code == 404
    async with http.stream("GET", "/api/v1/events", headers=api.headers) as stream:
        assert stream.status_code == 200
        assert stream.headers["cache-control"] == "no-store"
        assert stream.headers["x-content-type-options"] == "nosniff"


def raw_get(url: str, path: str, host: str) -> bytes:
    """One request with a ``Host`` header of our choosing; the answer's head."""
    address = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((address[0], int(address[1])), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while b"\r\n\r\n" not in answer and (chunk := sock.recv(65536)):
            answer += chunk
    return answer.partition(b"\r\n\r\n")[0]


@pytest.mark.parametrize(
    "path",
    ["/api/v1//tasks", "/api/v1/tasks/", "//", "//api/v1/auth/me", "/api//v1/auth/me", "//evil.example/x", "/metrics/"],
)
def test_no_redirect_is_built_from_the_host_header(server: ServerProcess, path: str) -> None:
    head = raw_get(server.url, path, HOSTILE_HOST)
    status = int(head.split(b" ", 2)[1])
    assert HOSTILE_HOST.encode() not in head, head
    assert b"location:" not in head.lower(), head
    assert not 300 <= status < 400, head
    if not path.startswith("//"):  # werkzeug matches a path with its leading slashes stripped
        assert status == 404, head


async def test_metrics_needs_its_token(http: httpx.AsyncClient) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {METRICS_TOKEN}"},
                    {"Authorization": f"Bearer {METRICS_TOKEN}x"}):
        response = await http.get("/metrics", headers=headers)
        assert response.status_code == 401, headers
        assert response.json()["error"]["code"] == "unauthorized"
        assert METRICS_TOKEN not in response.text
    good = await http.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert good.status_code == 200 and "insightreader_" in good.text


async def test_metrics_is_open_without_a_token(start_server: Callable[..., ServerProcess]) -> None:
    server = start_server()
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        assert (await http.get("/metrics")).status_code == 200


# -- files ---------------------------------------------------------------------------


@contextmanager
def umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o000], ids=["umask-022", "umask-000"])
async def test_the_database_its_files_and_backups_are_the_owners_only(tmp_path: Path, mask: int) -> None:
    config = base_config(tmp_path)
    config["auth"]["secret"] = ""  # generated, and kept beside the database
    config["database"]["path"] = str(tmp_path / "data" / "deep" / "test.db")
    path = write_config(tmp_path / "config.toml", config)
    with umask(mask):
        server = ServerProcess(path).start()
        try:
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
                await register(http)  # something written: the WAL and SHM exist
            data = tmp_path / "data"
            files = [data / "deep" / name for name in ("test.db", "test.db-wal", "test.db-shm", "test.db.secret", "test.db.lock")]
            for file in files:
                assert file.exists(), file
            backup = run_cli("backup", str(tmp_path / "backups" / "copy.db"), "--config", str(path), cwd=tmp_path)
            assert backup.returncode == 0, backup.stderr
        finally:
            server.stop()
    for folder in (data, data / "deep", tmp_path / "backups"):
        assert mode(folder) == 0o700, (folder, oct(mode(folder)))
    for file in [*files, tmp_path / "backups" / "copy.db"]:
        assert mode(file) == 0o600, (file, oct(mode(file)))


# -- secrets in errors ---------------------------------------------------------------

SHORT_SECRET = "short-but-secret-value"


@pytest.mark.parametrize(
    ("where", "key"),
    [("file", "auth.secret"), ("env", "auth.secret"), ("file", "server.metrics_token"), ("env", "server.metrics_token")],
)
def test_a_configuration_error_never_shows_a_secret(tmp_path: Path, where: str, key: str) -> None:
    section, name = key.split(".")
    value = SHORT_SECRET[:12]
    config = base_config(tmp_path)
    env = {}
    if where == "file":
        config.setdefault(section, {})[name] = value
    else:
        config[section].pop(name, None)
        env[f"INSIGHTREADER_{section.upper()}__{name.upper()}"] = value
    path = write_config(tmp_path / "config.toml", config)
    result = run_cli("serve", "--config", str(path), cwd=tmp_path, env=env)
    error = one_line_error(result)
    assert key in error
    assert value not in result.stderr + result.stdout
