"""Omnivore's export zip: ``metadata_*.json`` (arrays of items with ``slug``, ``url``,
``title``, ``author``, ``labels``, ``state``, ``savedAt``), ``content/<slug>.html``
(made plain text) and ``highlights/<slug>.md`` (each highlight a ``> quote
[⤴️](link)`` block, the note on the lines after it). ``state`` ``Archived`` is
archived and ``Deleted`` items are skipped; ``description``, ``thumbnail``,
``readingProgress`` and the other dates are ignored. Omnivore has no favourites."""

from __future__ import annotations

import posixpath
from typing import Any

from ..errors import BadImport
from . import fields, json_doc, zip_archive
from .html_text import html_to_text
from .items import Collector, ImportedHighlight, ImportItem, ImportResult, Limits

_LINK_MARK = " [⤴️]("


def parse(data: bytes, limits: Limits) -> ImportResult:
    files = zip_archive.members(data, limits)
    metadata = sorted(
        name for name in files if posixpath.basename(name).startswith("metadata_") and name.endswith(".json")
    )
    if not metadata:
        raise BadImport("the zip archive has no metadata_*.json file: not an Omnivore export")
    collector = Collector(limits)
    for name in metadata:
        document = json_doc.load(files[name], limits.max_json_depth, name)
        if not isinstance(document, list):
            raise BadImport(f"{name} is not a JSON array of items")
        for index, value in enumerate(document):
            where = f"{name}, item {index + 1}"
            entry = json_doc.obj(value, where)
            state = fields.text(entry.get("state"), where, "state") or ""
            if state.lower() == "deleted":
                collector.skip()
                continue
            collector.add(_item(entry, files, posixpath.dirname(name), state, where))
    return collector.result()


def _item(entry: dict[str, Any], files: dict[str, bytes], root: str, state: str, where: str) -> ImportItem:
    slug = fields.text(entry.get("slug"), where, "slug")
    content = highlights = None
    if slug is not None:
        content = files.get(posixpath.join(root, "content", f"{slug}.html"))
        highlights = files.get(posixpath.join(root, "highlights", f"{slug}.md"))
    return ImportItem(
        url=fields.url(entry.get("url"), where),
        title=fields.line(entry.get("title"), where, "title"),
        content=html_to_text(fields.decode(content)) if content else None,
        tags=fields.tags(_label_names(json_doc.array(entry.get("labels"), f"{where}: labels")), where),
        archived=state.lower() == "archived",
        saved_at=fields.timestamp(entry.get("savedAt"), where),
        author=fields.line(entry.get("author"), where, "author"),
        highlights=parse_highlights(fields.decode(highlights)) if highlights else (),
    )


def _label_names(labels: list[Any]) -> list[Any]:
    """Names; a label exported as an object ``{"name": ...}`` gives its name."""
    return [label.get("name") if isinstance(label, dict) else label for label in labels]


def parse_highlights(markdown: str) -> tuple[ImportedHighlight, ...]:
    """The highlights of one ``highlights/<slug>.md``: a quote is a run of ``>`` lines
    (the link back to Omnivore at its end dropped), its note the text up to the next."""
    found: list[ImportedHighlight] = []
    quote: list[str] = []
    note: list[str] = []

    def finish() -> None:
        if quote:
            text = "\n".join(quote).strip()
            if text:
                found.append(ImportedHighlight(quote=text, note="\n".join(note).strip() or None))
        quote.clear()
        note.clear()

    for line in markdown.splitlines():
        if line.startswith(">"):
            if note:
                finish()
            quote.append(_without_link(line[1:].strip()))
        elif quote:
            note.append(line)
    finish()
    return tuple(found)


def _without_link(line: str) -> str:
    at = line.rfind(_LINK_MARK)
    return line[:at] if at >= 0 and line.endswith(")") else line
