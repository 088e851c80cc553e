"""A fetched page's main text and metadata, by trafilatura (navigation, ads and comments
left out). CPU work: callers run :func:`extract` in a worker thread, never on the loop."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from .errors import TaskError
from .fetching import HTML_TYPES, Page

#: The ``lang`` of the page's ``<html>`` element (trafilatura only detects a language
#: with an optional dependency; the page's own statement is better anyway).
_HTML_LANG = re.compile(rb"<html\b[^>]*?\blang\s*=\s*[\"']?([A-Za-z]{2,3}(?:-[A-Za-z0-9]+)*)", re.IGNORECASE)
#: A plain-text page's title is its first line, cut to this many characters.
TITLE_CHARS = 200


@dataclass(frozen=True)
class Extracted:
    title: str
    text: str
    author: str | None = None
    site_name: str | None = None
    #: ISO date (YYYY-MM-DD) the page says it was published.
    published: str | None = None
    language: str | None = None

    def metadata(self) -> dict[str, str]:
        """The metadata that was found (``author``, ``site_name``, ``published``, ``language``)."""
        found = {"author": self.author, "site_name": self.site_name, "published": self.published, "language": self.language}
        return {key: value for key, value in found.items() if value}


def _decoded(page: Page) -> str | bytes:
    if page.charset is None:
        return page.body  # trafilatura detects the encoding itself
    try:
        return page.body.decode(page.charset, errors="replace")
    except LookupError:
        return page.body


def _plain(page: Page) -> Extracted:
    text = _decoded(page)
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    text = text.replace("\r\n", "\n").strip()
    title = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return Extracted(title=title[:TITLE_CHARS], text=text)


def _html(page: Page) -> Extracted:
    # Imported here, on the extraction's worker thread: trafilatura takes ~0.1 s to
    # import, and a server that never fetches a page never needs it.
    import trafilatura

    document = trafilatura.bare_extraction(
        _decoded(page), url=page.url, with_metadata=True, include_comments=False, include_tables=True
    )
    if document is None:
        return Extracted(title="", text="")
    lang = _HTML_LANG.search(page.body[:8192])
    return Extracted(
        title=(document.title or "").strip(),
        text=(document.text or "").strip(),
        author=document.author,
        site_name=document.sitename,
        published=document.date,
        language=lang[1].decode().lower() if lang else document.language,
    )


def extract(page: Page) -> Extracted:
    """The page's main text and metadata; ``fetch_no_content`` when it has no text."""
    extracted = _html(page) if page.media_type in HTML_TYPES else _plain(page)
    if not extracted.text:
        raise TaskError("fetch_no_content", f"no readable text was found on {page.url[:200]}")
    if not extracted.title:
        return replace(extracted, title=extracted.text.splitlines()[0][:TITLE_CHARS])
    return extracted
