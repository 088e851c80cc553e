"""Webhooks: a user's events POSTed to a URL they chose, signed as the Standard Webhooks
specification says (so its published verification libraries work unchanged).

Deliveries are durable: one is made for each matching webhook in the transaction that
stores its event (:attr:`EventBus.on_store`), so a crash loses none, and it keeps its id
(the ``webhook-id`` header) across retries. The :class:`Dispatcher`, a background part
of its own with at most :data:`CONCURRENCY` requests at once, sends the due ones: a 2xx
answer is done; a 410 disables the webhook; anything else (another status, no answer
within ``webhooks.timeout``, a refused address) is retried with exponential backoff and
jitter from ``webhooks.retry_initial`` seconds for at least ``webhooks.retry_for``, then
given up. A webhook whose deliveries have failed for :data:`DISABLE_AFTER` seconds is
disabled. Requests go through the fetch address guard (``library.fetch_allow_private``)
and follow no redirect.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import random
import re
import secrets
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from .config import WebhookSettings
from .errors import ForbiddenAddress, NotFound, TaskError, TooManyWebhooks, ValidationFailed
from .events import EventBus
from .ids import new_id
from .records import Delivery, Webhook, format_time, utcnow
from .store import Store, Tx
from .store.channels import WEBHOOKS
from .supervisor import Supervisor

log = logging.getLogger(__name__)

#: The events a webhook may ask for.
EVENTS = ("task_completed", "task_failed", "task_cancelled", "article_saved", "import_finished")
#: The event of ``POST /webhooks/{id}/test``.
TEST_EVENT = "webhook_test"
MAX_PER_USER = 20
MAX_URL_CHARS = 2048
#: Requests in flight at once, whatever the number of webhooks.
CONCURRENCY = 4
#: A webhook failing this long (seconds) is disabled.
DISABLE_AFTER = 24 * 3600
#: Finished deliveries are kept this long (seconds) in the log.
KEEP_DELIVERIES = 7 * 24 * 3600
#: Seconds between two prunings of the delivery log.
PRUNE_EVERY = 3600
#: Due deliveries read per look.
DUE_BATCH = 100
#: With other processes on the database: seconds beyond ``webhooks.timeout`` a
#: delivery taken for sending stays with its process (one that dies meanwhile leaves
#: it to the others after that).
CLAIM_MARGIN = 5.0
SECRET_PREFIX = "whsec_"
_B64 = "[A-Za-z0-9+/]"
#: ``whsec_`` and the base64 of a 24 to 64 byte key, padded.
SECRET_PATTERN = (
    rf"^whsec_(?:(?:{_B64}{{4}}){{8,20}}(?:{_B64}{{2}}==|{_B64}{{3}}=)?|(?:{_B64}{{4}}){{21}}(?:{_B64}{{2}}==)?)$"
)
_SECRET = re.compile(SECRET_PATTERN)


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def checked_secret(secret: str) -> str:
    """A secret a user gave: ``whsec_`` and the base64 of a 24 to 64 byte key."""
    if not _SECRET.fullmatch(secret):
        raise ValidationFailed("secret: whsec_ followed by the base64 of a 24 to 64 byte key (Standard Webhooks)")
    return secret


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of "id.timestamp.body">`` keyed by the secret's bytes."""
    key = base64.b64decode(secret[len(SECRET_PREFIX):])
    signed = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(signed).decode()


def next_delay(attempts: int, initial: float, rand: Callable[[], float] = random.random) -> float:
    """Seconds before the attempt after ``attempts`` failed ones: ``initial`` doubled each
    time, half of it fixed and half random (so a receiver back up is not hit by every
    delivery at once, and no wait is much shorter than the schedule)."""
    base = initial * 2 ** (attempts - 1)
    return base / 2 + rand() * base / 2


def _payload(message_id: str, event: str, data: dict[str, Any], now: str) -> str:
    return json.dumps({"id": message_id, "type": event, "timestamp": now, "data": data}, ensure_ascii=False)


