"""The ``insightreader`` command line."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click

from . import config as config_module
from . import logs, migrate
from .config import ConfigError, Settings
from .errors import AlreadyRunning

T = TypeVar("T")

config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Configuration file (default: ./config.toml when present, else built-in defaults).",
)


def _settings(config_path: Path | None, overrides: dict[str, Any] | None = None) -> Settings:
    try:
        settings = config_module.load(config_path, overrides=overrides)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    logs.configure(settings.log)
    return settings


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coro)
    except (AlreadyRunning, ConfigError, migrate.MigrationError, FileExistsError) as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
@click.version_option(package_name="insightreader")
def main() -> None:
    """InsightReader: a self-hosted server for an AI reading assistant."""


@main.command()
@config_option
@click.option("--bind", default=None, help="HOST:PORT to listen on (overrides server.bind).")
def serve(config_path: Path | None, bind: str | None) -> None:
    """Run the server until SIGTERM or SIGINT."""
    from .analyses import task_types
    from .server import serve as run_server

    settings = _settings(config_path, {"server": {"bind": bind}} if bind else None)
    _run(run_server(settings, task_types(settings.llm)))


@main.command(name="migrate")
@config_option
def migrate_command(config_path: Path | None) -> None:
    """Apply pending database migrations and exit."""
    from .store import Store

    settings = _settings(config_path)

    async def run() -> None:
        store = Store(settings.database)
        await store.open()
        await store.close()

    _run(run())
    click.echo(f"database {settings.database.path} is up to date")


@main.group()
def user() -> None:
    """Manage accounts."""


@user.command(name="create")
@config_option
@click.argument("username")
@click.option("--admin", is_flag=True, help="Make the user an administrator.")
def user_create(config_path: Path | None, username: str, admin: bool) -> None:
    """Create USERNAME; the password comes from a prompt, or from stdin when it is not a terminal."""
    from pydantic import TypeAdapter, ValidationError

    from .api.schemas import Password, Username
    from .auth import Auth, load_secret
    from .errors import Conflict
    from .store import Store

    settings = _settings(config_path)
    if sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    try:
        TypeAdapter(Username).validate_python(username)
        TypeAdapter(Password).validate_python(password)
    except ValidationError as exc:
        raise click.ClickException(
            "invalid username or password: " + exc.errors()[0]["msg"]
        ) from None

    async def run() -> str:
        store = Store(settings.database)
        await store.open()
        try:
            auth = Auth(settings.auth, load_secret(settings.auth, settings.database.path), store)
            return (await auth.register(username, password, is_admin=admin)).id
        finally:
            await store.close()

    try:
        user_id = _run(run())
    except Conflict as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"created user {username} ({user_id})")


@main.command()
@config_option
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def backup(config_path: Path | None, path: Path) -> None:
    """Write a consistent copy of the database to PATH (safe while the server runs)."""
    from .store import backup as backup_database

    settings = _settings(config_path)
    if not settings.database.path.exists():
        raise click.ClickException(f"no database at {settings.database.path}")
    _run(backup_database(settings.database.path, path))
    click.echo(f"backed up {settings.database.path} to {path}")


# The client verbs, which talk to a running server (insightreader/client_cli.py, docs/client.md).
from .client_cli import analyze, insight, login, tasks  # noqa: E402

main.add_command(login)
main.add_command(analyze)
main.add_command(insight)
main.add_command(tasks)
