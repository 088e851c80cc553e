"""Omnivore's export zip: ``metadata_*.json`` (arrays of items with ``slug``, ``url``,
``title``, ``author``, ``labels``, ``state``, ``savedAt``), ``content/<slug>.html``
(made plain text) and ``highlights/<slug>.md`` (each highlight a ``> quote`` block,
its note in the blocks after it). ``state`` ``Archived`` is archived (the others are
``Active`` and ``Unknown``); ``description``, ``thumbnail``, ``readingProgress`` and
the other dates are ignored. Omnivore has no favourites."""

from __future__ import annotations

import posixpath
from typing import Any

from ..errors import BadImport
from . import fields, json_doc, zip_archive
from .html_text import html_to_text
from .items import Collector, ImportedHighlight, ImportItem, ImportResult, Limits

def parse(data: bytes, limits: Limits) -> ImportResult:
    files = zip_archive.members(data, limits)
    metadata = sorted(
        name for name in files if posixpath.basename(name).startswith("metadata_") and name.endswith(".json")
    )
    if not metadata:
        raise BadImport("the zip archive has no metadata_*.json file: not an Omnivore export")
    collector = Collector(limits)
    for name in metadata:
        document = json_doc.load(files[name], limits.max_depth, name)
        if not isinstance(document, list):
            raise BadImport(f"{name} is not a JSON array of items")
        for index, value in enumerate(document):
            where = f"{name}, item {index + 1}"
            entry = json_doc.obj(value, where)
            collector.add(_item(entry, files, posixpath.dirname(name), where))
    return collector.result()


def _item(entry: dict[str, Any], files: dict[str, bytes], root: str, where: str) -> ImportItem:
    state = fields.text(entry.get("state"), where, "state") or ""
    slug = fields.text(entry.get("slug"), where, "slug")
    content_name = posixpath.join(root, "content", f"{slug}.html")
    highlights_name = posixpath.join(root, "highlights", f"{slug}.md")
    content = files.get(content_name) if slug is not None else None
    highlights = files.get(highlights_name) if slug is not None else None
    return ImportItem(
        url=fields.url(entry.get("url"), where),
        title=fields.line(entry.get("title"), where, "title"),
        content=html_to_text(fields.decode(content, content_name), content_name) if content else None,
        tags=fields.tags(_label_names(json_doc.array(entry.get("labels"), f"{where}: labels")), where),
        archived=state.lower() == "archived",
        saved_at=fields.timestamp(entry.get("savedAt"), where),
        author=fields.line(entry.get("author"), where, "author"),
        highlights=parse_highlights(fields.decode(highlights, highlights_name)) if highlights else (),
    )


def _label_names(labels: list[Any]) -> list[Any]:
    """Names; a label exported as an object ``{"name": ...}`` gives its name."""
    return [label.get("name") if isinstance(label, dict) else label for label in labels]


def parse_highlights(markdown: str) -> tuple[ImportedHighlight, ...]:
    """The highlights of one ``highlights/<slug>.md`` as Omnivore writes it (its
    ``highlightToMarkdown``): blocks separated by blank lines; a block starting with
    ``>`` is a quote (its paragraphs on ``> `` lines), an optional block of ``#label``
    words after it is ignored, and the blocks up to the next quote are its note."""
    found: list[ImportedHighlight] = []
    quote: str | None = None
    note: list[str] = []

    def finish() -> None:
        if quote:
            found.append(ImportedHighlight(quote=quote, note="\n\n".join(note) or None))
        note.clear()

    for block in _blocks(markdown):
        if block[0].startswith(">"):
            finish()
            quote = "\n".join(line[1:].strip() if line.startswith(">") else line.strip() for line in block).strip()
        elif quote is not None and not note and all(word.startswith("#") for word in " ".join(block).split()):
            continue
        elif quote is not None:
            note.append("\n".join(block).strip())
    finish()
    return tuple(found)


def _blocks(markdown: str) -> list[list[str]]:
    blocks: list[list[str]] = [[]]
    for line in markdown.splitlines():
        if line.strip():
            blocks[-1].append(line)
        elif blocks[-1]:
            blocks.append([])
    return [block for block in blocks if block]
