"""Field values as every format needs them: UTF-8 text, http(s) URLs, normalised tags,
timestamps in the store's form and yes/no flags. A value that is there but cannot be
read raises :class:`BadImport` naming ``where`` it is."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from urllib.parse import urlsplit

from ..errors import BadImport
from ..records import format_time

#: Longer URLs are not URLs a page can be fetched from; they count as missing.
MAX_URL_CHARS = 8192
#: Unix times above this are milliseconds (10^11 seconds is the year 5138).
_MILLISECONDS_FROM = 10**11


def decode(data: bytes, name: str = "the file") -> str:
    """``name`` (the file, or a member of its zip) as text: UTF-8, with or without a
    byte-order mark."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadImport(f"{name} is not UTF-8 text (invalid byte at offset {exc.start})") from exc


def url(value: object, where: str) -> str | None:
    """An http or https URL, or None when there is none (empty, another scheme such as
    ``javascript:`` or ``place:``, or too long)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadImport(f"{where}: the URL is not a string")
    candidate = value.strip()
    if not candidate or len(candidate) > MAX_URL_CHARS:
        return None
    try:
        parts = urlsplit(candidate)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return candidate


def text(value: object, where: str, name: str) -> str | None:
    """A string field, trimmed; None when absent or empty."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadImport(f"{where}: {name} is not a string")
    return value.strip() or None


def line(value: object, where: str, name: str) -> str | None:
    """A one-line field such as a title: white space runs (line breaks too) become one
    space; None when absent or empty."""
    kept = text(value, where, name)
    return " ".join(kept.split()) if kept is not None else None


def tags(values: Iterable[object], where: str) -> tuple[str, ...]:
    """Trimmed, empty ones dropped, case-insensitively unique keeping the first spelling."""
    kept: list[str] = []
    seen: set[str] = set()
    for value in values:
        if not isinstance(value, str):
            raise BadImport(f"{where}: a tag is not a string")
        name = value.strip()
        key = name.casefold()
        if name and key not in seen:
            seen.add(key)
            kept.append(name)
    return tuple(kept)


def timestamp(value: object, where: str) -> str | None:
    """Unix seconds (a number or a string of digits; milliseconds when above 10^11) or
    an ISO-8601 string (without an offset it is UTC), as the store writes times."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise BadImport(f"{where}: the time {value!r} is not a time")
    try:
        if isinstance(value, int | float):
            return _from_unix(float(value))
        if isinstance(value, str):
            candidate = value.strip()
            if not candidate:
                return None
            if candidate.isascii() and candidate.isdigit():
                return _from_unix(float(candidate))
            moment = datetime.fromisoformat(candidate)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            return format_time(moment)
    except (ValueError, OverflowError, OSError) as exc:
        raise BadImport(f"{where}: cannot read the time {str(value)[:40]!r}") from exc
    raise BadImport(f"{where}: the time is neither a number nor a string")


def _from_unix(seconds: float) -> str:
    if seconds >= _MILLISECONDS_FROM:
        seconds /= 1000
    return format_time(datetime.fromtimestamp(seconds, UTC))


def flag(value: object, where: str, name: str) -> bool:
    """A yes/no field: JSON true/false, 0/1, or the strings "true"/"false"/"0"/"1"."""
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("0", "1", "true", "false", ""):
        return value.strip().lower() in ("1", "true")
    raise BadImport(f"{where}: {name} is not true or false")
