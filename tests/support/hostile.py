"""Hypothesis strategies for the hostile input that matters to this server.

Text values (``hostile_text``) go into JSON bodies as ordinary strings; what JSON or
Python cannot produce on their own is made as raw bytes (``hostile_bodies``): lone
surrogates as ``\\ud800`` escapes, invalid UTF-8, BOMs, duplicate keys, deep nesting,
huge numbers. ``header_values`` are what a client could put in ``Idempotency-Key``,
``X-Request-ID`` or ``Last-Event-ID``, CR/LF injection included.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

#: One of each kind of character that has broken text handling somewhere.
ODD_CHARACTERS = (
    "\x00",  # NUL
    "\ufeff",  # BOM / zero-width no-break space
    "\u200b",  # zero-width space
    "\u200d",  # zero-width joiner
    "\u202e",  # right-to-left override
    "\u2066",  # left-to-right isolate
    "\u0301",  # combining acute accent
    "\u0085",  # next line (white space to some, not to others)
    "\u2028",  # line separator
    "\r\n",
    "\t",
    "\U0001f600",  # outside the BMP (a surrogate pair in JSON)
    "\ufffd",
    "\u00a0",
)
WHITESPACE = " \t\r\n\u00a0\u2003\u3000\u200b\ufeff"
PROTO_KEYS = ("__proto__", "constructor", "prototype", "__class__", "$where", "")


def whitespace_only() -> st.SearchStrategy[str]:
    return st.text(st.sampled_from(WHITESPACE), min_size=1, max_size=50)


def hostile_text(max_size: int = 200) -> st.SearchStrategy[str]:
    """Strings a JSON body can carry that are awkward to store, hash, split or show."""
    odd = st.sampled_from(ODD_CHARACTERS)
    mixed = st.lists(st.one_of(odd, st.text(max_size=5)), min_size=1, max_size=20).map("".join)
    return st.one_of(
        mixed.map(lambda s: s[:max_size]),
        whitespace_only(),
        st.sampled_from(["0", "-1", "1e309", "NaN", "null", "true", "[]", "{}", "9" * 40]),  # numbers as strings
        st.sampled_from(PROTO_KEYS),
        st.text(st.characters(codec="utf-8"), min_size=1, max_size=max_size),
    )


def long_text(limit: int) -> st.SearchStrategy[str]:
    """Strings whose UTF-8 length is near ``limit`` (a body limit), on either side."""
    return st.tuples(st.sampled_from(["a", "é", "中", "\U0001f600"]), st.integers(-64, 64)).map(
        lambda pair: pair[0] * max(1, (limit + pair[1]) // len(pair[0].encode()))
    )


def hostile_numbers() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.sampled_from([10**40, -(10**40), 2**63, -(2**63) - 1, 1e308, -0.0, 5.5, True, False]),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
    )


def hostile_values() -> st.SearchStrategy[Any]:
    """JSON values of every type, hostile strings and numbers among them."""
    return st.recursive(
        st.one_of(st.none(), hostile_text(), hostile_numbers()),
        lambda children: st.one_of(
            st.lists(children, max_size=3), st.dictionaries(st.one_of(hostile_text(20), st.sampled_from(PROTO_KEYS)), children, max_size=3)
        ),
        max_leaves=8,
    )


def hostile_object(fields: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """``fields`` (a valid body) with some values replaced by hostile ones, and
    sometimes a hostile extra key."""
    replaced = st.fixed_dictionaries(
        {name: st.one_of(st.just(value), hostile_values()) for name, value in fields.items()}
    )
    extra = st.dictionaries(st.sampled_from(PROTO_KEYS), hostile_values(), max_size=1)
    return st.tuples(replaced, extra).map(lambda pair: {**pair[0], **pair[1]})


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


def hostile_bodies(fields: dict[str, Any]) -> st.SearchStrategy[bytes]:
    """Raw bodies built around ``fields`` (a valid body) that JSON encoding cannot make:
    a lone surrogate escape in a value, invalid UTF-8, a BOM, a duplicate key, a huge
    number literal, deep nesting, a NUL byte outside strings."""
    name = st.sampled_from(sorted(fields))
    valid = json.dumps(fields)

    def with_raw(key: str, raw: str) -> bytes:
        body = {k: v for k, v in fields.items() if k != key}
        rest = json.dumps(body)[1:-1]
        return ("{" + f'"{key}": {raw}' + (", " + rest if rest else "") + "}").encode()

    return st.one_of(
        st.tuples(name, st.sampled_from(['"\\ud800"', '"a\\udfffb"', '"\\udc00\\ud800"', '"x\\u0000y"'])).map(lambda t: with_raw(*t)),
        st.tuples(name, st.sampled_from(["1" * 5000, "1e99999", "-0", "1.0e-99999", "NaN", "Infinity"])).map(lambda t: with_raw(*t)),
        st.tuples(name, st.integers(2, 4000)).map(lambda t: with_raw(t[0], "[" * t[1] + "]" * t[1])),
        name.map(lambda key: ("{" + f'"{key}": 1, ' + valid[1:]).encode()),  # duplicate key
        st.sampled_from(
            [
                b"\xef\xbb\xbf" + valid.encode(),
                b"\xfe\xff" + valid.encode("utf-16-be"),
                valid.encode()[:-1] + b', "x": "\xff\xfe"}',
                valid.encode()[:-1] + b', "x": "\xed\xa0\x80"}',
                valid.encode() + b"\x00",
                b"\x00" + valid.encode(),
                valid.encode("utf-16-le"),
                b"{" * 100_000,
            ]
        ),
        hostile_object(fields).map(_dumps),
    )


def header_values() -> st.SearchStrategy[bytes]:
    """Header values as raw bytes (Latin-1 on the wire): CR/LF and NUL injection,
    very long, non-ASCII, empty, white space."""
    return st.one_of(
        st.sampled_from(
            [
                b"",
                b" ",
                b"a\r\nX-Injected: 1",
                b"a\nSet-Cookie: x=1",
                b"a\rb",
                b"a\x00b",
                b"\xff\xfe",
                "é中".encode(),
                b"-1",
                b"99999999999999999999999999",
                b"1e3",
                b"../../etc/passwd",
                b"x" * 8000,
            ]
        ),
        st.binary(min_size=1, max_size=300),
    )
