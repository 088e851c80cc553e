"""Row ids are version 7 UUIDs: the time first, in milliseconds, then random bits."""

from __future__ import annotations

import time
import uuid

from insightreader.ids import new_id


def test_an_id_is_a_version_7_uuid_of_its_millisecond() -> None:
    before = time.time_ns() // 1_000_000
    made = new_id()
    after = time.time_ns() // 1_000_000
    parsed = uuid.UUID(made)
    assert str(parsed) == made
    assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)
    assert before <= parsed.int >> 80 <= after


def test_ids_of_later_milliseconds_sort_after_earlier_ones() -> None:
    made: list[str] = []
    deadline = time.monotonic() + 5
    while len({uuid.UUID(i).int >> 80 for i in made}) < 5:
        assert time.monotonic() < deadline, "the clock did not move through 5 milliseconds in 5 s"
        made.append(new_id())
    by_time = sorted(made, key=lambda i: uuid.UUID(i).int >> 80)
    assert [uuid.UUID(i).int >> 80 for i in sorted(made)] == [uuid.UUID(i).int >> 80 for i in by_time]


def test_ids_are_unique_and_their_random_bits_vary() -> None:
    made = [new_id() for _ in range(20_000)]
    assert len(set(made)) == len(made)
    random_bits = {uuid.UUID(i).int & ((1 << 62) - 1) for i in made}
    assert len(random_bits) == len(made)
