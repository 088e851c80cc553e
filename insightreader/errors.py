"""Every error the application raises on purpose, each with its wire code.

Two families: :class:`ApiError` answers an HTTP request (``status`` + ``code``;
``web/errors.py`` maps it to ``{"error": {"code", "message"}}`` in one place),
and :class:`TaskError` ends a task run (``code`` + ``retryable``, stored on the
task and sent in ``task_failed``). Lower-level errors (sqlite3, openai, JWT) are
translated into these at the module boundary that sees them.
"""

from __future__ import annotations


class InsightReaderError(Exception):
    """Base of every error raised on purpose."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class AlreadyRunning(InsightReaderError):
    """Another server process holds this database."""


class BackgroundFailure(InsightReaderError):
    """A supervised background part died; the server drained and exits non-zero so
    that its service manager starts it again."""


class ApiError(InsightReaderError):
    """An error answered to an HTTP client. ``retry_after`` (seconds), when set, is
    sent as the ``Retry-After`` header."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BadRequest(ApiError):
    """The request is malformed (bad JSON, wrong types, missing fields)."""

    status = 400
    code = "bad_request"


class InvalidLastEventId(BadRequest):
    """``Last-Event-ID`` (or ``last_event_id``) is not a non-negative integer."""

    code = "invalid_last_event_id"


class BadImport(BadRequest):
    """An import file that cannot be read as its format; the message says where."""

    code = "bad_import"


class ValidationFailed(ApiError):
    """The request parsed but its values are not acceptable."""

    status = 422
    code = "validation_error"


class ForbiddenAddress(ValidationFailed):
    """A webhook's URL leads to an address the fetch guard refuses
    (``library.fetch_allow_private`` is off)."""

    code = "fetch_forbidden_address"


class QuoteNotFound(ValidationFailed):
    """A highlight's quote does not occur in its article's text."""

    code = "quote_not_found"


class Unauthorized(ApiError):
    """No credentials, or credentials that are invalid or expired."""

    status = 401
    code = "unauthorized"


class Forbidden(ApiError):
    """Authenticated, but not allowed (e.g. registration closed)."""

    status = 403
    code = "forbidden"


class RegistrationClosed(Forbidden):
    """The server has users and ``auth.open_registration`` is off."""

    code = "registration_closed"


class WrongPassword(Forbidden):
    """The current password given to change it is wrong (not a 401: the caller's
    credentials are fine)."""

    code = "wrong_password"


class InsufficientScope(Forbidden):
    """A ``read`` API token asked for anything but GET or HEAD."""

    code = "insufficient_scope"


class SessionRequired(Forbidden):
    """API tokens, sessions and the password are managed only from a signed-in session."""

    code = "session_required"


class NotFound(ApiError):
    """No such object, or not the caller's."""

    status = 404
    code = "not_found"


class Conflict(ApiError):
    """The object is in a state that does not allow this, or a key was reused."""

    status = 409
    code = "conflict"


class TooManyTokens(Conflict):
    """The user has the most API tokens allowed; revoke one first."""

    code = "too_many_tokens"


class TooManyWebhooks(Conflict):
    """The user has the most webhooks allowed; delete one first."""

    code = "too_many_webhooks"


class WeakPassword(ValidationFailed):
    """Shorter than the minimum, the username itself, or a common password."""

    code = "weak_password"


class TooManyAttempts(ApiError):
    """Too many failed logins for a username or from an address (``auth.max_failed_logins``
    within ``auth.lockout_window``); ``retry_after`` says when to try again."""

    status = 429
    code = "too_many_attempts"


class TooManyPending(ApiError):
    """The user already has ``tasks.max_pending_per_user`` unfinished tasks."""

    status = 429
    code = "too_many_pending"


class TooManyStreams(ApiError):
    """The user already has ``sse.max_connections_per_user`` open streams."""

    status = 429
    code = "too_many_streams"


class QuotaExceeded(ApiError):
    """The task's estimated tokens do not fit in what is left of the user's
    ``tasks.daily_token_budget`` today."""

    status = 429
    code = "quota_exceeded"


class StorageQuotaExceeded(ApiError):
    """The user's library is at ``library.max_articles_per_user`` or
    ``library.max_bytes_per_user``."""

    status = 429
    code = "storage_quota_exceeded"


class ShuttingDown(ApiError):
    """The server is draining and takes no new work."""

    status = 503
    code = "shutting_down"


class Busy(ApiError):
    """Password hashing is saturated (its bounded queue is full): try again shortly."""

    status = 503
    code = "busy"


class StorageBusy(ApiError):
    """The database stayed locked longer than ``database.busy_timeout``."""

    status = 503
    code = "storage_busy"


class StorageFull(ApiError):
    """The disk holding the database is full."""

    status = 503
    code = "storage_full"


#: What a background part's read or write may meet while the database is unreachable,
#: locked, full or closing: it logs, waits and tries again.
STORAGE_UNAVAILABLE = (StorageBusy, StorageFull, ShuttingDown)


class TaskError(InsightReaderError):
    """Ends a task run as failed; stored as the task's ``error``."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        retryable: bool = False,
        fallback: dict[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.retryable = retryable
        #: What a client may still show although the task failed (e.g. default
        #: follow-up buttons); stored and sent as ``error.fallback``.
        self.fallback = fallback

    def with_fallback(self, fallback: dict[str, object]) -> TaskError:
        """The same failure, carrying ``fallback``."""
        return TaskError(self.code, self.message, retryable=self.retryable, fallback=fallback)

    def as_dict(self) -> dict[str, object]:
        body: dict[str, object] = {"code": self.code, "message": self.message, "retryable": self.retryable}
        if self.fallback is not None:
            body["fallback"] = self.fallback
        return body


class TaskDeferred(InsightReaderError):
    """Raised by a task run that cannot proceed now (e.g. the upstream circuit is
    open): the task goes back to pending, its attempt not counted against it."""

    code = "deferred"
