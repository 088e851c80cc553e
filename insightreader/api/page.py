"""``GET /``: the reading page, and its static assets under ``/assets/<version>/``.

The page is plain files in ``insightreader/web`` (no build step, nothing from a CDN).
They are read once, when the blueprint is first used, and served from memory:

* ``GET /`` is ``index.html`` with ``__ASSETS__`` replaced by ``/assets/<version>``,
  where ``<version>`` is a hash of every asset. It is sent with ``Cache-Control:
  no-cache`` (the browser revalidates it with its ETag, a cheap 304).
* ``GET /assets/<version>/<name>`` sends an asset. The ES modules import each other by
  relative paths, so they all resolve inside the same versioned directory: under the
  current version they are ``immutable`` for a year, and a new release (new hashes)
  gets new URLs. A request for another version (a page loaded before an upgrade)
  gets today's file with ``no-cache``.
* ``GET /manifest.webmanifest`` makes the page an installable web app; its
  ``share_target`` sends a shared link to ``/?url=&title=&text=``, which the page saves.
* Every answer carries a strict Content-Security-Policy: only this origin's scripts,
  styles, images and connections; no inline script or style; Trusted Types required
  (the page never writes HTML from strings), no framing, no plugins.
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from quart import Blueprint, Response, request
from quart_schema import hide

from ..errors import NotFound
from .openapi import raw_response

bp = Blueprint("page", __name__)

WEB = Path(__file__).resolve().parent.parent / "web"
ASSET_PLACEHOLDER = "__ASSETS__"
#: Served at the root with their asset links filled in, not under /assets.
ROOT_FILES = ("index.html", "manifest.webmanifest")

CSP = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "manifest-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "object-src 'none'",
        "require-trusted-types-for 'script'",
        "trusted-types 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
    ".webmanifest": "application/manifest+json",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


@dataclass(frozen=True)
class Bundle:
    version: str
    index: Asset
    manifest: Asset
    assets: dict[str, Asset]


def _asset(body: bytes, name: str) -> Asset:
    suffix = Path(name).suffix
    content_type = _TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"
    return Asset(body, content_type, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')


@cache
def bundle() -> Bundle:
    """Every file under ``web/`` (read once per process)."""
    assets: dict[str, Asset] = {}
    digest = hashlib.sha256()
    for path in sorted(p for p in WEB.rglob("*") if p.is_file()):
        name = path.relative_to(WEB).as_posix()
        if name in ROOT_FILES or name.startswith(".") or "/." in name:
            continue
        body = path.read_bytes()
        assets[name] = _asset(body, name)
        digest.update(name.encode() + b"\0" + body + b"\0")
    version = digest.hexdigest()[:12]
    root = {
        name: _asset((WEB / name).read_text("utf-8").replace(ASSET_PLACEHOLDER, f"/assets/{version}").encode(), name)
        for name in ROOT_FILES
    }
    return Bundle(version, root["index.html"], root["manifest.webmanifest"], assets)


def _send(asset: Asset, cache_control: str) -> Response:
    headers = {**SECURITY_HEADERS, "Cache-Control": cache_control, "ETag": asset.etag}
    if asset.etag in {tag.strip() for tag in request.headers.get("If-None-Match", "").split(",")}:
        return Response(b"", status=304, headers=headers)
    return Response(asset.body, status=200, content_type=asset.content_type, headers=headers)


@bp.get("/")
@raw_response(200, "text/html; charset=utf-8", "The reading page (a single HTML document; its scripts load from /assets).")
@raw_response(304, None, "Not modified: the page matches the ETag sent in If-None-Match.")
async def index() -> Response:
    """The reading page."""
    return _send(bundle().index, REVALIDATE)


@bp.get("/manifest.webmanifest")
@raw_response(
    200,
    "application/manifest+json",
    "The web app manifest: installable, with a `share_target` for links.",
    schema={"type": "object", "required": ["name", "start_url", "icons", "share_target"]},
)
@raw_response(304, None, "Not modified: the manifest matches the ETag sent in If-None-Match.")
async def manifest() -> Response:
    """The web app manifest of the reading page."""
    return _send(bundle().manifest, REVALIDATE)


@bp.get("/assets/<version>/<path:name>")
@hide
async def asset(version: str, name: str) -> Response:
    """A static file of the page (script, style sheet, icon)."""
    current = bundle()
    found = current.assets.get(name)
    if found is None:
        raise NotFound("no such file")
    return _send(found, IMMUTABLE if version == current.version else REVALIDATE)
