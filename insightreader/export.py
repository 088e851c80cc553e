"""A user's library taken elsewhere: ``markdown`` (a zip of one Markdown file per
article, which opens as an Obsidian vault) and ``json`` (one document with everything
the user owns, in the ``insightreader`` import format of docs/import-export.md; the
import endpoint that reads it back is still to come).

Both are streamed: articles are read a page at a time (``PAGE``) and each page is
written out before the next is read, so a library of 10,000 articles is never held in
memory. Building a page's bytes (Markdown, JSON, deflate) runs in a worker thread,
not on the event loop. The JSON document's shape is docs/import-export.md's.
"""

from __future__ import annotations

import asyncio
import json
import re
import zipfile
from collections.abc import AsyncIterator
from typing import Any

from .analyses import LENSES
from .records import Article, Highlight, utcnow
from .store import Reader

FORMATS = ("markdown", "json")
#: Articles read and written per step.
PAGE = 50
FORMAT_VERSION = 1
#: Characters a file name keeps of the title (Obsidian shows the name as the note's title).
NAME_CHARS = 80
#: An article with the insights asked about it and its highlights.
Entry = tuple[Article, list[dict[str, Any]], list[Highlight]]
_UNSAFE_IN_NAMES = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|#^\[\]]+')


def media_type(fmt: str) -> str:
    return "application/zip" if fmt == "markdown" else "application/json"


def file_name(fmt: str, day: str) -> str:
    return f"insightreader-{day}.{'zip' if fmt == 'markdown' else 'json'}"


# -- the JSON document ------------------------------------------------------------------


def article_document(article: Article, insights: list[dict[str, Any]], highlights: list[Highlight]) -> dict[str, Any]:
    """One article as the export holds it; keys an import does not know are kept for
    the reader, never required."""
    public = article.public()
    return {
        "article_id": article.id,
        "url": article.url,
        "title": article.title,
        "content": article.content,
        "tags": public.get("tags", []),
        "archived": public.get("archived", False),
        "favorite": public.get("favorite", False),
        "saved_at": article.created_at,
        "updated_at": article.updated_at,
        "highlights": [h.public() for h in highlights],
        "analysis": article.analysis,
        "meta_analysis": article.meta_analysis,
        "lenses": article.lenses,
        "insights": insights,
    }


async def _pages(reader: Reader, user_id: str) -> AsyncIterator[list[Entry]]:
    after = 0
    while True:
        articles = await reader.articles_after(user_id, after, PAGE)
        if not articles:
            return
        ids = [a.id for a in articles]
        insights = await reader.insights_about(user_id, ids)
        highlights = await reader.highlights_of(user_id, ids)
        yield [(a, insights.get(a.id, []), highlights.get(a.id, [])) for a in articles]
        after = articles[-1].seq


async def json_export(reader: Reader, user_id: str, username: str) -> AsyncIterator[bytes]:
    head = {"format": "insightreader", "version": FORMAT_VERSION, "exported_at": utcnow(), "username": username}
    # The head's object, left open for the articles that follow it.
    yield (json.dumps(head, ensure_ascii=False).removesuffix("}") + ', "articles": [').encode()
    first = True
    async for page in _pages(reader, user_id):
        def encode(page: list[Entry] = page, lead: bool = first) -> bytes:
            parts = [json.dumps(article_document(*entry), ensure_ascii=False) for entry in page]
            return (("" if lead else ",") + ",".join(parts)).encode()

        yield await asyncio.to_thread(encode)
        first = False
    yield b"]}"


# -- Markdown -----------------------------------------------------------------------------


