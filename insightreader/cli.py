"""The ``insightreader`` command line."""

from __future__ import annotations

import asyncio
import gc
import json
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click

from . import config as config_module
from . import logs, migrate
from .config import ConfigError, Settings
from .errors import AlreadyRunning, BackgroundFailure

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
    except BackgroundFailure as exc:
        # Logged with its traceback when it happened; exit non-zero to be restarted.
        raise click.ClickException(f"a background part died ({exc}); exiting to be restarted") from None


class _Commands(click.Group):
    """The server's commands, and the client verbs (insightreader/client_cli.py,
    docs/client.md), which talk to a running server: those are imported only when one
    of them runs, so that ``serve`` does not load the HTTP client (70 ms of start-up)."""

    CLIENT_VERBS = ("login", "analyze", "insight", "tasks", "search")

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.CLIENT_VERBS])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.CLIENT_VERBS:
            return super().get_command(ctx, cmd_name)
        from . import client_cli

        command: click.Command = getattr(client_cli, cmd_name)
        return command


@click.group(cls=_Commands)
@click.version_option(package_name="insightreader")
def main() -> None:
    """InsightReader: a self-hosted server for an AI reading assistant."""


@main.command()
@config_option
@click.option("--bind", default=None, help="HOST:PORT to listen on (overrides server.bind).")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default=None,
    help="Log lines as key=value text or one JSON object each (overrides log.format).",
)
def serve(config_path: Path | None, bind: str | None, log_format: str | None) -> None:
    """Run the server until SIGTERM or SIGINT."""
    # Collections while the server's modules load find nothing to free and cost 8 % of
    # start-up: off until the LLM SDK has loaded too and what start-up made is frozen
    # (server._warm_up).
    gc.disable()
    from .tasktypes import task_types
    from .server import serve as run_server

    overrides: dict[str, Any] = {}
    if bind:
        overrides["server"] = {"bind": bind}
    if log_format:
        overrides["log"] = {"format": log_format}
    settings = _settings(config_path, overrides or None)
    _run(run_server(settings, task_types(settings)))


@main.command(name="migrate")
@config_option
@click.option(
    "--dry-run",
    is_flag=True,
    help="List the pending migrations without applying any (safe while a server runs).",
)
def migrate_command(config_path: Path | None, dry_run: bool) -> None:
    """Apply pending database migrations and exit."""
    from .store import Store

    settings = _settings(config_path)
    database = settings.database.label
    if settings.database.url:
        todo = _run(migrate.postgresql(settings.database.url, dry_run=dry_run))
    elif dry_run:
        todo = _run(migrate.preview(settings.database.path))
    else:

        async def run() -> None:
            store = Store(settings.database)
            await store.open()
            await store.close()

        _run(run())
        todo = []
    if not dry_run:
        click.echo(f"database {database} is up to date" + (f" ({len(todo)} applied)" if todo else ""))
        return
    if not todo:
        click.echo(f"database {database} is up to date: no pending migrations")
        return
    click.echo(f"database {database}: {len(todo)} pending migration(s), none applied:")
    for migration in todo:
        click.echo(f"  {migration.version:04d}_{migration.name}.sql")


@main.group()
def user() -> None:
    """Manage accounts."""


@user.command(name="create")
@config_option
@click.argument("username")
@click.option("--admin", is_flag=True, help="Make the user an administrator.")
def user_create(config_path: Path | None, username: str, admin: bool) -> None:
    """Create USERNAME; the password comes from a prompt, or from stdin when it is not a terminal.

    Works whatever auth.open_registration says; the first account on a server is an
    administrator in any case. The password must have at least 10 characters, not be
    the username, and not be one of the 10,000 most common passwords."""
    from .accounts import Accounts, Tokens, load_secret
    from .accounts.passwords import check_password, check_username
    from .errors import ApiError
    from .store import Store

    settings = _settings(config_path)
    try:
        check_username(username)
    except ApiError as exc:
        raise click.ClickException(f"invalid username: {exc.message}") from None
    if sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    try:
        check_password(username, password)
    except ApiError as exc:
        raise click.ClickException(f"weak password: {exc.message}") from None

    async def run() -> tuple[str, bool]:
        store = Store(settings.database)
        await store.open()
        try:
            tokens = Tokens(settings.auth, load_secret(settings.auth, settings.database.path))
            created = await Accounts(settings.auth, tokens, store).create_user(username, password, admin=admin)
            return created.id, created.is_admin
        finally:
            await store.close()

    try:
        user_id, is_admin = _run(run())
    except ApiError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"created {'administrator' if is_admin else 'user'} {username} ({user_id})")


