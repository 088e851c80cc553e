"""HS256 JWTs: access and refresh tokens of a session, single-use SSE tickets, and
the signing secret.

Access, refresh and ticket tokens carry a ``typ`` claim and each check names the
one type it accepts, so none can stand in for another. Each carries the session id
(``sid``): :mod:`.service` checks the session is still open. A refresh token also
carries a ``jti``, of which the session keeps only a hash (rotation).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from ..config import AuthSettings, ConfigError
from ..errors import Unauthorized
from ..store import private_file

ALGORITHM = "HS256"
ACCESS, REFRESH, TICKET = "access", "refresh", "sse_ticket"
_REQUIRED = ["exp", "iat", "sub", "typ", "sid"]
#: Access tokens whose signature was checked, kept at most (then forgotten at once).
MAX_VERIFIED = 10_000


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


def digest(jti: str) -> str:
    """What the store keeps of a refresh token: the SHA-256 of its ``jti``."""
    return hashlib.sha256(jti.encode()).hexdigest()


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    #: The refresh token's ``jti`` hash and expiry, for the session row.
    refresh_digest: str
    refresh_expires: int

    def public(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "token_type": "bearer",
            "expires_in": self.expires_in,
        }


class Tokens:
    def __init__(self, settings: AuthSettings, secret: str) -> None:
        self.settings = settings
        self._secret = secret
        self._started = int(time.time())
        self._used_tickets: dict[str, float] = {}
        #: Access token -> its claims, once verified: a client sends the same token on
        #: every request for its whole life, and checking it again (base64, JSON, HMAC)
        #: was a twelfth of the loop's time under load. Only the expiry changes with
        #: time; it is checked on every use. Whether the session is open is not a
        #: property of the token: :mod:`.service` checks it every time.
        self._verified: dict[str, dict[str, Any]] = {}

    def _issue(self, user_id: str, session_id: str, typ: str, lifetime: int, **extra: Any) -> tuple[str, int]:
        now = int(time.time())
        exp = now + lifetime
        claims = {"sub": user_id, "sid": session_id, "typ": typ, "iat": now, "exp": exp, **extra}
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM), exp

    def decode(self, token: str, typ: str) -> dict[str, Any]:
        """The claims of a valid, unexpired token of type ``typ``; else ``Unauthorized``."""
        if typ == ACCESS and (known := self._verified.get(token)) is not None:
            if known["exp"] <= time.time():
                raise Unauthorized("the token has expired")
            return known
        claims = self._verify(token, typ)
        if typ == ACCESS:
            if len(self._verified) >= MAX_VERIFIED:
                self._verified.clear()
            self._verified[token] = claims
        return claims

    def _verify(self, token: str, typ: str) -> dict[str, Any]:
        try:
            claims = jwt.decode(token, self._secret, algorithms=[ALGORITHM], options={"require": _REQUIRED})
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the token has expired") from None
        except jwt.PyJWTError:
            raise Unauthorized("the token is not valid") from None
        if claims.get("typ") != typ or not isinstance(claims.get("sub"), str) or not isinstance(claims.get("sid"), str):
            raise Unauthorized("the token is not valid here")
        return claims

    def issue_pair(self, user_id: str, session_id: str) -> TokenPair:
        jti = uuid.uuid4().hex
        access, _ = self._issue(user_id, session_id, ACCESS, self.settings.access_token_lifetime)
        refresh, refresh_exp = self._issue(user_id, session_id, REFRESH, self.settings.refresh_token_lifetime, jti=jti)
        return TokenPair(access, refresh, self.settings.access_token_lifetime, digest(jti), refresh_exp)

    def issue_ticket(self, user_id: str, session_id: str, session_expires: int) -> str:
        """A ticket for one stream; the stream lasts as long as the access token that
        asked for it (``session_expires``), not just the ticket's short life."""
        ticket, _ = self._issue(
            user_id,
            session_id,
            TICKET,
            self.settings.ticket_lifetime,
            jti=uuid.uuid4().hex,
            session_exp=session_expires,
        )
        return ticket

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