def _yaml(value: Any) -> str:
    """A YAML scalar or flow list: JSON's double-quoted strings are valid YAML."""
    if isinstance(value, list):
        return "[" + ", ".join(_yaml(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return json.dumps(value, ensure_ascii=False)


def _quote(text: str) -> str:
    return "\n".join("> " + line if line.strip() else ">" for line in text.strip().splitlines())


def _strings(values: Any) -> list[str]:
    return [v for v in values if isinstance(v, str)] if isinstance(values, list) else []


def _bullets(values: Any) -> list[str]:
    return [f"- {v}" for v in _strings(values)]


def _analysis(analysis: dict[str, Any] | None) -> list[str]:
    if not isinstance(analysis, dict):
        return []
    lines = ["## Summary", "", str(analysis.get("summary") or ""), ""]
    if _strings(analysis.get("key_points")):
        lines += ["## Key points", "", *_bullets(analysis.get("key_points")), ""]
    if _strings(analysis.get("topics")):
        lines += ["Topics: " + ", ".join(_strings(analysis.get("topics"))), ""]
    return lines


_META_SECTIONS = (
    ("assumptions", "Assumptions"),
    ("rhetorical_devices", "Rhetorical devices"),
    ("missing_perspectives", "Missing perspectives"),
    ("questions_to_ask", "Questions to ask"),
)


def _meta(meta: dict[str, Any] | None) -> list[str]:
    if not isinstance(meta, dict):
        return []
    lines = ["## Meta perspective", ""]
    for key, label in (("author_stance", "Author's stance"), ("tone", "Tone")):
        if meta.get(key):
            lines += [f"**{label}:** {meta[key]}", ""]
    for key, label in _META_SECTIONS:
        if _strings(meta.get(key)):
            lines += [f"### {label}", "", *_bullets(meta.get(key)), ""]
    return lines


def _lenses(lenses: dict[str, dict[str, Any]]) -> list[str]:
    if not lenses:
        return []
    lines = ["## Thinking lenses", ""]
    for lens_type, result in lenses.items():
        lens = LENSES.get(lens_type)
        lines += [f"### {lens.name if lens else lens_type}: {result.get('title', '')}".rstrip(": "), ""]
        lines += [str(result.get("summary") or ""), ""]
        for point in result.get("points") or ():
            if isinstance(point, dict):
                lines.append(f"- **{point.get('heading', '')}:** {point.get('detail', '')}")
        lines += ["", *_bullets(result.get("questions")), ""]
    return lines


def _highlights(highlights: list[dict[str, Any]]) -> list[str]:
    if not highlights:
        return []
    lines = ["## Highlights", ""]
    for highlight in highlights:
        lines += [_quote(str(highlight.get("quote", ""))), ""]
        if highlight.get("note"):
            lines += [str(highlight["note"]), ""]
    return lines


def _insights(insights: list[dict[str, Any]]) -> list[str]:
    if not insights:
        return []
    lines = ["## Insights", ""]
    for insight in insights:
        lines += [_quote(str(insight.get("selected_text") or "")), ""]
        if insight.get("question"):
            lines += [f"*{insight['question']}*", ""]
        lines += [str(insight.get("insight") or ""), ""]
    return lines


def markdown(document: dict[str, Any]) -> str:
    """One article as a Markdown note: YAML front matter, then its title, analyses,
    highlights and insights, then its text."""
    front = {
        "title": document["title"],
        "url": document["url"],
        "tags": document["tags"],
        "saved": document["saved_at"],
        "archived": document["archived"],
        "favorite": document["favorite"],
    }
    lines = ["---", *(f"{key}: {_yaml(value)}" for key, value in front.items()), "---", "",
             f"# {document['title']}", ""]
    lines += _analysis(document["analysis"])
    lines += _meta(document["meta_analysis"])
    lines += _lenses(document["lenses"])
    lines += _highlights(document["highlights"])
    lines += _insights(document["insights"])
    lines += ["## Text", "", document["content"].strip(), ""]
    return "\n".join(lines)


def note_name(title: str, article_id: str, taken: set[str]) -> str:
    """A file name from the title, safe on every file system and unique in the vault."""
    base = " ".join(_UNSAFE_IN_NAMES.sub(" ", title).split())[:NAME_CHARS].strip(" .") or "Untitled"
    name = f"{base}.md"
    if name.casefold() in taken:
        name = f"{base} ({article_id[:8]}).md"
    taken.add(name.casefold())
    return name


class _Sink:
    """Where a streamed zip is written: not seekable, so zipfile writes each member's
    sizes after its data (a data descriptor) and never goes back."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._written = 0

    def write(self, data: bytes) -> int:
        self._chunks.append(bytes(data))
        self._written += len(data)
        return len(data)

    def tell(self) -> int:
        return self._written

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data


async def markdown_export(reader: Reader, user_id: str) -> AsyncIterator[bytes]:
    sink = _Sink()
    archive = zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED)  # type: ignore[call-overload]
    taken: set[str] = set()

    def write_page(page: list[Entry]) -> bytes:
        for entry in page:
            article = entry[0]
            name = note_name(article.title, article.id, taken)
            archive.writestr(name, markdown(article_document(*entry)))
        return sink.take()

    async for page in _pages(reader, user_id):
        yield await asyncio.to_thread(write_page, page)
    await asyncio.to_thread(archive.close)  # the central directory
    yield sink.take()
