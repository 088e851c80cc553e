"""/api/v1/webhooks: thin wrappers over :class:`..webhooks.Webhooks`."""

from __future__ import annotations

from typing import Any

from quart import Blueprint
from quart_schema import validate_request, validate_response

from ..webhooks import MAX_PER_USER
from .deps import current_user, services
from .openapi import errors, raw_response
from .schemas import DeliveryList, DeliveryOut, WebhookCreate, WebhookCreated, WebhookList

bp = Blueprint("webhooks", __name__, url_prefix="/api/v1")
#: Deliveries `GET /webhooks/{id}/deliveries` shows, newest first.
LOGGED = 50


@bp.post("/webhooks")
@validate_request(WebhookCreate)
@validate_response(WebhookCreated, 201)
@errors(
    (409, f"The user has {MAX_PER_USER} webhooks already: delete one first.", "too_many_webhooks"),
    (422, "A field is invalid, or the URL leads to an address the server may not call "
          "(`fetch_forbidden_address`, with `library.fetch_allow_private` off).",
     "validation_error", "fetch_forbidden_address"),
)
async def create(data: WebhookCreate) -> tuple[dict[str, Any], int]:
    """Send your events to a URL, signed as Standard Webhooks (`webhook-id`,
    `webhook-timestamp`, `webhook-signature`). `secret` is shown in this answer only."""
    webhook = await services().webhooks.create(current_user().id, data.url, list(data.events), data.secret)
    return {**webhook.public(), "secret": webhook.secret}, 201


@bp.get("/webhooks")
@validate_response(WebhookList)
async def list_webhooks() -> dict[str, Any]:
    """Your webhooks (never their secrets)."""
    return {"items": [w.public() for w in await services().store.read.webhooks(current_user().id)]}


@bp.delete("/webhooks/<webhook_id>")
@raw_response(204, None, "Deleted (no body), with its deliveries.")
@errors(404)
async def delete(webhook_id: str) -> tuple[str, int]:
    """Delete a webhook: nothing more is sent to it."""
    await services().webhooks.delete(current_user().id, webhook_id)
    return "", 204


@bp.post("/webhooks/<webhook_id>/test")
@validate_response(DeliveryOut, 202)
@errors(404)
async def send_test(webhook_id: str) -> tuple[dict[str, Any], int]:
    """Send a `webhook_test` event to the webhook now; follow it in its deliveries."""
    return (await services().webhooks.send_test(current_user().id, webhook_id)).public(), 202


@bp.get("/webhooks/<webhook_id>/deliveries")
@validate_response(DeliveryList)
@errors(404)
async def deliveries(webhook_id: str) -> dict[str, Any]:
    """The webhook's last 50 deliveries, newest first: status, attempts, last answer."""
    svc = services()
    webhook = await svc.webhooks.owned(current_user().id, webhook_id)
    return {"items": [d.public() for d in await svc.store.read.deliveries(webhook.id, LOGGED)]}
