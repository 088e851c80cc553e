"""What every import parser returns: the items it read, and the limits it reads within."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import BadImport


@dataclass(frozen=True)
class ImportedHighlight:
    """A passage the source marked, with the reader's note on it."""

    quote: str
    note: str | None = None
    prefix: str | None = None
    suffix: str | None = None


@dataclass(frozen=True)
class ImportItem:
    """One saved article as the source file describes it. ``content`` is plain text,
    ``saved_at`` is written as :func:`insightreader.records.format_time` writes it."""

    url: str | None
    title: str | None
    content: str | None
    tags: tuple[str, ...] = ()
    archived: bool = False
    favorite: bool = False
    saved_at: str | None = None
    author: str | None = None
    highlights: tuple[ImportedHighlight, ...] = ()


@dataclass(frozen=True)
class ImportResult:
    """The items of a file, in file order, and how many it held with neither a URL nor
    content (nothing to save or fetch, so left out)."""

    items: tuple[ImportItem, ...]
    skipped: int


@dataclass(frozen=True)
class Limits:
    """How much a file may hold; beyond any of them the whole file is refused."""

    max_items: int = 100_000
    max_zip_members: int = 250_000
    max_unzipped_bytes: int = 512 * 1024 * 1024
    #: Nesting of JSON arrays and objects, and of bookmark folders.
    max_depth: int = 64


class Collector:
    """Gathers a file's items: counts every item against ``max_items`` and sets aside
    those without URL and content."""

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._items: list[ImportItem] = []
        self._seen = 0
        self._skipped = 0

    def add(self, item: ImportItem) -> None:
        if self._seen >= self._limits.max_items:
            raise BadImport(f"the file holds more than {self._limits.max_items} items")
        self._seen += 1
        if item.url is None and item.content is None:
            self._skipped += 1
        else:
            self._items.append(item)

    def result(self) -> ImportResult:
        return ImportResult(items=tuple(self._items), skipped=self._skipped)
