"""HTML to plain text with the standard library's tolerant, linear parser: the text
of the document's body, one paragraph per block element, entities resolved, script,
style and other non-content elements left out. No network, no external resources."""

from __future__ import annotations

from html.parser import HTMLParser

from ..errors import BadImport

_BLOCKS = frozenset(
    "address article aside blockquote body br dd details div dl dt figcaption figure footer form "
    "h1 h2 h3 h4 h5 h6 header hr li main nav ol p pre section summary table td th tr ul".split()
)
_HIDDEN = frozenset("head script style noscript template svg math iframe object title".split())


class _TextParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.paragraphs: list[str] = []
        self._words: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN:
            self._hidden += 1
        elif tag in _BLOCKS:
            self.flush()

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCKS:
            self.flush()

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        elif tag in _BLOCKS:
            self.flush()

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self._words.extend(data.split())

    def flush(self) -> None:
        if self._words:
            self.paragraphs.append(" ".join(self._words))
            self._words = []


def html_to_text(html: str, where: str) -> str | None:
    """The readable text of ``html``, paragraphs separated by a blank line; None when
    there is none."""
    parser = _TextParser()
    try:
        parser.feed(html)
        parser.close()
    except AssertionError as exc:  # html.parser's answer to some malformed declarations
        raise BadImport(f"{where}: malformed HTML at line {parser.getpos()[0]} ({exc})") from exc
    parser.flush()
    return "\n\n".join(parser.paragraphs) or None
