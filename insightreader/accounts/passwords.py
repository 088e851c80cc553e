"""Username and password rules, and password hashing.

Rules (``422 weak_password``): at least :data:`MIN_LENGTH` characters, not the
username (case-insensitively), not one of the 10,000 most common passwords
(``common-passwords.txt``, see ``NOTICE.md`` beside it). They apply wherever a
password is chosen: registration, ``insightreader user create``, the administrator
from the environment, a password change. Logging in checks none of them, so accounts
made under older rules keep working.

Hashing is Argon2id (argon2-cffi) in worker threads, behind a bounded queue: at most
:data:`HASHING` hashes run at once and :data:`WAITING` more may wait; beyond that a
request is refused at once with ``503 busy`` (``Retry-After``) instead of queueing
behind a flood of logins.
"""

from __future__ import annotations

import asyncio
import base64
import re
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import cache
from importlib import resources

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from argon2.low_level import ARGON2_VERSION

from ..errors import Busy, ValidationFailed, WeakPassword

MIN_LENGTH = 10
MAX_LENGTH = 1024
USERNAME_MIN = 3
USERNAME_MAX = 32
USERNAME_PATTERN = r"^[A-Za-z0-9_.-]+$"
#: Hashes computed at once (each takes ~64 MiB and a core for ~0.1 s).
HASHING = 2
#: Requests that may wait for a hashing slot; more get ``503 busy``.
WAITING = 4
BUSY_RETRY_AFTER = 1


def check_username(username: str) -> None:
    """Raise :class:`ValidationFailed` unless ``username`` is 3–32 letters, digits, ``.``, ``_``, ``-``
    (the API's schema says the same)."""
    if not USERNAME_MIN <= len(username) <= USERNAME_MAX or not re.match(USERNAME_PATTERN, username):
        raise ValidationFailed(
            f"a username is {USERNAME_MIN}–{USERNAME_MAX} characters: letters, digits and . _ -"
        )


@cache
def common_passwords() -> frozenset[str]:
    """The common passwords long enough to pass the length rule (shorter ones are
    refused by it anyway), lower-cased."""
    text = resources.files(__package__).joinpath("common-passwords.txt").read_text("utf-8")
    return frozenset(line for line in text.splitlines() if len(line) >= MIN_LENGTH)


def check_password(username: str, password: str) -> None:
    """Raise :class:`WeakPassword` unless ``password`` may be chosen by ``username``.
    The message never repeats the password."""
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"the password must be at least {MIN_LENGTH} characters long")
    if len(password) > MAX_LENGTH:
        raise WeakPassword(f"the password must be at most {MAX_LENGTH} characters long")
    if password.casefold() == username.casefold():
        raise WeakPassword("the password must not be the username")
    if password.lower() in common_passwords():
        raise WeakPassword("the password is one of the 10,000 most common passwords: choose another")


class Hasher:
    """Argon2id hashing with a bounded queue (see the module docstring)."""

    def __init__(self, *, hashing: int = HASHING, waiting: int = WAITING) -> None:
        self._argon2 = PasswordHasher()
        self._slots = asyncio.Semaphore(hashing)
        self._capacity = hashing + waiting
        self._admitted = 0

    @asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        if self._admitted >= self._capacity:
            raise Busy("the server is busy checking passwords; try again shortly", retry_after=BUSY_RETRY_AFTER)
        self._admitted += 1
        try:
            async with self._slots:
                yield
        finally:
            self._admitted -= 1

    def unmatchable(self) -> str:
        """An Argon2id hash in this hasher's encoding and parameters whose salt and
        digest are random bytes: checking a password against it costs what checking a
        real hash costs, and it matches none (short of finding a preimage of 32 random
        bytes). Making it costs nothing, where hashing a random password cost a start-up
        0.18 s of its core, ahead of the first task it dispatched."""
        argon2 = self._argon2
        salt, digest = (
            base64.b64encode(secrets.token_bytes(n)).decode("ascii").rstrip("=") for n in (argon2.salt_len, argon2.hash_len)
        )
        return (
            f"$argon2{argon2.type.name.lower()}$v={ARGON2_VERSION}"
            f"$m={argon2.memory_cost},t={argon2.time_cost},p={argon2.parallelism}${salt}${digest}"
        )

    async def hash(self, password: str) -> str:
        async with self._slot():
            return await asyncio.to_thread(self._argon2.hash, password)

    async def verify(self, password_hash: str, password: str) -> bool:
        async with self._slot():
            try:
                return await asyncio.to_thread(self._argon2.verify, password_hash, password)
            except (VerificationError, InvalidHashError):
                return False
