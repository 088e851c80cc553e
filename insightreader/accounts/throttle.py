"""Login throttling, per username and per client address, in this process's memory.

After ``max_failures`` failed attempts for one username within ``window`` seconds
(or 4× that many from one client address), every further attempt is refused with
``429 too_many_attempts`` until the lockout passes — the right password too. A
lockout lasts ``window`` seconds and doubles with each repeated lockout of the same
key (capped at :data:`MAX_LOCKOUT`); a key quiet for as long as its last lockout
(times two) is forgotten. Attempts still being checked count too, so a burst of
concurrent guesses cannot slip past the limit. A successful login forgets the
username's record (not the address's: one's own account must not reset the
address's count).

Memory is bounded: quiet records are pruned as new ones arrive, and each table keeps
at most :data:`MAX_KEYS` records (the least recently seen go first). Counts live in
one process: a restart forgets them, and several processes would each count alone.

IPv6 clients are counted per /64 network (one subscriber usually holds a whole /64).
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from ..errors import TooManyAttempts

ADDRESS_FACTOR = 4
MAX_LOCKOUT = 24 * 3600
MAX_KEYS = 10_000
#: Retry-After while the limit is taken by attempts still being checked.
IN_FLIGHT_RETRY_AFTER = 1

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_networks(items: Sequence[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(item, strict=False) for item in items)


def _address(text: str | None) -> Address | None:
    """An address from a peer or an ``X-Forwarded-For`` hop (``[v6]:port`` and
    ``v4:port`` forms included)."""
    if not text:
        return None
    value = text.strip()
    if value.startswith("["):
        value = value[1:].partition("]")[0]
    elif value.count(":") == 1:
        value = value.partition(":")[0]
    try:
        found = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(found, ipaddress.IPv6Address) and found.ipv4_mapped is not None:
        return found.ipv4_mapped
    return found


def client_address(peer: str | None, forwarded_for: str | None, trusted: Sequence[Network]) -> str:
    """The client's address: the peer's, or — when the peer is a trusted proxy — the
    right-most ``X-Forwarded-For`` hop that is not a trusted proxy (hops to its left
    were written by the client and prove nothing)."""
    address = _address(peer)
    if address is None:
        return peer or "unknown"

    def is_trusted(a: Address) -> bool:
        return any(a.version == n.version and a in n for n in trusted)

    if forwarded_for and is_trusted(address):
        for hop in reversed(forwarded_for.split(",")):
            parsed = _address(hop)
            if parsed is None:
                break  # unreadable: keep the last proxy that could be trusted
            address = parsed
            if not is_trusted(parsed):
                break
    return str(address)


def address_key(address: str) -> str:
    parsed = _address(address)
    if isinstance(parsed, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed) if parsed is not None else address


@dataclass
class _Record:
    failures: deque[float]
    in_flight: int = 0
    level: int = 0
    locked_until: float = 0.0
    last_seen: float = 0.0


@dataclass
class _Table:
    limit: int
    window: float
    records: OrderedDict[str, _Record] = field(default_factory=OrderedDict)

    def _stale(self, record: _Record, now: float) -> bool:
        quiet_for = self.window * 2 ** record.level
        return record.in_flight == 0 and now >= max(record.locked_until, record.last_seen) + quiet_for

    def _prune(self, now: float) -> None:
        while self.records:
            key, oldest = next(iter(self.records.items()))
            if len(self.records) < MAX_KEYS and not self._stale(oldest, now):
                return
            del self.records[key]

    def _record(self, key: str, now: float) -> _Record:
        record = self.records.get(key)
        if record is None:
            self._prune(now)
            record = self.records[key] = _Record(deque(maxlen=self.limit))
        else:
            self.records.move_to_end(key)
        record.last_seen = now
        return record

    def refusal(self, key: str, now: float) -> int | None:
        """Seconds to wait before ``key`` may try again, or None."""
        record = self.records.get(key)
        if record is None:
            return None
        if record.locked_until > now:
            return math.ceil(record.locked_until - now)
        while record.failures and record.failures[0] <= now - self.window:
            record.failures.popleft()
        if len(record.failures) + record.in_flight >= self.limit:
            return IN_FLIGHT_RETRY_AFTER
        return None

    def begin(self, key: str, now: float) -> None:
        self._record(key, now).in_flight += 1

    def end(self, key: str, now: float, *, failed: bool) -> None:
        record = self.records.get(key)
        if record is None:
            return
        record.in_flight = max(0, record.in_flight - 1)
        if not failed:
            return
        record.last_seen = now
        record.failures.append(now)
        recent = [t for t in record.failures if t > now - self.window]
        if len(recent) >= self.limit:
            record.level += 1
            record.locked_until = now + min(MAX_LOCKOUT, self.window * 2 ** (record.level - 1))
            record.failures.clear()

    def forget(self, key: str) -> None:
        self.records.pop(key, None)


class Attempt:
    """One login attempt in progress: :meth:`failed` or :meth:`succeeded` says how it ended
    (one that says neither — refused as busy, say — counts as nothing)."""

    def __init__(self) -> None:
        self.outcome: bool | None = None

    def failed(self) -> None:
        self.outcome = False

    def succeeded(self) -> None:
        self.outcome = True


class LoginThrottle:
    def __init__(self, max_failures: int, window: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._names = _Table(max_failures, window)
        self._addresses = _Table(max_failures * ADDRESS_FACTOR, window)
        self._clock = clock

    @contextmanager
    def attempt(self, username: str, address: str) -> Iterator[Attempt]:
        """Admit one attempt for ``username`` from ``address``, or raise
        :class:`TooManyAttempts` with the longer of the two waits."""
        name, where = username.casefold(), address_key(address)
        now = self._clock()
        waits = [w for w in (self._names.refusal(name, now), self._addresses.refusal(where, now)) if w is not None]
        if waits:
            raise TooManyAttempts("too many failed attempts; try again later", retry_after=max(waits))
        self._names.begin(name, now)
        self._addresses.begin(where, now)
        attempt = Attempt()
        try:
            yield attempt
        finally:
            now = self._clock()
            self._names.end(name, now, failed=attempt.outcome is False)
            self._addresses.end(where, now, failed=attempt.outcome is False)
            if attempt.outcome:
                self._names.forget(name)
