"""Fetching a page a user named, without becoming a way into the server's own network.

The address guard: every address a host name resolves to is checked by
:func:`forbidden_reason` (loopback, private, link-local with the cloud metadata
address 169.254.169.254, multicast, reserved, unspecified, shared and
documentation ranges, and the IPv4-mapped, 6to4, NAT64 and Teredo forms of
them) and the connection is made to the checked address, never to a name
resolved again, so a DNS answer that changes between the check and the connect
(DNS rebinding) cannot reach a refused address. TLS still verifies the
certificate against the host name and sends it as SNI; the ``Host`` header
carries the name. Every redirect (at most ``MAX_REDIRECTS``) goes through the
same guard.

This module knows nothing of articles: the webhooks use the same guard.
httpcore (the transport under httpx, already installed with it) is used because
its network backend is a public seam: the backend below resolves, checks and
connects, and everything else (HTTP/1.1, TLS, chunked bodies) stays the
library's.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import httpcore
import httpx

from .errors import TaskError

#: Resolves a host name to its addresses (tests replace it).
Resolver = Callable[[str, int], Awaitable[list[str]]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: Says why an address is refused, or None (:func:`forbidden_reason`; tests replace it).
Guard = Callable[[IPAddress], str | None]

MAX_REDIRECTS = 5
#: Media types a page may have: HTML (and XHTML) or plain text.
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
TEXT_TYPES = frozenset({"text/plain"})
USER_AGENT = "InsightReader/0.1 (self-hosted reading assistant; fetches pages its users save)"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


@dataclass(frozen=True)
class FetchRules:
    allow_private: bool
    #: Seconds for the whole fetch, redirects included.
    timeout: float
    max_bytes: int


@dataclass(frozen=True)
class Page:
    """A fetched page: the URL it was finally served from, its media type and body."""

    url: str
    media_type: str
    charset: str | None
    body: bytes


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, 6to4, NAT64, Teredo client)."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.teredo is not None:
        return ip.teredo[1]
    return None


def forbidden_reason(ip: IPAddress) -> str | None:
    """Why the server must not connect to ``ip`` for a user, or None when it may."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            # Judged by the IPv4 address it reaches (the IPv6 forms are not "global").
            reason = forbidden_reason(embedded)
            return None if reason is None else f"{reason} (as {ip})"
    if ip.is_unspecified:
        return f"{ip} is the unspecified address"
    if ip.is_loopback:
        return f"{ip} is a loopback address"
    if ip.is_link_local:
        return f"{ip} is a link-local address (cloud metadata services live there)"
    if ip.is_multicast:
        return f"{ip} is a multicast address"
    if ip.is_private:
        return f"{ip} is a private address"
    if ip.is_reserved:
        return f"{ip} is a reserved address"
    if not ip.is_global:
        return f"{ip} is not a public address"
    return None


