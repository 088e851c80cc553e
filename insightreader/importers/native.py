"""This server's own JSON export (``format: "insightreader"``, ``version: 1``;
described in docs/import-export.md). An import reads the articles' url, title,
content, tags, archived, favorite, saved_at, author and highlights; ``analysis``,
``insights`` and any other member are ignored."""

from __future__ import annotations

from typing import Any

from ..errors import BadImport
from . import fields, json_doc
from .items import Collector, ImportedHighlight, ImportItem, ImportResult, Limits

VERSION = 1


def parse(data: bytes, limits: Limits) -> ImportResult:
    document = json_doc.obj(json_doc.load(data, limits.max_depth), "the file")
    if document.get("format") != "insightreader":
        raise BadImport('the file is not an InsightReader export (its "format" is not "insightreader")')
    if document.get("version") != VERSION:
        raise BadImport(f"unsupported export version {str(document.get('version'))[:20]!r} (this server reads {VERSION})")
    collector = Collector(limits)
    for index, value in enumerate(json_doc.array(document.get("articles"), "articles")):
        where = f"article {index + 1}"
        collector.add(_item(json_doc.obj(value, where), where))
    return collector.result()


def _item(article: dict[str, Any], where: str) -> ImportItem:
    return ImportItem(
        url=fields.url(article.get("url"), where),
        title=fields.line(article.get("title"), where, "title"),
        content=fields.text(article.get("content"), where, "content"),
        tags=fields.tags(json_doc.array(article.get("tags"), f"{where}: tags"), where),
        archived=fields.flag(article.get("archived"), where, "archived"),
        favorite=fields.flag(article.get("favorite"), where, "favorite"),
        saved_at=fields.timestamp(article.get("saved_at"), where),
        author=fields.line(article.get("author"), where, "author"),
        highlights=tuple(_highlights(article, where)),
    )


def _highlights(article: dict[str, Any], where: str) -> list[ImportedHighlight]:
    kept = []
    for number, value in enumerate(json_doc.array(article.get("highlights"), f"{where}: highlights"), 1):
        place = f"{where}, highlight {number}"
        highlight = json_doc.obj(value, place)
        quote = fields.text(highlight.get("quote"), place, "quote")
        if quote is None:
            raise BadImport(f"{place}: quote is missing")
        kept.append(
            ImportedHighlight(
                quote=quote,
                note=fields.text(highlight.get("note"), place, "note"),
                prefix=_raw(highlight.get("prefix"), place, "prefix"),
                suffix=_raw(highlight.get("suffix"), place, "suffix"),
            )
        )
    return kept


def _raw(value: object, where: str, name: str) -> str | None:
    """A string kept as it is (a highlight's prefix and suffix locate it, spaces count)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BadImport(f"{where}: {name} is not a string")
    return value
