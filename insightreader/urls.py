"""The normal form of a saved URL, so the same page saved twice is one article."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

#: Query parameters that say where a link was clicked, not what it shows.
TRACKING_PARAMS = frozenset(
    {
        "fbclid", "gclid", "dclid", "gbraid", "wbraid", "msclkid", "yclid", "twclid", "igshid",
        "mc_cid", "mc_eid", "_hsenc", "_hsmi", "mkt_tok", "ref_src",
    }
)
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _tracking(name: str) -> bool:
    lowered = name.lower()
    return lowered.startswith("utm_") or lowered in TRACKING_PARAMS


def normalise(url: str) -> str:
    """Scheme and host lower-cased, a user name and password dropped (they would be
    stored and shown), the default port, the fragment and tracking parameters
    (``utm_*``, ``fbclid``, ``gclid``, …) dropped, an empty path made ``/``. A URL
    that does not parse (a bad port, no host) is kept as given: its fetch then fails,
    with the reason, on the task."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return url.strip()
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return urlunsplit((scheme, parts.netloc, parts.path, parts.query, parts.fragment))
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _tracking(k)])
    return urlunsplit((scheme, netloc, parts.path or "/", query, ""))
