"""The client verbs of the ``insightreader`` command: ``login``, ``analyze``,
``insight`` and ``tasks``, talking to a running server through
:mod:`insightreader.client`.

``login`` saves the server and the tokens to a file (``CONFIG_ENV`` names another
one); the other verbs use it, and save the new tokens whenever they are refreshed.
A personal API token (``--token``, or ``INSIGHTREADER_TOKEN``) with ``--server`` (or
``INSIGHTREADER_SERVER``, else the saved server) is used instead of the saved login:
a cron job needs no password and no file.
Every failure is one line on stderr, ``error: <code>: <message>``, and exit status 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import sys
import tempfile
import textwrap
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from .client import Client, ClientError

T = TypeVar("T")

#: The environment variable naming the client's config file. Not
#: ``INSIGHTREADER_CLIENT_CONFIG``: the server refuses to start when an
#: ``INSIGHTREADER_*`` variable names no configuration section.
CONFIG_ENV = "INSIGHTREADER_CLIENT_CONFIG"
TOKEN_ENV = "INSIGHTREADER_TOKEN"
SERVER_ENV = "INSIGHTREADER_SERVER"
STATUSES = ("pending", "running", "completed", "failed", "cancelled")


# -- errors ------------------------------------------------------------------------


def fail(code: str, message: str) -> NoReturn:
    """One line on stderr, exit status 1."""
    click.echo(f"error: {code}: {' '.join(message.split())}", err=True)
    sys.exit(1)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a verb's coroutine; any :class:`ClientError` becomes one line on stderr."""
    try:
        return asyncio.run(coro)
    except ClientError as exc:
        fail(exc.code, exc.message)
    except KeyboardInterrupt:
        click.echo("", err=True)
        sys.exit(130)


# -- the config file -----------------------------------------------------------------


def config_path() -> Path:
    """``$INSIGHTREADER_CLIENT_CONFIG``, else ``$XDG_CONFIG_HOME/insightreader/client.json``
    (``~/.config/insightreader/client.json``)."""
    if named := os.environ.get(CONFIG_ENV):
        return Path(named).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "insightreader" / "client.json"


def load_config() -> dict[str, Any]:
    path = config_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        fail("bad_config", f"cannot read {path}: {exc}")
    if not isinstance(data, dict):
        fail("bad_config", f"{path} does not hold a JSON object")
    return data


def save_config(data: dict[str, Any]) -> None:
    """Write the file atomically, readable by its owner only (it holds tokens)."""
    path = config_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix=".client-", suffix=".json", dir=path.parent)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=2)
                f.write("\n")
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError as exc:
        fail("bad_config", f"cannot write {path}: {exc.strerror or exc}")


def connect(server: str | None = None, token: str | None = None) -> Client:
    """A client with the API token when there is one, else for the saved login (new
    tokens are saved as they come)."""
    config = load_config()
    if token:
        url = server or config.get("server")
        if not url:
            fail("usage", f"an API token needs the server: --server URL or {SERVER_ENV}")
        return Client(url, token)
    if not config.get("server") or not (config.get("access_token") or config.get("refresh_token")):
        fail("not_logged_in", f"no saved login in {config_path()}; run 'insightreader login --server URL' first")

    def saved(tokens: dict[str, Any]) -> None:
        config.update(access_token=tokens["access_token"], refresh_token=tokens.get("refresh_token") or config.get("refresh_token"))
        save_config(config)

    return Client(
        config["server"],
        config.get("access_token"),
        refresh_token=config.get("refresh_token"),
        on_tokens=saved,
    )


