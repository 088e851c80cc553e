"""An async client for the InsightReader API, for scripts::

    async with Client("http://127.0.0.1:8000", username="ada", password="…") as c:
        task = await c.analyze_article("Title", text)
        analysis = await c.wait(task)            # the task's result
        async for delta in c.stream_insight("a selected passage"):
            print(delta, end="", flush=True)

Every method answers the server's JSON (a dict), except the submits, which answer a
:class:`Submitted`. Every failure is a :class:`ClientError` (``.status``, ``.code``,
``.message``): an HTTP error carries the server's ``{"error": {"code", "message"}}``;
a failed or cancelled task is a :class:`TaskFailed`; a transport problem has
``status None`` (``connection_error``); a wait that ran out is a :class:`ClientTimeout`
(also a :class:`TimeoutError`).

Waiting on tasks goes through one shared event stream per client (see
:class:`_Feed`): it resumes with ``Last-Event-ID`` after a disconnect or a server
restart, and while it is down the waiters poll ``GET /tasks/{id}``. Every wait has
a timeout parameter; nothing waits forever except :meth:`Client.events`, which
follows the stream until the caller stops iterating.

See docs/client.md.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from httpx_sse import EventSource, SSEError

__all__ = [
    "Client",
    "ClientError",
    "ClientTimeout",
    "Delta",
    "Event",
    "Submitted",
    "TaskFailed",
]

log = logging.getLogger(__name__)

API = "/api/v1"
#: The environment variable a :class:`Client` takes its API token from by default.
TOKEN_ENV = "INSIGHTREADER_TOKEN"
STREAM_PATH = f"{API}/sse/analysis-notifications"
TERMINAL = frozenset({"completed", "failed", "cancelled"})
#: Events that carry no ``id:`` line.
_CONTROL = frozenset({"connected", "reset", "heartbeat", "closed"})
#: HTTP statuses worth another try of an idempotent request (or a stream).
_TRANSIENT_STATUS = frozenset({429, 502, 503, 504})
_TRANSIENT_CODES = frozenset({"storage_busy", "too_many_streams"})
#: A 429 that another try soon cannot fix: a login lockout lasts minutes.
_LASTING_CODES = frozenset({"too_many_attempts"})


# -- errors and values -------------------------------------------------------------


class ClientError(Exception):
    """Anything that went wrong: ``status`` is the HTTP status (None when there was no
    HTTP answer), ``code`` and ``message`` are the server's (or the client's own:
    ``connection_error``, ``timeout``, ``bad_response``)."""

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status

    @property
    def transient(self) -> bool:
        """Worth trying again later (no answer, or the server is busy or restarting)."""
        if self.code in _LASTING_CODES:
            return False
        return self.status is None or self.status in _TRANSIENT_STATUS or self.code in _TRANSIENT_CODES


class ClientTimeout(ClientError, TimeoutError):
    """A bounded wait ran out (``code`` is ``timeout``)."""

    def __init__(self, message: str) -> None:
        super().__init__("timeout", message, None)


class TaskFailed(ClientError):
    """The task ended ``failed`` (``code`` is the task's error code) or ``cancelled``
    (``code`` is ``cancelled``)."""

    def __init__(self, task_id: str, code: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(code, message, None)
        self.task_id = task_id
        self.retryable = retryable


@dataclass(frozen=True)
class Submitted:
    """A submit's answer. ``status`` is ``pending`` for a new (or joined) task; a
    finished one (a dedup hit, or an ``Idempotency-Key`` replay) has its ``result``
    or ``error`` here already."""

    task_id: str
    status: str
    article_id: str | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    deduplicated: bool = False
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Submitted:
        return cls(
            task_id=str(body["task_id"]),
            status=str(body["status"]),
            article_id=body.get("article_id"),
            result=body.get("result"),
            error=body.get("error"),
            deduplicated=bool(body.get("deduplicated", False)),
            raw=dict(body),
        )


@dataclass(frozen=True)
class Event:
    """One server-sent event: ``id`` is None for control messages (``connected``,
    ``reset``, ``closed``)."""

    id: int | None
    event: str
    data: dict[str, Any]


class Delta(str):
    """A piece of insight text. ``restart`` is True on the first piece of a new attempt
    (the task was run again, e.g. after a server restart): text shown before it belongs
    to an abandoned attempt and should be dropped. ``index`` is None for text that did
    not come from a ``task_progress`` event (the rest of the final result)."""

    attempt: int
    index: int | None
    restart: bool

    def __new__(cls, text: str, attempt: int = 1, index: int | None = None, restart: bool = False) -> Delta:
        self = super().__new__(cls, text)
        self.attempt = attempt
        self.index = index
        self.restart = restart
        return self


def _error_from(response: httpx.Response) -> ClientError:
    status = response.status_code
    try:
        body = response.json()
        error = body["error"]
        return ClientError(str(error["code"]), str(error["message"]), status)
    except (ValueError, KeyError, TypeError):
        text = response.text.strip().splitlines()[0][:200] if response.text.strip() else response.reason_phrase
        return ClientError(f"http_{status}", text or f"HTTP {status}", status)


def _jwt_times(token: str) -> tuple[float, float] | None:
    """``(iat, exp)`` read from a JWT without checking it (only to refresh in time)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims.get("iat", 0)), float(claims["exp"])
    except (IndexError, ValueError, KeyError, TypeError):
        return None


