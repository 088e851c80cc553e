"""Netscape bookmark HTML: the export of browsers, Karakeep, Linkwarden, and Pocket's
old HTML export.

Each ``<A HREF>`` is an item: its text the title, ``ADD_DATE`` (or Pocket's
``time_added``) the saved time, ``TAGS`` (Pocket: ``tags``) comma-separated tags.
The names of the ``<H3>`` folders around a link become tags too, except the
browser's own containers (``PERSONAL_TOOLBAR_FOLDER`` / ``UNFILED_BOOKMARKS_FOLDER``).
Links under Pocket's ``<H1>Read Archive</H1>`` are archived. ``<DD>`` descriptions,
icons and ``TOREAD``/``PRIVATE`` are ignored.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import BadImport
from . import fields
from .html_text import HtmlEvents, feed
from .items import Collector, ImportItem, ImportResult, Limits

_CONTAINER_ATTRIBUTES = ("personal_toolbar_folder", "unfiled_bookmarks_folder")
_ARCHIVE_HEADING = "read archive"


class _Bookmarks(HtmlEvents):
    def __init__(self, collector: Collector, max_depth: int) -> None:
        self._collector = collector
        self._max_depth = max_depth
        #: Folder name (None for a container or a list without a heading) of each open ``<DL>``.
        self._folders: list[str | None] = []
        self._heading: str | None = None
        self._heading_is_container = False
        self._heading_text: list[str] | None = None
        self._section: str | None = None
        self._link: dict[str, str] | None = None
        self._link_text: list[str] = []
        self._links = 0

    def start(self, tag: str, attrib: Mapping[str, str]) -> None:
        if tag == "a":
            self._finish_link()
            self._link = {name.lower(): value for name, value in attrib.items()}
            self._link_text = []
        elif tag in ("h1", "h3"):
            self._finish_link()
            self._heading_text = []
            self._heading_is_container = any(
                name.lower() in _CONTAINER_ATTRIBUTES and value.lower() == "true" for name, value in attrib.items()
            )
        elif tag == "dl":
            self._finish_link()
            if len(self._folders) >= self._max_depth:
                raise BadImport(f"after link {self._links}: folders nested deeper than {self._max_depth} levels")
            self._folders.append(None if self._heading_is_container else self._heading)
            self._heading = None
            self._heading_is_container = False

    def end(self, tag: str) -> None:
        if tag == "a":
            self._finish_link()
        elif tag in ("h1", "h3") and self._heading_text is not None:
            name = " ".join("".join(self._heading_text).split())
            self._heading_text = None
            if tag == "h1":
                self._section = name.lower()
            else:
                self._heading = name or None
        elif tag == "dl" and self._folders:
            self._finish_link()
            self._folders.pop()

    def data(self, data: str) -> None:
        if self._link is not None:
            self._link_text.append(data)
        elif self._heading_text is not None:
            self._heading_text.append(data)

    def close(self) -> None:
        self._finish_link()

    def _finish_link(self) -> None:
        link = self._link
        if link is None:
            return
        self._link = None
        self._links += 1
        where = f"link {self._links}"
        tag_list = link.get("tags", "").split(",")
        folders = [name for name in self._folders if name]
        self._collector.add(
            ImportItem(
                url=fields.url(link.get("href"), where),
                title=" ".join("".join(self._link_text).split()) or None,
                content=None,
                tags=fields.tags([*tag_list, *folders], where),
                archived=self._section == _ARCHIVE_HEADING,
                saved_at=fields.timestamp(link.get("add_date") or link.get("time_added"), where),
            )
        )


def parse(data: bytes, limits: Limits) -> ImportResult:
    text = fields.decode(data)
    lowered = text.lower()
    if "<a" not in lowered and "<dl" not in lowered:
        raise BadImport("the file is not a bookmark HTML file (no <DL> list and no <A> link)")
    collector = Collector(limits)
    feed(text, _Bookmarks(collector, limits.max_depth), "the file")
    return collector.result()
