"""Accounts: registration, password rules and hashing, login throttling, sessions and
their tokens. The API, the command line and the server's start all use
:class:`Accounts`."""

from .service import ADMIN_PASSWORD, ADMIN_USERNAME, Accounts, Client, Session
from .api_tokens import ApiTokens
from .tokens import Tokens, load_secret

__all__ = ["ADMIN_PASSWORD", "ADMIN_USERNAME", "Accounts", "ApiTokens", "Client", "Session", "Tokens", "load_secret"]