@main.group()
def token() -> None:
    """Manage a user's personal API tokens (works while the server runs; docs/api.md)."""


user_option = click.option("--user", "username", required=True, help="The user whose tokens these are.")


def _with_tokens(config_path: Path | None, username: str, act: Callable[[Any, str], Coroutine[Any, Any, T]]) -> T:
    """Run ``act(api_tokens, user_id)`` on the database; a domain error is one ``Error:`` line."""
    from .accounts import ApiTokens
    from .errors import ApiError
    from .store import Store

    settings = _settings(config_path)

    async def run() -> T:
        store = Store(settings.database)
        await store.open()
        try:
            user = await store.read.user_by_name(username)
            if user is None:
                raise click.ClickException(f"no user named {username}")
            return await act(ApiTokens(store), user.id)
        finally:
            await store.close()

    try:
        return _run(run())
    except ApiError as exc:
        raise click.ClickException(exc.message) from None


@token.command(name="create")
@config_option
@user_option
@click.option("--name", required=True, help="What the token is for (shown in the list).")
@click.option("--scope", type=click.Choice(["read", "write"]), default="read", show_default=True)
@click.option("--expires-in-days", type=click.IntRange(min=1), default=None, help="Days until it expires (default: never).")
def token_create(config_path: Path | None, username: str, name: str, scope: str, expires_in_days: int | None) -> None:
    """Create an API token and print it (the only time it is shown) on stdout."""
    created = _with_tokens(config_path, username, lambda tokens, user_id: tokens.create(user_id, name, scope, expires_in_days))
    click.echo(created.token)
    click.echo(f"created {scope} token {created.record.id} ({name}) for {username}", err=True)


@token.command(name="list")
@config_option
@user_option
@click.option("--json", "as_json", is_flag=True, help="Print the tokens as JSON.")
def token_list(config_path: Path | None, username: str, as_json: bool) -> None:
    """The user's API tokens (never their secrets)."""
    from .accounts.api_tokens import public

    listed = _with_tokens(config_path, username, lambda tokens, user_id: tokens.of_user(user_id))
    rows = [public(t) for t in listed]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(
            f"{row['token_id']}  {row['scope']:<5}  {row['name']}  created {row['created_at']}"
            f"  last used {row['last_used_at'] or 'never'}  expires {row['expires_at'] or 'never'}"
        )
    if not rows:
        click.echo("(no tokens)")


@token.command(name="revoke")
@config_option
@user_option
@click.argument("token_id")
def token_revoke(config_path: Path | None, username: str, token_id: str) -> None:
    """Revoke TOKEN_ID: a running server refuses it on its next request."""
    _with_tokens(config_path, username, lambda tokens, user_id: tokens.revoke(user_id, token_id))
    click.echo(f"revoked token {token_id}")


@main.command()
@config_option
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def backup(config_path: Path | None, path: Path) -> None:
    """Write a consistent copy of the database to PATH (safe while the server runs)."""
    from .store import backup as backup_database

    settings = _settings(config_path)
    if settings.database.url:
        raise click.ClickException(
            "on PostgreSQL, back up with pg_dump (docs/scale-out.md): it takes a consistent"
            " copy while the servers run"
        )
    if not settings.database.path.exists():
        raise click.ClickException(f"no database at {settings.database.path}")
    _run(backup_database(settings.database.path, path))
    click.echo(f"backed up {settings.database.path} to {path}")


@main.command(name="migrate-to")
@config_option
@click.argument("url")
def migrate_to(config_path: Path | None, url: str) -> None:
    """Copy the SQLite database to an empty PostgreSQL database at URL (stop the server
    first), then set database.url to URL (docs/scale-out.md)."""
    from .config import DatabaseSettings
    from .store.transfer import TargetNotEmpty, copy_to_postgresql

    settings = _settings(config_path)
    if not settings.database.path.exists():
        raise click.ClickException(f"no database at {settings.database.path}")
    try:
        target = DatabaseSettings(url=url)
    except ValueError:
        raise click.ClickException("URL: expected postgresql://…") from None
    try:
        counts = _run(copy_to_postgresql(settings.database, target.url))
    except TargetNotEmpty as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"copied {settings.database.path} to {target.label}:")
    for table, count in counts.items():
        click.echo(f"  {table}: {count}")
    click.echo("now set database.url to it and start the server")


