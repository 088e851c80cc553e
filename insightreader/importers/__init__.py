"""Reading other services' export files (and this server's own) into :class:`ImportItem`
values: one module per format behind one function, :func:`parse`. Pure parsing; saving
the items is the library's job.

Every parser reads the whole file before returning, so an unreadable file raises
:class:`~insightreader.errors.BadImport` and nothing of it is used. Parsers are linear in
their input and bounded by :class:`Limits`.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import ValidationFailed
from . import instapaper_csv, native, netscape, omnivore, pocket_csv, readwise_csv, wallabag
from .items import ImportedHighlight, ImportItem, ImportResult, Limits

__all__ = ["FORMATS", "ImportItem", "ImportResult", "ImportedHighlight", "Limits", "parse"]

Parser = Callable[[bytes, Limits], ImportResult]

FORMATS: dict[str, Parser] = {
    "netscape": netscape.parse,
    "pocket_csv": pocket_csv.parse,
    "instapaper_csv": instapaper_csv.parse,
    "omnivore": omnivore.parse,
    "wallabag": wallabag.parse,
    "readwise_csv": readwise_csv.parse,
    "insightreader": native.parse,
}


def parse(fmt: str, data: bytes, limits: Limits | None = None) -> ImportResult:
    """The items of ``data`` read as format ``fmt``. An unknown format is a
    :class:`ValidationFailed` (the request is well formed, its value not acceptable);
    a file that cannot be read as ``fmt`` is a ``BadImport``."""
    parser = FORMATS.get(fmt)
    if parser is None:
        raise ValidationFailed(f"unknown import format {fmt[:40]!r}; formats: {', '.join(FORMATS)}")
    return parser(data, limits or Limits())
