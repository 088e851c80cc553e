"""HTML to plain text with libxml2's HTML parser (through lxml): tolerant of any markup
and linear in its input (the standard library's ``html.parser`` of Python 3.11 is
quadratic on unclosed tags and comments). The text of the document's body, one
paragraph per block element, entities resolved, script, style and other non-content
elements left out. No network, no external resources."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lxml import etree

from ..errors import BadImport

_BLOCKS = frozenset(
    "address article aside blockquote body br dd details div dl dt figcaption figure footer form "
    "h1 h2 h3 h4 h5 h6 header hr li main nav ol p pre section summary table td th tr ul".split()
)
_HIDDEN = frozenset("head script style noscript template svg math iframe object title".split())


class HtmlEvents:
    """An lxml parser target: ``start``, ``end`` and ``data`` as the parser reads them."""

    def start(self, tag: str, attrib: Mapping[str, str]) -> None:
        """An element opens (``tag`` lower-cased by the HTML parser)."""

    def end(self, tag: str) -> None:
        """An element closes (the parser closes the ones the markup left open)."""

    def data(self, data: str) -> None:
        """Text, entities resolved; one run of text may come in several pieces."""

    def close(self) -> None:
        """The document ended."""


def feed(html: str, target: HtmlEvents, where: str) -> None:
    """Parses ``html`` into ``target``'s methods; :class:`BadImport` when it cannot be."""
    parser: Any = etree.HTMLParser(target=target, no_network=True, remove_comments=True)
    try:
        parser.feed(html)
        parser.close()
    except (etree.LxmlError, ValueError) as exc:
        raise BadImport(f"{where}: cannot read the HTML ({exc})") from exc


class _Text(HtmlEvents):
    def __init__(self) -> None:
        self.paragraphs: list[str] = []
        self._pieces: list[str] = []
        self._hidden = 0

    def start(self, tag: str, attrib: Mapping[str, str]) -> None:
        if tag in _HIDDEN:
            self._hidden += 1
        elif tag in _BLOCKS:
            self.flush()

    def end(self, tag: str) -> None:
        if tag in _HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        elif tag in _BLOCKS:
            self.flush()

    def data(self, data: str) -> None:
        if not self._hidden:
            self._pieces.append(data)

    def flush(self) -> None:
        words = "".join(self._pieces).split()
        self._pieces = []
        if words:
            self.paragraphs.append(" ".join(words))


def html_to_text(html: str, where: str) -> str | None:
    """The readable text of ``html``, paragraphs separated by a blank line; None when
    there is none."""
    text = _Text()
    feed(html, text, where)
    text.flush()
    return "\n\n".join(text.paragraphs) or None
