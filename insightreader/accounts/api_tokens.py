"""Personal API tokens: long-lived credentials for scripts and cron jobs.

The API (``api/tokens.py``), the server's command line (``insightreader token``) and
every authenticated request go through :class:`ApiTokens`.

A token is ``irt_`` + ``secrets.token_urlsafe(32)``; it is shown once, when it is
created, and the store keeps only its SHA-256. It is sent like an access token
(``Authorization: Bearer irt_…``, or ``?token=`` on the event stream). Its scope limits
it: ``read`` allows only GET and HEAD; ``write`` everything but managing tokens,
sessions and the password, which need a signed-in session (:func:`authorize`).

Every request looks the token up in the store (one indexed read; nothing is cached),
so a token revoked by the API or by ``insightreader token revoke`` on the database is
refused on the very next request. ``last_used_at`` is not written per request: uses
are remembered in memory and written in one job every ``auth.token_use_flush_interval``
seconds and at shutdown.

Tokens outlive password changes (as GitHub's personal access tokens do): a script
keeps working when its owner changes the password; a leaked token is revoked on its
own. Deleting the user deletes their tokens (``ON DELETE CASCADE``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ..errors import InsufficientScope, NotFound, SessionRequired, TooManyTokens, Unauthorized, ValidationFailed
from ..records import ApiTokenRecord, format_time, utcnow
from ..store import Store, Tx
from ..supervisor import Supervisor
from .service import Session

log = logging.getLogger(__name__)

PREFIX = "irt_"
SCOPES = ("read", "write")
#: Tokens a user may hold; creating one more answers ``409 too_many_tokens``.
MAX_TOKENS_PER_USER = 50
NAME_MAX = 100
EXPIRES_IN_DAYS_MAX = 3650
#: Methods a ``read`` token may use.
READ_METHODS = frozenset({"GET", "HEAD"})


def is_api_token(token: str) -> bool:
    return token.startswith(PREFIX)


def digest(token: str) -> str:
    """What the store keeps of a token: its SHA-256."""
    return hashlib.sha256(token.encode()).hexdigest()


def authorize(session: Session, method: str, *, manages_account: bool) -> None:
    """May this request go on? A signed-in session may do anything; an API token is
    refused what ``manages_account`` (tokens, sessions, the password) and, when it is a
    ``read`` token, anything but GET and HEAD."""
    if session.scope is None:
        return
    if manages_account:
        raise SessionRequired("API tokens, sessions and the password are managed from a signed-in session only")
    if session.scope == "read" and method.upper() not in READ_METHODS:
        raise InsufficientScope("this API token has the read scope: only GET and HEAD are allowed")


def public(token: ApiTokenRecord) -> dict[str, Any]:
    """A token as ``GET /tokens`` shows it: never the secret, nor its hash."""
    return {
        "token_id": token.id,
        "name": token.name,
        "scope": token.scope,
        "created_at": token.created_at,
        "last_used_at": token.last_used_at,
        "expires_at": token.expires_at,
    }


@dataclass(frozen=True)
class NewApiToken:
    record: ApiTokenRecord
    #: The secret: shown once, never stored.
    token: str

    def public(self) -> dict[str, Any]:
        return {**public(self.record), "token": self.token}


def _epoch(at: str) -> int:
    return int(datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp())


class ApiTokens:
    def __init__(self, store: Store, *, flush_interval: float = 60.0, supervisor: Supervisor | None = None) -> None:
        self._store = store
        self._flush_interval = flush_interval
        self._supervisor = supervisor or Supervisor()
        #: Token id -> when it was last used, not written yet.
        self._used: dict[str, str] = {}
        self._task: asyncio.Task[None] | None = None

    # -- managing --------------------------------------------------------------------------

    async def create(self, user_id: str, name: str, scope: str, expires_in_days: int | None = None) -> NewApiToken:
        name = name.strip()
        if not name or len(name) > NAME_MAX or scope not in SCOPES:
            raise ValidationFailed("a token needs a name of 1 to 100 characters and the scope read or write")
        if expires_in_days is not None and not 1 <= expires_in_days <= EXPIRES_IN_DAYS_MAX:
            raise ValidationFailed(f"expires_in_days must be between 1 and {EXPIRES_IN_DAYS_MAX}")
        token = PREFIX + secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        expires_at = None if expires_in_days is None else format_time(now + timedelta(days=expires_in_days))
        record = ApiTokenRecord(uuid.uuid4().hex, user_id, name, scope, format_time(now), None, expires_at)

        def job(tx: Tx) -> None:
            if tx.count_api_tokens(user_id) >= MAX_TOKENS_PER_USER:
                raise TooManyTokens(f"at most {MAX_TOKENS_PER_USER} API tokens per user: revoke one first")
            tx.insert_api_token(record, digest(token))

        await self._store.write(job)
        return NewApiToken(record, token)

    async def of_user(self, user_id: str) -> list[ApiTokenRecord]:
        tokens = await self._store.read.api_tokens(user_id)
        # Uses not written yet show already.
        return [
            ApiTokenRecord(t.id, t.user_id, t.name, t.scope, t.created_at, self._used[t.id], t.expires_at)
            if t.id in self._used
            else t
            for t in tokens
        ]

    async def revoke(self, user_id: str, token_id: str) -> None:
        """Delete the token (404 when it is not the user's): the next request with it is 401."""

        def job(tx: Tx) -> bool:
            return tx.delete_api_token(token_id, user_id)

        if not await self._store.write(job):
            raise NotFound("no such API token")
        self._used.pop(token_id, None)

    # -- using -----------------------------------------------------------------------------

    async def authenticate(self, token: str) -> Session:
        now = utcnow()
        found = await self._store.read.api_token_user(digest(token), now)
        if found is None:
            raise Unauthorized("the API token is not valid: it was revoked, has expired or never existed")
        record, user = found
        self._used[record.id] = now
        expires = None if record.expires_at is None else _epoch(record.expires_at)
        return Session(user, record.id, expires, scope=record.scope)

    async def flush(self) -> int:
        """Write the remembered uses in one job; how many tokens were updated."""
        if not self._used:
            return 0
        used, self._used = self._used, {}

        def job(tx: Tx) -> None:
            tx.touch_api_tokens(used)

        try:
            await self._store.write(job)
        except BaseException:
            self._used = {**used, **self._used}  # kept for the next flush
            raise
        return len(used)

    def start(self) -> None:
        self._task = self._supervisor.start(self._run(), name="api-token-uses")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._flush_interval)
            try:
                await self.flush()
            except Exception:
                log.exception("could not write API token uses; trying again in %gs", self._flush_interval)

    async def stop(self) -> None:
        """Stop the periodic writes and write what is left."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])
            self._task = None
        try:
            await self.flush()
        except Exception:
            log.exception("could not write API token uses at shutdown")
