"""Row ids are version 7 UUIDs: the time first, in milliseconds, then random bits."""

from __future__ import annotations

import time
import uuid

from insightreader.ids import new_id


def _millisecond(made: str) -> int:
    return uuid.UUID(made).int >> 80


def test_an_id_is_a_version_7_uuid_of_its_millisecond() -> None:
    before = time.time_ns() // 1_000_000
    made = new_id()
    after = time.time_ns() // 1_000_000
    parsed = uuid.UUID(made)
    assert str(parsed) == made
    assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)
    assert before <= _millisecond(made) <= after


def test_ids_of_later_milliseconds_sort_after_earlier_ones() -> None:
    """Five times: an id, then, once the clock has moved to a later millisecond, another,
    which sorts after it as text (random ids would, all five times, once in 32)."""
    deadline = time.monotonic() + 5
    for _ in range(5):
        earlier = new_id()
        made_by = time.time_ns() // 1_000_000
        while time.time_ns() // 1_000_000 <= made_by:
            assert time.monotonic() < deadline, "the clock did not move through 5 milliseconds in 5 s"
        assert new_id() > earlier


def test_ids_are_unique_and_their_random_bits_vary() -> None:
    made = [new_id() for _ in range(20_000)]
    assert len(set(made)) == len(made)
    random_bits = {uuid.UUID(i).int & ((1 << 62) - 1) for i in made}
    assert len(random_bits) == len(made)
