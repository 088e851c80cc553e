"""The accounts service: registration, logins, sessions, password changes.

The API (``api/auth.py``), the command line (``user create``) and the server's
start (the administrator from the environment) all go through :class:`Accounts`;
it holds the rules, and :mod:`..store` the rows.

Registration: on a server without users the first account becomes the
administrator, whoever creates it; after that ``POST /auth/register`` answers
``403 registration_closed`` unless ``auth.open_registration``. Both are decided
inside the write transaction, so two concurrent first registrations cannot both
become administrators.

Sessions: a login opens one (:class:`..records.SessionRecord`). Its tokens carry its
id, and each authenticated request checks it is open (joined with the user lookup:
one query). A refresh token works once: refreshing replaces the hash the session
keeps; presenting an older one (a stolen copy, or the thief's after the owner's
refresh) ends the whole session (RFC 9700 reuse detection).
"""

from __future__ import annotations

import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..config import AuthSettings, ConfigError
from ..errors import (
    ApiError,
    Conflict,
    NotFound,
    RegistrationClosed,
    SessionRequired,
    Unauthorized,
    WrongPassword,
)
from ..ids import new_id
from ..records import SessionRecord, User, format_time, utcnow
from ..store import Store, Tx
from .open_sessions import OpenSessions
from .passwords import Hasher, check_password, check_username
from .throttle import LoginThrottle, Network, client_address, parse_networks
from .tokens import ACCESS, REFRESH, TokenPair, Tokens, digest

log = logging.getLogger(__name__)

ADMIN_USERNAME = "INSIGHTREADER_ADMIN_USERNAME"
ADMIN_PASSWORD = "INSIGHTREADER_ADMIN_PASSWORD"
#: Sessions kept per user; a login beyond it ends the least recently used one.
MAX_SESSIONS_PER_USER = 50
USER_AGENT_MAX = 256


@dataclass(frozen=True)
class Client:
    """Who is on the other end of a request: shown in the sessions list, and the
    address is what login throttling counts."""

    address: str
    user_agent: str = ""


@dataclass(frozen=True)
class Session:
    """An authenticated request's session."""

    user: User
    #: The session's id, or the API token's.
    id: str
    #: When the credentials expire (seconds since the epoch; None: never); a stream ends then.
    expires: int | None
    #: An API token's scope (``read`` or ``write``); None for a signed-in session.
    scope: str | None = None


def _at(epoch: int) -> str:
    return format_time(datetime.fromtimestamp(epoch, UTC))


