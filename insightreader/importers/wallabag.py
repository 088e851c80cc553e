"""wallabag's JSON export: an array of entries with ``url``, ``title``, ``content``
(HTML, made plain text), ``is_archived``, ``is_starred``, ``tags`` (names),
``created_at``, ``published_by`` (author names, joined with ", ") and
``annotations`` (``quote`` and the reader's ``text``). Everything else (``id``,
``reading_time``, ``preview_picture``, ``headers``, ...) is ignored."""

from __future__ import annotations

from typing import Any

from ..errors import BadImport
from . import fields, json_doc
from .html_text import html_to_text
from .items import Collector, ImportedHighlight, ImportItem, ImportResult, Limits


def parse(data: bytes, limits: Limits) -> ImportResult:
    document = json_doc.load(data, limits.max_depth)
    if not isinstance(document, list):
        raise BadImport("a wallabag export is a JSON array of entries")
    collector = Collector(limits)
    for index, value in enumerate(document):
        where = f"entry {index + 1}"
        entry = json_doc.obj(value, where)
        collector.add(_item(entry, where))
    return collector.result()


def _item(entry: dict[str, Any], where: str) -> ImportItem:
    content = fields.text(entry.get("content"), where, "content")
    published_by = json_doc.array(entry.get("published_by"), f"{where}: published_by")
    authors = [name.strip() for name in published_by if isinstance(name, str) and name.strip()]
    return ImportItem(
        url=fields.url(entry.get("url"), where),
        title=fields.line(entry.get("title"), where, "title"),
        content=html_to_text(content, where) if content else None,
        tags=fields.tags(_tag_names(json_doc.array(entry.get("tags"), f"{where}: tags")), where),
        archived=fields.flag(entry.get("is_archived"), where, "is_archived"),
        favorite=fields.flag(entry.get("is_starred"), where, "is_starred"),
        saved_at=fields.timestamp(entry.get("created_at"), where),
        author=", ".join(authors) or None,
        highlights=tuple(_highlights(entry, where)),
    )


def _tag_names(tags: list[Any]) -> list[Any]:
    """Names; a tag exported as an object ``{"label": ...}`` gives its label."""
    return [tag.get("label") if isinstance(tag, dict) else tag for tag in tags]


def _highlights(entry: dict[str, Any], where: str) -> list[ImportedHighlight]:
    kept = []
    for number, value in enumerate(json_doc.array(entry.get("annotations"), f"{where}: annotations"), 1):
        place = f"{where}, annotation {number}"
        annotation = json_doc.obj(value, place)
        quote = fields.text(annotation.get("quote"), place, "quote")
        if quote is not None:
            kept.append(ImportedHighlight(quote=quote, note=fields.text(annotation.get("text"), place, "text")))
    return kept
