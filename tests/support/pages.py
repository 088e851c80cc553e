"""A web site on 127.0.0.1 for the fetch tests: real-looking article pages (navigation,
ads and comments around the text), a redirect chain, a slow page, a huge page, a PDF,
plain text and error statuses; ``/articles/<anything>`` is the article page too (links
of import files, pointed here by the import tests). Runs on the test's loop; ``hits`` records each path
asked for, so a test can tell that a refused address was never contacted.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

ARTICLE_TITLE = "Street trees cool the city more than we thought"
#: Sentences only the article's own text holds.
ARTICLE_SENTENCES = [
    "Researchers measured the air temperature on forty streets of Valencia over two summers.",
    "Streets lined with mature plane trees were up to four degrees cooler at three in the afternoon.",
    "The shade kept the pavement from storing heat, so the evenings were cooler as well.",
    "The city now plans to plant twelve thousand trees along its widest avenues by 2030.",
]
#: Text around the article that is not the article.
CHROME = ["Subscribe to our newsletter", "BUY CHEAP SHOES TODAY", "First! Great post lol", "Cookie settings"]

ARTICLE_HTML = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{ARTICLE_TITLE} | The City Paper</title>
<meta name="author" content="Ana Ruiz">
<meta property="og:site_name" content="The City Paper">
<meta property="og:title" content="{ARTICLE_TITLE}">
<meta property="article:published_time" content="2026-03-04T08:00:00Z">
</head>
<body>
<header><nav><a href="/">Home</a> <a href="/news">News</a> <a href="/sport">Sport</a>
<a href="/subscribe">{CHROME[0]}</a></nav></header>
<aside class="ad advert"><a href="https://ads.example/shoes">{CHROME[1]}</a></aside>
<main><article>
<h1>{ARTICLE_TITLE}</h1>
<p class="byline">By Ana Ruiz, 4 March 2026</p>
{"".join(f"<p>{s} {s}</p>" for s in ARTICLE_SENTENCES)}
</article></main>
<section id="comments" class="comments"><h2>Comments</h2>
<div class="comment"><p>{CHROME[2]}</p></div></section>
<footer><a href="/cookies">{CHROME[3]}</a> © 2026 The City Paper</footer>
</body>
</html>
"""
PLAIN_TEXT = "Notes on street trees\n\nPlane trees shade the pavement.\nShade keeps the evening cool.\n"


@dataclass
class Site:
    host: str
    port: int
    hits: list[str] = field(default_factory=list)
    #: Set at the end of the test: the slow page stops waiting.
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str, host: str | None = None) -> str:
        return f"http://{host or self.host}:{self.port}{path}"


def _head(status: str, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers.items()), "Connection: close", "", ""]
    return "\r\n".join(lines).encode()


def _answer(status: str, content_type: str, body: bytes, **extra: str) -> bytes:
    return _head(status, {"Content-Type": content_type, "Content-Length": str(len(body)), **extra}) + body


async def _respond(site: Site, path: str, writer: asyncio.StreamWriter) -> None:
    if path == "/article" or path.startswith("/articles/") or (path.startswith("/flaky/") and site.hits.count(path) > int(path.rsplit("/", 1)[1])):
        writer.write(_answer("200 OK", "text/html; charset=utf-8", ARTICLE_HTML.encode()))
    elif path.startswith("/flaky/"):  # /flaky/N: down for the first N requests, then up
        writer.write(_answer("503 Service Unavailable", "text/html", b"<p>try later</p>"))
    elif path.startswith("/redirect/"):
        left = int(path.rsplit("/", 1)[1])
        target = "/article" if left == 0 else f"/redirect/{left - 1}"
        writer.write(_answer("302 Found", "text/plain", b"", Location=target))
    elif path.startswith("/to/"):
        # /to/<host>/<path>: a redirect to the same port on another host name or address.
        host, _, rest = path.removeprefix("/to/").partition("/")
        writer.write(_answer("302 Found", "text/plain", b"", Location=f"http://{host}:{site.port}/{rest}"))
    elif path == "/to-file":
        writer.write(_answer("302 Found", "text/plain", b"", Location="file:///etc/passwd"))
    elif path == "/slow":
        writer.write(_head("200 OK", {"Content-Type": "text/html"}))
        await writer.drain()
        await site.release.wait()
    elif path == "/huge":
        writer.write(_head("200 OK", {"Content-Type": "text/html"}))
        chunk = b"<p>" + b"all work and no play " * 3000 + b"</p>\n"
        for _ in range(2000):  # ~120 MB at most; the fetch stops reading long before
            writer.write(chunk)
            await writer.drain()
    elif path == "/huge-declared":
        writer.write(_head("200 OK", {"Content-Type": "text/html", "Content-Length": str(10**9)}))
    elif path == "/paper.pdf":
        writer.write(_answer("200 OK", "application/pdf", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n"))
    elif path == "/notes.txt":
        writer.write(_answer("200 OK", "text/plain; charset=utf-8", PLAIN_TEXT.encode()))
    elif path == "/empty":
        writer.write(_answer("200 OK", "text/html", b"<html><head></head><body><div></div></body></html>"))
    elif path.startswith("/status/"):
        code = int(path.rsplit("/", 1)[1])
        writer.write(_answer(f"{code} Status", "text/html", b"<p>no</p>"))
    else:
        writer.write(_answer("404 Not Found", "text/html", b"<p>not here</p>"))


@asynccontextmanager
async def serve_site(host: str = "127.0.0.1") -> AsyncIterator[Site]:
    """The site on ``host`` (an IPv4 or IPv6 loopback address) and a free port."""
    site: Site | None = None

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert site is not None
        try:
            request = await reader.readuntil(b"\r\n\r\n")
            path = request.split(b" ", 2)[1].decode()
            site.hits.append(path)
            await _respond(site, path, writer)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the fetch hung up (a page too large, a timeout): what the test wanted
        finally:
            writer.close()

    server = await asyncio.start_server(handle, host, 0)
    port = server.sockets[0].getsockname()[1]
    site = Site("[::1]" if ":" in host else host, port)
    try:
        yield site
    finally:
        site.release.set()
        server.close()
        await server.wait_closed()
