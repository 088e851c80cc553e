"""Accounts and tokens: Argon2id passwords, HS256 JWTs, single-use SSE tickets.

Access, refresh and ticket tokens carry a ``typ`` claim and each check names the
one type it accepts, so none can stand in for another. Hashing runs in worker
threads (at most two at once) so a burst of logins never stalls the loop.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from .config import AuthSettings, ConfigError
from .errors import Conflict, Unauthorized
from .records import User, utcnow
from .store import Store, Tx, private_file

ALGORITHM = "HS256"
ACCESS, REFRESH, TICKET = "access", "refresh", "sse_ticket"
_REQUIRED = ["exp", "iat", "sub", "typ"]

_hasher = PasswordHasher()
_hashing = asyncio.Semaphore(2)


async def hash_password(password: str) -> str:
    async with _hashing:
        return await asyncio.to_thread(_hasher.hash, password)


async def verify_password(password_hash: str, password: str) -> bool:
    async with _hashing:
        try:
            return await asyncio.to_thread(_hasher.verify, password_hash, password)
        except (VerificationError, InvalidHashError):
            return False


def load_secret(settings: AuthSettings, database: Path) -> str:
    """The configured secret, or the one kept beside the database (created on first use)."""
    if settings.secret:
        return settings.secret
    path = database.with_name(database.name + ".secret")
    try:
        secret = path.read_text().strip()
    except FileNotFoundError:
        pass
    else:
        # empty or cut short (a crash while it was written): never sign with that
        if len(secret.encode()) < 32:
            raise ConfigError(
                f"the secret file {path} holds fewer than 32 bytes: delete it to generate"
                " a new one (every issued token becomes invalid), or set auth.secret"
            )
        return secret
    secret = secrets.token_urlsafe(48)
    with os.fdopen(private_file(path), "w") as f:
        f.write(secret + "\n")
        f.flush()
        os.fsync(f.fileno())
    return secret


@dataclass(frozen=True)
class Session:
    user: User
    #: When the credentials expire (seconds since the epoch); a stream ends then.
    expires: int


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int

    def public(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "token_type": "bearer",
            "expires_in": self.expires_in,
        }


class Auth:
    def __init__(self, settings: AuthSettings, secret: str, store: Store) -> None:
        self.settings = settings
        self._secret = secret
        self._store = store
        self._started = int(time.time())
        self._used_tickets: dict[str, float] = {}
        self._dummy_hash = ""

    async def start(self) -> None:
        """Prepare the hash an unknown user's login is checked against."""
        self._dummy_hash = await hash_password(secrets.token_hex(16))

    def _issue(self, user_id: str, typ: str, lifetime: int, **extra: Any) -> str:
        now = int(time.time())
        claims = {"sub": user_id, "typ": typ, "iat": now, "exp": now + lifetime, **extra}
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def decode(self, token: str, typ: str) -> dict[str, Any]:
        """The claims of a valid, unexpired token of type ``typ``; else ``Unauthorized``."""
        try:
            claims = jwt.decode(
                token, self._secret, algorithms=[ALGORITHM], options={"require": _REQUIRED}
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the token has expired") from None
        except jwt.PyJWTError:
            raise Unauthorized("the token is not valid") from None
        if claims.get("typ") != typ or not isinstance(claims.get("sub"), str):
            raise Unauthorized("the token is not valid here")
        return claims

    def issue_pair(self, user_id: str) -> TokenPair:
        return TokenPair(
            access_token=self._issue(user_id, ACCESS, self.settings.access_token_lifetime),
            refresh_token=self._issue(
                user_id, REFRESH, self.settings.refresh_token_lifetime, jti=uuid.uuid4().hex
            ),
            expires_in=self.settings.access_token_lifetime,
        )

    def issue_ticket(self, user_id: str, session_expires: int) -> str:
        """A ticket for one stream; the stream lasts as long as the access token that
        asked for it (``session_expires``), not just the ticket's short life."""
        return self._issue(
            user_id,
            TICKET,
            self.settings.ticket_lifetime,
            jti=uuid.uuid4().hex,
            session_exp=session_expires,
        )

    def redeem_ticket(self, ticket: str) -> dict[str, Any]:
        """A ticket's claims, once: a second use, or a ticket issued before this
        process started (whose use could not be remembered), is refused."""
        claims = self.decode(ticket, TICKET)
        jti = claims.get("jti")
        now = time.time()
        self._used_tickets = {j: exp for j, exp in self._used_tickets.items() if exp > now}
        if not isinstance(jti, str) or jti in self._used_tickets or claims["iat"] < self._started:
            raise Unauthorized("the ticket was already used")
        self._used_tickets[jti] = float(claims["exp"])
        return claims

    async def authenticate(self, token: str) -> Session:
        """The user an access token belongs to, and when the token expires."""
        claims = self.decode(token, ACCESS)
        return await self._session(claims["sub"], int(claims["exp"]))

    async def redeem_ticket_session(self, ticket: str) -> Session:
        """The session a ticket opens (once), lasting as long as the access token that
        asked for it."""
        claims = self.redeem_ticket(ticket)
        return await self._session(claims["sub"], int(claims.get("session_exp", claims["exp"])))

    async def _session(self, user_id: str, expires: int) -> Session:
        user = await self._store.read.user(user_id)
        if user is None:
            raise Unauthorized("the token's user no longer exists")
        return Session(user, expires)

    async def register(self, username: str, password: str, *, is_admin: bool = False) -> User:
        user = User(
            id=str(uuid.uuid4()),
            username=username,
            password_hash=await hash_password(password),
            is_admin=is_admin,
            created_at=utcnow(),
        )

        def job(tx: Tx) -> bool:
            return tx.insert_user(user)

        if not await self._store.write(job):
            raise Conflict("that username is taken")
        return user

    async def login(self, username: str, password: str) -> TokenPair:
        """Tokens for valid credentials. An unknown user costs one hash verification
        too, so the answer's timing does not tell which names exist."""
        user = await self._store.read.user_by_name(username)
        if user is None:
            await verify_password(self._dummy_hash, password)
            raise Unauthorized("wrong username or password")
        if not await verify_password(user.password_hash, password):
            raise Unauthorized("wrong username or password")
        return self.issue_pair(user.id)

    async def refresh(self, refresh_token: str) -> TokenPair:
        claims = self.decode(refresh_token, REFRESH)
        if await self._store.read.user(claims["sub"]) is None:
            raise Unauthorized("the token's user no longer exists")
        return self.issue_pair(claims["sub"])
