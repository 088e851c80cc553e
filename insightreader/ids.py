"""Row ids: time-ordered UUIDs (RFC 9562, version 7).

A row's id is the key of a unique index. Random (version 4) ids land anywhere in that
index, so each insert touches a leaf page of its own: once the index outgrows SQLite's
page cache, every insert reads a page in and dirties one more for its commit to write.
Ids that start with their creation time, in milliseconds, all land at the index's
right edge, as ``seq`` does (docs/benchmarks.md, "2026-12-06, late").
Python has ``uuid.uuid7`` from 3.14 on; until then, this is the RFC's layout: 48 bits of
Unix milliseconds, the version, 12 random bits, the variant, 62 random bits. Ids made in
the same millisecond are unordered among themselves, which an index does not mind.

They say when a row was made, as its ``created_at`` already does to whoever may see it.
Secrets (session ids, token ids, nonces) stay random.
"""

from __future__ import annotations

import os
import time
import uuid

_VERSION = 0x7 << 76
_VARIANT = 0x2 << 62
#: The random bits: 12 of ``rand_a`` after the version, 62 of ``rand_b`` after the variant.
_RANDOM = ((1 << 12) - 1) << 64 | ((1 << 62) - 1)


def new_id() -> str:
    """A new row id: a version 7 UUID in its canonical text form."""
    milliseconds = time.time_ns() // 1_000_000
    bits = milliseconds << 80 | _VERSION | _VARIANT | int.from_bytes(os.urandom(10)) & _RANDOM
    return str(uuid.UUID(int=bits))
