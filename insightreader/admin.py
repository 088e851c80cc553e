"""The operator's side: ``insightreader admin`` on the database itself. (Accounts,
the first administrator from the environment included, are in :mod:`.accounts`.)

``admin stats`` (and ``retry-failed --dry-run``) only read: they open the database
read-only, which in WAL mode neither waits for a running server nor blocks it.

``admin retry-failed`` writes, and refuses while a server uses the database. A server
keeps its queue of pending tasks in memory and fills it only when it starts, and event
ids come from a counter only the server may advance: a task put back to pending behind
a running server's back would sit unrun (while an identical submit joined it), and its
``task_queued`` event would need an id the server could hand out again. So the command
takes the same lock a server holds, does what ``POST /api/v1/tasks/{id}/retry`` does
(same ``task_id``, earlier runs excused, ``task_queued`` published), and the next start
runs the tasks. While a server runs, each user can retry their own tasks through the
API instead.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from . import reanalysis
from .analyses import task_types
from .config import DatabaseSettings, Settings
from .errors import AlreadyRunning
from .events import EventBus
from .llm.client import served_model
from .records import Task, TaskStatus, format_time
from .store import Held, Reader, Store, Tx, hold, open_reader

log = logging.getLogger(__name__)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^(?:\d+[smhdw])+$")
_PART = re.compile(r"(\d+)([smhdw])")
_STATUSES = [s.value for s in TaskStatus]


class ServerRunning(Exception):
    """A server holds the database; the command would act behind its back."""


# -- time windows ---------------------------------------------------------------------------


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """The start of a window: a duration back from now (``90s``, ``30m``, ``1h``,
    ``2d``, ``1w``, ``1h30m``) or an ISO-8601 time (UTC unless it names a zone)."""
    now = now or datetime.now(UTC)
    value = text.strip().lower()
    if _DURATION.match(value):
        seconds = sum(int(n) * _UNITS[unit] for n, unit in _PART.findall(value))
        return now - timedelta(seconds=seconds)
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a duration (90s, 30m, 1h, 2d, 1w, 1h30m) nor an ISO-8601 time"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# -- admin stats ----------------------------------------------------------------------------


async def stats(settings: DatabaseSettings, since: datetime) -> dict[str, Any]:
    """Queue depth now; tasks created since ``since`` by status and type; failure codes
    of tasks that failed since then; tokens per user from the usage ledger (whole UTC
    days, from the day ``since`` falls on)."""
    since_text = format_time(since)
    since_day = since_text[:10]
    async with open_reader(settings) as read:
        queue = await read.queue_depth()
        counts = await read.task_counts_all(since_text)
        failures = await read.failure_counts(since_text)
        usage = await read.usage_by_user(since_day)

    by_status = dict.fromkeys(_STATUSES, 0)
    by_type: dict[str, dict[str, int]] = {}
    for row in counts:
        by_status[row["status"]] = by_status.get(row["status"], 0) + row["count"]
        by_type.setdefault(row["task_type"], dict.fromkeys(_STATUSES, 0))[row["status"]] = row["count"]

    codes: dict[str, dict[str, Any]] = {}
    for row in failures:
        entry = codes.setdefault(row["code"], {"code": row["code"], "count": 0, "task_types": {}})
        entry["count"] += row["count"]
        entry["task_types"][row["task_type"]] = row["count"]

    users = [
        {
            "user_id": row["user_id"],
            "username": row["username"],
            "prompt_tokens": row["prompt_tokens"],
            "completion_tokens": row["completion_tokens"],
            "total_tokens": row["prompt_tokens"] + row["completion_tokens"],
            "tasks": row["tasks"],
        }
        for row in usage
    ]
    return {
        "database": str(settings.path),
        "generated_at": format_time(datetime.now(UTC)),
        "since": since_text,
        "queue": {
            "pending": queue["pending"],
            "running": queue["running"],
            "oldest_pending_at": queue["oldest_pending_at"],
        },
        "tasks": {"total": sum(by_status.values()), "by_status": by_status, "by_type": by_type},
        "failures": sorted(codes.values(), key=lambda e: (-e["count"], e["code"])),
        "tokens": {
            "since_day": since_day,
            "users": users,
            "total": {
                key: sum(u[key] for u in users)
                for key in ("prompt_tokens", "completion_tokens", "total_tokens", "tasks")
            },
        },
    }


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = []
    numeric = [all(row[i].isdigit() for row in cells[1:]) for i in range(len(header))]
    for row in cells:
        padded = [c.rjust(w) if num else c.ljust(w) for c, w, num in zip(row, widths, numeric)]
        lines.append(("  " + "  ".join(padded)).rstrip())
    return lines


def format_stats(report: dict[str, Any]) -> str:
    """``stats`` as an operator reads it."""
    queue = report["queue"]
    lines = [f"database {report['database']}, since {report['since']}", ""]
    oldest = f" (oldest created {queue['oldest_pending_at']})" if queue["oldest_pending_at"] else ""
    lines.append(f"queue: {queue['pending']} pending{oldest}, {queue['running']} running")

    tasks = report["tasks"]
    lines += ["", f"tasks created since {report['since']}: {tasks['total']}"]
    if tasks["by_type"]:
        rows = [[t, *(c[s] for s in _STATUSES), sum(c.values())] for t, c in sorted(tasks["by_type"].items())]
        rows.append(["all", *(tasks["by_status"][s] for s in _STATUSES), tasks["total"]])
        lines += _table(["task_type", *_STATUSES, "total"], rows)

    failures = report["failures"]
    lines += ["", f"failures since {report['since']}: {sum(f['count'] for f in failures)}"]
    if failures:
        lines += _table(
            ["code", "count", "task types"],
            [
                [f["code"], f["count"], ", ".join(f"{t} {n}" for t, n in sorted(f["task_types"].items()))]
                for f in failures
            ],
        )

    tokens = report["tokens"]
    lines += ["", f"token use per user (UTC days from {tokens['since_day']}):"]
    if tokens["users"]:
        rows = [
            [u["username"] or u["user_id"], u["prompt_tokens"], u["completion_tokens"], u["total_tokens"], u["tasks"]]
            for u in tokens["users"]
        ]
        total = tokens["total"]
        rows.append(["all", total["prompt_tokens"], total["completion_tokens"], total["total_tokens"], total["tasks"]])
        lines += _table(["user", "prompt", "completion", "total", "tasks"], rows)
    else:
        lines.append("  none")
    return "\n".join(lines)


# -- admin retry-failed ---------------------------------------------------------------------


@dataclass(frozen=True)
class RetryOutcome:
    #: Put back to pending, as they are now.
    retried: list[Task]
    #: Left failed: an identical task (same user and input hash) is pending or running.
    skipped: list[Task]
    #: user id → username, for the tasks above.
    usernames: dict[str, str]


async def failed_since(settings: DatabaseSettings, since: datetime) -> tuple[list[Task], dict[str, str]]:
    """The failed tasks ``retry_failed`` would reset, and their users' names (read-only;
    safe beside a server)."""
    async with open_reader(settings) as read:
        tasks = await read.failed_tasks(format_time(since))
        return tasks, await _usernames(read, tasks)


async def _usernames(read: Reader, tasks: list[Task]) -> dict[str, str]:
    names = {}
    for user_id in {t.user_id for t in tasks}:
        user = await read.user(user_id)
        names[user_id] = user.username if user else user_id
    return names


async def retry_failed(settings: Settings, since: datetime) -> RetryOutcome:
    """Put every task that failed at or after ``since`` back to pending, as
    ``POST /tasks/{id}/retry`` does (same id, earlier runs excused, ``task_queued``
    published). Refuses with :class:`ServerRunning` while a server uses the database;
    the next server start runs the tasks. Operator retries are not held to the users'
    ``tasks.max_pending_per_user`` or token budget."""
    lock = _take_database(
        settings,
        "or let each user retry their own tasks with POST /api/v1/tasks/{id}/retry while it runs."
        " --dry-run lists the tasks without changing anything.",
    )
    try:
        store = Store(settings.database)
        await store.open()
        try:
            bus = EventBus(store, queue_size=1)
            await bus.start()
            failed = await store.read.failed_tasks(format_time(since))
            usernames = await _usernames(store.read, failed)

            def job(tx: Tx) -> RetryOutcome:
                retried, skipped = [], []
                for task in failed:
                    again = tx.retry_task(task.id, task.user_id)
                    if again is None:
                        skipped.append(task)
                        continue
                    bus.publish(
                        again.user_id,
                        "task_queued",
                        {"task_id": again.id, "task_type": again.task_type, "metadata": again.metadata},
                        tx=tx,
                    )
                    retried.append(again)
                return RetryOutcome(retried, skipped, usernames)

            outcome = await store.write(job)
            await bus.stop()
        finally:
            await store.close()
    finally:
        lock.close()
    log.info("operator retry: %d failed tasks back to pending, %d skipped", len(outcome.retried), len(outcome.skipped))
    return outcome


# -- admin reanalyze ------------------------------------------------------------------------


async def reanalyze_stale(settings: Settings) -> dict[str, int]:
    """Stage, for every user, a re-analysis of the results made with another model,
    prompt version or prompt settings than the configured ones (``POST
    /articles/reanalyze`` with scope ``stale`` and every kind); username → results to
    redo. Refuses with :class:`ServerRunning` while a server uses the database: its
    batch runner would not see the batches until it starts again, which then runs them."""
    lock = _take_database(settings, "or let each user start one with POST /api/v1/articles/reanalyze while it runs.")
    recipe = reanalysis.Recipe(task_types(settings.llm), served_model(settings.llm))
    staged: dict[str, int] = {}
    try:
        store = Store(settings.database)
        await store.open()
        try:
            for user in await store.read.users():
                batch = await reanalysis.start(store, recipe, user.id, "stale", reanalysis.KINDS, wake=None)
                staged[user.username] = batch.total
        finally:
            await store.close()
    finally:
        lock.close()
    log.info("operator re-analysis: %d stale results of %d users staged", sum(staged.values()), len(staged))
    return staged


def _take_database(settings: Settings, meanwhile: str) -> Held:
    """The lock a server holds on the database, for a command that writes behind no
    server's back; :class:`ServerRunning` (saying what users can do ``meanwhile``) when
    one holds it."""
    if not settings.database.url and not settings.database.path.exists():
        raise FileNotFoundError(f"no database at {settings.database.path}")
    try:
        return hold(settings.database)
    except AlreadyRunning:
        raise ServerRunning(_running_message(settings, meanwhile)) from None


def _running_message(settings: Settings, meanwhile: str) -> str:
    lock = settings.database.path.with_name(settings.database.path.name + ".lock")
    try:
        pid = "" if settings.database.url else lock.read_text().strip()
    except OSError:
        pid = ""
    who = f"a server (pid {pid})" if pid.isdigit() else "a server"
    return (
        f"{who} is using {settings.database.label}, and it only picks up this work when it"
        f" starts: stop it, run this command again, then start it (the tasks run then); {meanwhile}"
    )