def _delivery(webhook_id: str, event: str, data: dict[str, Any], now: str) -> Delivery:
    message_id = "msg_" + uuid.uuid4().hex
    return Delivery(
        id=message_id, webhook_id=webhook_id, event=event, payload=_payload(message_id, event, data, now),
        status="pending", attempts=0, next_attempt_at=now, last_status=None, last_error=None,
        created_at=now, finished_at=None,
    )


class Webhooks:
    """The webhooks' home: what the API calls, and where deliveries are made."""

    def __init__(
        self, store: Store, bus: EventBus, settings: WebhookSettings, *, allow_private: bool, supervisor: Supervisor
    ) -> None:
        self._store = store
        self._settings = settings
        self.allow_private = allow_private
        #: user id → their enabled webhooks: the event path asks this, not the database.
        #: Other processes on the database say when a user's webhooks changed.
        self._by_user: dict[str, list[Webhook]] = {}
        self._supervisor = supervisor
        self.dispatcher = Dispatcher(store, self, settings, supervisor=supervisor)
        bus.on_store = self._on_event
        store.channels.listen(WEBHOOKS, self._reload)
        store.channels.on_reconnect(lambda: self._reload(None))

    async def start(self) -> None:
        await self._read(None)
        self.dispatcher.start()

    async def _read(self, user_id: str | None) -> None:
        """Read the enabled webhooks of one user (None: of everyone) again. Each entry
        is replaced whole: the writer's thread reads them meanwhile."""
        if user_id is None:
            by_user: dict[str, list[Webhook]] = {}
            for webhook in await self._store.read.enabled_webhooks():
                by_user.setdefault(webhook.user_id, []).append(webhook)
            self._by_user = by_user
            return
        found = [w for w in await self._store.read.webhooks(user_id) if w.enabled]
        if found:
            self._by_user[user_id] = found
        else:
            self._by_user.pop(user_id, None)

    def _reload(self, user_id: str | None) -> None:
        self._supervisor.start(self._read(user_id), name="webhooks-reload", until_stopped=False)

    async def stop(self) -> None:
        await self.dispatcher.stop()

    def _remember(self, webhook: Webhook) -> None:
        # Once: the notification of its own commit may have had it read already.
        known = self._by_user.get(webhook.user_id, [])
        if all(w.id != webhook.id for w in known):
            self._by_user[webhook.user_id] = [*known, webhook]

    def forget(self, user_id: str, webhook_id: str) -> None:
        kept = [w for w in self._by_user.get(user_id, []) if w.id != webhook_id]
        if kept:
            self._by_user[user_id] = kept
        else:
            self._by_user.pop(user_id, None)

    def _on_event(self, tx: Tx, user_id: str, event: str, data: dict[str, Any]) -> None:
        hooks = self._by_user.get(user_id)
        if not hooks:
            return
        now = utcnow()
        made = False
        for webhook in hooks:
            if event in webhook.events:
                tx.insert_delivery(_delivery(webhook.id, event, data, now))
                made = True
        if made:
            tx.after_commit(self.dispatcher.wake)

    async def create(self, user_id: str, url: str, events: list[str], secret: str | None) -> Webhook:
        chosen = tuple(dict.fromkeys(events))
        unknown = [e for e in chosen if e not in EVENTS]
        if not chosen or unknown:
            raise ValidationFailed(f"events: choose among {', '.join(EVENTS)}")
        if len(url) > MAX_URL_CHARS:
            raise ValidationFailed(f"url: at most {MAX_URL_CHARS} characters")
        # httpx and httpcore load with the first webhook, not at every start (test_smoke).
        from . import fetching

        try:
            fetching.check_destination(url, allow_private=self.allow_private)
        except TaskError as exc:
            refused = ForbiddenAddress if exc.code == "fetch_forbidden_address" else ValidationFailed
            raise refused(f"url: {exc.message}") from None
        webhook = Webhook(
            id=new_id(), user_id=user_id, url=url, events=chosen,
            secret=new_secret() if secret is None else checked_secret(secret), enabled=True,
            disabled_reason=None, failing_since=None, created_at=utcnow(),
        )

        def job(tx: Tx) -> None:
            if tx.count_webhooks(user_id) >= MAX_PER_USER:
                raise TooManyWebhooks(f"you have {MAX_PER_USER} webhooks, the most allowed; delete one first")
            tx.insert_webhook(webhook)
            tx.notify(WEBHOOKS, user_id)
            tx.after_commit(lambda: self._remember(webhook))

        await self._store.write(job)
        return webhook

    async def delete(self, user_id: str, webhook_id: str) -> None:
        def job(tx: Tx) -> bool:
            deleted = tx.delete_webhook(webhook_id, user_id)
            if deleted:
                tx.notify(WEBHOOKS, user_id)
                tx.after_commit(lambda: self.forget(user_id, webhook_id))
            return deleted

        if not await self._store.write(job):
            raise NotFound("no such webhook")

    async def owned(self, user_id: str, webhook_id: str) -> Webhook:
        found = await self._store.read.webhook(webhook_id, user_id)
        if found is None:
            raise NotFound("no such webhook")
        return found

    async def send_test(self, user_id: str, webhook_id: str) -> Delivery:
        """A ``webhook_test`` delivery to the webhook, now (enabled or not: a test is how
        a user checks a receiver they fixed)."""
        webhook = await self.owned(user_id, webhook_id)
        delivery = _delivery(webhook.id, TEST_EVENT, {"webhook_id": webhook.id, "message": "a test from InsightReader"}, utcnow())

        def job(tx: Tx) -> None:
            tx.insert_delivery(delivery)
            tx.after_commit(self.dispatcher.wake)

        await self._store.write(job)
        return delivery

    def disabled(self, webhook: Webhook) -> None:
        self.forget(webhook.user_id, webhook.id)