def _finish(task_id: str, task: Mapping[str, Any]) -> dict[str, Any]:
    """A finished task's result, or :class:`TaskFailed`."""
    status = task.get("status")
    if status == "completed":
        return dict(task.get("result") or {})
    if status == "cancelled":
        raise TaskFailed(task_id, "cancelled", "the task was cancelled")
    error = task.get("error") or {}
    raise TaskFailed(
        task_id,
        str(error.get("code", "failed")),
        str(error.get("message", "the task failed")),
        retryable=bool(error.get("retryable", False)),
    )


class _Backoff:
    def __init__(self, first: float = 0.1, cap: float = 3.0) -> None:
        self._first, self._cap, self._next = first, cap, first

    def reset(self) -> None:
        self._next = self._first

    def __call__(self) -> float:
        delay = self._next
        self._next = min(self._cap, self._next * 2)
        return delay * random.uniform(0.8, 1.2)


class _StreamDown(Exception):
    """The event stream could not be opened or broke; worth reconnecting."""

    def __init__(self, error: ClientError) -> None:
        super().__init__(str(error))
        self.error = error


# -- the client --------------------------------------------------------------------


class Client:
    """One user on one server.

    ``token`` is an access token or a personal API token (``irt_…``; by default the
    ``INSIGHTREADER_TOKEN`` environment variable's, when no other credentials are
    given). An API token is used as it is, never renewed. With ``refresh_token`` (or ``username`` and
    ``password``) an expired one is renewed on its own, shortly before it expires and
    again on a ``401``. With only ``username`` and ``password``, entering the client
    (``async with``) logs in. ``on_tokens(tokens)`` is called with every new token pair
    (to save it).

    Timeouts, in seconds: ``timeout`` for one request, ``connect_timeout`` to open a
    connection, ``stream_idle_timeout`` of silence before an event stream is
    reconnected (the server sends a heartbeat every ``sse.heartbeat`` seconds, 15 by
    default). ``poll_interval`` between two ``GET /tasks/{id}`` while the stream is
    down. ``retries`` of an idempotent request after a transport error or a busy server.
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        refresh_token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
        connect_timeout: float = 10.0,
        stream_idle_timeout: float = 45.0,
        poll_interval: float = 1.0,
        retries: int = 2,
        on_tokens: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        base = url.rstrip("/")
        if base.endswith(API):
            base = base[: -len(API)]
        self.url = base
        if token is None and not (refresh_token or username or password):
            token = os.environ.get(TOKEN_ENV) or None
        self._access = token
        self._refresh = refresh_token
        self._expires: float | None = None
        self._lifetime: float | None = None
        self._remember(token, None)
        self._username = username
        self._password = password
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.stream_idle_timeout = stream_idle_timeout
        self.poll_interval = poll_interval
        #: Seconds between two ``GET /tasks/{id}`` of a waiter while the stream is up (a safety net).
        self.safety_poll = 30.0
        #: Seconds before trying the event stream again after it was refused (e.g. 404).
        self.stream_retry = 10.0
        self.retries = retries
        self.on_tokens = on_tokens
        self._http = httpx.AsyncClient(
            base_url=base,
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            headers={"User-Agent": "insightreader-client"},
        )
        self._renew_lock = asyncio.Lock()
        self._feed = _Feed(self)

    async def __aenter__(self) -> Client:
        if self._access is None and self._username and self._password:
            try:
                await self.login()
            except BaseException:
                await self.aclose()
                raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._feed.stop()
        await self._http.aclose()

    # -- tokens -------------------------------------------------------------------

    @property
    def stream_connected(self) -> bool:
        """Whether the shared event stream behind :meth:`wait` is connected right now."""
        return self._feed.connected

    @property
    def access_token(self) -> str | None:
        return self._access

    @property
    def refresh_token(self) -> str | None:
        return self._refresh

    def _remember(self, access: str | None, expires_in: float | None) -> None:
        times = _jwt_times(access) if access else None
        if times is not None:
            iat, exp = times
            self._expires, self._lifetime = exp, (exp - iat if iat else None)
        elif access and expires_in:
            self._expires, self._lifetime = time.time() + expires_in, expires_in
        else:
            self._expires = self._lifetime = None

    def _take(self, tokens: dict[str, Any]) -> dict[str, Any]:
        self._access = tokens["access_token"]
        self._refresh = tokens.get("refresh_token") or self._refresh
        self._remember(self._access, tokens.get("expires_in"))
        if self.on_tokens is not None:
            self.on_tokens(tokens)
        return tokens

    def _can_renew(self) -> bool:
        return bool(self._refresh or (self._username and self._password))

    def _stale(self) -> bool:
        """The access token expires within a few seconds (a fifth of its lifetime, at
        most 30 s): renew it before using it."""
        if self._expires is None:
            return False
        margin = min(30.0, (self._lifetime or 150.0) / 5)
        return time.time() >= self._expires - margin

    async def _renew(self, failed: str | None) -> None:
        """New tokens (by refresh token, else by logging in again), once for any number
        of concurrent callers that found ``failed`` stale or refused."""
        async with self._renew_lock:
            if self._access != failed:
                return  # another caller renewed it meanwhile
            if self._refresh:
                try:
                    await self.refresh()
                    return
                except ClientError as exc:
                    if exc.status != 401 or not (self._username and self._password):
                        raise
            if self._username and self._password:
                await self.login()
                return
            raise ClientError("unauthorized", "the access token expired and there is no way to renew it", 401)

    async def _token(self) -> str:
        token = self._access
        if token is None:
            if not self._can_renew():
                raise ClientError("unauthorized", "not logged in (no access token)", 401)
            await self._renew(None)
        elif self._stale() and self._can_renew():
            await self._renew(token)
        assert self._access is not None
        return self._access

    # -- requests -----------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        auth: bool = True,
        idempotent: bool | None = None,
    ) -> Any:
        """Any route: the decoded JSON answer (None for an empty one), else
        :class:`ClientError`. ``path`` is relative to the server (``/api/v1/...``).
        ``idempotent`` (default: GET, DELETE, or a request with an ``Idempotency-Key``)
        allows ``retries`` after a transport error or a transient status."""
        response = await self._send(
            method, path, json=json, params=params, headers=headers, auth=auth, idempotent=idempotent
        )
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise ClientError("bad_response", f"{method} {path}: the answer is not JSON", response.status_code) from None

    async def _send(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        auth: bool = True,
        idempotent: bool | None = None,
    ) -> httpx.Response:
        hdrs = dict(headers or {})
        if idempotent is None:
            idempotent = method in ("GET", "HEAD", "DELETE") or "Idempotency-Key" in hdrs
        query = {k: v for k, v in (params or {}).items() if v is not None}
        tries = 0
        renewed = False
        backoff = _Backoff(0.2, 2.0)
        while True:
            token = None
            if auth:
                token = await self._token()
                hdrs["Authorization"] = f"Bearer {token}"
            try:
                response = await self._http.request(method, path, json=json, params=query, headers=hdrs)
            except httpx.TimeoutException:
                error: ClientError = ClientTimeout(f"{method} {path}: no answer within {self.timeout:g}s")
            except httpx.TransportError as exc:
                error = ClientError("connection_error", f"{method} {self.url}{path}: {exc or type(exc).__name__}")
            else:
                if response.is_success:
                    return response
                error = _error_from(response)
                if response.status_code == 401 and auth and not renewed and self._can_renew():
                    renewed = True
                    await self._renew(token)
                    continue
            if idempotent and error.transient and tries < self.retries:
                tries += 1
                await asyncio.sleep(backoff())
                continue
            raise error

    async def _submit(self, path: str, body: Mapping[str, Any] | None, idempotency_key: str | None) -> Submitted:
        key = idempotency_key or str(uuid.uuid4())
        answer = await self.request("POST", path, json=dict(body or {}), headers={"Idempotency-Key": key})
        return Submitted.from_json(answer)

    async def submit(self, path: str, body: Mapping[str, Any] | None = None, *, idempotency_key: str | None = None) -> Submitted:
        """POST a submit to any route (a new task type, a test route); its answer.
        Every submit carries an ``Idempotency-Key`` (a new one unless given), so a retry
        after a lost answer gives the same task."""
        return await self._submit(path, body, idempotency_key)

    @staticmethod
    def _body(**values: Any) -> dict[str, Any]:
        return {k: v for k, v in values.items() if v is not None}

    # -- auth ---------------------------------------------------------------------

    async def register(self, username: str, password: str) -> dict[str, Any]:
        """Create an account: ``{user_id, username, created_at}``."""
        return await self.request(  # type: ignore[no-any-return]
            "POST", f"{API}/auth/register", json={"username": username, "password": password}, auth=False
        )

    async def login(self, username: str | None = None, password: str | None = None) -> dict[str, Any]:
        """Log in (with the constructor's credentials unless given); the token pair,
        which the client uses from now on."""
        username = username or self._username
        password = password or self._password
        if not username or not password:
            raise ClientError("unauthorized", "a username and a password are needed to log in", None)
        tokens = await self.request(
            "POST", f"{API}/auth/login", json={"username": username, "password": password},
            auth=False, idempotent=True,
        )
        return self._take(tokens)

    async def refresh(self) -> dict[str, Any]:
        """Exchange the refresh token for a new pair, which the client uses from now on.

        Not retried: each refresh token works once, and presenting it again after an
        answer that was lost on the way would end the session (reuse detection)."""
        if not self._refresh:
            raise ClientError("unauthorized", "no refresh token", None)
        tokens = await self.request("POST", f"{API}/auth/refresh", json={"refresh_token": self._refresh}, auth=False)
        return self._take(tokens)

    async def logout(self) -> None:
        """End this client's session on the server: its tokens stop working there."""
        await self.request("POST", f"{API}/auth/logout")
        self._access = self._refresh = None

    async def me(self) -> dict[str, Any]:
        return await self.request("GET", f"{API}/auth/me")  # type: ignore[no-any-return]

    async def sse_ticket(self) -> dict[str, Any]:
        """``{ticket, expires_in}``: a single-use ticket for ``?ticket=`` on the stream."""
        return await self.request("POST", f"{API}/sse/ticket", idempotent=True)  # type: ignore[no-any-return]

    # -- articles and analyses ------------------------------------------------------

    async def analyze_article(
        self,
        title: str,
        content: str,
        url: str | None = None,
        *,
        priority: int | None = None,
        idempotency_key: str | None = None,
    ) -> Submitted:
        """Save an article (the same content twice gives the same article) and analyse
        it. ``Submitted.article_id`` is the article's id."""
        body = self._body(title=title, content=content, url=url, priority=priority)
        return await self._submit(f"{API}/articles/save-with-analysis", body, idempotency_key)

    save_article = analyze_article

    async def save_url(
        self,
        url: str,
        title: str | None = None,
        *,
        priority: int | None = None,
        idempotency_key: str | None = None,
    ) -> Submitted:
        """Save an article from its URL (the same URL, normalised, gives the same
        article): the ``page_fetch`` task that fetches it, which queues its analysis
        (:meth:`analysis_of`)."""
        body = self._body(url=url, title=title, priority=priority)
        return await self._submit(f"{API}/articles/save-with-analysis", body, idempotency_key)

    async def analysis_of(self, article_id: str, *, timeout: float = 600.0) -> dict[str, Any]:
        """The result of the article's newest ``article_analysis`` task, once finished
        (:meth:`wait`); ``ClientError`` ``not_found`` when it has none."""
        cursor = None
        for _ in range(100):
            page = await self.list_tasks(task_type="article_analysis", limit=100, cursor=cursor)
            for task in page["items"]:
                if task.get("article_id") == article_id:
                    return await self.wait(task["task_id"], timeout=timeout)
            cursor = page["next_cursor"]
            if cursor is None:
                break
        raise ClientError("not_found", f"article {article_id} has no analysis task")

    async def list_articles(
        self,
        *,
        limit: int = 20,
        cursor: str | None = None,
        tag: str | None = None,
        archived: bool | None = None,
        favorite: bool | None = None,
    ) -> dict[str, Any]:
        """One page: ``{items, next_cursor}`` (newest first, without the text), narrowed
        to a tag and to archived / favourite articles (or the others) when given."""
        params = {
            "limit": limit, "cursor": cursor, "tag": tag,
            "archived": None if archived is None else str(archived).lower(),
            "favorite": None if favorite is None else str(favorite).lower(),
        }
        return await self.request("GET", f"{API}/articles", params=params)  # type: ignore[no-any-return]

    async def search(self, q: str, *, limit: int = 20, cursor: str | None = None) -> dict[str, Any]:
        """One page of the articles matching ``q``: ``{items: [{article_id, title,
        snippet, score}], next_cursor}``, best first."""
        return await self.request("GET", f"{API}/search", params={"q": q, "limit": limit, "cursor": cursor})  # type: ignore[no-any-return]

    async def iter_articles(
        self,
        *,
        page_size: int = 100,
        tag: str | None = None,
        archived: bool | None = None,
        favorite: bool | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Every article (narrowed as :meth:`list_articles` is), following ``next_cursor``."""
        cursor = None
        while True:
            page = await self.list_articles(
                limit=page_size, cursor=cursor, tag=tag, archived=archived, favorite=favorite
            )
            for item in page["items"]:
                yield item
            cursor = page.get("next_cursor")
            if not cursor:
                return

    async def get_article(self, article_id: str) -> dict[str, Any]:
        """The article with its text, analysis, meta analysis and lens results."""
        return await self.request("GET", f"{API}/articles/{article_id}")  # type: ignore[no-any-return]

    async def delete_article(self, article_id: str) -> None:
        await self.request("DELETE", f"{API}/articles/{article_id}")

    async def update_article(
        self,
        article_id: str,
        *,
        archived: bool | None = None,
        favorite: bool | None = None,
        title: str | None = None,
    ) -> dict[str, Any]:
        """Archive, mark as favourite or rename (what is not given stays); the article after."""
        body = self._body(archived=archived, favorite=favorite, title=title)
        return await self.request("PATCH", f"{API}/articles/{article_id}", json=body, idempotent=True)  # type: ignore[no-any-return]

    async def set_tags(self, article_id: str, tags: list[str]) -> list[str]:
        """Replace the article's tags; the names it then carries."""
        answer = await self.request("PUT", f"{API}/articles/{article_id}/tags", json={"tags": tags}, idempotent=True)
        return answer["tags"]  # type: ignore[no-any-return]

    async def tags(self) -> list[dict[str, Any]]:
        """The user's tags: ``[{name, count}]``, sorted case-insensitively."""
        return (await self.request("GET", f"{API}/tags"))["items"]  # type: ignore[no-any-return]

    async def settings(self) -> dict[str, Any]:
        """The reader's settings: ``output_language``, ``auto_analyze``, ``instructions``
        (per task type), ``ui_language`` (docs/settings.md)."""
        return await self.request("GET", f"{API}/settings")  # type: ignore[no-any-return]

    async def update_settings(
        self,
        *,
        output_language: str | None = None,
        auto_analyze: bool | None = None,
        instructions: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Change what is given (an empty instruction removes that task type's); the
        settings after."""
        body = self._body(output_language=output_language, auto_analyze=auto_analyze,
                          instructions=None if instructions is None else dict(instructions))
        return await self.request("PATCH", f"{API}/settings", json=body, idempotent=True)  # type: ignore[no-any-return]

    async def reanalyze(self, scope: str, kinds: list[str] | None = None) -> dict[str, Any]:
        """Run analyses of the library again (``stale``, ``failed`` or ``all``): ``{batch_id,
        status, total}``; follow it with :meth:`batch`."""
        body = self._body(scope=scope, kinds=kinds)
        return await self.request("POST", f"{API}/articles/reanalyze", json=body)  # type: ignore[no-any-return]

    async def batch(self, batch_id: str) -> dict[str, Any]:
        """Where a re-analysis stands, with its tasks counted by status."""
        return await self.request("GET", f"{API}/batches/{batch_id}")  # type: ignore[no-any-return]

    async def cancel_batch(self, batch_id: str) -> dict[str, Any]:
        return await self.request("POST", f"{API}/batches/{batch_id}/cancel")  # type: ignore[no-any-return]

    async def meta_analysis(
        self, article_id: str, *, priority: int | None = None, idempotency_key: str | None = None
    ) -> Submitted:
        body = self._body(article_id=article_id, priority=priority)
        return await self._submit(f"{API}/meta-analysis/analyze", body, idempotency_key)

    async def thinking_lenses(self) -> list[dict[str, Any]]:
        """The lenses ``thinking_lens`` takes: ``[{type, name, description}]``."""
        return (await self.request("GET", f"{API}/thinking-lenses"))["lenses"]  # type: ignore[no-any-return]

    async def thinking_lens(
        self, article_id: str, lens_type: str, *, priority: int | None = None, idempotency_key: str | None = None
    ) -> Submitted:
        return await self._submit(
            f"{API}/articles/{article_id}/thinking-lens/{lens_type}", self._body(priority=priority), idempotency_key
        )

    lens = thinking_lens

    async def generate_buttons(
        self,
        selected_text: str,
        *,
        insight: str | None = None,
        intent: str | None = None,
        conversation_history: list[dict[str, str]] | None = None,
        priority: int | None = None,
        idempotency_key: str | None = None,
    ) -> Submitted:
        body = self._body(
            selected_text=selected_text, insight=insight, intent=intent,
            conversation_history=conversation_history, priority=priority,
        )
        return await self._submit(f"{API}/insights/generate-buttons", body, idempotency_key)

    buttons = generate_buttons

    async def generate_insight(
        self,
        selected_text: str,
        *,
        intent: str | None = None,
        article_id: str | None = None,
        question: str | None = None,
        priority: int | None = None,
        idempotency_key: str | None = None,
    ) -> Submitted:
        """Submit an insight; :meth:`stream_insight` also follows its text."""
        body = self._body(
            selected_text=selected_text, intent=intent, article_id=article_id, question=question, priority=priority
        )
        return await self._submit(f"{API}/insights/generate", body, idempotency_key)

    insight = generate_insight

    async def usage(self) -> dict[str, Any]:
        """Tokens per day and model, task counts, and today's budget."""
        return await self.request("GET", f"{API}/usage")  # type: ignore[no-any-return]

    # -- tasks --------------------------------------------------------------------

    async def list_tasks(
        self,
        *,
        status: str | None = None,
        task_type: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """One page: ``{items, next_cursor}``, newest first."""
        params = {"status": status, "task_type": task_type, "limit": limit, "cursor": cursor}
        return await self.request("GET", f"{API}/tasks", params=params)  # type: ignore[no-any-return]

    async def iter_tasks(
        self, *, status: str | None = None, task_type: str | None = None, page_size: int = 100
    ) -> AsyncIterator[dict[str, Any]]:
        """Every task, following ``next_cursor``."""
        cursor = None
        while True:
            page = await self.list_tasks(status=status, task_type=task_type, limit=page_size, cursor=cursor)
            for item in page["items"]:
                yield item
            cursor = page.get("next_cursor")
            if not cursor:
                return

    async def get_task(self, task_id: str) -> dict[str, Any]:
        return await self.request("GET", f"{API}/tasks/{task_id}")  # type: ignore[no-any-return]

    async def cancel_task(self, task_id: str) -> dict[str, Any]:
        """The cancelled task (``409 conflict`` for a finished one)."""
        return await self.request("POST", f"{API}/tasks/{task_id}/cancel")  # type: ignore[no-any-return]

    async def retry_task(self, task_id: str) -> Submitted:
        """Run a failed or cancelled task again (same ``task_id``)."""
        return Submitted.from_json(await self.request("POST", f"{API}/tasks/{task_id}/retry"))

    async def healthz(self) -> dict[str, Any]:
        return await self.request("GET", "/healthz", auth=False)  # type: ignore[no-any-return]

    # -- waiting ------------------------------------------------------------------

    async def _poll(self, task_id: str) -> dict[str, Any] | None:
        """The task, or None when the server cannot be asked right now."""
        try:
            return await self.get_task(task_id)
        except ClientError as exc:
            if exc.transient:
                return None
            raise

    async def wait(self, task: Submitted | Mapping[str, Any] | str, *, timeout: float = 600.0) -> dict[str, Any]:
        """The task's result once it finished; :class:`TaskFailed` if it failed or was
        cancelled; :class:`ClientTimeout` after ``timeout`` seconds.

        Follows the event stream (resuming after disconnects and server restarts); while
        the stream is unavailable, polls ``GET /tasks/{id}`` every ``poll_interval``."""
        if isinstance(task, Submitted):
            if task.finished:
                return _finish(task.task_id, {"status": task.status, "result": task.result, "error": task.error})
            task_id = task.task_id
        elif isinstance(task, str):
            task_id = task
        else:
            task_id = str(task["task_id"])
            if task.get("status") in TERMINAL:
                return _finish(task_id, task)
        listener = self._feed.listen({task_id})
        try:
            async with asyncio.timeout(timeout):
                while True:
                    item = await listener.get(self.safety_poll if self._feed.connected else self.poll_interval)
                    if isinstance(item, Event):
                        if item.event == "task_completed":
                            return dict(item.data.get("result") or {})
                        if item.event in ("task_failed", "task_cancelled"):
                            status = "failed" if item.event == "task_failed" else "cancelled"
                            return _finish(task_id, {"status": status, "error": item.data.get("error")})
                    elif item is not _DOWN:  # (re)connected, or nothing heard for a while: ask
                        found = await self._poll(task_id)
                        if found is not None and found["status"] in TERMINAL:
                            return _finish(task_id, found)
        except ClientTimeout:
            raise
        except TimeoutError:
            raise ClientTimeout(f"task {task_id} did not finish within {timeout:g}s") from None
        finally:
            self._feed.unlisten(listener)

    async def stream_insight(
        self,
        selected_text: str,
        *,
        intent: str | None = None,
        article_id: str | None = None,
        question: str | None = None,
        priority: int | None = None,
        timeout: float = 300.0,
    ) -> AsyncIterator[Delta]:
        """Submit an insight and yield its text as it is written, ending when the task
        completes (:class:`TaskFailed` if it fails). The pieces join to the stored
        insight; a piece with ``restart`` set begins a new attempt (drop what was shown).

        The stream is opened before the submit, so no piece is missed; if it cannot be
        opened the text still arrives, in one piece, from polling. ``timeout`` bounds
        the whole call (time spent by the caller between pieces included)."""
        deadline = asyncio.get_running_loop().time() + timeout

        def left() -> float:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise ClientTimeout(f"the insight was not finished within {timeout:g}s")
            return remaining

        async def bounded(coro: Any) -> Any:
            try:
                remaining = left()
            except ClientTimeout:
                coro.close()
                raise
            try:
                return await asyncio.wait_for(coro, remaining)
            except ClientTimeout:
                raise
            except TimeoutError:
                raise ClientTimeout(f"the insight was not finished within {timeout:g}s") from None

        listener = self._feed.listen(None)
        try:
            await self._feed.wait_ready(min(self.connect_timeout, left()))
            submitted: Submitted = await bounded(
                self.generate_insight(
                    selected_text, intent=intent, article_id=article_id, question=question, priority=priority
                )
            )
            task_id = submitted.task_id
            listener.task_ids = {task_id}
            text = _InsightText()
            if submitted.finished:
                for piece in text.finish(_finish(task_id, submitted.raw).get("insight", "")):
                    yield piece
                return
            while True:
                item = await listener.get(min(left(), self.safety_poll if self._feed.connected else self.poll_interval))
                if isinstance(item, Event):
                    if item.data.get("task_id") != task_id:
                        continue  # queued before the submit told us which task is ours
                    if item.event == "task_progress":
                        for piece in text.add(int(item.data.get("attempt", 1)), int(item.data["index"]), str(item.data.get("delta", ""))):
                            yield piece
                    elif item.event == "task_started":
                        text.start(int(item.data.get("attempt", 1)))
                    elif item.event == "task_completed":
                        for piece in text.finish(str((item.data.get("result") or {}).get("insight", ""))):
                            yield piece
                        return
                    elif item.event in ("task_failed", "task_cancelled"):
                        status = "failed" if item.event == "task_failed" else "cancelled"
                        _finish(task_id, {"status": status, "error": item.data.get("error")})
                elif item is not _DOWN:
                    found = await bounded(self._poll(task_id))
                    if found is not None and found["status"] in TERMINAL:
                        for piece in text.finish(str(_finish(task_id, found).get("insight", ""))):
                            yield piece
                        return
        finally:
            self._feed.unlisten(listener)

    # -- the event stream -----------------------------------------------------------

    async def events(self, *, last_event_id: int | None = None) -> AsyncIterator[Event]:
        """Every event of the user, following the stream until the caller stops:
        reconnects (with ``Last-Event-ID``) after a disconnect, a ``closed`` message or
        ``stream_idle_timeout`` seconds of silence, so nothing is missed or repeated.
        Each connection starts with a ``connected`` event; a ``reset`` means events were
        missed (resync with ``GET /tasks``). Heartbeats are not yielded. Raises
        :class:`ClientError` when the stream is refused for good (e.g. ``401``)."""
        async with contextlib.aclosing(self._follow(last_event_id, None)) as events:
            async for event in events:
                yield event

    async def _follow(
        self, last_event_id: int | None, on_down: Callable[[ClientError], None] | None
    ) -> AsyncIterator[Event]:
        last = last_event_id
        backoff = _Backoff()
        while True:
            try:
                async with contextlib.aclosing(self._stream_once(last)) as stream:
                    async for event in stream:
                        if event.id is not None or event.event == "heartbeat":
                            backoff.reset()  # a stream that works (not one that only says hello)
                        if event.id is not None:
                            last = event.id
                        if event.event != "heartbeat":
                            yield event
                        if event.event == "closed":
                            break  # the server ended it (shutdown, overflow, token expiry): reconnect
                await asyncio.sleep(backoff())
            except _StreamDown as exc:
                if on_down is not None:
                    on_down(exc.error)
                delay = backoff()
                if exc.error.status == 429:
                    delay = max(delay, self.poll_interval * 5)
                await asyncio.sleep(delay)

    async def _stream_once(self, last_event_id: int | None) -> AsyncIterator[Event]:
        """One connection to the stream; :class:`_StreamDown` when it cannot be opened
        or breaks, :class:`ClientError` when it is refused for good."""
        renewed = False
        while True:
            try:
                token = await self._token()
            except ClientError as exc:
                if exc.transient:
                    raise _StreamDown(exc) from None
                raise
            headers = {"Accept": "text/event-stream", "Authorization": f"Bearer {token}"}
            if last_event_id is not None:
                headers["Last-Event-ID"] = str(last_event_id)
            timeout = httpx.Timeout(self.timeout, connect=self.connect_timeout, read=self.stream_idle_timeout)
            try:
                async with self._http.stream("GET", STREAM_PATH, headers=headers, timeout=timeout) as response:
                    if response.status_code != 200:
                        await response.aread()
                        error = _error_from(response)
                        if response.status_code == 401 and not renewed and self._can_renew():
                            renewed = True
                            await self._renew(token)
                            continue
                        if error.transient or response.status_code >= 500:
                            raise _StreamDown(error)
                        raise error
                    async for sse in EventSource(response).aiter_sse():
                        if not sse.data:
                            continue  # e.g. the "retry:" hint alone
                        try:
                            data = json.loads(sse.data)
                        except ValueError:
                            continue
                        event_id = int(sse.id) if sse.id.isdigit() and sse.event not in _CONTROL else None
                        yield Event(event_id, sse.event, data if isinstance(data, dict) else {"data": data})
                    raise _StreamDown(ClientError("connection_error", "the event stream ended"))
            except httpx.TimeoutException:
                raise _StreamDown(ClientTimeout(f"the event stream was silent for {self.stream_idle_timeout:g}s")) from None
            except (httpx.TransportError, SSEError) as exc:
                raise _StreamDown(ClientError("connection_error", f"event stream: {exc or type(exc).__name__}")) from None


# -- the shared stream behind wait() and stream_insight() ---------------------------

_RESYNC = object()  # (re)connected or reset: events may have been missed, ask the server
_DOWN = object()  # the stream went down: poll until it is back


class _Listener:
    def __init__(self, task_ids: set[str] | None) -> None:
        #: The tasks whose events it wants; None for all of them.
        self.task_ids = task_ids
        self.queue: asyncio.Queue[object] = asyncio.Queue()

    def wants(self, task_id: object) -> bool:
        return self.task_ids is None or task_id in self.task_ids

    async def get(self, timeout: float) -> object | None:
        """The next item, or None after ``timeout`` seconds."""
        try:
            return self.queue.get_nowait()
        except asyncio.QueueEmpty:
            pass
        try:
            async with asyncio.timeout(timeout):
                return await self.queue.get()
        except TimeoutError:
            return None


class _Feed:
    """One event stream per client, shared by every waiter: started by the first
    listener, kept ``linger`` seconds after the last one leaves. It hands each listener
    the events of its tasks, ``_RESYNC`` on every (re)connection and reset (so it asks
    for its task's state: nothing between two connections is lost) and ``_DOWN``
    when the stream breaks (so it polls until the stream is back)."""

    def __init__(self, client: Client, linger: float = 5.0) -> None:
        self._client = client
        self._linger = linger
        self._listeners: set[_Listener] = set()
        self._task: asyncio.Task[None] | None = None
        self._idle: asyncio.TimerHandle | None = None
        #: Set once the current stream is connected, or a try to connect it failed.
        self._settled = asyncio.Event()
        self.connected = False

    def listen(self, task_ids: set[str] | None) -> _Listener:
        listener = _Listener(task_ids)
        self._listeners.add(listener)
        if self.connected:  # its task's events so far went by: it asks once
            listener.queue.put_nowait(_RESYNC)
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        if self._task is None or self._task.done():
            self._settled.clear()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="insightreader-events")
        return listener

    def unlisten(self, listener: _Listener) -> None:
        self._listeners.discard(listener)
        if not self._listeners and self._task is not None and self._idle is None:
            self._idle = asyncio.get_running_loop().call_later(self._linger, self._stop_idle)

    def _stop_idle(self) -> None:
        self._idle = None
        if not self._listeners and self._task is not None:
            self._task.cancel()
            self._task = None
            self._set_down()

    async def wait_ready(self, timeout: float) -> bool:
        """Whether the stream is connected, once it is or a try to connect it failed
        (False after ``timeout`` seconds)."""
        try:
            async with asyncio.timeout(timeout):
                await self._settled.wait()
        except TimeoutError:
            pass
        return self.connected

    async def stop(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._set_down()

    def _broadcast(self, item: object) -> None:
        for listener in self._listeners:
            listener.queue.put_nowait(item)

    def _set_down(self, error: ClientError | None = None) -> None:
        """The stream is down (``error`` says why): waiters poll until it is back."""
        self._settled.set()
        if self.connected:
            self.connected = False
            self._broadcast(_DOWN)

    async def _run(self) -> None:
        while True:
            try:
                async with contextlib.aclosing(self._client._follow(None, self._set_down)) as events:
                    async for event in events:
                        self._dispatch(event)
            except Exception as exc:  # refused for good (404, 401…): the waiters poll (and see it too)
                log.warning("event stream unavailable, polling instead: %s", exc)
                self._set_down()
                await asyncio.sleep(self._client.stream_retry)

    def _dispatch(self, event: Event) -> None:
        if event.event == "connected":
            self.connected = True
            self._settled.set()
            self._broadcast(_RESYNC)
        elif event.event == "reset":
            self._broadcast(_RESYNC)
        elif event.id is not None:
            task_id = event.data.get("task_id")
            for listener in self._listeners:
                if listener.wants(task_id):
                    listener.queue.put_nowait(event)


class _InsightText:
    """Merges ``task_progress`` deltas by (attempt, index) into text in order: a delta
    seen twice counts once, one from an older attempt is dropped, and a newer attempt
    starts the text over (its first piece has ``restart`` set)."""

    def __init__(self) -> None:
        self.attempt = 0
        self._parts: dict[int, str] = {}
        self._next = 0
        self._shown = ""
        self._restart = False

    def start(self, attempt: int) -> None:
        if attempt > self.attempt:
            if self._shown:
                self._restart = True
            self.attempt, self._parts, self._next, self._shown = attempt, {}, 0, ""

    def _piece(self, text: str, index: int | None) -> Delta:
        piece = Delta(text, self.attempt or 1, index, self._restart)
        self._restart = False
        self._shown += text
        return piece

    def add(self, attempt: int, index: int, delta: str) -> list[Delta]:
        if attempt < self.attempt:
            return []
        self.start(attempt)
        if index < self._next or index in self._parts:
            return []
        self._parts[index] = delta
        pieces = []
        while self._next in self._parts:
            pieces.append(self._piece(self._parts.pop(self._next), self._next))
            self._next += 1
        return [p for p in pieces if p]

    def finish(self, final: str) -> list[Delta]:
        """What is left to show of the final text (all of it, restarted, if what was
        shown is not its beginning)."""
        if not final.startswith(self._shown):
            self._restart = True
            self._shown = ""
        rest = final[len(self._shown) :]
        return [self._piece(rest, None)] if rest or self._restart else []
