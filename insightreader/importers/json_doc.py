"""A JSON document read within the limits, and typed access to its objects' members."""

from __future__ import annotations

import json
from typing import Any

from ..errors import BadImport
from . import fields


def load(data: bytes | str, depth: int, name: str = "the file") -> Any:
    """The parsed document; :class:`BadImport` when it is not JSON or nests deeper
    than ``depth`` arrays and objects."""
    text = fields.decode(data, name) if isinstance(data, bytes) else data
    try:
        document = json.loads(text)
    except RecursionError as exc:
        raise BadImport(f"{name} nests arrays and objects deeper than {depth} levels") from exc
    except json.JSONDecodeError as exc:
        raise BadImport(f"{name} is not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from exc
    except ValueError as exc:  # a number too long to convert
        raise BadImport(f"{name} is not JSON this server reads ({exc})") from exc
    _check_depth(document, depth, name)
    return document


def _check_depth(document: Any, depth: int, name: str) -> None:
    pending: list[tuple[Any, int]] = [(document, 1)]
    while pending:
        value, level = pending.pop()
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
        if children is None:
            continue
        if level > depth:
            raise BadImport(f"{name} nests arrays and objects deeper than {depth} levels")
        pending.extend((child, level + 1) for child in children)


def array(value: Any, where: str) -> list[Any]:
    """``value`` as a list (None is empty)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadImport(f"{where} is not an array")
    return value


def obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadImport(f"{where} is not an object")
    return value