class Dispatcher:
    """Sends the due deliveries, at most :data:`CONCURRENCY` at once."""

    def __init__(self, store: Store, owner: Webhooks, settings: WebhookSettings, *, supervisor: Supervisor) -> None:
        self._store = store
        self._owner = owner
        self._settings = settings
        self._supervisor = supervisor
        self._shared = store.channels.shared
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(CONCURRENCY)
        #: Reads of the due deliveries begun so far.
        self._reads = 0
        #: Deliveries being sent (None), or sent (the reads begun when their outcome was
        #: recorded): a read begun before that may still show them due, so they are
        #: skipped until a later read.
        self._in_flight: dict[str, int | None] = {}
        self._pruned_at = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = self._supervisor.start(self._run(), name="webhook-dispatcher")

    async def stop(self) -> None:
        """Stop sending: a delivery cut short stays pending and is sent after a restart."""
        await self._supervisor.stop(self._task)
        self._task = None

    def wake(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        async with asyncio.TaskGroup() as group:
            while True:
                self._wake.clear()
                if time.monotonic() - self._pruned_at >= PRUNE_EVERY:
                    await self._prune()
                self._reads += 1
                read = self._reads
                for delivery, webhook in await self._due(read):
                    await self._slots.acquire()
                    self._in_flight[delivery.id] = None
                    group.create_task(self._attempt(delivery, webhook))
                for done in [d for d, settled in self._in_flight.items() if settled is not None and settled < read]:
                    del self._in_flight[done]
                await self._sleep()

    async def _due(self, read: int) -> list[tuple[Delivery, Webhook]]:
        """The due deliveries to send now (not those this process is sending, or whose
        outcome the read numbered ``read`` may not show yet); with other processes on
        the database, those of them this one took (each is sent by one process)."""
        now = datetime.now(UTC)
        due = [
            (delivery, webhook)
            for delivery, webhook in await self._store.read.due_deliveries(format_time(now), DUE_BATCH)
            if delivery.id not in self._in_flight or self._known(delivery.id, read)
        ]
        if not (self._shared and due):
            return due
        until = format_time(now + timedelta(seconds=self._settings.timeout + CLAIM_MARGIN))
        ids = [delivery.id for delivery, _ in due]
        taken = await self._store.write(lambda tx: tx.claim_deliveries(ids, format_time(now), until))
        return [(delivery, webhook) for delivery, webhook in due if delivery.id in taken]

    def _known(self, delivery_id: str, read: int) -> bool:
        """Whether the read numbered ``read`` began after the delivery's last outcome was recorded."""
        settled = self._in_flight[delivery_id]
        return settled is not None and settled < read

    async def _sleep(self) -> None:
        """Until woken (a new delivery, an attempt done) or the next retry is due."""
        due = await self._store.read.next_delivery_due(list(self._in_flight))
        wait: float | None = None
        if due is not None:
            wait = max(0.0, (datetime.fromisoformat(due.replace("Z", "+00:00")) - datetime.now(UTC)).total_seconds())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(None if wait is None else min(wait, PRUNE_EVERY)):
                await self._wake.wait()

    async def _prune(self) -> None:
        self._pruned_at = time.monotonic()
        cutoff = format_time(datetime.now(UTC) - timedelta(seconds=KEEP_DELIVERIES))
        try:
            removed = await self._store.write(lambda tx: tx.prune_deliveries(cutoff))
        except Exception:
            log.exception("could not prune the webhook delivery log; trying again later")
            return
        if removed:
            log.info("pruned %d webhook deliveries finished before %s", removed, cutoff)

    async def _attempt(self, delivery: Delivery, webhook: Webhook) -> None:
        try:
            status, error = await self._send(delivery, webhook)
            await self._store.write(lambda tx: self._record(tx, delivery, webhook, status, error))
        except Exception:
            log.exception("webhook delivery %s could not be recorded; it stays due", delivery.id)
        finally:
            self._in_flight[delivery.id] = self._reads
            self._slots.release()
            self.wake()

    async def _send(self, delivery: Delivery, webhook: Webhook) -> tuple[int | None, str | None]:
        """The receiver's status, or None and why there was none."""
        body = delivery.payload.encode()
        stamp = int(time.time())
        headers = [
            (b"Content-Type", b"application/json"),
            (b"webhook-id", delivery.id.encode()),
            (b"webhook-timestamp", str(stamp).encode()),
            (b"webhook-signature", signature(webhook.secret, delivery.id, stamp, body).encode()),
        ]
        from . import fetching

        try:
            status = await fetching.post(
                webhook.url, body, headers, allow_private=self._owner.allow_private, timeout=self._settings.timeout
            )
        except TaskError as exc:
            return None, exc.message
        return status, None if 200 <= status < 300 else f"the receiver answered HTTP {status}"

    def _record(self, tx: Tx, delivery: Delivery, webhook: Webhook, status: int | None, error: str | None) -> None:
        now = datetime.now(UTC)
        stamp = format_time(now)
        if error is None:
            tx.record_attempt(delivery.id, status="succeeded", next_attempt_at=None, last_status=status,
                              last_error=None, finished_at=stamp)
            tx.set_webhook_failing(webhook.id, None)
            return
        if status == 410:
            reason = "the receiver answered 410 Gone"
            tx.record_attempt(delivery.id, status="failed", next_attempt_at=None, last_status=status,
                              last_error=error, finished_at=stamp)
            self._disable(tx, webhook, reason, stamp)
            return
        started = datetime.fromisoformat(delivery.created_at.replace("Z", "+00:00"))
        if (now - started).total_seconds() < self._settings.retry_for:
            later = now + timedelta(seconds=next_delay(delivery.attempts + 1, self._settings.retry_initial))
            tx.record_attempt(delivery.id, status="pending", next_attempt_at=format_time(later),
                              last_status=status, last_error=error, finished_at=None)
        else:
            tx.record_attempt(delivery.id, status="failed", next_attempt_at=None, last_status=status,
                              last_error=error, finished_at=stamp)
        tx.set_webhook_failing(webhook.id, stamp)
        failing = webhook.failing_since or stamp
        if (now - datetime.fromisoformat(failing.replace("Z", "+00:00"))).total_seconds() >= DISABLE_AFTER:
            self._disable(tx, webhook, "its deliveries failed for 24 hours", stamp)

    def _disable(self, tx: Tx, webhook: Webhook, reason: str, now: str) -> None:
        tx.disable_webhook(webhook.id, reason, now)
        tx.notify(WEBHOOKS, webhook.user_id)
        tx.after_commit(lambda: self._owner.disabled(webhook))
        log.warning("webhook %s disabled: %s", webhook.id, reason, extra={"user_id": webhook.user_id})