def token_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--server`` and ``--token``: use a personal API token instead of the saved login."""
    func = click.option(
        "--token",
        envvar=TOKEN_ENV,
        show_envvar=True,
        help="A personal API token (irt_…) to use instead of the saved login.",
    )(func)
    return click.option(
        "--server",
        envvar=SERVER_ENV,
        show_envvar=True,
        help="The server's URL, with --token (default: the saved one).",
    )(func)


# -- output helpers ----------------------------------------------------------------


class Spinner:
    """``⠋ analyzing… 3s`` on stderr while waiting, only when stderr is a terminal."""

    FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"

    def __init__(self, label: str, enabled: bool | None = None) -> None:
        self.label = label
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Spinner:
        if self.enabled:
            self._task = asyncio.get_running_loop().create_task(self._spin())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()

    async def _spin(self) -> None:
        started = time.monotonic()
        for frame in itertools.cycle(self.FRAMES):
            sys.stderr.write(f"\r{frame} {self.label}… {time.monotonic() - started:.0f}s\033[K")
            sys.stderr.flush()
            await asyncio.sleep(0.1)


def _width() -> int:
    return max(40, min(100, shutil.get_terminal_size((100, 24)).columns))


def _wrap(text: str, indent: str = "  ", bullet: str = "") -> str:
    return textwrap.fill(
        " ".join(str(text).split()),
        width=_width(),
        initial_indent=indent + bullet,
        subsequent_indent=indent + " " * len(bullet),
    )


def _heading(key: str) -> str:
    return key.replace("_", " ").capitalize()


def _item_text(item: Any) -> str:
    if isinstance(item, dict):
        return " — ".join(str(v) for v in item.values() if v not in (None, "", [], {}))
    return str(item)


def render_analysis(title: str, result: dict[str, Any]) -> str:
    """An analysis result as readable text: the summary, then each field in turn."""
    analysis = result.get("analysis") if isinstance(result.get("analysis"), dict) else result
    lines = [title]
    if result.get("article_id"):
        lines.append(f"article {result['article_id']}")
    first = ["summary", "key_points", "topics", "reading_time_minutes"]
    keys = [k for k in first if k in analysis] + sorted(k for k in analysis if k not in first)
    for key in keys:
        value = analysis[key]
        if value in (None, "", [], {}) or key == "language":
            continue
        if key == "reading_time_minutes":
            lines += ["", f"Reading time: about {value} min"]
        elif key == "topics" and isinstance(value, list):
            lines += ["", "Topics: " + ", ".join(map(str, value))]
        elif isinstance(value, list):
            lines += ["", _heading(key)] + [_wrap(_item_text(v), bullet="• ") for v in value]
        elif isinstance(value, dict):
            lines += ["", _heading(key)] + [_wrap(f"{k}: {_item_text(v)}") for k, v in value.items()]
        elif isinstance(value, str):
            lines += ["", _heading(key), _wrap(value)]
        else:
            lines += ["", f"{_heading(key)}: {value}"]
    return "\n".join(lines)


def render_table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    out = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in [header, *rows]]
    return "\n".join(out)


def _one_line(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _read_text(value: str) -> str:
    """``-`` reads stdin; anything else is the text itself."""
    return sys.stdin.read() if value == "-" else value


def _read_file(name: str) -> str:
    """The UTF-8 text of a file, or of stdin for ``-``."""
    try:
        if name == "-":
            return sys.stdin.buffer.read().decode("utf-8")
        return Path(name).read_bytes().decode("utf-8")
    except OSError as exc:
        fail("cannot_read", f"{name}: {exc.strerror or exc}")
    except UnicodeDecodeError:
        fail("cannot_read", f"{name}: not UTF-8 text")


def _title_of(text: str) -> str:
    """The first non-empty line (markdown heading marks dropped), at most 200 characters."""
    for line in text.splitlines():
        line = line.strip().lstrip("#").strip()
        if line:
            return _one_line(line, 200)
    return "Untitled"


# -- the verbs -----------------------------------------------------------------------


@click.command()
@click.option("--server", help="The server's URL, e.g. http://127.0.0.1:8000 (default: the saved one).")
@click.option("--username", help="Your username (prompted for on a terminal).")
@click.option("--register", is_flag=True, help="Create the account first.")
def login(server: str | None, username: str | None, register: bool) -> None:
    """Log in to a server and save the server and tokens for the other verbs.

    The password is prompted for on a terminal; otherwise it is the first line of
    stdin (and --username is required)."""
    server = server or load_config().get("server")
    if not server:
        fail("usage", "--server URL is required")
    if sys.stdin.isatty():
        username = username or click.prompt("Username", err=True)
        password = click.prompt("Password", hide_input=True, confirmation_prompt=register, err=True)
    else:
        if not username:
            fail("usage", "--username is required when the password comes from stdin")
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        fail("usage", "an empty password")
    assert username is not None

    async def go() -> None:
        async with Client(server) as client:
            if register:
                await client.register(username, password)
            tokens = await client.login(username, password)
        save_config(
            {
                "server": client.url,
                "username": username,
                "access_token": tokens["access_token"],
                "refresh_token": tokens["refresh_token"],
            }
        )

    run(go())
    click.echo(f"logged in to {server} as {username} (saved in {config_path()})")


@click.command()
@click.argument("file")
@click.option("--title", help="The article's title (default: its first line, or the page's).")
@click.option("--url", help="Where the article comes from.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--timeout", type=click.FloatRange(min=1), default=600.0, show_default=True, help="Seconds to wait for the analysis.")
@token_options
def analyze(
    file: str, title: str | None, url: str | None, as_json: bool, timeout: float, server: str | None, token: str | None
) -> None:
    """Save the article in FILE (- for stdin), or the page at FILE when it is an http(s)
    URL (the server fetches it), and print its analysis."""
    if file.startswith(("http://", "https://")):
        link: str | None = file
        content = ""
    else:
        link = None
        content = _read_file(file)
        if not content.strip():
            fail("empty_article", "the article has no text")
        title = title or _title_of(content)

    async def go() -> None:
        async with connect(server, token) as client:
            if link is None:
                submitted = await client.analyze_article(title or "", content, url)
                async with Spinner("analyzing"):
                    result = await client.wait(submitted, timeout=timeout)
                shown = title or ""
            else:
                fetching = await client.save_url(link, title)
                async with Spinner("fetching"):
                    fetched = await client.wait(fetching, timeout=timeout)
                async with Spinner("analyzing"):
                    result = await client.analysis_of(fetched["article_id"], timeout=timeout)
                shown = fetched.get("title") or link
        if as_json:
            click.echo(json.dumps(result, ensure_ascii=False, indent=2))
        else:
            click.echo(render_analysis(shown, result))

    run(go())


@click.command()
@click.argument("text")
@click.option("--intent", help="What you want from the insight (e.g. 'explain', 'critique').")
@click.option("--article", "article_id", help="The id of the article the text comes from.")
@click.option("--question", help="A question about the text.")
@click.option("--timeout", type=click.FloatRange(min=1), default=300.0, show_default=True, help="Seconds to wait for the insight.")
@token_options
def insight(
    text: str,
    intent: str | None,
    article_id: str | None,
    question: str | None,
    timeout: float,
    server: str | None,
    token: str | None,
) -> None:
    """Stream an insight on TEXT (- for stdin) to stdout as it is written."""
    selected = _read_text(text)
    if not selected.strip():
        fail("empty_text", "no text to write an insight on")

    async def go() -> None:
        out = sys.stdout
        last = ""
        async with connect(server, token) as client:
            stream: AsyncIterator[str] = client.stream_insight(
                selected, intent=intent, article_id=article_id, question=question, timeout=timeout
            )
            async with contextlib.aclosing(stream):  # type: ignore[type-var]
                async for delta in stream:
                    if getattr(delta, "restart", False) and last:
                        out.write("\n")
                        click.echo("[the insight was restarted; the text below replaces the text above]", err=True)
                    out.write(delta)
                    out.flush()
                    last = delta or last
        if not last.endswith("\n"):
            out.write("\n")
            out.flush()

    run(go())


@click.command()
@click.argument("query")
@click.option("--limit", type=click.IntRange(1, 100), default=10, show_default=True, help="How many (best first).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def search(query: str, limit: int, as_json: bool) -> None:
    """Search your articles: words (also the start of a word), "a phrase", or Chinese."""

    async def go() -> None:
        async with connect() as client:
            page = await client.search(query, limit=limit)
        items = page["items"]
        if as_json:
            click.echo(json.dumps(items, ensure_ascii=False, indent=2))
            return
        for hit in items:
            click.echo(f"{hit['article_id']}  {_one_line(hit['title'], 60)}")
            click.echo(_wrap(hit["snippet"]))
        if not items:
            click.echo("(nothing found)")

    run(go())


@click.command()
@click.option("--status", type=click.Choice(STATUSES), help="Only tasks in this state.")
@click.option("--type", "task_type", help="Only tasks of this type (e.g. insight_generation).")
@click.option("--limit", type=click.IntRange(1, 100), default=20, show_default=True, help="How many (newest first).")
@click.option("--json", "as_json", is_flag=True, help="Print the tasks as JSON.")
@token_options
def tasks(status: str | None, task_type: str | None, limit: int, as_json: bool, server: str | None, token: str | None) -> None:
    """List your tasks, newest first."""

    async def go() -> None:
        async with connect(server, token) as client:
            page = await client.list_tasks(status=status, task_type=task_type, limit=limit)
        items = page["items"]
        if as_json:
            click.echo(json.dumps(items, ensure_ascii=False, indent=2))
            return
        rows = [
            [
                t["task_id"],
                t["task_type"],
                t["status"] + (f" ({t['error']['code']})" if t.get("error") else ""),
                str(t["attempts"]),
                (t.get("created_at") or "")[:19].replace("T", " "),
                _one_line((t.get("metadata") or {}).get("preview", ""), 40),
            ]
            for t in items
        ]
        click.echo(render_table(rows, ["TASK", "TYPE", "STATUS", "TRIES", "CREATED (UTC)", "PREVIEW"]))
        if not rows:
            click.echo("(no tasks)")

    run(go())