@main.group()
def admin() -> None:
    """Operator commands on the database itself (no token needed; see docs/deploy.md)."""


def _since_option(**kw: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def parse(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
        from .admin import parse_since

        try:
            return None if value is None else parse_since(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None

    return click.option(
        "--since",
        callback=parse,
        help="Start of the window: a duration back from now (30m, 1h, 2d, 1w) or an ISO-8601 time.",
        **kw,
    )


def _admin_run(coro: Coroutine[Any, Any, T]) -> T:
    from .admin import ServerRunning

    try:
        return _run(coro)
    except (ServerRunning, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None


@admin.command(name="stats")
@config_option
@_since_option(default="1d", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def admin_stats(config_path: Path | None, since: Any, as_json: bool) -> None:
    """Queue depth, tasks by status and type, failure codes and token use per user.

    Reads the database only: safe while a server runs."""
    import json

    from .admin import format_stats, stats

    settings = _settings(config_path)
    report = _admin_run(stats(settings.database, since))
    click.echo(json.dumps(report, indent=2) if as_json else format_stats(report))


@admin.command(name="reanalyze")
@config_option
@click.option("--stale", is_flag=True, required=True,
              help="Redo the results made with another model, prompt version or prompt settings.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def admin_reanalyze(config_path: Path | None, stale: bool, as_json: bool) -> None:
    """Re-analyse, for every user, the results made with another model, prompt version or
    prompt settings than the configured ones (after changing llm.model, say).

    Stages one re-analysis batch per user (bulk priority, below what readers wait for);
    refuses while a server uses the database: stop the server, run this, start it again."""
    import json

    from .admin import reanalyze_stale

    staged = _admin_run(reanalyze_stale(_settings(config_path)))
    if as_json:
        click.echo(json.dumps({"stale": staged}, indent=2))
        return
    click.echo(f"staged {sum(staged.values())} stale result(s) of {sum(1 for n in staged.values() if n)} user(s)"
               " for re-analysis; they run when the server starts")
    for username, total in staged.items():
        if total:
            click.echo(f"  {username}: {total}")


@admin.command(name="retry-failed")
@config_option
@_since_option(required=True)
@click.option("--dry-run", is_flag=True, help="List the tasks without changing anything (works while a server runs).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def admin_retry_failed(config_path: Path | None, since: Any, dry_run: bool, as_json: bool) -> None:
    """Put tasks that failed since --since back to pending, as POST /tasks/{id}/retry does.

    Refuses while a server uses the database (a server only picks up pending tasks when it
    starts): stop the server, run this, start the server again."""
    import json

    from .admin import failed_since, retry_failed
    from .records import format_time

    settings = _settings(config_path)
    if dry_run:
        retried, usernames = _admin_run(failed_since(settings.database, since))
        skipped: list[Any] = []
    else:
        outcome = _admin_run(retry_failed(settings, since))
        retried, skipped, usernames = outcome.retried, outcome.skipped, outcome.usernames

    def row(task: Any) -> dict[str, Any]:
        return {
            "task_id": task.id,
            "task_type": task.task_type,
            "user_id": task.user_id,
            "username": usernames.get(task.user_id, task.user_id),
            "attempts": task.attempts,
        }

    if as_json:
        key = "would_retry" if dry_run else "retried"
        click.echo(json.dumps({"since": format_time(since), key: [row(t) for t in retried], "skipped": [row(t) for t in skipped]}, indent=2))
        return
    verb = "would put" if dry_run else "put"
    tail = "" if dry_run else "; they run when the server starts"
    click.echo(f"{verb} {len(retried)} task(s) that failed since {format_time(since)} back to pending{tail}")
    for task in retried:
        click.echo(f"  {task.id}  {task.task_type}  {usernames.get(task.user_id, task.user_id)}")
    if skipped:
        click.echo(f"skipped {len(skipped)}: an identical task is already pending or running")
        for task in skipped:
            click.echo(f"  {task.id}  {task.task_type}  {usernames.get(task.user_id, task.user_id)}")