async def system_resolver(host: str, port: int) -> list[str]:
    """The host's addresses from the operating system's resolver."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def _forbidden(message: str) -> TaskError:
    return TaskError("fetch_forbidden_address", message)


async def checked_addresses(host: str, port: int, resolver: Resolver, guard: Guard) -> list[str]:
    """The addresses to connect to for ``host``: all of them checked, or none used."""
    try:
        literal: IPAddress | None = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    if literal is not None:
        candidates = [str(literal)]
    else:
        try:
            candidates = await resolver(host, port)
        except (OSError, UnicodeError) as exc:
            raise TaskError("fetch_http_error", f"the host name {host!r} does not resolve ({exc})") from exc
        if not candidates:
            raise TaskError("fetch_http_error", f"the host name {host!r} has no addresses")
    addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in candidates]
    for ip in addresses:
        reason = guard(ip)
        if reason is not None:
            raise _forbidden(
                f"{host}: {reason}; fetching it is not allowed (library.fetch_allow_private is off)"
            )
    return [str(ip) for ip in addresses]


def _allow_all(ip: IPAddress) -> str | None:
    """The guard with ``library.fetch_allow_private`` on: no address is refused."""
    return None


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting only to addresses the guard checked."""

    def __init__(self, resolver: Resolver, guard: Guard, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self._resolver = resolver
        self._guard = guard
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await checked_addresses(host, port, self._resolver, self._guard)
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except httpcore.ConnectError as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise _forbidden("pages are fetched over TCP only")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def _media_type(headers: list[tuple[bytes, bytes]]) -> tuple[str, str | None]:
    value = _header(headers, b"content-type") or ""
    media_type, _, params = value.partition(";")
    charset = None
    for param in params.split(";"):
        key, _, val = param.partition("=")
        if key.strip().lower() == "charset" and val.strip():
            charset = val.strip().strip('"').lower()
    return media_type.strip().lower(), charset


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1").strip()
    return None


def _request_target(url: str) -> str:
    """``url`` as sent: http(s) only, the host IDNA-encoded and the rest percent-encoded
    (httpx's URL parser); a URL that cannot be sent is refused, not retried."""
    try:
        if urlsplit(url).scheme.lower() not in ("http", "https"):
            raise TaskError("fetch_unsupported_type", f"only http and https pages are fetched, not {url[:100]!r}")
        parsed = httpx.URL(url)
        if not parsed.host:
            raise httpx.InvalidURL("no host")
        if parsed.port is not None and not 0 < parsed.port < 65536:
            raise httpx.InvalidURL(f"port {parsed.port} out of range")
    except (httpx.InvalidURL, ValueError, UnicodeError) as exc:
        raise TaskError("fetch_http_error", f"not a URL that can be fetched: {url[:100]!r} ({exc})") from exc
    return str(parsed)


def _http_error(status: int, url: str) -> TaskError:
    retryable = status == 429 or status >= 500
    return TaskError("fetch_http_error", f"the page answered HTTP {status} ({url[:200]})", retryable=retryable)


async def _read_body(response: httpcore.Response, limit: int) -> bytes:
    declared = _header(response.headers, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TaskError("fetch_too_large", f"the page is {declared} bytes, more than library.fetch_max_bytes ({limit})")
    body = bytearray()
    async for chunk in response.aiter_stream():
        body += chunk
        if len(body) > limit:
            raise TaskError("fetch_too_large", f"the page is more than library.fetch_max_bytes ({limit} bytes)")
    return bytes(body)


async def _follow(pool: httpcore.AsyncConnectionPool, url: str, rules: FetchRules) -> Page:
    for _ in range(MAX_REDIRECTS + 1):
        url = _request_target(url)
        headers = [
            (b"User-Agent", USER_AGENT.encode()),
            (b"Accept", b"text/html,application/xhtml+xml,text/plain;q=0.9"),
            (b"Accept-Encoding", b"identity"),
        ]
        async with pool.stream("GET", url, headers=headers) as response:
            location = _header(response.headers, b"location")
            if response.status in _REDIRECTS and location:
                url = urljoin(url, location)
                continue
            if response.status >= 400:
                raise _http_error(response.status, url)
            if response.status != 200:
                raise TaskError("fetch_http_error", f"the page answered HTTP {response.status} ({url[:200]})")
            encoding = (_header(response.headers, b"content-encoding") or "identity").lower()
            if encoding != "identity":
                raise TaskError("fetch_unsupported_type", f"the page came {encoding}-encoded although asked not to be")
            media_type, charset = _media_type(response.headers)
            if media_type not in HTML_TYPES | TEXT_TYPES:
                raise TaskError(
                    "fetch_unsupported_type",
                    f"the page is {media_type or 'of no stated type'}; only HTML and plain text are saved",
                )
            body = await _read_body(response, rules.max_bytes)
            return Page(url=url, media_type=media_type, charset=charset, body=body)
    raise TaskError("fetch_http_error", f"more than {MAX_REDIRECTS} redirects")


@functools.cache
def _tls() -> ssl.SSLContext:
    """The TLS settings of every fetch and webhook delivery, made once: making them
    loads the CA certificates (25 ms of the loop, for each page and each delivery
    before), and one context serves any number of connections."""
    return ssl.create_default_context()


@contextlib.asynccontextmanager
async def _guarded_pool(
    allow_private: bool,
    timeout: float,
    what: str,
    resolver: Resolver,
    guard: Guard,
    network: httpcore.AsyncNetworkBackend | None,
) -> AsyncIterator[httpcore.AsyncConnectionPool]:
    """A connection pool under the guard, and within ``timeout`` seconds for all it does;
    its failures as :class:`TaskError` (``what`` names the timeout setting)."""
    backend = GuardedBackend(resolver, _allow_all if allow_private else guard, network)
    try:
        async with asyncio.timeout(timeout):
            async with httpcore.AsyncConnectionPool(
                ssl_context=_tls(), network_backend=backend, retries=0
            ) as pool:
                yield pool
    except TimeoutError as exc:
        raise TaskError("fetch_timeout", f"no answer within {what} ({timeout:g} s)", retryable=True) from exc
    except httpcore.TimeoutException as exc:
        raise TaskError("fetch_timeout", f"the request timed out ({exc})", retryable=True) from exc
    except (httpcore.UnsupportedProtocol, httpcore.LocalProtocolError) as exc:
        raise TaskError("fetch_http_error", f"the URL cannot be fetched ({exc})") from exc
    except (httpcore.NetworkError, httpcore.RemoteProtocolError) as exc:
        raise TaskError("fetch_http_error", f"the server could not be reached ({exc})", retryable=True) from exc


async def fetch(
    url: str,
    rules: FetchRules,
    *,
    resolver: Resolver = system_resolver,
    guard: Guard = forbidden_reason,
    network: httpcore.AsyncNetworkBackend | None = None,
) -> Page:
    """GET ``url`` under the guard; every failure is a :class:`TaskError` with a
    ``fetch_*`` code (``fetch_http_error`` for 429/5xx and ``fetch_timeout`` retryable).
    ``resolver``, ``guard`` and ``network`` (what connects to a checked address) are
    seams for tests; ``rules.allow_private`` turns the guard off."""
    async with _guarded_pool(
        rules.allow_private, rules.timeout, "library.fetch_timeout", resolver, guard, network
    ) as pool:
        return await _follow(pool, url, rules)


def check_destination(url: str, *, allow_private: bool, guard: Guard = forbidden_reason) -> None:
    """Raise the :class:`TaskError` a request to ``url`` would surely meet: a URL that
    cannot be sent, or a host that is a refused address (or ``localhost``). A host name
    is not resolved here (no lookup on a user's behalf before anything is sent): its
    addresses are checked when each request is made."""
    host = httpx.URL(_request_target(url)).host
    if allow_private:
        return
    if host == "localhost" or host.endswith(".localhost"):
        raise _forbidden(f"{host}: the machine's own name; calling it is not allowed (library.fetch_allow_private is off)")
    try:
        literal: IPAddress = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return
    reason = guard(literal)
    if reason is not None:
        raise _forbidden(f"{host}: {reason}; calling it is not allowed (library.fetch_allow_private is off)")


#: Bytes of a POST's answer read (and dropped): enough to reuse nothing, bounded.
POST_ANSWER_BYTES = 64 * 1024


async def post(
    url: str,
    body: bytes,
    headers: list[tuple[bytes, bytes]],
    *,
    allow_private: bool,
    timeout: float,
    resolver: Resolver = system_resolver,
    guard: Guard = forbidden_reason,
    network: httpcore.AsyncNetworkBackend | None = None,
) -> int:
    """POST ``body`` to ``url`` under the guard, following no redirect (a redirect's
    status is the answer): the answer's status. Failures as :func:`fetch` raises them."""
    target = _request_target(url)
    sent = [(b"User-Agent", USER_AGENT.encode()), (b"Content-Length", str(len(body)).encode()), *headers]
    async with _guarded_pool(allow_private, timeout, "webhooks.timeout", resolver, guard, network) as pool:
        async with pool.stream("POST", target, headers=sent, content=body) as response:
            read = 0
            async for chunk in response.aiter_stream():
                read += len(chunk)
                if read > POST_ANSWER_BYTES:
                    break
            return response.status
