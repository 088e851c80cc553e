"""Instapaper's CSV export: ``URL,Title,Selection,Folder,Timestamp`` and, in newer
exports, ``Tags`` (a JSON array of names). ``Folder`` is ``Unread``, ``Archive``,
``Starred`` or a folder of the user's, which becomes a tag (the item stays unread).
``Selection`` (text selected when the link was saved) is ignored."""

from __future__ import annotations

import json

from ..errors import BadImport
from . import csv_rows, fields
from .items import Collector, ImportItem, ImportResult, Limits


def parse(data: bytes, limits: Limits) -> ImportResult:
    collector = Collector(limits)
    for line, row in csv_rows.rows(data, ("URL",)):
        where = f"line {line}"
        folder = row.get("folder", "").strip()
        kind = folder.lower()
        custom = [] if kind in ("", "unread", "archive", "starred") else [folder]
        collector.add(
            ImportItem(
                url=fields.url(row.get("url"), where),
                title=fields.line(row.get("title"), where, "the title"),
                content=None,
                tags=fields.tags([*_tags(row.get("tags", ""), where), *custom], where),
                archived=kind == "archive",
                favorite=kind == "starred",
                saved_at=fields.timestamp(row.get("timestamp"), where),
            )
        )
    return collector.result()


def _tags(cell: str, where: str) -> list[object]:
    if not cell.strip():
        return []
    try:
        names = json.loads(cell)
    except (ValueError, RecursionError) as exc:
        raise BadImport(f"{where}: Tags is not a JSON array of names") from exc
    if not isinstance(names, list):
        raise BadImport(f"{where}: Tags is not a JSON array of names")
    return names
