"""A throwaway PostgreSQL cluster for the tests: Debian's server binaries (``.ci/run``
installs them), a data directory under the test session's temporary folder, loopback
only, durability off (the tests check our logic, not PostgreSQL's fsync). Every test
gets a database of its own."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.process import free_port


def _bindir() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    return found[-1].parent if found else None


BINDIR = _bindir()
#: The mark of a test that runs PostgreSQL; .ci/run installs it, so CI runs them all.
needs_postgres = pytest.mark.skipif(
    BINDIR is None, reason="needs Debian's postgresql server binaries (.ci/run installs them)"
)


def _as_owner(argv: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as the ``postgres`` user."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@contextmanager
def cluster(*, durable: bool = False, prefix: Sequence[str] = ()) -> Iterator[str]:
    """Start a cluster; yield the URL of its ``postgres`` database; stop and remove it.
    ``durable``: fsync on, as a server would run (the benchmarks); ``prefix``: a
    command that runs its processes (``taskset -c 0``)."""
    assert BINDIR is not None
    root = Path(tempfile.mkdtemp(prefix="insightreader-pg-"))
    data = root / "data"
    port = free_port()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    try:
        subprocess.run(
            _as_owner([str(BINDIR / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                       "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"]),
            check=True, capture_output=True, timeout=120,
        )
        options = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={root} -c max_connections=200"
        if not durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        subprocess.run(
            [*prefix, *_as_owner([str(BINDIR / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"),
                                  "-w", "-t", "60", "start"])],
            check=True, capture_output=True, timeout=90,
        )
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            subprocess.run(_as_owner([str(BINDIR / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
                           capture_output=True, timeout=60)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def fresh_database(admin_url: str) -> str:
    """Create an empty database on the cluster; its URL."""
    import psycopg

    name = "t_" + uuid.uuid4().hex[:16]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}".encode())
    return admin_url.rsplit("/", 1)[0] + "/" + name