class Accounts:
    def __init__(
        self,
        settings: AuthSettings,
        tokens: Tokens,
        store: Store,
        *,
        trusted_proxies: tuple[str, ...] = (),
        hasher: Hasher | None = None,
    ) -> None:
        self.settings = settings
        self.tokens = tokens
        self._store = store
        self._hasher = hasher or Hasher()
        self._throttle = LoginThrottle(settings.max_failed_logins, settings.lockout_window)
        self._trusted: tuple[Network, ...] = parse_networks(trusted_proxies)
        # what an unknown user's login is checked against
        self._dummy_hash = self._hasher.unmatchable()
        self._open = OpenSessions()

    def client(self, peer: str | None, forwarded_for: str | None, user_agent: str | None) -> Client:
        """The client of a request (``X-Forwarded-For`` is read only from ``server.trusted_proxies``)."""
        return Client(client_address(peer, forwarded_for, self._trusted), (user_agent or "")[:USER_AGENT_MAX])

    # -- accounts ---------------------------------------------------------------------------

    async def register(self, username: str, password: str) -> User:
        """``POST /auth/register``: the first account (the administrator), or anyone's
        when ``auth.open_registration`` is on."""
        if not self.settings.open_registration and await self._store.read.has_users():
            raise RegistrationClosed("registration is closed on this server")  # before any hashing
        return await self._create(username, password, admin=False, public=True)

    async def create_user(self, username: str, password: str, *, admin: bool = False) -> User:
        """An operator's account (``insightreader user create``, the environment's
        administrator): whatever ``auth.open_registration`` says. The first account on
        the server is an administrator in any case."""
        return await self._create(username, password, admin=admin, public=False)

    async def _create(self, username: str, password: str, *, admin: bool, public: bool) -> User:
        check_password(username, password)
        password_hash = await self._hasher.hash(password)
        closed = public and not self.settings.open_registration

        def job(tx: Tx) -> User:
            first = not tx.has_users()
            if closed and not first:
                raise RegistrationClosed("registration is closed on this server")
            user = User(new_id(), username, password_hash, admin or first, utcnow())
            if not tx.insert_user(user):
                raise Conflict("that username is taken")
            return user

        user = await self._store.write(job)
        if user.is_admin and not admin:
            log.info("the first account, %s, is the administrator", user.username)
        return user

    async def bootstrap_admin(self, username: str, password: str) -> User | None:
        """Create the administrator named by ``INSIGHTREADER_ADMIN_USERNAME`` with
        ``INSIGHTREADER_ADMIN_PASSWORD`` unless that user exists (then nothing changes,
        not even the password). The password is never logged, nor put into an error."""
        if not username and not password:
            return None
        if not username or not password:
            missing = ADMIN_PASSWORD if username else ADMIN_USERNAME
            raise ConfigError(f"configuration error: {ADMIN_USERNAME} and {ADMIN_PASSWORD} go together; {missing} is not set")
        for name, check in ((ADMIN_USERNAME, lambda: check_username(username)), (ADMIN_PASSWORD, lambda: check_password(username, password))):
            try:
                check()
            except ApiError as exc:  # the message only, never the input
                raise ConfigError(f"configuration error: {name}: {exc.message}") from None

        existing = await self._store.read.user_by_name(username)
        if existing is None:
            try:
                user = await self.create_user(username, password, admin=True)
            except Conflict:  # created meanwhile (by `insightreader user create`, say)
                existing = await self._store.read.user_by_name(username)
            else:
                log.info("created administrator %s from %s", user.username, ADMIN_USERNAME)
                return user
        if existing is not None and not existing.is_admin:
            log.warning("user %s exists and is not an administrator; %s left it unchanged", existing.username, ADMIN_USERNAME)
        elif existing is not None:
            log.info("administrator %s exists; %s left it unchanged", existing.username, ADMIN_USERNAME)
        return existing

    # -- signing in -------------------------------------------------------------------------

    async def _verify(self, user: User | None, password: str) -> bool:
        """An unknown user costs one hash verification too, so the answer's timing does
        not tell which names exist."""
        ok = await self._hasher.verify(user.password_hash if user else self._dummy_hash, password)
        return ok and user is not None

    async def login(self, username: str, password: str, client: Client) -> TokenPair:
        """Tokens of a new session for valid credentials (throttled, see :mod:`.throttle`)."""
        with self._throttle.attempt(username, client.address) as attempt:
            user = await self._store.read.user_by_name(username)
            if not await self._verify(user, password):
                attempt.failed()
                raise Unauthorized("wrong username or password")
            attempt.succeeded()
        assert user is not None
        session_id = uuid.uuid4().hex
        pair = self.tokens.issue_pair(user.id, session_id)
        now = utcnow()
        record = SessionRecord(
            session_id, user.id, now, now, client.user_agent, client.address, pair.refresh_digest, _at(pair.refresh_expires)
        )

        def job(tx: Tx) -> None:
            tx.insert_session(record, keep=MAX_SESSIONS_PER_USER)  # may end the oldest
            tx.after_commit(self._open.invalidate)

        await self._store.write(job)
        return pair

    async def refresh(self, refresh_token: str) -> TokenPair:
        """A new pair for the session; the refresh token presented stops working. One
        already used ends the session."""
        claims = self.tokens.decode(refresh_token, REFRESH)
        user_id, session_id, jti = claims["sub"], claims["sid"], claims.get("jti")
        if not isinstance(jti, str):
            raise Unauthorized("the token is not valid here")
        pair = self.tokens.issue_pair(user_id, session_id)

        def job(tx: Tx) -> str:
            session = tx.session(session_id, user_id)
            now = utcnow()
            if session is None or session.expires_at <= now:
                return "ended"
            tx.after_commit(self._open.invalidate)
            if not secrets.compare_digest(session.refresh_digest, digest(jti)):
                tx.delete_session(session_id, user_id)
                return "reused"
            tx.rotate_session(session_id, pair.refresh_digest, _at(pair.refresh_expires), now)
            return "rotated"

        outcome = await self._store.write(job)
        if outcome == "reused":
            log.warning("a refresh token was used twice: session %s of user %s ended", session_id, user_id)
            raise Unauthorized("this refresh token was already used; the session has ended: sign in again")
        if outcome == "ended":
            raise Unauthorized("the session has ended: sign in again")
        return pair

    async def authenticate(self, token: str) -> Session:
        """The open session an access token belongs to."""
        claims = self.tokens.decode(token, ACCESS)
        return await self._session(claims, int(claims["exp"]))

    async def redeem_ticket(self, ticket: str) -> Session:
        """The session a ticket opens (once), lasting as long as the access token that
        asked for it."""
        claims = self.tokens.redeem_ticket(ticket)
        return await self._session(claims, int(claims.get("session_exp", claims["exp"])))

    def issue_ticket(self, session: Session) -> str:
        if session.scope is not None or session.expires is None:
            raise SessionRequired("SSE tickets are for signed-in sessions: send the API token to the stream itself")
        return self.tokens.issue_ticket(session.user.id, session.id, session.expires)

    async def _session(self, claims: dict[str, Any], expires: int) -> Session:
        session_id, user_id, now = claims["sid"], claims["sub"], utcnow()
        user = self._open.user(session_id, user_id, now)
        if user is None:
            generation = self._open.generation
            found = await self._store.read.session_user(session_id, user_id, now)
            if found is None:
                raise Unauthorized("the session has ended: sign in again")
            user, session_expires = found
            self._open.remember(session_id, user, session_expires, generation)
        return Session(user, session_id, expires)

    # -- the signed-in user's own account ---------------------------------------------------

    async def logout(self, session: Session) -> None:
        await self.end_session(session, session.id)

    async def end_session(self, session: Session, session_id: str) -> None:
        """End one of the user's sessions (404 when it is not theirs, or over)."""

        def job(tx: Tx) -> bool:
            tx.after_commit(self._open.invalidate)
            return tx.delete_session(session_id, session.user.id)

        if not await self._store.write(job):
            raise NotFound("no such session")

    async def sessions(self, session: Session) -> list[dict[str, Any]]:
        rows = await self._store.read.sessions(session.user.id, utcnow())
        return [
            {
                "session_id": row.id,
                "created_at": row.created_at,
                "last_used_at": row.last_used_at,
                "user_agent": row.user_agent,
                "address": row.address,
                "current": row.id == session.id,
            }
            for row in rows
        ]

    async def change_password(self, session: Session, current: str, new: str, client: Client) -> None:
        """Check ``current`` (throttled like a login), set ``new`` (the rules apply),
        and end every other session of the user."""
        user = session.user
        with self._throttle.attempt(user.username, client.address) as attempt:
            stored = await self._store.read.user(user.id)
            if not await self._verify(stored, current):
                attempt.failed()
                raise WrongPassword("the current password is wrong")
            attempt.succeeded()
        check_password(user.username, new)
        password_hash = await self._hasher.hash(new)

        def job(tx: Tx) -> int:
            tx.after_commit(self._open.invalidate)
            tx.set_password(user.id, password_hash)
            return tx.delete_sessions_except(user.id, session.id)

        ended = await self._store.write(job)
        log.info("user %s changed their password; %d other sessions ended", user.username, ended)
