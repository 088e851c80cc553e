"""The open sessions recently seen, so that an authenticated request usually costs no
database read.

Every request checks that its session is still open (a logout, a password change or
a reused refresh token end one at once). The answer is kept here and dropped whenever
any session changes: every write job of :class:`.service.Accounts` that ends, evicts
or rotates a session calls :meth:`OpenSessions.invalidate` after its commit. That is
sound because this process is the database's only writer (``serve`` locks it). All of
it runs on the event loop; the generation makes a read that was in flight while a
session ended unable to put its stale answer back.
"""

from __future__ import annotations

from ..records import User

#: Entries kept at most; past it the cache starts again empty.
MAX_ENTRIES = 10_000


class OpenSessions:
    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._max = max_entries
        self._entries: dict[str, tuple[int, User, str]] = {}
        self._generation = 0

    @property
    def generation(self) -> int:
        """Take it before reading a session, and hand it to :meth:`remember`."""
        return self._generation

    def user(self, session_id: str, user_id: str, now: str) -> User | None:
        """The user of the session when it is known to be open at ``now``."""
        entry = self._entries.get(session_id)
        if entry is None:
            return None
        generation, user, expires_at = entry
        if generation != self._generation or user.id != user_id or expires_at <= now:
            return None
        return user

    def remember(self, session_id: str, user: User, expires_at: str, generation: int) -> None:
        if generation != self._generation:
            return  # a session changed while it was read: the answer may be stale
        if len(self._entries) >= self._max:
            self._entries.clear()
        self._entries[session_id] = (generation, user, expires_at)

    def invalidate(self) -> None:
        self._generation += 1
        self._entries.clear()
