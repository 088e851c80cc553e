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

from html.parser import HTMLParser

from ..errors import BadImport
from . import fields
from .items import Collector, ImportItem, ImportResult, Limits

_CONTAINER_ATTRIBUTES = ("personal_toolbar_folder", "unfiled_bookmarks_folder")
_ARCHIVE_HEADING = "read archive"


class _BookmarkParser(HTMLParser):
    def __init__(self, collector: Collector) -> None:
        super().__init__(convert_charrefs=True)
        self._collector = collector
        #: Folder name (None for a container) of each open ``<DL>``.
        self._folders: list[str | None] = []
        self._heading: str | None = None
        self._heading_is_container = False
        self._heading_text: list[str] | None = None
        self._section: str | None = None
        self._link: dict[str, str | None] | None = None
        self._link_text: list[str] = []
        self._link_line = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._finish_link()
            self._link = {name: value for name, value in attrs}
            self._link_text = []
            self._link_line = self.getpos()[0]
        elif tag in ("h1", "h3"):
            self._finish_link()
            self._heading_text = []
            self._heading_is_container = any(
                name in _CONTAINER_ATTRIBUTES and (value or "").lower() == "true" for name, value in attrs
            )
        elif tag == "dl":
            self._finish_link()
            self._folders.append(None if self._heading_is_container else self._heading)
            self._heading = None
            self._heading_is_container = False

    def handle_endtag(self, tag: str) -> None:
        if tag == "a":
            self._finish_link()
        elif tag in ("h1", "h3") and self._heading_text is not None:
            name = " ".join(" ".join(self._heading_text).split())
            self._heading_text = None
            if tag == "h1":
                self._section = name.lower()
            else:
                self._heading = name or None
        elif tag == "dl" and self._folders:
            self._finish_link()
            self._folders.pop()

    def handle_data(self, data: str) -> None:
        if self._link is not None:
            self._link_text.append(data)
        elif self._heading_text is not None:
            self._heading_text.append(data)

    def close(self) -> None:
        super().close()
        self._finish_link()

    def _finish_link(self) -> None:
        link = self._link
        if link is None:
            return
        self._link = None
        where = f"line {self._link_line}"
        tag_list = (link.get("tags") or "").split(",")
        folders = [name for name in self._folders if name]
        self._collector.add(
            ImportItem(
                url=fields.url(link.get("href"), where),
                title=" ".join(" ".join(self._link_text).split()) or None,
                content=None,
                tags=fields.tags([*tag_list, *folders], where),
                archived=self._section == _ARCHIVE_HEADING,
                saved_at=fields.timestamp(link.get("add_date") or link.get("time_added"), where),
            )
        )


def parse(data: bytes, limits: Limits) -> ImportResult:
    text = fields.decode(data)
    if "<a" not in text.lower() and "<dl" not in text.lower():
        raise BadImport("the file is not a bookmark HTML file (no <DL> list and no <A> link)")
    collector = Collector(limits)
    parser = _BookmarkParser(collector)
    try:
        parser.feed(text)
        parser.close()
    except AssertionError as exc:  # html.parser's answer to some malformed declarations
        raise BadImport(f"line {parser.getpos()[0]}: malformed HTML ({exc})") from exc
    return collector.result()
