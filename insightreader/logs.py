"""Logging: key=value lines by default, JSON with ``log.format = "json"``.

Every line written while a request is handled carries its ``request_id``, and every
line written while a task runs carries its ``task_id``: both live in context
variables (set by the app for a request, by the engine around a run) and a
:class:`ContextFilter` on the handler copies them onto each record. A line may also
name them itself (``extra={"task_id": …}``), which wins.

No secret reaches the output: before a line is written, its message, its extra
fields and its traceback are scrubbed (:func:`redact`) of JSON web tokens (access
and refresh tokens, SSE tickets), ``Bearer`` credentials, ``token=``/``ticket=``/
``password=``-style pairs, credentials in URLs, API tokens (``irt_…``), OpenAI-style
API keys and the
literal secrets registered with :func:`add_secret`; an extra field whose name says
it is a secret (``password``, ``api_key``, ``authorization``…) is replaced whole.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from .config import LogSettings

#: The id of the HTTP request being handled (set by the app, echoed as ``X-Request-ID``).
request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("insightreader_request_id", default=None)
#: The id of the task being run (set by the engine around a run).
task_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("insightreader_task_id", default=None)

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
#: Context fields, written first among the extra fields.
_CONTEXT = ("request_id", "task_id")
REDACTED = "***"


class ContextFilter(logging.Filter):
    """Copies the current request id and task id onto each record (unless it has its own)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in (("request_id", request_id), ("task_id", task_id)):
            value = var.get()
            if value is not None and getattr(record, name, None) is None:
                setattr(record, name, value)
        return True


# -- redaction ------------------------------------------------------------------------

_SECRETS: set[str] = set()
#: Literal secrets shorter than this are not registered (they would mangle ordinary text).
MIN_SECRET_LENGTH = 8

_SENSITIVE_KEY = re.compile(
    r"(?i)^(?:.*[_-])?(?:password|passwd|secret|token|ticket|api[_-]?key|authorization|cookie)$"
)
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # JSON web tokens: access and refresh tokens, SSE tickets.
    (re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"), REDACTED),
    # Authorization: Bearer …, Basic …
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{4,}"), r"\1 " + REDACTED),
    # token=…, ticket=…, api_key=… (query strings, key=value text)
    (
        re.compile(
            r"(?i)\b((?:access_|refresh_)?token|ticket|api_?key|password|passwd|secret|authorization)"
            r"(=|:\s?)(?![*]{3})[^\s&\"',;]+"
        ),
        r"\1\2" + REDACTED,
    ),
    # "password": "…" in JSON text
    (
        re.compile(
            r'(?i)("(?:(?:access_|refresh_)?token|ticket|api_?key|password|secret|authorization)"\s*:\s*")'
            r'[^"]*(")'
        ),
        r"\1" + REDACTED + r"\2",
    ),
    # scheme://user:password@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@"), r"\1" + REDACTED + "@"),
    # Personal API tokens (irt_…), wherever they appear
    (re.compile(r"\birt_[A-Za-z0-9_-]{8,}"), "irt_" + REDACTED),
    # OpenAI-style API keys (sk-…, sk-proj-…)
    (re.compile(r"\bsk-[A-Za-z0-9_-]{12,}"), "sk-" + REDACTED),
)


def add_secret(value: str | None) -> None:
    """Never write ``value`` (e.g. the LLM API key, the token signing secret)."""
    if value and len(value) >= MIN_SECRET_LENGTH:
        _SECRETS.add(value)


def redact(text: str) -> str:
    """``text`` without secrets (see the module docstring)."""
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, REDACTED)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _scrub(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return redact(value)
    if depth > 5:
        return value
    if isinstance(value, dict):
        return {
            k: (REDACTED if isinstance(k, str) and _SENSITIVE_KEY.match(k) else _scrub(v, depth + 1))
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [_scrub(v, depth + 1) for v in value]
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    return redact(str(value))


def _fields(record: logging.LogRecord, formatter: logging.Formatter) -> dict[str, Any]:
    """Everything a line says, scrubbed: ts, level, logger, msg, context and extra fields, exc."""
    entry: dict[str, Any] = {
        "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
        "level": record.levelname.lower(),
        "logger": record.name,
        "msg": redact(record.getMessage()),
    }
    extras = {k: v for k, v in vars(record).items() if k not in _STANDARD}
    for name in _CONTEXT:
        if extras.get(name) is not None:
            entry[name] = redact(str(extras[name]))
    for key, value in extras.items():
        if key in _CONTEXT:
            continue
        entry[key] = REDACTED if _SENSITIVE_KEY.match(key) else _scrub(value)
    if record.exc_info:
        entry["exc"] = redact(formatter.formatException(record.exc_info))
    if record.stack_info:
        entry["stack"] = redact(formatter.formatStack(record.stack_info))
    return entry


class KeyValueFormatter(logging.Formatter):
    """``ts=… level=… logger=… msg="…" request_id="…" task_id="…" key=value…``"""

    def format(self, record: logging.LogRecord) -> str:
        entry = _fields(record, self)
        parts = [f"ts={entry.pop('ts')}", f"level={entry.pop('level')}", f"logger={entry.pop('logger')}"]
        parts += [f"{k}={json.dumps(v, ensure_ascii=False, default=str)}" for k, v in entry.items()]
        return " ".join(parts)


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_fields(record, self), ensure_ascii=False, default=str)


def _log_uncaught(
    kind: type[BaseException], exc: BaseException, tb: TracebackType | None
) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, exc, tb)
        return
    logging.getLogger("insightreader").critical("uncaught exception", exc_info=(kind, exc, tb))


def configure(settings: LogSettings) -> None:
    """Send every log line (ours, Hypercorn's, warnings, uncaught exceptions) through one
    handler on stderr, in the configured format."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if settings.format == "json" else KeyValueFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level)
    # Hypercorn's loggers are configured by the server; they propagate to ours.
    for name in ("hypercorn.error", "hypercorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # One line per HTTP request to the LLM provider is noise next to our own lines and
    # the metrics; keep them for DEBUG.
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        for name in ("httpx", "httpx2", "httpcore"):
            logging.getLogger(name).setLevel(logging.WARNING)
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
