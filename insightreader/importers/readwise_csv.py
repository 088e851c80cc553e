"""Readwise Reader's CSV export: ``Title,URL,ID,Document tags,Saved date,Reading
progress,Location,Seen``. ``Document tags`` is a bracketed list (``['a', 'b']`` or
JSON ``["a", "b"]``), or plain comma-separated names. ``Location`` ``archive`` is
archived, ``shortlist`` is a favourite; ``new``, ``later`` and ``feed`` are unread.
``ID``, ``Reading progress`` and ``Seen`` are ignored."""

from __future__ import annotations

import ast
import json

from ..errors import BadImport
from . import csv_rows, fields
from .items import Collector, ImportItem, ImportResult, Limits

_LOCATIONS = ("", "new", "later", "shortlist", "archive", "feed")


def parse(data: bytes, limits: Limits) -> ImportResult:
    collector = Collector(limits)
    for line, row in csv_rows.rows(data, ("URL",)):
        where = f"line {line}"
        location = row.get("location", "").strip().lower()
        if location not in _LOCATIONS:
            raise BadImport(f"{where}: unknown Location {location[:40]!r}")
        collector.add(
            ImportItem(
                url=fields.url(row.get("url"), where),
                title=fields.line(row.get("title"), where, "the title"),
                content=None,
                tags=fields.tags(_tags(row.get("document tags", ""), where), where),
                archived=location == "archive",
                favorite=location == "shortlist",
                saved_at=fields.timestamp(row.get("saved date"), where),
            )
        )
    return collector.result()


def _tags(cell: str, where: str) -> list[object]:
    cell = cell.strip()
    if not cell.startswith("["):
        return list(cell.split(","))
    try:
        names = json.loads(cell)
    except (ValueError, RecursionError):
        try:
            names = ast.literal_eval(cell)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
            raise BadImport(f"{where}: Document tags is not a list of names") from exc
    if not isinstance(names, list):
        raise BadImport(f"{where}: Document tags is not a list of names")
    return names
