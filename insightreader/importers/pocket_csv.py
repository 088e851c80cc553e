"""Pocket's CSV export: ``title,url,time_added,tags,status``; tags separated by
``|``; ``status`` is ``unread`` or ``archive``; ``time_added`` is unix seconds."""

from __future__ import annotations

from ..errors import BadImport
from . import csv_rows, fields
from .items import Collector, ImportItem, ImportResult, Limits


def parse(data: bytes, limits: Limits) -> ImportResult:
    collector = Collector(limits)
    for line, row in csv_rows.rows(data, ("url",)):
        where = f"line {line}"
        status = row.get("status", "").strip().lower()
        if status not in ("", "unread", "archive"):
            raise BadImport(f"{where}: unknown status {status[:40]!r} (expected unread or archive)")
        collector.add(
            ImportItem(
                url=fields.url(row.get("url"), where),
                title=fields.line(row.get("title"), where, "the title"),
                content=None,
                tags=fields.tags(row.get("tags", "").split("|"), where),
                archived=status == "archive",
                saved_at=fields.timestamp(row.get("time_added"), where),
            )
        )
    return collector.result()
