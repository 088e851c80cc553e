"""Cursor pagination shared by every list: opaque cursors over a row's ``seq``."""

from __future__ import annotations

import base64
import binascii

from ..errors import ValidationFailed

MAX_LIMIT = 100


def clamp_limit(limit: int) -> int:
    return max(1, min(MAX_LIMIT, limit))


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"s{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    digits = text[1:]
    # ASCII digits only ("²".isdigit() is true) and few enough for an SQLite integer.
    if text.startswith("s") and digits.isascii() and digits.isdigit() and len(digits) <= 18:
        return int(digits)
    raise ValidationFailed("cursor is not one this server gave out")


def page(rows: list, limit: int) -> tuple[list, str | None]:  # type: ignore[type-arg]
    """Split ``limit + 1`` fetched rows into the page and the next cursor."""
    items = rows[:limit]
    return items, encode_cursor(items[-1].seq) if len(rows) > limit else None
